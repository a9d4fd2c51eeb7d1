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
use apex_core::layout::check_indices;
use apex_core::transformer_ops::{AdamWStep, TransformerOps, IGNORE_INDEX};
use apex_core::{ApexError, Result};

fn expect_shape(op: &'static str, t: &CudaTensor, shape: &[usize]) -> Result<()> {
    if t.shape() != shape {
        return Err(ApexError::shape(op, shape, t.shape()));
    }
    Ok(())
}

fn dims2(op: &'static str, t: &CudaTensor) -> Result<(usize, usize)> {
    match t.shape() {
        [r, c] => Ok((*r, *c)),
        other => Err(ApexError::shape(op, &[0, 0], other)),
    }
}

/// `[n, S, S]` → `(n, S)`.
fn square_blocks(op: &'static str, t: &CudaTensor) -> Result<(usize, usize)> {
    match t.shape() {
        [n, s, s2] if s == s2 => Ok((*n, *s)),
        other => Err(ApexError::shape(op, &[0, 0, 0], other)),
    }
}

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
        let (rows, d) = dims2("rms_norm", x)?;
        expect_shape("rms_norm", weight, &[d])?;
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
        const OP: &str = "rms_norm_backward";
        let (rows, d) = dims2(OP, x)?;
        expect_shape(OP, weight, &[d])?;
        expect_shape(OP, inv_rms, &[rows])?;
        expect_shape(OP, grad_y, &[rows, d])?;
        if let Some(gw) = &grad_weight {
            expect_shape(OP, gw, &[d])?;
        }
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
        const OP: &str = "rope";
        let (rows, width) = dims2(OP, x)?;
        if head_dim == 0 || head_dim % 2 != 0 || width % head_dim != 0 {
            return Err(ApexError::config(
                "rope.head_dim",
                format!("{head_dim} must be even and divide the row width {width}"),
            ));
        }
        if seq_len == 0 || rows % seq_len != 0 {
            return Err(ApexError::config(
                "rope.seq_len",
                format!("{seq_len} must be positive and divide the row count {rows}"),
            ));
        }
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
        let (n, s) = square_blocks("causal_softmax", scores)?;
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
        let (n, s) = square_blocks("softmax_backward", probs)?;
        expect_shape("softmax_backward", grad, &[n, s, s])?;
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
        const OP: &str = "cross_entropy";
        let (rows, vocab) = dims2(OP, logits)?;
        if labels.len() != rows {
            return Err(ApexError::shape(OP, &[rows], &[labels.len()]));
        }
        if let Some(&bad) = labels
            .iter()
            .find(|&&l| l != IGNORE_INDEX && !(0..vocab as i64).contains(&l))
        {
            return Err(ApexError::InvalidIndex {
                op: OP,
                index: bad.max(0) as usize,
                bound: vocab,
            });
        }
        let count = labels.iter().filter(|&&l| l != IGNORE_INDEX).count();
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
        const OP: &str = "scatter_add_rows";
        let (n, d) = dims2(OP, rows)?;
        let (v, d2) = dims2(OP, table)?;
        if index.len() != n {
            return Err(ApexError::shape(OP, &[n], &[index.len()]));
        }
        if d2 != d {
            return Err(ApexError::shape(OP, &[v, d], &[v, d2]));
        }
        check_indices(OP, index, v)?;
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
        const OP: &str = "adamw_step";
        let shape = param.shape().to_vec();
        for t in [grad, &*m, &*v] {
            expect_shape(OP, t, &shape)?;
        }
        if step.step == 0 {
            return Err(ApexError::config("adamw.step", "steps are counted from 1"));
        }
        let t = step.step as i32;
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
            decay: (1.0 - step.lr * step.weight_decay) as f32,
            lr: step.lr as f32,
            c1: (1.0 / (1.0 - step.beta1.powi(t))) as f32,
            c2: (1.0 / (1.0 - step.beta2.powi(t))) as f32,
            eps: step.eps as f32,
        };
        if param.is_empty() {
            return Ok(());
        }
        self.launch(ADAMW_STEP, flat(param.len()), &args)
    }
}
