//! Uniform parameter blocks: the host side of each shader's `Params` struct.
//!
//! Every WGSL `Params` struct holds only 32-bit scalars, in groups of four, so
//! its uniform layout is simply the list of fields; [`Params`] appends them in
//! declaration order. Sizes and strides are checked to fit in a `u32` (the
//! shaders index with `u32`), strides of unit dimensions are zeroed (they never
//! multiply a non-zero index) so a huge unused stride cannot fail the check.

use crate::device::backend_error;
use apex_core::{BatchView, MatView, Result};

/// A uniform block under construction.
#[derive(Default)]
pub(crate) struct Params {
    words: Vec<u32>,
}

impl Params {
    pub(crate) fn new() -> Self {
        Params::default()
    }

    /// A `u32` field; fails when `value` does not fit.
    pub(crate) fn u(mut self, value: usize) -> Result<Self> {
        let word = u32::try_from(value).map_err(|_| {
            backend_error(format!(
                "{value} exceeds the 32-bit index range of the shaders"
            ))
        })?;
        self.words.push(word);
        Ok(self)
    }

    /// An `f32` field.
    pub(crate) fn f(mut self, value: f32) -> Self {
        self.words.push(value.to_bits());
        self
    }

    /// The four fields `off, rs, cs, pad` of a strided view.
    pub(crate) fn view(self, view: &MatView) -> Result<Self> {
        let row_stride = if view.rows > 1 { view.row_stride } else { 0 };
        let col_stride = if view.cols > 1 { view.col_stride } else { 0 };
        self.u(view.offset)?.u(row_stride)?.u(col_stride)?.u(0)
    }

    /// The four fields `off, rs, cs, bs` of a batch of `count` strided views.
    pub(crate) fn batch_view(self, view: &BatchView, count: usize) -> Result<Self> {
        let (offset, row_stride, col_stride, batch_stride) = batch_strides(view, count);
        self.u(offset)?
            .u(row_stride)?
            .u(col_stride)?
            .u(batch_stride)
    }

    /// The block, zero-padded to whole 16-byte rows.
    pub(crate) fn into_words(mut self) -> Vec<u32> {
        while !self.words.len().is_multiple_of(4) {
            self.words.push(0);
        }
        self.words
    }
}

/// `(offset, row stride, column stride, batch stride)` of a batch of `count`
/// views as a shader sees them: the strides of unit dimensions are zero.
pub(crate) fn batch_strides(view: &BatchView, count: usize) -> (usize, usize, usize, usize) {
    let mat = &view.mat;
    let row_stride = if mat.rows > 1 { mat.row_stride } else { 0 };
    let col_stride = if mat.cols > 1 { mat.col_stride } else { 0 };
    let batch_stride = if count > 1 { view.batch_stride } else { 0 };
    (mat.offset, row_stride, col_stride, batch_stride)
}
