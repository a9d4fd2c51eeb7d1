//! [`TransformerOps`] on the CPU: plain row loops over contiguous buffers,
//! parallel over rows with rayon, generic over f32 and f64.

use crate::{CpuBackend, CpuElement, CpuTensor};
use apex_core::layout::numel;
use apex_core::transformer_checks as check;
use apex_core::transformer_ops::{AdamWStep, TransformerOps, IGNORE_INDEX};
use apex_core::Result;
use rayon::prelude::*;

/// Rows per rayon task: small enough to spread 2–16 cores, large enough that
/// task overhead stays negligible for `d ≥ 64`.
const ROWS_PER_TASK: usize = 16;

impl<E: CpuElement> TransformerOps for CpuBackend<E> {
    fn rms_norm(
        &self,
        x: &CpuTensor<E>,
        weight: &CpuTensor<E>,
        eps: f64,
    ) -> Result<(CpuTensor<E>, CpuTensor<E>)> {
        let (rows, d) = check::rms_norm(x.shape(), weight.shape())?;
        let w = weight.data();
        let mut y = vec![E::ZERO; rows * d];
        let mut inv = vec![E::ZERO; rows];
        y.par_chunks_mut(d * ROWS_PER_TASK.max(1))
            .zip(inv.par_chunks_mut(ROWS_PER_TASK))
            .zip(x.data().par_chunks(d * ROWS_PER_TASK))
            .for_each(|((y, inv), x)| {
                for ((y, inv), x) in y.chunks_mut(d).zip(inv.iter_mut()).zip(x.chunks(d)) {
                    let ms = x.iter().map(|&a| a.to_f64() * a.to_f64()).sum::<f64>() / d as f64;
                    let r = E::from_f64(1.0 / (ms + eps).sqrt());
                    *inv = r;
                    for ((y, &a), &w) in y.iter_mut().zip(x).zip(w) {
                        *y = a * r * w;
                    }
                }
            });
        Ok((
            CpuTensor::from_vec(y, &[rows, d])?,
            CpuTensor::from_vec(inv, &[rows])?,
        ))
    }

    fn rms_norm_backward(
        &self,
        x: &CpuTensor<E>,
        weight: &CpuTensor<E>,
        inv_rms: &CpuTensor<E>,
        grad_y: &CpuTensor<E>,
        grad_weight: Option<&mut CpuTensor<E>>,
    ) -> Result<CpuTensor<E>> {
        let (rows, d) = check::rms_norm_backward(
            x.shape(),
            weight.shape(),
            inv_rms.shape(),
            grad_y.shape(),
            grad_weight.as_ref().map(|gw| gw.shape()),
        )?;
        let w = weight.data();
        let mut gx = vec![E::ZERO; rows * d];
        gx.par_chunks_mut(d)
            .zip(x.data().par_chunks(d))
            .zip(grad_y.data().par_chunks(d))
            .zip(inv_rms.data().par_iter())
            .for_each(|(((gx, x), gy), &r)| {
                let mut dot = E::ZERO;
                for ((&gy, &w), &x) in gy.iter().zip(w).zip(x) {
                    dot += gy * w * x * r;
                }
                let mean = dot / E::from_f64(d as f64);
                for (((gx, &gy), &w), &x) in gx.iter_mut().zip(gy).zip(w).zip(x) {
                    *gx = r * (gy * w - x * r * mean);
                }
            });
        if let Some(gw) = grad_weight {
            let gw = gw.data_mut();
            for ((x, gy), &r) in x
                .data()
                .chunks(d)
                .zip(grad_y.data().chunks(d))
                .zip(inv_rms.data())
            {
                for ((gw, &gy), &x) in gw.iter_mut().zip(gy).zip(x) {
                    *gw += gy * x * r;
                }
            }
        }
        CpuTensor::from_vec(gx, &[rows, d])
    }

    fn rope(
        &self,
        x: &mut CpuTensor<E>,
        head_dim: usize,
        seq_len: usize,
        theta: f64,
        inverse: bool,
    ) -> Result<()> {
        let (_, width) = check::rope(x.shape(), head_dim, seq_len)?;
        let half = head_dim / 2;
        let sign = if inverse { -1.0 } else { 1.0 };
        // cos/sin per (position, frequency), shared by every head and sequence.
        let table: Vec<(E, E)> = (0..seq_len)
            .flat_map(|pos| {
                (0..half).map(move |i| {
                    let inv_freq = 1.0 / theta.powf((2 * i) as f64 / head_dim as f64);
                    let f = pos as f64 * inv_freq;
                    (E::from_f64(f.cos()), E::from_f64(sign * f.sin()))
                })
            })
            .collect();
        x.data_mut()
            .par_chunks_mut(width)
            .enumerate()
            .for_each(|(t, row)| {
                let cs = &table[(t % seq_len) * half..(t % seq_len + 1) * half];
                for head in row.chunks_mut(head_dim) {
                    let (lo, hi) = head.split_at_mut(half);
                    for ((a, b), &(c, s)) in lo.iter_mut().zip(hi.iter_mut()).zip(cs) {
                        let (x1, x2) = (*a, *b);
                        *a = x1 * c - x2 * s;
                        *b = x2 * c + x1 * s;
                    }
                }
            });
        Ok(())
    }

    fn causal_softmax(&self, scores: &mut CpuTensor<E>, scale: f64) -> Result<()> {
        let (_, s) = check::causal_softmax(scores.shape())?;
        if s == 0 {
            return Ok(());
        }
        let scale = E::from_f64(scale);
        scores
            .data_mut()
            .par_chunks_mut(s)
            .enumerate()
            .for_each(|(r, row)| {
                let i = r % s;
                let (live, future) = row.split_at_mut(i + 1);
                let mut max = live[0] * scale;
                for a in live.iter_mut() {
                    *a *= scale;
                    if *a > max {
                        max = *a;
                    }
                }
                let mut sum = E::ZERO;
                for a in live.iter_mut() {
                    *a = (*a - max).exp();
                    sum += *a;
                }
                let inv = E::ONE / sum;
                for a in live.iter_mut() {
                    *a *= inv;
                }
                future.fill(E::ZERO);
            });
        Ok(())
    }

    fn softmax_backward(
        &self,
        probs: &CpuTensor<E>,
        grad: &mut CpuTensor<E>,
        scale: f64,
    ) -> Result<()> {
        let (_, s) = check::softmax_backward(probs.shape(), grad.shape())?;
        if s == 0 {
            return Ok(());
        }
        let scale = E::from_f64(scale);
        grad.data_mut()
            .par_chunks_mut(s)
            .zip(probs.data().par_chunks(s))
            .for_each(|(g, p)| {
                let mut dot = E::ZERO;
                for (&g, &p) in g.iter().zip(p) {
                    dot += g * p;
                }
                for (g, &p) in g.iter_mut().zip(p) {
                    *g = scale * p * (*g - dot);
                }
            });
        Ok(())
    }

    fn cross_entropy(
        &self,
        logits: &CpuTensor<E>,
        labels: &[i64],
        grad_scale: Option<f64>,
    ) -> Result<(f64, usize, Option<CpuTensor<E>>)> {
        let (rows, vocab, count) = check::cross_entropy(logits.shape(), labels)?;
        let mut grad = grad_scale.map(|_| vec![E::ZERO; rows * vocab]);
        let row_loss = |row: &[E], label: i64, g: Option<&mut [E]>| -> f64 {
            if label == IGNORE_INDEX {
                return 0.0;
            }
            let max = row
                .iter()
                .fold(f64::NEG_INFINITY, |m, &a| m.max(a.to_f64()));
            let sum: f64 = row.iter().map(|&a| (a.to_f64() - max).exp()).sum();
            let log_z = max + sum.ln();
            if let (Some(g), Some(scale)) = (g, grad_scale) {
                for (j, (g, &a)) in g.iter_mut().zip(row).enumerate() {
                    let p = (a.to_f64() - log_z).exp();
                    let target = if j as i64 == label { 1.0 } else { 0.0 };
                    *g = E::from_f64(scale * (p - target));
                }
            }
            log_z - row[label as usize].to_f64()
        };
        let total: f64 = match grad.as_mut() {
            Some(g) => g
                .par_chunks_mut(vocab)
                .zip(logits.data().par_chunks(vocab))
                .zip(labels.par_iter())
                .map(|((g, row), &l)| row_loss(row, l, Some(g)))
                .sum(),
            None => logits
                .data()
                .par_chunks(vocab)
                .zip(labels.par_iter())
                .map(|(row, &l)| row_loss(row, l, None))
                .sum(),
        };
        let grad = grad
            .map(|g| CpuTensor::from_vec(g, &[rows, vocab]))
            .transpose()?;
        Ok((total, count, grad))
    }

    fn scatter_add_rows(
        &self,
        rows: &CpuTensor<E>,
        index: &[usize],
        table: &mut CpuTensor<E>,
    ) -> Result<()> {
        let (_, d, _) = check::scatter_add_rows(rows.shape(), index, table.shape())?;
        let dst = table.data_mut();
        for (row, &i) in rows.data().chunks(d).zip(index) {
            for (t, &r) in dst[i * d..(i + 1) * d].iter_mut().zip(row) {
                *t += r;
            }
        }
        Ok(())
    }

    fn adamw_step(
        &self,
        param: &mut CpuTensor<E>,
        grad: &CpuTensor<E>,
        m: &mut CpuTensor<E>,
        v: &mut CpuTensor<E>,
        step: &AdamWStep,
    ) -> Result<()> {
        let coefficients =
            check::adamw_step(param.shape(), grad.shape(), m.shape(), v.shape(), step)?;
        let n = numel(param.shape());
        let (b1, b2) = (E::from_f64(step.beta1), E::from_f64(step.beta2));
        let (nb1, nb2) = (E::from_f64(1.0 - step.beta1), E::from_f64(1.0 - step.beta2));
        let gs = E::from_f64(step.grad_scale);
        let decay = E::from_f64(coefficients.decay);
        let lr = E::from_f64(step.lr);
        let (c1, c2, eps) = (
            E::from_f64(coefficients.bias_correction1),
            E::from_f64(coefficients.bias_correction2),
            E::from_f64(step.eps),
        );
        const CHUNK: usize = 4096;
        param.data_mut()[..n]
            .par_chunks_mut(CHUNK)
            .zip(m.data_mut().par_chunks_mut(CHUNK))
            .zip(v.data_mut().par_chunks_mut(CHUNK))
            .zip(grad.data().par_chunks(CHUNK))
            .for_each(|(((p, m), v), g)| {
                for (((p, m), v), &g) in p.iter_mut().zip(m).zip(v).zip(g) {
                    let g = gs * g;
                    *m = b1 * *m + nb1 * g;
                    *v = b2 * *v + nb2 * g * g;
                    *p = decay * *p - lr * (*m * c1) / ((*v * c2).sqrt() + eps);
                }
            });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apex_core::{ApexError, Backend};

    fn cpu() -> CpuBackend<f64> {
        CpuBackend::new()
    }

    /// A deterministic, irregular fill (no RNG needed for these small checks).
    fn filled(shape: &[usize], seed: f64) -> CpuTensor<f64> {
        let data = (0..numel(shape))
            .map(|i| ((i as f64 + seed) * 0.7548776662).sin() * 1.3)
            .collect();
        CpuTensor::from_vec(data, shape).unwrap()
    }

    fn dot(a: &CpuTensor<f64>, b: &CpuTensor<f64>) -> f64 {
        a.data().iter().zip(b.data()).map(|(x, y)| x * y).sum()
    }

    /// Central difference of `f` along direction `dir` at `x`.
    fn directional(
        f: impl Fn(&CpuTensor<f64>) -> f64,
        x: &CpuTensor<f64>,
        dir: &CpuTensor<f64>,
    ) -> f64 {
        let h = 1e-6;
        let shifted = |s: f64| {
            let data = x.data().iter().zip(dir.data()).map(|(a, d)| a + s * d);
            CpuTensor::from_vec(data.collect(), x.shape()).unwrap()
        };
        (f(&shifted(h)) - f(&shifted(-h))) / (2.0 * h)
    }

    fn assert_close(got: f64, want: f64) {
        assert!(
            (got - want).abs() <= 1e-7 * (1.0 + want.abs()),
            "got {got}, want {want}"
        );
    }

    #[test]
    fn rms_norm_matches_its_definition_and_finite_differences() {
        let (x, w) = (filled(&[3, 5], 0.0), filled(&[5], 9.0));
        let (y, inv) = cpu().rms_norm(&x, &w, 1e-5).unwrap();
        let row0: Vec<f64> = x.data()[..5].to_vec();
        let r = 1.0 / (row0.iter().map(|a| a * a).sum::<f64>() / 5.0 + 1e-5).sqrt();
        assert_close(inv.data()[0], r);
        assert_close(y.data()[2], row0[2] * r * w.data()[2]);

        let gy = filled(&[3, 5], 4.0);
        let mut gw = cpu().zeros(&[5]).unwrap();
        let gx = cpu()
            .rms_norm_backward(&x, &w, &inv, &gy, Some(&mut gw))
            .unwrap();
        let loss_x = |x: &CpuTensor<f64>| dot(&cpu().rms_norm(x, &w, 1e-5).unwrap().0, &gy);
        let dir = filled(&[3, 5], 17.0);
        assert_close(dot(&gx, &dir), directional(loss_x, &x, &dir));
        let loss_w = |w: &CpuTensor<f64>| dot(&cpu().rms_norm(&x, w, 1e-5).unwrap().0, &gy);
        let dir_w = filled(&[5], 3.0);
        assert_close(dot(&gw, &dir_w), directional(loss_w, &w, &dir_w));
    }

    #[test]
    fn rope_rotates_pairs_half_a_head_apart_and_inverse_undoes_it() {
        // One head of dim 4, seq_len 2: row 1 is position 1, frequencies 1 and 1/10.
        let mut x =
            CpuTensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0, 4.0], &[2, 4]).unwrap();
        cpu().rope(&mut x, 4, 2, 100.0, false).unwrap();
        assert_eq!(&x.data()[..4], &[1.0, 2.0, 3.0, 4.0]);
        let (c0, s0, c1, s1) = (1f64.cos(), 1f64.sin(), 0.1f64.cos(), 0.1f64.sin());
        let want = [
            1.0 * c0 - 3.0 * s0,
            2.0 * c1 - 4.0 * s1,
            3.0 * c0 + s0,
            4.0 * c1 + 2.0 * s1,
        ];
        for (g, w) in x.data()[4..].iter().zip(want) {
            assert_close(*g, w);
        }
        cpu().rope(&mut x, 4, 2, 100.0, true).unwrap();
        for (g, w) in x.data()[4..].iter().zip([1.0, 2.0, 3.0, 4.0]) {
            assert_close(*g, w);
        }
    }

    #[test]
    fn causal_softmax_masks_the_future_and_its_backward_matches_finite_differences() {
        let s0 = filled(&[2, 3, 3], 1.0);
        let mut p = s0.clone();
        cpu().causal_softmax(&mut p, 0.5).unwrap();
        assert_eq!(p.data()[..3], [1.0, 0.0, 0.0]);
        let row1 = [s0.data()[3] * 0.5, s0.data()[4] * 0.5];
        let z = row1[0].exp() + row1[1].exp();
        assert_close(p.data()[4], row1[1].exp() / z);
        assert_eq!(p.data()[5], 0.0);

        let gp = filled(&[2, 3, 3], 5.0);
        let mut gs = gp.clone();
        cpu().softmax_backward(&p, &mut gs, 0.5).unwrap();
        let loss = |s: &CpuTensor<f64>| {
            let mut p = s.clone();
            cpu().causal_softmax(&mut p, 0.5).unwrap();
            dot(&p, &gp)
        };
        let dir = filled(&[2, 3, 3], 11.0);
        assert_close(dot(&gs, &dir), directional(loss, &s0, &dir));
    }

    #[test]
    fn cross_entropy_ignores_masked_rows_and_its_gradient_matches_finite_differences() {
        let logits = filled(&[3, 4], 2.0);
        let labels = [2, IGNORE_INDEX, 0];
        let (sum, count, grad) = cpu().cross_entropy(&logits, &labels, Some(0.5)).unwrap();
        assert_eq!(count, 2);
        let nll = |row: &[f64], l: usize| row.iter().map(|a| a.exp()).sum::<f64>().ln() - row[l];
        let want = nll(&logits.data()[..4], 2) + nll(&logits.data()[8..], 0);
        assert_close(sum, want);
        let grad = grad.unwrap();
        assert!(grad.data()[4..8].iter().all(|&g| g == 0.0));
        let loss = |x: &CpuTensor<f64>| 0.5 * cpu().cross_entropy(x, &labels, None).unwrap().0;
        let dir = filled(&[3, 4], 7.0);
        assert_close(dot(&grad, &dir), directional(loss, &logits, &dir));
    }

    #[test]
    fn cross_entropy_rejects_out_of_range_labels() {
        let logits = filled(&[2, 4], 0.0);
        assert!(matches!(
            cpu().cross_entropy(&logits, &[4, 0], None),
            Err(ApexError::InvalidIndex { bound: 4, .. })
        ));
        assert!(cpu().cross_entropy(&logits, &[0], None).is_err());
    }

    #[test]
    fn scatter_add_accumulates_repeated_indices() {
        let rows = CpuTensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2]).unwrap();
        let mut table = cpu().zeros(&[3, 2]).unwrap();
        cpu()
            .scatter_add_rows(&rows, &[2, 0, 2], &mut table)
            .unwrap();
        assert_eq!(table.data(), &[3.0, 4.0, 0.0, 0.0, 6.0, 8.0]);
        assert!(cpu()
            .scatter_add_rows(&rows, &[3, 0, 0], &mut table)
            .is_err());
    }

    #[test]
    fn adamw_first_step_moves_each_weight_by_lr_against_the_gradient_sign() {
        // At step 1 the bias-corrected update is g/(|g|+eps) ≈ sign(g).
        let mut p = CpuTensor::from_vec(vec![1.0, -2.0], &[2]).unwrap();
        let g = CpuTensor::from_vec(vec![0.3, -4.0], &[2]).unwrap();
        let (mut m, mut v) = (cpu().zeros(&[2]).unwrap(), cpu().zeros(&[2]).unwrap());
        let step = AdamWStep {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.5,
            step: 1,
            grad_scale: 2.0,
        };
        cpu().adamw_step(&mut p, &g, &mut m, &mut v, &step).unwrap();
        assert_close(p.data()[0], 1.0 * (1.0 - 0.05) - 0.1);
        assert_close(p.data()[1], -2.0 * (1.0 - 0.05) + 0.1);
        assert_close(m.data()[1], 0.1 * 2.0 * -4.0);
        assert_close(v.data()[0], 0.05 * 0.36);
    }
}
