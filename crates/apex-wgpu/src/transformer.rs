//! [`TransformerOps`] on wgpu: RMSNorm (`norm.wgsl`), RoPE (`rope.wgsl`), the
//! row softmaxes and cross-entropy (`softmax.wgsl`), the embedding scatter-add
//! (`gather.wgsl`) and AdamW (`optim.wgsl`). Shapes are validated exactly as in
//! the CPU reference before anything is dispatched.

use crate::device::grid;
use crate::kernels::Kernel;
use crate::params::Params;
use crate::tensor::WgpuTensor;
use crate::WgpuBackend;
use apex_core::transformer_checks as check;
use apex_core::transformer_ops::{AdamWStep, TransformerOps};
use apex_core::Result;

/// Invocations of the elementwise kernels (rope, adamw, scatter).
const WG: usize = 256;
/// Invocations per workgroup of norm.wgsl (its column kernel covers this many columns).
const NORM_WG: usize = 64;

impl WgpuBackend {
    /// One workgroup per row of a row kernel.
    fn row_grid(&self, rows: usize) -> Result<[u32; 3]> {
        grid(rows, self.gpu.max_workgroups_per_dim())
    }

    fn flat_grid(&self, count: usize) -> Result<[u32; 3]> {
        grid(count.div_ceil(WG), self.gpu.max_workgroups_per_dim())
    }

    /// A causal softmax or softmax backward over the rows of `[n, S, S]`.
    fn softmax_rows(
        &self,
        kernel: Kernel,
        data: &mut WgpuTensor,
        probs: Option<&WgpuTensor>,
        s: usize,
        scale: f64,
    ) -> Result<()> {
        let rows = data.len() / s.max(1);
        if rows == 0 || s == 0 {
            return Ok(());
        }
        let params = Params::new()
            .u(rows)?
            .u(s)?
            .u(s)?
            .u(0)?
            .f(scale as f32)
            .u(0)?
            .u(0)?
            .u(0)?;
        let groups = self.row_grid(rows)?;
        let data_buffer = data.buffer_mut(&self.gpu)?;
        let mut buffers = vec![(1, data_buffer)];
        if let Some(probs) = probs {
            buffers.push((2, probs.buffer()));
        }
        self.gpu.dispatch(kernel, params, &buffers, groups)
    }
}

impl TransformerOps for WgpuBackend {
    fn rms_norm(
        &self,
        x: &WgpuTensor,
        weight: &WgpuTensor,
        eps: f64,
    ) -> Result<(WgpuTensor, WgpuTensor)> {
        let (rows, d) = check::rms_norm(x.shape(), weight.shape())?;
        let y = WgpuTensor::new(self.gpu.storage(rows * d, None)?, &[rows, d]);
        let inv = WgpuTensor::new(self.gpu.storage(rows, None)?, &[rows]);
        if rows == 0 {
            return Ok((y, inv));
        }
        let params = Params::new().u(rows)?.u(d)?.f(eps as f32).u(0)?;
        self.gpu.dispatch(
            Kernel::RMS_NORM,
            params,
            &[
                (1, x.buffer()),
                (2, weight.buffer()),
                (3, inv.buffer()),
                (4, y.buffer()),
            ],
            self.row_grid(rows)?,
        )?;
        Ok((y, inv))
    }

    fn rms_norm_backward(
        &self,
        x: &WgpuTensor,
        weight: &WgpuTensor,
        inv_rms: &WgpuTensor,
        grad_y: &WgpuTensor,
        grad_weight: Option<&mut WgpuTensor>,
    ) -> Result<WgpuTensor> {
        let (rows, d) = check::rms_norm_backward(
            x.shape(),
            weight.shape(),
            inv_rms.shape(),
            grad_y.shape(),
            grad_weight.as_ref().map(|gw| gw.shape()),
        )?;
        let grad_x = WgpuTensor::new(self.gpu.storage(rows * d, None)?, &[rows, d]);
        if rows == 0 {
            return Ok(grad_x);
        }
        let params = || Params::new().u(rows)?.u(d)?.f(0.0).u(0);
        self.gpu.dispatch(
            Kernel::RMS_NORM_BACKWARD,
            params()?,
            &[
                (1, x.buffer()),
                (2, weight.buffer()),
                (3, inv_rms.buffer()),
                (4, grad_x.buffer()),
                (5, grad_y.buffer()),
            ],
            self.row_grid(rows)?,
        )?;
        if let Some(gw) = grad_weight {
            let groups = grid(d.div_ceil(NORM_WG), self.gpu.max_workgroups_per_dim())?;
            let gw_buffer = gw.buffer_mut(&self.gpu)?;
            self.gpu.dispatch(
                Kernel::RMS_NORM_WEIGHT_GRAD,
                params()?,
                &[
                    (1, x.buffer()),
                    (3, inv_rms.buffer()),
                    (4, gw_buffer),
                    (5, grad_y.buffer()),
                ],
                groups,
            )?;
        }
        Ok(grad_x)
    }

    fn rope(
        &self,
        x: &mut WgpuTensor,
        head_dim: usize,
        seq_len: usize,
        theta: f64,
        inverse: bool,
    ) -> Result<()> {
        let (rows, width) = check::rope(x.shape(), head_dim, seq_len)?;
        if rows == 0 || width == 0 {
            return Ok(());
        }
        let half = head_dim / 2;
        let sign = if inverse { -1.0 } else { 1.0 };
        // The same f64 table as the CPU reference, rounded once to f32.
        let table: Vec<f32> = (0..seq_len)
            .flat_map(|pos| {
                (0..half).flat_map(move |i| {
                    let inv_freq = 1.0 / theta.powf((2 * i) as f64 / head_dim as f64);
                    let f = pos as f64 * inv_freq;
                    [f.cos() as f32, (sign * f.sin()) as f32]
                })
            })
            .collect();
        let table = self.gpu.storage(table.len(), Some(&table))?;
        let params = Params::new().u(rows)?.u(width)?.u(head_dim)?.u(seq_len)?;
        let groups = self.flat_grid(rows * width / 2)?;
        let x_buffer = x.buffer_mut(&self.gpu)?;
        self.gpu
            .dispatch(Kernel::ROPE, params, &[(1, &table), (2, x_buffer)], groups)
    }

    fn causal_softmax(&self, scores: &mut WgpuTensor, scale: f64) -> Result<()> {
        let (_, s) = check::causal_softmax(scores.shape())?;
        self.softmax_rows(Kernel::CAUSAL_SOFTMAX, scores, None, s, scale)
    }

    fn softmax_backward(
        &self,
        probs: &WgpuTensor,
        grad: &mut WgpuTensor,
        scale: f64,
    ) -> Result<()> {
        let (_, s) = check::softmax_backward(probs.shape(), grad.shape())?;
        self.softmax_rows(Kernel::SOFTMAX_BACKWARD, grad, Some(probs), s, scale)
    }

    fn cross_entropy(
        &self,
        logits: &WgpuTensor,
        labels: &[i64],
        grad_scale: Option<f64>,
    ) -> Result<(f64, usize, Option<WgpuTensor>)> {
        let (rows, vocab, count) = check::cross_entropy(logits.shape(), labels)?;
        let grad = match grad_scale {
            Some(_) => Some(WgpuTensor::new(
                self.gpu.storage(rows * vocab, None)?,
                &[rows, vocab],
            )),
            None => None,
        };
        if rows == 0 || vocab == 0 {
            return Ok((0.0, count, grad));
        }
        // Labels are in 0..vocab or −100, so they fit an i32 (stored as its bits).
        let words: Vec<u32> = labels.iter().map(|&l| l as i32 as u32).collect();
        let label_buffer = self.gpu.index_buffer(&words)?;
        let loss = self.gpu.storage(rows, None)?;
        let dummy;
        let grad_buffer = match &grad {
            Some(g) => g.buffer(),
            None => {
                dummy = self.gpu.storage(1, None)?;
                &dummy
            }
        };
        let params = Params::new()
            .u(rows)?
            .u(vocab)?
            .u(usize::from(grad.is_some()))?
            .u(0)?
            .f(grad_scale.unwrap_or(0.0) as f32)
            .u(0)?
            .u(0)?
            .u(0)?;
        self.gpu.dispatch(
            Kernel::CROSS_ENTROPY,
            params,
            &[
                (1, grad_buffer),
                (2, logits.buffer()),
                (3, &label_buffer),
                (4, &loss),
            ],
            self.row_grid(rows)?,
        )?;
        // The per-row losses are the one read-back: a metric the trainer reports.
        let total = self
            .gpu
            .read(&loss, rows)?
            .iter()
            .map(|&l| f64::from(l))
            .sum();
        Ok((total, count, grad))
    }

    fn scatter_add_rows(
        &self,
        rows: &WgpuTensor,
        index: &[usize],
        table: &mut WgpuTensor,
    ) -> Result<()> {
        let (n, d, _) = check::scatter_add_rows(rows.shape(), index, table.shape())?;
        if n == 0 || d == 0 {
            return Ok(());
        }
        // Sources grouped by destination, in source order (a stable sort), so
        // the kernel adds them in the CPU reference's order without atomics.
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| index[i]);
        let mut dest = Vec::new();
        let mut offsets = Vec::new();
        for (k, &i) in order.iter().enumerate() {
            if dest.last() != Some(&(index[i] as u32)) {
                dest.push(index[i] as u32);
                offsets.push(k as u32);
            }
        }
        offsets.push(n as u32);
        let sources: Vec<u32> = order.iter().map(|&i| i as u32).collect();
        let source_buffer = self.gpu.index_buffer(&sources)?;
        let offset_buffer = self.gpu.index_buffer(&offsets)?;
        let dest_buffer = self.gpu.index_buffer(&dest)?;
        let params = Params::new().u(dest.len())?.u(d)?.u(d)?.u(0)?;
        let groups = self.flat_grid(dest.len() * d)?;
        let table_buffer = table.buffer_mut(&self.gpu)?;
        self.gpu.dispatch(
            Kernel::SCATTER_ADD_ROWS,
            params,
            &[
                (1, rows.buffer()),
                (2, &source_buffer),
                (3, table_buffer),
                (4, &offset_buffer),
                (5, &dest_buffer),
            ],
            groups,
        )
    }

    fn adamw_step(
        &self,
        param: &mut WgpuTensor,
        grad: &WgpuTensor,
        m: &mut WgpuTensor,
        v: &mut WgpuTensor,
        step: &AdamWStep,
    ) -> Result<()> {
        let coefficients =
            check::adamw_step(param.shape(), grad.shape(), m.shape(), v.shape(), step)?;
        let n = param.len();
        if n == 0 {
            return Ok(());
        }
        let params = Params::new()
            .u(n)?
            .f(step.beta1 as f32)
            .f(step.beta2 as f32)
            .f((1.0 - step.beta1) as f32)
            .f((1.0 - step.beta2) as f32)
            .f(step.grad_scale as f32)
            .f(coefficients.decay as f32)
            .f(step.lr as f32)
            .f(coefficients.bias_correction1 as f32)
            .f(coefficients.bias_correction2 as f32)
            .f(step.eps as f32)
            .u(0)?;
        let groups = self.flat_grid(n)?;
        let param_buffer = param.buffer_mut(&self.gpu)?;
        let m_buffer = m.buffer_mut(&self.gpu)?;
        let v_buffer = v.buffer_mut(&self.gpu)?;
        self.gpu.dispatch(
            Kernel::ADAMW_STEP,
            params,
            &[
                (1, grad.buffer()),
                (2, param_buffer),
                (3, m_buffer),
                (4, v_buffer),
            ],
            groups,
        )
    }
}
