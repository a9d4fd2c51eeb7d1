//! Small conveniences derived from the [`Backend`] primitives: allocating
//! matmuls, copies of views, and shape helpers. No backend overrides these.

use crate::backend::Backend;
use crate::error::{ApexError, Result};
use crate::layout::{self, BatchView, MatView};

/// `(rows, cols)` of a 2-D tensor, or a shape error naming `op`.
pub fn dims2<B: Backend>(
    backend: &B,
    tensor: &B::Tensor,
    op: &'static str,
) -> Result<(usize, usize)> {
    layout::dims2(op, backend.shape(tensor))
}

/// Length of a 1-D tensor, or a shape error naming `op`.
pub fn len1<B: Backend>(backend: &B, tensor: &B::Tensor, op: &'static str) -> Result<usize> {
    match backend.shape(tensor) {
        [n] => Ok(*n),
        other => Err(ApexError::ShapeMismatch {
            op,
            expected: vec![0],
            got: other.to_vec(),
        }),
    }
}

/// The full view of a 2-D tensor.
pub fn full<B: Backend>(backend: &B, tensor: &B::Tensor, op: &'static str) -> Result<MatView> {
    let (r, c) = dims2(backend, tensor, op)?;
    Ok(MatView::full(r, c))
}

/// Fails unless `tensor` has exactly `shape`.
pub fn expect_shape<B: Backend>(
    backend: &B,
    tensor: &B::Tensor,
    shape: &[usize],
    op: &'static str,
) -> Result<()> {
    layout::expect_shape(op, backend.shape(tensor), shape)
}

/// `C = α·A·B + β·C` for single (non-batched) views.
#[allow(clippy::too_many_arguments)]
pub fn gemm_into<B: Backend>(
    backend: &B,
    alpha: B::Elem,
    a: &B::Tensor,
    a_view: MatView,
    b: &B::Tensor,
    b_view: MatView,
    beta: B::Elem,
    c: &mut B::Tensor,
    c_view: MatView,
) -> Result<()> {
    backend.gemm(
        1,
        alpha,
        a,
        BatchView::single(a_view),
        b,
        BatchView::single(b_view),
        beta,
        c,
        BatchView::single(c_view),
    )
}

/// A new `m×n` tensor `A·B` for views `A` (m×k) and `B` (k×n).
pub fn matmul<B: Backend>(
    backend: &B,
    a: &B::Tensor,
    a_view: MatView,
    b: &B::Tensor,
    b_view: MatView,
) -> Result<B::Tensor> {
    let mut c = backend.empty(&[a_view.rows, b_view.cols])?;
    let c_view = MatView::full(a_view.rows, b_view.cols);
    gemm_into(
        backend,
        one::<B>(),
        a,
        a_view,
        b,
        b_view,
        zero::<B>(),
        &mut c,
        c_view,
    )?;
    Ok(c)
}

/// A new contiguous tensor holding the elements of `view`.
pub fn copy_view<B: Backend>(backend: &B, x: &B::Tensor, view: MatView) -> Result<B::Tensor> {
    let mut y = backend.empty(&[view.rows, view.cols])?;
    backend.axpby(
        one::<B>(),
        x,
        view,
        zero::<B>(),
        &mut y,
        MatView::full(view.rows, view.cols),
    )?;
    Ok(y)
}

/// `y += x` over equal views.
pub fn add_into<B: Backend>(
    backend: &B,
    x: &B::Tensor,
    x_view: MatView,
    y: &mut B::Tensor,
    y_view: MatView,
) -> Result<()> {
    backend.axpby(one::<B>(), x, x_view, one::<B>(), y, y_view)
}

/// A 1-D tensor of `len` ones.
pub fn ones<B: Backend>(backend: &B, len: usize) -> Result<B::Tensor> {
    backend.upload(&vec![one::<B>(); len], &[len])
}

/// Downloads a tensor as f64 values (for reports and tests).
pub fn download_f64<B: Backend>(backend: &B, x: &B::Tensor) -> Result<Vec<f64>> {
    use crate::element::Element;
    Ok(backend
        .download(x)?
        .into_iter()
        .map(Element::to_f64)
        .collect())
}

/// Uploads f64 values converted to the backend element type.
pub fn upload_f64<B: Backend>(backend: &B, data: &[f64], shape: &[usize]) -> Result<B::Tensor> {
    use crate::element::Element;
    let converted: Vec<B::Elem> = data.iter().map(|&v| B::Elem::from_f64(v)).collect();
    backend.upload(&converted, shape)
}

/// `1` in the backend's element type.
#[inline]
pub fn one<B: Backend>() -> B::Elem {
    <B::Elem as crate::element::Element>::ONE
}

/// `0` in the backend's element type.
#[inline]
pub fn zero<B: Backend>() -> B::Elem {
    <B::Elem as crate::element::Element>::ZERO
}
