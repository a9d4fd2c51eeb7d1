//! A linear layer `y = x·Wᵀ + β` whose weight is split into a trainable block
//! and a frozen rest — the storage behind every APEX module (spec §0.9).
//!
//! * [`SplitAxis::Rows`]: `tuned` holds output rows [0, t) of W (t×n_in),
//!   `frozen` rows [t, n_out). Used by S2Column and MixColumn.
//! * [`SplitAxis::Columns`]: `tuned` holds input columns [0, t) (n_out×t),
//!   `frozen` columns [t, n_in). Used by S2Row and MixRow.
//!
//! `tuned` starts as the base slice, so `tuned = W0[slice] + S`: the spec's S
//! lives inside the weight, the forward and backward cost exactly the GEMMs of
//! the dense layer (two GEMMs on disjoint parts, no extra S GEMM), and the
//! gradient of `tuned` *is* ∂S. With weight decay 0 (the reference setting) this
//! is identical to training a separate S; with decay ≠ 0 the decay acts on
//! W0 + S rather than on S alone.

use crate::backend::Backend;
use crate::error::{ApexError, Result};
use crate::layout::MatView;
use crate::ops::{self, gemm_into, one, zero};

/// Which side of the weight the trainable block covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitAxis {
    /// Output rows [0, t): column-side (`s2_column`, MixColumn).
    Rows,
    /// Input columns [0, t): row-side (`s2_row`, MixRow).
    Columns,
}

/// A linear layer with a trainable block and a frozen rest.
#[derive(Clone, Debug)]
pub struct SplitLinear<B: Backend> {
    /// Trainable block: t×n_in (rows) or n_out×t (columns). Its gradient is ∂S.
    pub tuned: B::Tensor,
    /// Frozen rest: (n_out−t)×n_in (rows) or n_out×(n_in−t) (columns).
    pub frozen: B::Tensor,
    /// Optional frozen bias, length n_out.
    pub bias: Option<B::Tensor>,
    axis: SplitAxis,
    n_out: usize,
    n_in: usize,
    t: usize,
}

impl<B: Backend> SplitLinear<B> {
    /// Splits `weight` (n_out×n_in) at `t` along `axis`; `bias` has length n_out.
    pub fn new(
        backend: &B,
        weight: &B::Tensor,
        bias: Option<B::Tensor>,
        axis: SplitAxis,
        t: usize,
    ) -> Result<Self> {
        let (n_out, n_in) = ops::dims2(backend, weight, "split_linear.weight")?;
        let full = MatView::full(n_out, n_in);
        let split_dim = match axis {
            SplitAxis::Rows => n_out,
            SplitAxis::Columns => n_in,
        };
        if t > split_dim {
            return Err(ApexError::config(
                "t",
                format!("tuned size {t} exceeds the split dimension {split_dim}"),
            ));
        }
        if let Some(b) = &bias {
            ops::expect_shape(backend, b, &[n_out], "split_linear.bias")?;
        }
        let (tuned_view, frozen_view) = match axis {
            SplitAxis::Rows => (full.rows(0..t), full.rows(t..n_out)),
            SplitAxis::Columns => (full.columns(0..t), full.columns(t..n_in)),
        };
        Ok(SplitLinear {
            tuned: ops::copy_view(backend, weight, tuned_view)?,
            frozen: ops::copy_view(backend, weight, frozen_view)?,
            bias,
            axis,
            n_out,
            n_in,
            t,
        })
    }

    /// Adds `s2` to the trainable block (t×n_in for rows, n_out×t for columns).
    pub fn add_s2(&mut self, backend: &B, s2: &B::Tensor) -> Result<()> {
        let shape = backend.shape(&self.tuned).to_vec();
        ops::expect_shape(backend, s2, &shape, "split_linear.s2")?;
        let view = MatView::full(shape[0], shape[1]);
        ops::add_into(backend, s2, view, &mut self.tuned, view)
    }

    /// (n_out, n_in).
    pub fn dims(&self) -> (usize, usize) {
        (self.n_out, self.n_in)
    }

    /// t, the size of the trainable block.
    pub fn tuned_size(&self) -> usize {
        self.t
    }

    /// The split side.
    pub fn axis(&self) -> SplitAxis {
        self.axis
    }

    fn tuned_view(&self) -> MatView {
        match self.axis {
            SplitAxis::Rows => MatView::full(self.t, self.n_in),
            SplitAxis::Columns => MatView::full(self.n_out, self.t),
        }
    }

    fn frozen_view(&self) -> MatView {
        match self.axis {
            SplitAxis::Rows => MatView::full(self.n_out - self.t, self.n_in),
            SplitAxis::Columns => MatView::full(self.n_out, self.n_in - self.t),
        }
    }

    fn check_input(&self, backend: &B, x: &B::Tensor, op: &'static str) -> Result<usize> {
        let (rows, cols) = ops::dims2(backend, x, op)?;
        if cols != self.n_in {
            return Err(ApexError::shape(op, &[rows, self.n_in], &[rows, cols]));
        }
        Ok(rows)
    }

    /// `out = x·Wᵀ + β` (x: T×n_in, out: T×n_out).
    pub fn forward(&self, backend: &B, x: &B::Tensor) -> Result<B::Tensor> {
        let rows = self.check_input(backend, x, "split_linear.forward")?;
        let x_view = MatView::full(rows, self.n_in);
        match self.axis {
            SplitAxis::Rows => self.forward_parts(backend, (x, x_view), (x, x_view)),
            SplitAxis::Columns => self.forward_parts(
                backend,
                (x, x_view.columns(0..self.t)),
                (x, x_view.columns(self.t..self.n_in)),
            ),
        }
    }

    /// The forward with separate inputs for the two parts. Row split: both
    /// views are the whole input (T×n_in). Column split: the tuned part reads
    /// `x_tuned` (T×t) and the frozen part `x_frozen` (T×(n_in−t)); MixRow feeds
    /// its mixed inputs to the tuned part this way.
    pub fn forward_parts(
        &self,
        backend: &B,
        x_tuned: (&B::Tensor, MatView),
        x_frozen: (&B::Tensor, MatView),
    ) -> Result<B::Tensor> {
        let rows = x_tuned.1.rows;
        let mut out = backend.empty(&[rows, self.n_out])?;
        let out_view = MatView::full(rows, self.n_out);
        match self.axis {
            SplitAxis::Rows => {
                gemm_into(
                    backend,
                    one::<B>(),
                    x_tuned.0,
                    x_tuned.1,
                    &self.tuned,
                    self.tuned_view().t(),
                    zero::<B>(),
                    &mut out,
                    out_view.columns(0..self.t),
                )?;
                gemm_into(
                    backend,
                    one::<B>(),
                    x_frozen.0,
                    x_frozen.1,
                    &self.frozen,
                    self.frozen_view().t(),
                    zero::<B>(),
                    &mut out,
                    out_view.columns(self.t..self.n_out),
                )?;
            }
            SplitAxis::Columns => {
                gemm_into(
                    backend,
                    one::<B>(),
                    x_tuned.0,
                    x_tuned.1,
                    &self.tuned,
                    self.tuned_view().t(),
                    zero::<B>(),
                    &mut out,
                    out_view,
                )?;
                gemm_into(
                    backend,
                    one::<B>(),
                    x_frozen.0,
                    x_frozen.1,
                    &self.frozen,
                    self.frozen_view().t(),
                    one::<B>(),
                    &mut out,
                    out_view,
                )?;
            }
        }
        if let Some(bias) = &self.bias {
            // out += 1·βᵀ as a rank-1 GEMM: no broadcast primitive needed.
            let ones = ops::ones(backend, rows)?;
            gemm_into(
                backend,
                one::<B>(),
                &ones,
                MatView::full(rows, 1),
                bias,
                MatView::full(1, self.n_out),
                one::<B>(),
                &mut out,
                out_view,
            )?;
        }
        Ok(out)
    }

    /// ∂tuned for output gradient `g` (T×n_out) and input `x`:
    /// rows: `g[:, 0:t]ᵀ·x` (t×n_in); columns: `gᵀ·x_tuned` (n_out×t), where
    /// `x_tuned` is the T×t input the tuned part saw.
    pub fn tuned_grad(
        &self,
        backend: &B,
        g: (&B::Tensor, MatView),
        x_tuned: (&B::Tensor, MatView),
    ) -> Result<B::Tensor> {
        let view = self.tuned_view();
        let mut grad = backend.empty(&[view.rows, view.cols])?;
        let g_side = match self.axis {
            SplitAxis::Rows => g.1.columns(0..self.t),
            SplitAxis::Columns => g.1,
        };
        gemm_into(
            backend,
            one::<B>(),
            g.0,
            g_side.t(),
            x_tuned.0,
            x_tuned.1,
            zero::<B>(),
            &mut grad,
            view,
        )?;
        Ok(grad)
    }

    /// ∂x for a row split: `g_tuned·tuned + g_frozen·frozen` (T×n_in), where
    /// `g_tuned` (T×t) is the gradient reaching the tuned rows (MixColumn passes
    /// its ∂Z here) and `g_frozen` (T×(n_out−t)) the rest.
    pub fn input_grad_rows(
        &self,
        backend: &B,
        g_tuned: (&B::Tensor, MatView),
        g_frozen: (&B::Tensor, MatView),
    ) -> Result<B::Tensor> {
        debug_assert_eq!(self.axis, SplitAxis::Rows);
        let rows = g_tuned.1.rows;
        let mut grad = backend.empty(&[rows, self.n_in])?;
        let view = MatView::full(rows, self.n_in);
        gemm_into(
            backend,
            one::<B>(),
            g_tuned.0,
            g_tuned.1,
            &self.tuned,
            self.tuned_view(),
            zero::<B>(),
            &mut grad,
            view,
        )?;
        gemm_into(
            backend,
            one::<B>(),
            g_frozen.0,
            g_frozen.1,
            &self.frozen,
            self.frozen_view(),
            one::<B>(),
            &mut grad,
            view,
        )?;
        Ok(grad)
    }

    /// Column split, tuned part of ∂x: `g·tuned` (T×t) for `g` (T×n_out).
    pub fn tuned_input_grad(&self, backend: &B, g: (&B::Tensor, MatView)) -> Result<B::Tensor> {
        debug_assert_eq!(self.axis, SplitAxis::Columns);
        ops::matmul(backend, g.0, g.1, &self.tuned, self.tuned_view())
    }

    /// Column split, frozen part of ∂x: writes `g·frozen` into columns
    /// [t, n_in) of `grad` (T×n_in).
    pub fn frozen_input_grad_into(
        &self,
        backend: &B,
        g: (&B::Tensor, MatView),
        grad: &mut B::Tensor,
    ) -> Result<()> {
        debug_assert_eq!(self.axis, SplitAxis::Columns);
        let view = MatView::full(g.1.rows, self.n_in).columns(self.t..self.n_in);
        gemm_into(
            backend,
            one::<B>(),
            g.0,
            g.1,
            &self.frozen,
            self.frozen_view(),
            zero::<B>(),
            grad,
            view,
        )
    }

    /// The dense weight W0 + S (n_out×n_in), reassembled.
    pub fn dense_weight(&self, backend: &B) -> Result<B::Tensor> {
        let mut weight = backend.empty(&[self.n_out, self.n_in])?;
        let full = MatView::full(self.n_out, self.n_in);
        let (tuned_dst, frozen_dst) = match self.axis {
            SplitAxis::Rows => (full.rows(0..self.t), full.rows(self.t..self.n_out)),
            SplitAxis::Columns => (full.columns(0..self.t), full.columns(self.t..self.n_in)),
        };
        backend.axpby(
            one::<B>(),
            &self.tuned,
            self.tuned_view(),
            zero::<B>(),
            &mut weight,
            tuned_dst,
        )?;
        backend.axpby(
            one::<B>(),
            &self.frozen,
            self.frozen_view(),
            zero::<B>(),
            &mut weight,
            frozen_dst,
        )?;
        Ok(weight)
    }
}
