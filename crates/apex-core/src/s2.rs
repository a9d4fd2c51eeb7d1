//! S2ColumnLinear / S2RowLinear (spec §4.4, gradients §5.5): a direct dense
//! update on output rows [0, e) or input columns [0, e), no mixing. Used for
//! q/k with `finetune_qk`, for layers with only tuned-only units, and by the
//! S2-only baseline.

use crate::backend::Backend;
use crate::error::Result;
use crate::layout::MatView;
use crate::ops::{self, one};
use crate::split_linear::{SplitAxis, SplitLinear};

/// A weight n_out×n_in with a trainable block of e rows or e columns.
#[derive(Clone, Debug)]
pub struct S2Linear<B: Backend> {
    pub linear: SplitLinear<B>,
}

impl<B: Backend> S2Linear<B> {
    /// S2Column: rows [0, e) trainable.
    pub fn column(
        backend: &B,
        weight: &B::Tensor,
        bias: Option<B::Tensor>,
        e: usize,
    ) -> Result<Self> {
        Ok(S2Linear {
            linear: SplitLinear::new(backend, weight, bias, SplitAxis::Rows, e)?,
        })
    }

    /// S2Row: columns [0, e) trainable.
    pub fn row(backend: &B, weight: &B::Tensor, bias: Option<B::Tensor>, e: usize) -> Result<Self> {
        Ok(S2Linear {
            linear: SplitLinear::new(backend, weight, bias, SplitAxis::Columns, e)?,
        })
    }

    /// out = x·(W + S)ᵀ + β, x: T×n_in.
    pub fn forward(&self, backend: &B, x: &B::Tensor) -> Result<B::Tensor> {
        self.linear.forward(backend, x)
    }

    /// Returns ∂S (e×n_in or n_out×e) and ∂x (if `need_grad_x`) for output gradient `g`.
    pub fn backward(
        &self,
        backend: &B,
        x: &B::Tensor,
        g: &B::Tensor,
        need_grad_x: bool,
    ) -> Result<(B::Tensor, Option<B::Tensor>)> {
        let (rows, n_in) = ops::dims2(backend, x, "s2.backward")?;
        let (n_out, _) = self.linear.dims();
        ops::expect_shape(backend, g, &[rows, n_out], "s2.backward")?;
        let e = self.linear.tuned_size();
        let x_view = MatView::full(rows, n_in);
        let g_view = MatView::full(rows, n_out);
        match self.linear.axis() {
            SplitAxis::Rows => {
                let grad_s2 = self.linear.tuned_grad(backend, (g, g_view), (x, x_view))?;
                let grad_x = if need_grad_x {
                    Some(self.linear.input_grad_rows(
                        backend,
                        (g, g_view.columns(0..e)),
                        (g, g_view.columns(e..n_out)),
                    )?)
                } else {
                    None
                };
                Ok((grad_s2, grad_x))
            }
            SplitAxis::Columns => {
                let grad_s2 =
                    self.linear
                        .tuned_grad(backend, (g, g_view), (x, x_view.columns(0..e)))?;
                let grad_x = if need_grad_x {
                    let mut grad_x = backend.zeros(&[rows, n_in])?;
                    let tuned = self.linear.tuned_input_grad(backend, (g, g_view))?;
                    backend.axpby(
                        one::<B>(),
                        &tuned,
                        MatView::full(rows, e),
                        ops::zero::<B>(),
                        &mut grad_x,
                        x_view.columns(0..e),
                    )?;
                    self.linear
                        .frozen_input_grad_into(backend, (g, g_view), &mut grad_x)?;
                    Some(grad_x)
                } else {
                    None
                };
                Ok((grad_s2, grad_x))
            }
        }
    }

    /// The fused dense weight W + S and the (unchanged) bias.
    pub fn fuse(&self, backend: &B) -> Result<(B::Tensor, Option<B::Tensor>)> {
        Ok((self.linear.dense_weight(backend)?, self.linear.bias.clone()))
    }
}
