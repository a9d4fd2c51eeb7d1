//! [`TransformerOps`] cross-checks: every op of a backend against the CPU
//! reference in f64 on seeded random inputs (ignored labels, repeated
//! scatter indices, several heads and sequences, accumulation into existing
//! gradients), plus the shape and index errors every backend must raise.

use apex_core::transformer_ops::{AdamWStep, TransformerOps, IGNORE_INDEX};
use apex_core::{ops, ApexError, Backend};
use apex_cpu::CpuBackend;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn values(rng: &mut StdRng, len: usize, spread: f64) -> Vec<f64> {
    (0..len)
        .map(|_| rng.random_range(-spread..=spread) as f32 as f64)
        .collect()
}

fn close(what: &str, got: &[f64], want: &[f64], rtol: f64) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!(
            "{what}: {} values, expected {}",
            got.len(),
            want.len()
        ));
    }
    let scale = want.iter().fold(1e-30f64, |m, w| m.max(w.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if (g - w).abs() > rtol * (scale + w.abs()) {
            return Err(format!("{what}[{i}]: {g}, expected {w} (rtol {rtol})"));
        }
    }
    Ok(())
}

/// Host data on both backends.
struct Pair<'a, B: Backend> {
    backend: &'a B,
    cpu: CpuBackend<f64>,
}

impl<B: Backend> Pair<'_, B> {
    fn up(
        &self,
        data: &[f64],
        shape: &[usize],
    ) -> Result<(B::Tensor, <CpuBackend<f64> as Backend>::Tensor), String> {
        Ok((
            ops::upload_f64(self.backend, data, shape).map_err(|e| e.to_string())?,
            ops::upload_f64(&self.cpu, data, shape).map_err(|e| e.to_string())?,
        ))
    }

    fn compare(
        &self,
        what: &str,
        got: &B::Tensor,
        want: &<CpuBackend<f64> as Backend>::Tensor,
        rtol: f64,
    ) -> Result<(), String> {
        let got = ops::download_f64(self.backend, got).map_err(|e| e.to_string())?;
        let want = ops::download_f64(&self.cpu, want).map_err(|e| e.to_string())?;
        close(what, &got, &want, rtol)
    }
}

/// Every op on a few seeded shapes, against `CpuBackend<f64>`.
pub fn check_transformer_ops<B: TransformerOps>(backend: &B, seed: u64) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let pair = Pair {
        backend,
        cpu: CpuBackend::new(),
    };
    let cpu = &pair.cpu;
    let err = |e: ApexError| e.to_string();
    // d = 1 would make ∂x pure cancellation (exactly 0 in exact arithmetic).
    for (rows, d) in [(1, 3), (7, 33), (64, 300), (3, 1024)] {
        let what = format!("{rows}×{d}");
        let (x, x_ref) = pair.up(&values(&mut rng, rows * d, 2.0), &[rows, d])?;
        let (w, w_ref) = pair.up(&values(&mut rng, d, 1.5), &[d])?;
        let (y, inv) = backend.rms_norm(&x, &w, 1e-5).map_err(err)?;
        let (y_ref, inv_ref) = cpu.rms_norm(&x_ref, &w_ref, 1e-5).map_err(err)?;
        pair.compare(&format!("rms_norm y {what}"), &y, &y_ref, 1e-5)?;
        pair.compare(&format!("rms_norm inv_rms {what}"), &inv, &inv_ref, 1e-5)?;
        let (gy, gy_ref) = pair.up(&values(&mut rng, rows * d, 1.0), &[rows, d])?;
        let start = values(&mut rng, d, 0.5);
        let (mut gw, mut gw_ref) = pair.up(&start, &[d])?;
        let gx = backend
            .rms_norm_backward(&x, &w, &inv, &gy, Some(&mut gw))
            .map_err(err)?;
        let gx_ref = cpu
            .rms_norm_backward(&x_ref, &w_ref, &inv_ref, &gy_ref, Some(&mut gw_ref))
            .map_err(err)?;
        pair.compare(&format!("rms_norm ∂x {what}"), &gx, &gx_ref, 1e-4)?;
        pair.compare(
            &format!("rms_norm ∂w (accumulated) {what}"),
            &gw,
            &gw_ref,
            1e-4,
        )?;
        let frozen = backend
            .rms_norm_backward(&x, &w, &inv, &gy, None)
            .map_err(err)?;
        pair.compare(
            &format!("rms_norm ∂x, frozen weight {what}"),
            &frozen,
            &gx_ref,
            1e-4,
        )?;
    }
    for (seqs, seq_len, heads, head_dim, inverse) in [
        (1, 1, 1, 2, false),
        (2, 5, 3, 8, false),
        (3, 16, 2, 64, true),
    ] {
        let (rows, width) = (seqs * seq_len, heads * head_dim);
        let data = values(&mut rng, rows * width, 1.0);
        let (mut x, mut x_ref) = pair.up(&data, &[rows, width])?;
        backend
            .rope(&mut x, head_dim, seq_len, 10_000.0, inverse)
            .map_err(err)?;
        cpu.rope(&mut x_ref, head_dim, seq_len, 10_000.0, inverse)
            .map_err(err)?;
        pair.compare(
            &format!("rope {rows}×{width} hd={head_dim} inverse={inverse}"),
            &x,
            &x_ref,
            1e-5,
        )?;
    }
    for (n, s) in [(1, 1), (3, 7), (2, 130)] {
        let data = values(&mut rng, n * s * s, 3.0);
        let (mut p, mut p_ref) = pair.up(&data, &[n, s, s])?;
        backend.causal_softmax(&mut p, 0.3).map_err(err)?;
        cpu.causal_softmax(&mut p_ref, 0.3).map_err(err)?;
        pair.compare(&format!("causal_softmax {n}×{s}²"), &p, &p_ref, 1e-5)?;
        let (mut g, mut g_ref) = pair.up(&values(&mut rng, n * s * s, 1.0), &[n, s, s])?;
        backend.softmax_backward(&p, &mut g, 0.3).map_err(err)?;
        cpu.softmax_backward(&p_ref, &mut g_ref, 0.3).map_err(err)?;
        pair.compare(&format!("softmax_backward {n}×{s}²"), &g, &g_ref, 1e-4)?;
    }
    for (rows, vocab) in [(1, 1), (9, 37), (40, 1000)] {
        let (logits, logits_ref) = pair.up(&values(&mut rng, rows * vocab, 4.0), &[rows, vocab])?;
        let labels: Vec<i64> = (0..rows)
            .map(|_| {
                if rng.random_bool(0.2) {
                    IGNORE_INDEX
                } else {
                    rng.random_range(0..vocab as i64)
                }
            })
            .collect();
        for scale in [None, Some(0.25)] {
            let (sum, count, grad) = backend
                .cross_entropy(&logits, &labels, scale)
                .map_err(err)?;
            let (sum_ref, count_ref, grad_ref) = cpu
                .cross_entropy(&logits_ref, &labels, scale)
                .map_err(err)?;
            let what = format!("cross_entropy {rows}×{vocab} scale={scale:?}");
            if count != count_ref {
                return Err(format!("{what}: count {count}, expected {count_ref}"));
            }
            close(&format!("{what} loss"), &[sum], &[sum_ref], 1e-6)?;
            match (grad, grad_ref) {
                (Some(g), Some(g_ref)) => {
                    pair.compare(&format!("{what} grad"), &g, &g_ref, 1e-5)?
                }
                (None, None) => {}
                _ => return Err(format!("{what}: gradient presence differs")),
            }
        }
    }
    for (n, vocab, d) in [(1, 1, 1), (12, 5, 7), (300, 50, 64)] {
        let (rows, rows_ref) = pair.up(&values(&mut rng, n * d, 1.0), &[n, d])?;
        let index: Vec<usize> = (0..n).map(|_| rng.random_range(0..vocab)).collect();
        let start = values(&mut rng, vocab * d, 1.0);
        let (mut table, mut table_ref) = pair.up(&start, &[vocab, d])?;
        backend
            .scatter_add_rows(&rows, &index, &mut table)
            .map_err(err)?;
        cpu.scatter_add_rows(&rows_ref, &index, &mut table_ref)
            .map_err(err)?;
        pair.compare(
            &format!("scatter_add_rows n={n} V={vocab} d={d}"),
            &table,
            &table_ref,
            1e-6,
        )?;
    }
    for (len, step) in [(1, 1), (1000, 3)] {
        let (mut p, mut p_ref) = pair.up(&values(&mut rng, len, 1.0), &[len])?;
        let (g, g_ref) = pair.up(&values(&mut rng, len, 1.0), &[len])?;
        let (mut m, mut m_ref) = pair.up(&values(&mut rng, len, 0.1), &[len])?;
        let v0: Vec<f64> = values(&mut rng, len, 0.1).iter().map(|v| v * v).collect();
        let (mut v, mut v_ref) = pair.up(&v0, &[len])?;
        let config = AdamWStep {
            lr: 0.01,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
            step,
            grad_scale: 0.7,
        };
        backend
            .adamw_step(&mut p, &g, &mut m, &mut v, &config)
            .map_err(err)?;
        cpu.adamw_step(&mut p_ref, &g_ref, &mut m_ref, &mut v_ref, &config)
            .map_err(err)?;
        pair.compare(&format!("adamw param len={len}"), &p, &p_ref, 1e-5)?;
        pair.compare(&format!("adamw m len={len}"), &m, &m_ref, 1e-5)?;
        pair.compare(&format!("adamw v len={len}"), &v, &v_ref, 1e-5)?;
    }
    Ok(())
}

/// Wrong shapes, bad labels and indices are typed errors, never faults.
pub fn check_transformer_errors<B: TransformerOps>(backend: &B) -> Result<(), String> {
    let z = |shape: &[usize]| backend.zeros(shape).map_err(|e| e.to_string());
    let expect = |what: &str, ok: bool| {
        if ok {
            Ok(())
        } else {
            Err(format!("{what}: expected a typed error"))
        }
    };
    let (x, w) = (z(&[3, 4])?, z(&[5])?);
    expect(
        "rms_norm weight length",
        matches!(
            backend.rms_norm(&x, &w, 1e-5),
            Err(ApexError::ShapeMismatch { .. })
        ),
    )?;
    let mut x = z(&[3, 6])?;
    expect(
        "rope odd head_dim",
        matches!(
            backend.rope(&mut x, 3, 3, 1e4, false),
            Err(ApexError::InvalidConfig { .. })
        ),
    )?;
    expect(
        "rope seq_len not dividing rows",
        matches!(
            backend.rope(&mut x, 2, 2, 1e4, false),
            Err(ApexError::InvalidConfig { .. })
        ),
    )?;
    let mut scores = z(&[2, 3, 4])?;
    expect(
        "causal_softmax non-square",
        matches!(
            backend.causal_softmax(&mut scores, 1.0),
            Err(ApexError::ShapeMismatch { .. })
        ),
    )?;
    let logits = z(&[2, 4])?;
    expect(
        "cross_entropy label ≥ vocab",
        matches!(
            backend.cross_entropy(&logits, &[4, 0], None),
            Err(ApexError::InvalidIndex { bound: 4, .. })
        ),
    )?;
    expect(
        "cross_entropy label count",
        matches!(
            backend.cross_entropy(&logits, &[0], None),
            Err(ApexError::ShapeMismatch { .. })
        ),
    )?;
    let rows = z(&[2, 3])?;
    let mut table = z(&[4, 3])?;
    expect(
        "scatter_add_rows index ≥ V",
        matches!(
            backend.scatter_add_rows(&rows, &[4, 0], &mut table),
            Err(ApexError::InvalidIndex { .. })
        ),
    )?;
    let (mut p, g, mut m, mut v) = (z(&[3])?, z(&[3])?, z(&[3])?, z(&[2])?);
    let step = AdamWStep {
        lr: 0.1,
        beta1: 0.9,
        beta2: 0.99,
        eps: 1e-8,
        weight_decay: 0.0,
        step: 1,
        grad_scale: 1.0,
    };
    expect(
        "adamw shape mismatch",
        matches!(
            backend.adamw_step(&mut p, &g, &mut m, &mut v, &step),
            Err(ApexError::ShapeMismatch { .. })
        ),
    )
}
