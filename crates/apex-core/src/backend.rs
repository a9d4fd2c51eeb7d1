//! The primitive seam: everything a device must do for APEX, and nothing more.
//!
//! The trait is deliberately small. Monarch, MixColumn, MixRow, fusion and
//! scoring are written once in apex-core on these primitives. Every primitive
//! works on strided [`MatView`]s, so slices, transposes and the Monarch stride
//! permutations are free. A backend may override a composite (the provided
//! `monarch_*` methods below) with a fused kernel; the conformance tests hold
//! every override to the composite.

use crate::element::Element;
use crate::error::Result;
use crate::layout::{BatchView, MatView};
use crate::monarch::Monarch;
use std::fmt::Debug;

/// Elementwise binary operations for [`Backend::binary`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
}

/// Elementwise unary operations for [`Backend::unary`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnaryOp {
    /// x·σ(x)
    Silu,
    /// d/dx [x·σ(x)] = σ(x)·(1 + x·(1 − σ(x)))
    SiluGrad,
    Sqrt,
    Square,
    Exp,
    Neg,
}

/// `y ⊙ s`: the columns of a view of `y` scaled by the vector `s` (column c
/// by `s[c]`), an operand of [`Backend::monarch_add_scaled`].
pub struct ScaledColumns<'a, B: Backend> {
    pub y: &'a B::Tensor,
    pub view: MatView,
    pub scale: &'a B::Tensor,
}

impl<B: Backend> Clone for ScaledColumns<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<B: Backend> Copy for ScaledColumns<'_, B> {}

/// A compute device holding dense row-major tensors of one element type.
///
/// Tensors are opaque handles (`Tensor`); the host only sees data through
/// [`Backend::upload`] and [`Backend::download`]. All compute primitives read
/// and write through [`MatView`]s and validate shapes and bounds, returning
/// [`crate::ApexError`] instead of panicking.
pub trait Backend: Clone + Debug + Send + Sync + 'static {
    /// The element type every tensor of this backend holds.
    type Elem: Element;
    /// A device tensor: a contiguous buffer plus its logical shape.
    type Tensor: Clone + Debug + Send + Sync;

    /// Short human-readable name, e.g. `"cpu-f32"`.
    fn name(&self) -> String;

    // ---- memory -----------------------------------------------------------

    /// A zero-filled tensor of `shape`.
    fn zeros(&self, shape: &[usize]) -> Result<Self::Tensor>;
    /// A tensor of `shape` whose contents are unspecified: for outputs the
    /// caller writes completely before reading (a β = 0 product, a copy).
    /// Default: [`Backend::zeros`]; a GPU backend skips the zero-fill pass.
    fn empty(&self, shape: &[usize]) -> Result<Self::Tensor> {
        self.zeros(shape)
    }
    /// Copies `data` (row-major, `shape.iter().product()` elements) to the device.
    fn upload(&self, data: &[Self::Elem], shape: &[usize]) -> Result<Self::Tensor>;
    /// Copies a tensor back to the host, row-major.
    fn download(&self, tensor: &Self::Tensor) -> Result<Vec<Self::Elem>>;
    /// The logical shape of `tensor`.
    fn shape<'t>(&self, tensor: &'t Self::Tensor) -> &'t [usize];
    /// The same buffer seen with another shape of equal element count.
    fn reshape(&self, tensor: &Self::Tensor, shape: &[usize]) -> Result<Self::Tensor>;

    // ---- compute ----------------------------------------------------------

    /// Batched strided GEMM: `C[i] = α·A[i]·B[i] + β·C[i]` for `i < batch`, with
    /// `A[i]` m×k, `B[i]` k×n, `C[i]` m×n. With `β = 0`, `C` is not read (NaN in
    /// `C` does not propagate). Transposes are views ([`MatView::t`]).
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        &self,
        batch: usize,
        alpha: Self::Elem,
        a: &Self::Tensor,
        a_view: BatchView,
        b: &Self::Tensor,
        b_view: BatchView,
        beta: Self::Elem,
        c: &mut Self::Tensor,
        c_view: BatchView,
    ) -> Result<()>;

    /// `y = α·x + β·y` over equal-shaped views (copy, scale, accumulate, transpose).
    /// With `β = 0`, `y` is not read.
    #[allow(clippy::too_many_arguments)]
    fn axpby(
        &self,
        alpha: Self::Elem,
        x: &Self::Tensor,
        x_view: MatView,
        beta: Self::Elem,
        y: &mut Self::Tensor,
        y_view: MatView,
    ) -> Result<()>;

    /// `y = op(x, z) + β·y` elementwise over equal-shaped views.
    #[allow(clippy::too_many_arguments)]
    fn binary(
        &self,
        op: BinaryOp,
        x: &Self::Tensor,
        x_view: MatView,
        z: &Self::Tensor,
        z_view: MatView,
        beta: Self::Elem,
        y: &mut Self::Tensor,
        y_view: MatView,
    ) -> Result<()>;

    /// `y[r, c] = x[r, c] · v[v_offset + c] + β·y[r, c]`: scale each column by a
    /// vector entry (the APEX `⊙ v` and `⊙ c`).
    #[allow(clippy::too_many_arguments)]
    fn scale_columns(
        &self,
        x: &Self::Tensor,
        x_view: MatView,
        v: &Self::Tensor,
        v_offset: usize,
        beta: Self::Elem,
        y: &mut Self::Tensor,
        y_view: MatView,
    ) -> Result<()>;

    /// `out[out_offset + c] = Σ_r x[r, c]·z[r, c] + β·out[out_offset + c]`: column
    /// dot products (gradients of per-column scales, squared column norms).
    #[allow(clippy::too_many_arguments)]
    fn column_dot(
        &self,
        x: &Self::Tensor,
        x_view: MatView,
        z: &Self::Tensor,
        z_view: MatView,
        beta: Self::Elem,
        out: &mut Self::Tensor,
        out_offset: usize,
    ) -> Result<()>;

    /// `y = f(x)` elementwise over equal-shaped views.
    fn unary(
        &self,
        op: UnaryOp,
        x: &Self::Tensor,
        x_view: MatView,
        y: &mut Self::Tensor,
        y_view: MatView,
    ) -> Result<()>;

    /// Sets every element of the view to `value`.
    fn fill(&self, y: &mut Self::Tensor, y_view: MatView, value: Self::Elem) -> Result<()>;

    /// Rows `index` of a 2-D tensor, in that order: `out[i, :] = x[index[i], :]`.
    fn gather_rows(&self, x: &Self::Tensor, index: &[usize]) -> Result<Self::Tensor>;

    /// Columns `index` of a 2-D tensor: `out[:, j] = x[:, index[j]]`.
    fn gather_columns(&self, x: &Self::Tensor, index: &[usize]) -> Result<Self::Tensor>;

    // ---- composites a backend may fuse -------------------------------------

    /// `out = x·Mᵀ + β·out` for a Monarch map (x, out: n×k views, already
    /// shape-checked); returns the stage-1 output (n×k). Default: the
    /// two-GEMM composite [`Monarch::forward_composite`].
    #[allow(clippy::too_many_arguments)]
    fn monarch_forward(
        &self,
        monarch: &Monarch<Self>,
        x: &Self::Tensor,
        x_view: MatView,
        beta: Self::Elem,
        out: &mut Self::Tensor,
        out_view: MatView,
    ) -> Result<Self::Tensor> {
        monarch.forward_composite(self, x, x_view, beta, out, out_view)
    }

    /// `out = g·M + β·out` (g, out: n×k views, already shape-checked); returns
    /// the intermediate ∂Y1 (n×k). Default: [`Monarch::apply_transposed_composite`].
    #[allow(clippy::too_many_arguments)]
    fn monarch_apply_transposed(
        &self,
        monarch: &Monarch<Self>,
        g: &Self::Tensor,
        g_view: MatView,
        beta: Self::Elem,
        out: &mut Self::Tensor,
        out_view: MatView,
    ) -> Result<Self::Tensor> {
        monarch.apply_transposed_composite(self, g, g_view, beta, out, out_view)
    }

    /// `out = y ⊙ s + op(x) + β·out`, op(x) = x·Mᵀ (`transposed` false) or
    /// x·M, with `s` scaling the columns of `y`: the APEX step "scale one half,
    /// add the Monarch mix of the other" in one pass (x, y, out: n×k views,
    /// already shape-checked, `s` of length k; `y` and `out` are distinct
    /// tensors). Returns what [`Backend::monarch_forward`] or
    /// [`Backend::monarch_apply_transposed`] returns. Default: `scale_columns`,
    /// then the Monarch product accumulated with β = 1.
    #[allow(clippy::too_many_arguments)]
    fn monarch_add_scaled(
        &self,
        monarch: &Monarch<Self>,
        transposed: bool,
        x: &Self::Tensor,
        x_view: MatView,
        scaled: ScaledColumns<'_, Self>,
        beta: Self::Elem,
        out: &mut Self::Tensor,
        out_view: MatView,
    ) -> Result<Self::Tensor> {
        self.scale_columns(scaled.y, scaled.view, scaled.scale, 0, beta, out, out_view)?;
        let one = <Self::Elem as crate::element::Element>::ONE;
        if transposed {
            self.monarch_apply_transposed(monarch, x, x_view, one, out, out_view)
        } else {
            self.monarch_forward(monarch, x, x_view, one, out, out_view)
        }
    }
}
