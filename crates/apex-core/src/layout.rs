//! Strided 2-D views into row-major buffers, and the bounds checks every backend
//! runs before touching memory.
//!
//! Views are how the APEX operators avoid copies: a column slice `X[:, k..2k]`,
//! a transpose `Wᵀ`, and the Monarch stride permutation (a column stride of `b`)
//! are all just a [`MatView`] over the same buffer.

use crate::error::{ApexError, Result};
use std::ops::Range;

/// A 2-D window into a row-major buffer: element `(r, c)` lives at
/// `offset + r * row_stride + c * col_stride`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatView {
    pub offset: usize,
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl MatView {
    /// The whole of a contiguous `rows × cols` matrix.
    pub fn full(rows: usize, cols: usize) -> Self {
        MatView {
            offset: 0,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The whole of a contiguous vector, seen as one row.
    pub fn row_vector(len: usize) -> Self {
        MatView::full(1, len)
    }

    /// Columns `range` of this view.
    pub fn columns(self, range: Range<usize>) -> Self {
        debug_assert!(range.start <= range.end && range.end <= self.cols);
        MatView {
            offset: self.offset + range.start * self.col_stride,
            cols: range.end - range.start,
            ..self
        }
    }

    /// Rows `range` of this view.
    pub fn rows(self, range: Range<usize>) -> Self {
        debug_assert!(range.start <= range.end && range.end <= self.rows);
        MatView {
            offset: self.offset + range.start * self.row_stride,
            rows: range.end - range.start,
            ..self
        }
    }

    /// The transposed view (no data moves).
    pub fn t(self) -> Self {
        MatView {
            offset: self.offset,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    /// `rows × cols`.
    pub fn dims(&self) -> [usize; 2] {
        [self.rows, self.cols]
    }

    /// True when rows are contiguous and adjacent (a plain row-major block).
    pub fn is_contiguous(&self) -> bool {
        self.col_stride == 1 && (self.row_stride == self.cols || self.rows <= 1)
    }

    /// One past the largest buffer index the view touches (0 for an empty view).
    pub fn extent(&self) -> usize {
        if self.rows == 0 || self.cols == 0 {
            return 0;
        }
        self.offset + (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride + 1
    }

    /// Fails unless the view fits in a buffer of `len` elements.
    pub fn check_fits(&self, op: &'static str, len: usize) -> Result<()> {
        let needed = self.extent();
        if needed > len {
            return Err(ApexError::ViewOutOfBounds { op, needed, len });
        }
        Ok(())
    }
}

/// `count` copies of a [`MatView`], entry `i` shifted by `i * batch_stride`.
/// A single matrix is a batch of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchView {
    pub mat: MatView,
    pub batch_stride: usize,
}

impl BatchView {
    /// A batch of one.
    pub fn single(mat: MatView) -> Self {
        BatchView {
            mat,
            batch_stride: 0,
        }
    }

    /// `count` matrices `mat`, `batch_stride` elements apart.
    pub fn strided(mat: MatView, batch_stride: usize) -> Self {
        BatchView { mat, batch_stride }
    }

    /// The view of batch entry `index`.
    pub fn entry(&self, index: usize) -> MatView {
        MatView {
            offset: self.mat.offset + index * self.batch_stride,
            ..self.mat
        }
    }

    /// Fails unless all `count` entries fit in a buffer of `len` elements.
    pub fn check_fits(&self, op: &'static str, count: usize, len: usize) -> Result<()> {
        if count == 0 {
            return Ok(());
        }
        self.entry(count - 1).check_fits(op, len)?;
        self.mat.check_fits(op, len)
    }
}

/// Checks a batched GEMM `C[i] = α·A[i]·B[i] + β·C[i]` for `i < batch`:
/// `A[i]` is m×k, `B[i]` is k×n, `C[i]` is m×n, and every view fits its buffer.
/// Returns `(m, n, k)`.
pub fn check_gemm(
    batch: usize,
    a: &BatchView,
    a_len: usize,
    b: &BatchView,
    b_len: usize,
    c: &BatchView,
    c_len: usize,
) -> Result<(usize, usize, usize)> {
    const OP: &str = "gemm";
    let (m, k) = (a.mat.rows, a.mat.cols);
    let n = b.mat.cols;
    if b.mat.rows != k {
        return Err(ApexError::shape(OP, &[k, n], &b.mat.dims()));
    }
    if c.mat.dims() != [m, n] {
        return Err(ApexError::shape(OP, &[m, n], &c.mat.dims()));
    }
    a.check_fits(OP, batch, a_len)?;
    b.check_fits(OP, batch, b_len)?;
    c.check_fits(OP, batch, c_len)?;
    if batch > 1 && c.batch_stride == 0 && m * n > 0 {
        return Err(ApexError::config(
            "gemm.c.batch_stride",
            "a batched output needs distinct entries (batch_stride > 0)",
        ));
    }
    Ok((m, n, k))
}

/// Checks that `views` all have the dims of the first and fit their buffers.
pub fn check_same_dims(op: &'static str, views: &[(&MatView, usize)]) -> Result<()> {
    let Some((first, _)) = views.first() else {
        return Ok(());
    };
    for (view, len) in views {
        if view.dims() != first.dims() {
            return Err(ApexError::shape(op, &first.dims(), &view.dims()));
        }
        view.check_fits(op, *len)?;
    }
    Ok(())
}

/// Fails when an output view would write some element twice (ndarray's rule,
/// which the CPU reference enforces: sorted by stride, each axis of length > 1
/// must step past everything the faster axes cover). GPU backends call this so
/// such a view is a typed error instead of a race.
pub fn check_writable(op: &'static str, view: &MatView) -> Result<()> {
    if view.rows == 0 || view.cols == 0 {
        return Ok(());
    }
    let mut axes = [(view.row_stride, view.rows), (view.col_stride, view.cols)];
    axes.sort();
    let mut covered = 0usize;
    for (stride, len) in axes {
        match len {
            1 => {}
            _ if stride <= covered => {
                return Err(ApexError::config(
                    format!("{op}.output_view"),
                    "views that overlap themselves cannot be written",
                ))
            }
            _ => covered += (len - 1) * stride,
        }
    }
    Ok(())
}

/// `(rows, cols)` of a 2-D shape; any other rank is a shape error.
pub fn dims2(op: &'static str, shape: &[usize]) -> Result<(usize, usize)> {
    match shape {
        [rows, cols] => Ok((*rows, *cols)),
        other => Err(ApexError::shape(op, &[0, 0], other)),
    }
}

/// `shape` must equal `want`.
pub fn expect_shape(op: &'static str, shape: &[usize], want: &[usize]) -> Result<()> {
    if shape != want {
        return Err(ApexError::shape(op, want, shape));
    }
    Ok(())
}

/// Number of elements of a shape.
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Fails unless `idx` only holds values below `bound`.
pub fn check_indices(op: &'static str, idx: &[usize], bound: usize) -> Result<()> {
    match idx.iter().find(|&&i| i >= bound) {
        Some(&index) => Err(ApexError::InvalidIndex { op, index, bound }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_slice_and_transpose_address_the_same_elements() {
        let v = MatView::full(3, 4).columns(1..3);
        assert_eq!(v.offset, 1);
        assert_eq!(v.extent(), 2 * 4 + 2 + 1);
        let t = v.t();
        assert_eq!(t.dims(), [2, 3]);
        // Transposed element (1, 2) is original element (2, 1 + 1) = buffer index 2·4 + 2.
        assert_eq!(t.offset + t.row_stride + 2 * t.col_stride, 2 * 4 + 2);
    }

    #[test]
    fn out_of_bounds_view_is_an_error() {
        let v = MatView::full(3, 4);
        assert!(v.check_fits("t", 12).is_ok());
        assert!(matches!(
            v.check_fits("t", 11),
            Err(ApexError::ViewOutOfBounds { needed: 12, .. })
        ));
    }

    #[test]
    fn gemm_shape_errors_are_typed() {
        let a = BatchView::single(MatView::full(2, 3));
        let b = BatchView::single(MatView::full(4, 5));
        let c = BatchView::single(MatView::full(2, 5));
        let err = check_gemm(1, &a, 6, &b, 20, &c, 10).unwrap_err();
        assert!(matches!(err, ApexError::ShapeMismatch { op: "gemm", .. }));
    }
}
