//! The Monarch (block-diagonal butterfly) map M: Rᵏ → Rᵏ of spec §4.1, its
//! transposed apply, gradients and dense matrix.
//!
//! With k = b·p, two stacks of b square p×p blocks `blkdiag1`, `blkdiag2`:
//!
//! ```text
//! y1[i·p + a]  = Σ_j W1[i,a,j] · x[i·p + j]          stage 1, block-diagonal
//! z[λ][ρ]      = y1[ρ·b + λ]                          stride permutation
//! y2[λ][σ]     = Σ_ρ W2[λ,σ,ρ] · z[λ][ρ]              stage 2, block-diagonal
//! out[σ·b + λ] = y2[λ][σ]                             output permutation
//! ```
//!
//! Both permutations are expressed as column strides of `b` in the batched GEMM
//! views, so a row batch costs exactly two batched GEMMs and no transpose passes.
//! Rows are the batch: `forward` maps X (n×k) to X·Mᵀ, `apply_transposed` maps
//! G (n×k) to G·M (the input-gradient chain of §5.1 and the `X_D M` of MixRow).

use crate::backend::{Backend, ScaledColumns};
use crate::divisor::find_divisor;
use crate::element::Element;
use crate::error::{ApexError, Result};
use crate::layout::{BatchView, MatView};
use crate::ops::{self, one, zero};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How `blkdiag1`/`blkdiag2` start (spec §4.1 `init_method`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MonarchInit {
    /// Both factors ~ U(−0.01/√p, 0.01/√p) (the reference's argparse default).
    #[default]
    Noise,
    /// W1 ~ U(−1/p, 1/p), W2 = 0, so M = 0 exactly at start (the shipped script).
    Random,
    /// Both zero: M stays 0 forever (degenerate, for ablations).
    Zeros,
}

/// A k×k Monarch map with `nblocks` blocks of size `block` (k = nblocks·block).
#[derive(Clone, Debug)]
pub struct Monarch<B: Backend> {
    /// Stage-1 blocks, shape [b, p, p] (spec name `blkdiag1`).
    pub blkdiag1: B::Tensor,
    /// Stage-2 blocks, shape [b, p, p] (spec name `blkdiag2`).
    pub blkdiag2: B::Tensor,
    k: usize,
    nblocks: usize,
    block: usize,
}

/// Gradients of the two block stacks, each [b, p, p].
#[derive(Clone, Debug)]
pub struct MonarchGrads<B: Backend> {
    pub blkdiag1: B::Tensor,
    pub blkdiag2: B::Tensor,
}

impl<B: Backend> MonarchGrads<B> {
    /// Zero gradients shaped like `monarch`'s factors.
    pub fn zeros(backend: &B, monarch: &Monarch<B>) -> Result<Self> {
        let shape = monarch.factor_shape();
        Ok(MonarchGrads {
            blkdiag1: backend.zeros(&shape)?,
            blkdiag2: backend.zeros(&shape)?,
        })
    }
}

impl<B: Backend> Monarch<B> {
    /// A map of size k with `find_divisor(k, largest_divisor)` blocks, initialised by `init`
    /// from a seeded RNG.
    pub fn new(
        backend: &B,
        k: usize,
        init: MonarchInit,
        largest_divisor: bool,
        seed: u64,
    ) -> Result<Self> {
        if k == 0 {
            return Err(ApexError::config("monarch.k", "must be positive"));
        }
        let nblocks = find_divisor(k, largest_divisor);
        let block = k / nblocks;
        let count = nblocks * block * block;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut uniform = |bound: f64| -> Vec<B::Elem> {
            (0..count)
                .map(|_| B::Elem::from_f64(rng.random_range(-bound..=bound)))
                .collect()
        };
        let p = block as f64;
        let (w1, w2) = match init {
            MonarchInit::Noise => {
                let bound = 0.01 / p.sqrt();
                (uniform(bound), uniform(bound))
            }
            MonarchInit::Random => (uniform(1.0 / p), vec![B::Elem::ZERO; count]),
            MonarchInit::Zeros => (vec![B::Elem::ZERO; count], vec![B::Elem::ZERO; count]),
        };
        let shape = [nblocks, block, block];
        Self::from_factors(
            backend,
            backend.upload(&w1, &shape)?,
            backend.upload(&w2, &shape)?,
        )
    }

    /// Wraps given factors, both [b, p, p].
    pub fn from_factors(backend: &B, blkdiag1: B::Tensor, blkdiag2: B::Tensor) -> Result<Self> {
        let shape = backend.shape(&blkdiag1).to_vec();
        let [nblocks, rows, cols] = shape[..] else {
            return Err(ApexError::shape("monarch.blkdiag1", &[0, 0, 0], &shape));
        };
        if rows != cols || nblocks == 0 || rows == 0 {
            return Err(ApexError::config(
                "monarch.blkdiag1",
                format!("blocks must be square and non-empty, got {shape:?}"),
            ));
        }
        ops::expect_shape(backend, &blkdiag2, &shape, "monarch.blkdiag2")?;
        Ok(Monarch {
            blkdiag1,
            blkdiag2,
            k: nblocks * rows,
            nblocks,
            block: rows,
        })
    }

    /// k, the size of the map.
    pub fn size(&self) -> usize {
        self.k
    }

    /// b, the number of blocks.
    pub fn nblocks(&self) -> usize {
        self.nblocks
    }

    /// p, the block size.
    pub fn block(&self) -> usize {
        self.block
    }

    /// [b, p, p].
    pub fn factor_shape(&self) -> [usize; 3] {
        [self.nblocks, self.block, self.block]
    }

    /// Parameter count 2·b·p².
    pub fn parameter_count(&self) -> usize {
        2 * self.nblocks * self.block * self.block
    }

    fn check_rows(&self, op: &'static str, view: &MatView) -> Result<()> {
        if view.cols != self.k {
            return Err(ApexError::shape(op, &[view.rows, self.k], &view.dims()));
        }
        Ok(())
    }

    /// Block `i` of the contiguous-in-blocks layout: columns [i·p, (i+1)·p).
    fn blocked(&self, view: MatView) -> BatchView {
        BatchView::strided(
            MatView {
                cols: self.block,
                ..view
            },
            self.block * view.col_stride,
        )
    }

    /// Block `λ` of the strided layout: columns {ρ·b + λ : ρ < p}.
    fn interleaved(&self, view: MatView) -> BatchView {
        BatchView::strided(
            MatView {
                cols: self.block,
                col_stride: view.col_stride * self.nblocks,
                ..view
            },
            view.col_stride,
        )
    }

    /// The factor stack seen as b matrices, optionally transposed.
    fn factor(&self, transposed: bool) -> BatchView {
        let mat = MatView::full(self.block, self.block);
        BatchView::strided(
            if transposed { mat.t() } else { mat },
            self.block * self.block,
        )
    }

    /// `out = x·Mᵀ + β·out` row-wise (x, out: n×k views). Returns the stage-1
    /// output (n×k, contiguous), which the weight gradients need. Runs the
    /// backend's [`Backend::monarch_forward`] (the composite below unless the
    /// backend fuses it).
    #[allow(clippy::too_many_arguments)]
    pub fn forward_into(
        &self,
        backend: &B,
        x: &B::Tensor,
        x_view: MatView,
        beta: B::Elem,
        out: &mut B::Tensor,
        out_view: MatView,
    ) -> Result<B::Tensor> {
        self.check_rows("monarch.forward", &x_view)?;
        self.check_rows("monarch.forward", &out_view)?;
        backend.monarch_forward(self, x, x_view, beta, out, out_view)
    }

    /// The composite forward: two strided batched GEMMs, the permutations folded
    /// into their views. The reference every fused override is tested against.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_composite(
        &self,
        backend: &B,
        x: &B::Tensor,
        x_view: MatView,
        beta: B::Elem,
        out: &mut B::Tensor,
        out_view: MatView,
    ) -> Result<B::Tensor> {
        let n = x_view.rows;
        let stage1_view = MatView::full(n, self.k);
        let mut stage1 = backend.empty(&[n, self.k])?;
        backend.gemm(
            self.nblocks,
            one::<B>(),
            x,
            self.blocked(x_view),
            &self.blkdiag1,
            self.factor(true),
            zero::<B>(),
            &mut stage1,
            self.blocked(stage1_view),
        )?;
        backend.gemm(
            self.nblocks,
            one::<B>(),
            &stage1,
            self.interleaved(stage1_view),
            &self.blkdiag2,
            self.factor(true),
            beta,
            out,
            self.interleaved(out_view),
        )?;
        Ok(stage1)
    }

    /// `out = g·M + β·out` row-wise (g, out: n×k views): the transposed apply.
    /// Returns the intermediate ∂Y1 (n×k, contiguous) that the weight gradients need.
    /// Runs the backend's [`Backend::monarch_apply_transposed`].
    #[allow(clippy::too_many_arguments)]
    pub fn apply_transposed_into(
        &self,
        backend: &B,
        g: &B::Tensor,
        g_view: MatView,
        beta: B::Elem,
        out: &mut B::Tensor,
        out_view: MatView,
    ) -> Result<B::Tensor> {
        self.check_rows("monarch.apply_transposed", &g_view)?;
        self.check_rows("monarch.apply_transposed", &out_view)?;
        backend.monarch_apply_transposed(self, g, g_view, beta, out, out_view)
    }

    /// `out = y ⊙ s + op(x) + β·out` with op(x) = x·Mᵀ (`transposed` false,
    /// as [`Self::forward_into`]) or x·M (as [`Self::apply_transposed_into`]):
    /// one Monarch product plus a column-scaled view, through the backend's
    /// [`Backend::monarch_add_scaled`]. Returns the product's intermediate.
    #[allow(clippy::too_many_arguments)]
    pub fn add_scaled_into(
        &self,
        backend: &B,
        transposed: bool,
        x: &B::Tensor,
        x_view: MatView,
        scaled: ScaledColumns<'_, B>,
        beta: B::Elem,
        out: &mut B::Tensor,
        out_view: MatView,
    ) -> Result<B::Tensor> {
        let op = "monarch.add_scaled";
        self.check_rows(op, &x_view)?;
        self.check_rows(op, &out_view)?;
        if scaled.view.dims() != out_view.dims() || x_view.rows != out_view.rows {
            return Err(ApexError::shape(op, &out_view.dims(), &scaled.view.dims()));
        }
        ops::expect_shape(backend, scaled.scale, &[self.k], op)?;
        backend.monarch_add_scaled(self, transposed, x, x_view, scaled, beta, out, out_view)
    }

    /// The composite transposed apply (two strided batched GEMMs).
    #[allow(clippy::too_many_arguments)]
    pub fn apply_transposed_composite(
        &self,
        backend: &B,
        g: &B::Tensor,
        g_view: MatView,
        beta: B::Elem,
        out: &mut B::Tensor,
        out_view: MatView,
    ) -> Result<B::Tensor> {
        let n = g_view.rows;
        let mid_view = MatView::full(n, self.k);
        let mut mid = backend.empty(&[n, self.k])?;
        backend.gemm(
            self.nblocks,
            one::<B>(),
            g,
            self.interleaved(g_view),
            &self.blkdiag2,
            self.factor(false),
            zero::<B>(),
            &mut mid,
            self.interleaved(mid_view),
        )?;
        backend.gemm(
            self.nblocks,
            one::<B>(),
            &mid,
            self.blocked(mid_view),
            &self.blkdiag1,
            self.factor(false),
            beta,
            out,
            self.blocked(out_view),
        )?;
        Ok(mid)
    }

    /// Accumulates the factor gradients of `out = x·Mᵀ` for output gradient `g`:
    /// `grads = ∂L/∂(W1, W2) + β·grads`. `x_stage1` is what [`Self::forward_into`]
    /// returned for `x`, `g_mid` what [`Self::apply_transposed_into`] returned for `g`.
    ///
    /// The transposed apply `out = x·M` with output gradient `p` has the same
    /// factor gradients as the forward with input `p` and gradient `x`, so this one
    /// routine serves both (spec §5.3).
    #[allow(clippy::too_many_arguments)]
    pub fn accumulate_grads(
        &self,
        backend: &B,
        x: &B::Tensor,
        x_view: MatView,
        x_stage1: &B::Tensor,
        g: &B::Tensor,
        g_view: MatView,
        g_mid: &B::Tensor,
        beta: B::Elem,
        grads: &mut MonarchGrads<B>,
    ) -> Result<()> {
        self.check_rows("monarch.grads", &x_view)?;
        self.check_rows("monarch.grads", &g_view)?;
        if x_view.rows != g_view.rows {
            return Err(ApexError::shape(
                "monarch.grads",
                &x_view.dims(),
                &g_view.dims(),
            ));
        }
        let n = x_view.rows;
        let full = MatView::full(n, self.k);
        let dest = BatchView::strided(
            MatView::full(self.block, self.block),
            self.block * self.block,
        );
        // ∂W2[λ] = Σ_rows G[:, σ·b+λ]ᵀ · Y1[:, ρ·b+λ]
        let g_t = self.interleaved(g_view);
        backend.gemm(
            self.nblocks,
            one::<B>(),
            g,
            BatchView::strided(g_t.mat.t(), g_t.batch_stride),
            x_stage1,
            self.interleaved(full),
            beta,
            &mut grads.blkdiag2,
            dest,
        )?;
        // ∂W1[i] = Σ_rows ∂Y1[:, i·p + a]ᵀ · X[:, i·p + j]
        let mid_t = self.blocked(full);
        backend.gemm(
            self.nblocks,
            one::<B>(),
            g_mid,
            BatchView::strided(mid_t.mat.t(), mid_t.batch_stride),
            x,
            self.blocked(x_view),
            beta,
            &mut grads.blkdiag1,
            dest,
        )
    }

    /// Allocating forward: X·Mᵀ for X (n×k).
    pub fn forward(&self, backend: &B, x: &B::Tensor) -> Result<B::Tensor> {
        let view = ops::full(backend, x, "monarch.forward")?;
        let mut out = backend.empty(&[view.rows, view.cols])?;
        self.forward_into(backend, x, view, zero::<B>(), &mut out, view)?;
        Ok(out)
    }

    /// Backward of `out = x·Mᵀ`: returns (∂x, ∂W1, ∂W2) for output gradient `g`.
    pub fn backward(
        &self,
        backend: &B,
        x: &B::Tensor,
        g: &B::Tensor,
    ) -> Result<(B::Tensor, MonarchGrads<B>)> {
        let view = ops::full(backend, x, "monarch.backward")?;
        let g_view = ops::full(backend, g, "monarch.backward")?;
        let mut scratch = backend.empty(&[view.rows, view.cols])?;
        let stage1 = self.forward_into(backend, x, view, zero::<B>(), &mut scratch, view)?;
        let mut grad_x = backend.empty(&[g_view.rows, g_view.cols])?;
        let mid =
            self.apply_transposed_into(backend, g, g_view, zero::<B>(), &mut grad_x, g_view)?;
        let mut grads = MonarchGrads::zeros(backend, self)?;
        self.accumulate_grads(
            backend,
            x,
            view,
            &stage1,
            g,
            g_view,
            &mid,
            zero::<B>(),
            &mut grads,
        )?;
        Ok((grad_x, grads))
    }

    /// The dense k×k matrix M, with `forward(x) = x·Mᵀ` (the spec's `dense`).
    pub fn dense(&self, backend: &B) -> Result<B::Tensor> {
        let k = self.k;
        let mut identity = backend.zeros(&[k, k])?;
        let diagonal = MatView {
            offset: 0,
            rows: k,
            cols: 1,
            row_stride: k + 1,
            col_stride: 1,
        };
        backend.fill(&mut identity, diagonal, one::<B>())?;
        let mut dense = backend.empty(&[k, k])?;
        let view = MatView::full(k, k);
        self.apply_transposed_into(backend, &identity, view, zero::<B>(), &mut dense, view)?;
        Ok(dense)
    }
}
