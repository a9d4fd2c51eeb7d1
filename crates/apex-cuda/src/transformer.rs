//! [`TransformerOps`] on CUDA: RMSNorm, RoPE, causal softmax, cross-entropy,
//! the embedding scatter-add and AdamW, each one kernel
//! (kernels/cuda/{rmsnorm, rope, softmax, cross_entropy, embedding, adamw}.cu).
//! Shapes are validated exactly as the CPU reference does before anything
//! is launched.

use crate::device::Launch;
use crate::elementwise::launch_2d;
use crate::kernels::{
    AdamWArgs, CrossEntropyArgs, RmsNormArgs, RopeArgs, ScatterArgs, SoftmaxArgs, ADAMW_STEP,
    CAUSAL_SOFTMAX, CROSS_ENTROPY, RMS_NORM_BACKWARD, RMS_NORM_FORWARD, RMS_NORM_WEIGHT_GRAD, ROPE,
    SCATTER_ADD_ROWS, SOFTMAX_BACKWARD,
};
use crate::{CudaBackend, CudaTensor};
use apex_core::transformer_checks as check;
use apex_core::transformer_ops::{AdamWStep, TransformerOps};
use apex_core::Result;

/// One block of `threads` per row, the grid capped (kernels grid-stride).
fn per_row(rows: usize, threads: u32) -> Launch {
    Launch {
        grid: (rows.clamp(1, 1 << 20) as u32, 1, 1),
        block: (threads, 1, 1),
        shared_bytes: 0,
    }
}

/// A flat grid over `len` elements, 256 threads per block.
fn flat(len: usize) -> Launch {
    Launch {
        grid: (len.div_ceil(256).clamp(1, 1 << 20) as u32, 1, 1),
        block: (256, 1, 1),
        shared_bytes: 0,
    }
}

/// u32 values as the bit patterns of an f32 buffer (index arrays ride in
/// ordinary tensors).
fn u32_bits(values: impl Iterator<Item = u32>) -> Vec<f32> {
    values.map(f32::from_bits).collect()
}

impl TransformerOps for CudaBackend {
    fn rms_norm(
        &self,
        x: &CudaTensor,
        weight: &CudaTensor,
        eps: f64,
    ) -> Result<(CudaTensor, CudaTensor)> {
        let (rows, d) = check::rms_norm(x.shape(), weight.shape())?;
        let mut y = self.uninit_tensor(&[rows, d])?;
        let mut inv = self.uninit_tensor(&[rows])?;
        let args = RmsNormArgs {
            x: self.read(x)?,
            weight: self.read(weight)?,
            inv_rms: 0,
            grad_y: 0,
            y: self.write(&mut y)?,
            inv_out: self.write(&mut inv)?,
            rows: rows as i64,
            d: d as i64,
            eps,
        };
        if rows > 0 {
            self.launch(RMS_NORM_FORWARD, per_row(rows, 256), &args)?;
        }
        Ok((y, inv))
    }

    fn rms_norm_backward(
        &self,
        x: &CudaTensor,
        weight: &CudaTensor,
        inv_rms: &CudaTensor,
        grad_y: &CudaTensor,
        grad_weight: Option<&mut CudaTensor>,
    ) -> Result<CudaTensor> {
        let (rows, d) = check::rms_norm_backward(
            x.shape(),
            weight.shape(),
            inv_rms.shape(),
            grad_y.shape(),
            grad_weight.as_ref().map(|gw| gw.shape()),
        )?;
        let mut grad_x = self.uninit_tensor(&[rows, d])?;
        let mut args = RmsNormArgs {
            x: self.read(x)?,
            weight: self.read(weight)?,
            inv_rms: self.read(inv_rms)?,
            grad_y: self.read(grad_y)?,
            y: self.write(&mut grad_x)?,
            inv_out: 0,
            rows: rows as i64,
            d: d as i64,
            eps: 0.0,
        };
        if rows > 0 {
            self.launch(RMS_NORM_BACKWARD, per_row(rows, 256), &args)?;
        }
        if let Some(gw) = grad_weight {
            args.inv_out = self.write(gw)?;
            let launch = Launch {
                grid: (d.div_ceil(32).max(1) as u32, 1, 1),
                block: (32, 16, 1),
                shared_bytes: 0,
            };
            if d > 0 {
                self.launch(RMS_NORM_WEIGHT_GRAD, launch, &args)?;
            }
        }
        Ok(grad_x)
    }

    fn rope(
        &self,
        x: &mut CudaTensor,
        head_dim: usize,
        seq_len: usize,
        theta: f64,
        inverse: bool,
    ) -> Result<()> {
        let (rows, width) = check::rope(x.shape(), head_dim, seq_len)?;
        let half = head_dim / 2;
        let sign = if inverse { -1.0 } else { 1.0 };
        // The CPU reference's table, computed the same way in f64.
        let table: Vec<f32> = (0..seq_len)
            .flat_map(|pos| {
                (0..half).flat_map(move |i| {
                    let inv_freq = 1.0 / theta.powf((2 * i) as f64 / head_dim as f64);
                    let f = pos as f64 * inv_freq;
                    [f.cos() as f32, (sign * f.sin()) as f32]
                })
            })
            .collect();
        let table = self.upload_tensor(&table, &[table.len()])?;
        let args = RopeArgs {
            x: self.write(x)?,
            table: self.read(&table)?,
            rows: rows as i64,
            width: width as i64,
            half: half as i64,
            seq_len: seq_len as i64,
        };
        if rows * width > 0 {
            self.launch(ROPE, flat(rows * width / 2), &args)?;
        }
        Ok(())
    }

    fn causal_softmax(&self, scores: &mut CudaTensor, scale: f64) -> Result<()> {
        let (n, s) = check::causal_softmax(scores.shape())?;
        if n * s == 0 {
            return Ok(());
        }
        let args = SoftmaxArgs {
            x: self.write(scores)?,
            probs: 0,
            rows: (n * s) as i64,
            s: s as i64,
            scale: scale as f32,
            pad: 0,
        };
        self.launch(CAUSAL_SOFTMAX, per_row(n * s, 256), &args)
    }

    fn softmax_backward(
        &self,
        probs: &CudaTensor,
        grad: &mut CudaTensor,
        scale: f64,
    ) -> Result<()> {
        let (n, s) = check::softmax_backward(probs.shape(), grad.shape())?;
        if n * s == 0 {
            return Ok(());
        }
        let args = SoftmaxArgs {
            x: self.write(grad)?,
            probs: self.read(probs)?,
            rows: (n * s) as i64,
            s: s as i64,
            scale: scale as f32,
            pad: 0,
        };
        self.launch(SOFTMAX_BACKWARD, per_row(n * s, 256), &args)
    }

    fn cross_entropy(
        &self,
        logits: &CudaTensor,
        labels: &[i64],
        grad_scale: Option<f64>,
    ) -> Result<(f64, usize, Option<CudaTensor>)> {
        let (rows, vocab, count) = check::cross_entropy(logits.shape(), labels)?;
        let mut grad = match grad_scale {
            Some(_) => Some(self.uninit_tensor(&[rows, vocab])?),
            None => None,
        };
        if rows == 0 {
            return Ok((0.0, count, grad));
        }
        // Labels fit i32 (checked against the vocabulary above; -100 stays -100).
        let label_bits = u32_bits(labels.iter().map(|&l| l as i32 as u32));
        let labels_tensor = self.upload_tensor(&label_bits, &[rows])?;
        let mut losses = self.uninit_tensor(&[2 * rows])?;
        let args = CrossEntropyArgs {
            logits: self.read(logits)?,
            labels: self.read(&labels_tensor)?,
            losses: self.write(&mut losses)?,
            grad: match &mut grad {
                Some(g) => self.write(g)?,
                None => 0,
            },
            rows: rows as i64,
            vocab: vocab as i64,
            grad_scale: grad_scale.unwrap_or(0.0),
        };
        self.launch(CROSS_ENTROPY, per_row(rows, 256), &args)?;
        // Per-row losses are doubles: pairs of f32 words, low word first.
        let words = self.download_tensor(&losses)?;
        let total = words
            .chunks_exact(2)
            .map(|w| f64::from_bits(u64::from(w[0].to_bits()) | u64::from(w[1].to_bits()) << 32))
            .sum();
        Ok((total, count, grad))
    }

    fn scatter_add_rows(
        &self,
        rows: &CudaTensor,
        index: &[usize],
        table: &mut CudaTensor,
    ) -> Result<()> {
        let (n, d, _) = check::scatter_add_rows(rows.shape(), index, table.shape())?;
        if n == 0 || d == 0 {
            return Ok(());
        }
        // Sources grouped by destination, each group in index order (CSR).
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| (index[i], i));
        let mut targets = Vec::new();
        let mut offsets = Vec::new();
        for (position, &i) in order.iter().enumerate() {
            if targets.last() != Some(&index[i]) {
                targets.push(index[i]);
                offsets.push(position);
            }
        }
        offsets.push(n);
        let as_tensor = |values: &[usize]| {
            let bits = u32_bits(values.iter().map(|&x| x as u32));
            self.upload_tensor(&bits, &[bits.len()])
        };
        let (targets_t, offsets_t, sources_t) = (
            as_tensor(&targets)?,
            as_tensor(&offsets)?,
            as_tensor(&order)?,
        );
        let args = ScatterArgs {
            rows: self.read(rows)?,
            table: self.write(table)?,
            targets: self.read(&targets_t)?,
            offsets: self.read(&offsets_t)?,
            sources: self.read(&sources_t)?,
            unique: targets.len() as i64,
            d: d as i64,
        };
        self.launch(SCATTER_ADD_ROWS, launch_2d(targets.len(), d), &args)
    }

    fn adamw_step(
        &self,
        param: &mut CudaTensor,
        grad: &CudaTensor,
        m: &mut CudaTensor,
        v: &mut CudaTensor,
        step: &AdamWStep,
    ) -> Result<()> {
        let coefficients =
            check::adamw_step(param.shape(), grad.shape(), m.shape(), v.shape(), step)?;
        let args = AdamWArgs {
            param: self.write(param)?,
            grad: self.read(grad)?,
            m: self.write(m)?,
            v: self.write(v)?,
            len: param.len() as i64,
            beta1: step.beta1 as f32,
            beta2: step.beta2 as f32,
            one_minus_beta1: (1.0 - step.beta1) as f32,
            one_minus_beta2: (1.0 - step.beta2) as f32,
            grad_scale: step.grad_scale as f32,
            decay: coefficients.decay as f32,
            lr: step.lr as f32,
            c1: coefficients.bias_correction1 as f32,
            c2: coefficients.bias_correction2 as f32,
            eps: step.eps as f32,
        };
        if param.is_empty() {
            return Ok(());
        }
        self.launch(ADAMW_STEP, flat(param.len()), &args)
    }
}
