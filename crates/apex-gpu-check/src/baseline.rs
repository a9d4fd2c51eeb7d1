//! The Monarch product written as a framework would without a fused kernel:
//! batched GEMMs over contiguous blocks and explicit permutation passes
//! between them (`bmm` + `permute().contiguous()`). The fused kernels are
//! measured against this formulation.
//!
//! Layouts: x, out, g (n×k, k = b·p) are row-major; a "stacked" tensor holds
//! b contiguous n×p blocks. The stride permutation between the stages is a
//! plain 2-D copy when written as natural(r·k + ρ·b + λ) ↔ stacked(λ, r·p + ρ),
//! because r·k + ρ·b = b·(r·p + ρ): one axpby per pass.

use apex_core::{ops, Backend, BatchView, MatView, Monarch, Result};

/// The n×k matrix's b column blocks [i·p, (i+1)·p) as a batch.
fn blocks(n: usize, b: usize, p: usize) -> BatchView {
    BatchView::strided(
        MatView {
            offset: 0,
            rows: n,
            cols: p,
            row_stride: b * p,
            col_stride: 1,
        },
        p,
    )
}

/// b contiguous n×p blocks.
fn stacked(n: usize, p: usize) -> BatchView {
    BatchView::strided(MatView::full(n, p), n * p)
}

/// The factor stack as b p×p matrices, optionally transposed.
fn factor(p: usize, transposed: bool) -> BatchView {
    let m = MatView::full(p, p);
    BatchView::strided(if transposed { m.t() } else { m }, p * p)
}

/// The natural n×k layout (k = b·p) seen as b rows of n·p: entry (λ, r·p + ρ)
/// is natural[r, ρ·b + λ]. Both permutation passes copy through it.
fn lanes_of_natural(n: usize, b: usize, p: usize) -> MatView {
    MatView {
        offset: 0,
        rows: b,
        cols: n * p,
        row_stride: 1,
        col_stride: b,
    }
}

/// natural (n×k) → stacked (b × n×p), entry (λ, r, ρ) = natural[r, ρ·b + λ].
fn to_stacked<B: Backend>(
    backend: &B,
    x: &B::Tensor,
    n: usize,
    b: usize,
    p: usize,
) -> Result<B::Tensor> {
    ops::copy_view(backend, x, lanes_of_natural(n, b, p))
}

/// stacked → natural, the inverse of [`to_stacked`].
fn to_natural<B: Backend>(
    backend: &B,
    s: &B::Tensor,
    n: usize,
    b: usize,
    p: usize,
) -> Result<B::Tensor> {
    let mut out = backend.empty(&[n, b * p])?;
    backend.axpby(
        ops::one::<B>(),
        s,
        MatView::full(b, n * p),
        ops::zero::<B>(),
        &mut out,
        lanes_of_natural(n, b, p),
    )?;
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn bmm<B: Backend>(
    backend: &B,
    batch: usize,
    a: &B::Tensor,
    av: BatchView,
    bt: &B::Tensor,
    bv: BatchView,
    c: &mut B::Tensor,
    cv: BatchView,
) -> Result<()> {
    backend.gemm(
        batch,
        ops::one::<B>(),
        a,
        av,
        bt,
        bv,
        ops::zero::<B>(),
        c,
        cv,
    )
}

/// Forward and backward of `out = x·Mᵀ` for output gradient `g`:
/// returns `[out, ∂x, ∂W1, ∂W2]`. Six batched GEMMs, four permutation passes.
pub fn forward_backward<B: Backend>(
    backend: &B,
    monarch: &Monarch<B>,
    x: &B::Tensor,
    g: &B::Tensor,
) -> Result<[B::Tensor; 4]> {
    let (b, p, k) = (monarch.nblocks(), monarch.block(), monarch.size());
    let n = ops::dims2(backend, x, "baseline.x")?.0;
    let (w1, w2) = (&monarch.blkdiag1, &monarch.blkdiag2);
    // forward
    let mut y1 = backend.zeros(&[n, k])?;
    bmm(
        backend,
        b,
        x,
        blocks(n, b, p),
        w1,
        factor(p, true),
        &mut y1,
        blocks(n, b, p),
    )?;
    let z = to_stacked(backend, &y1, n, b, p)?;
    let mut u = backend.zeros(&[b, n * p])?;
    bmm(
        backend,
        b,
        &z,
        stacked(n, p),
        w2,
        factor(p, true),
        &mut u,
        stacked(n, p),
    )?;
    let out = to_natural(backend, &u, n, b, p)?;
    // backward
    let gs = to_stacked(backend, g, n, b, p)?;
    let mut grad_w2 = backend.zeros(&[b, p, p])?;
    let gs_t = BatchView::strided(stacked(n, p).mat.t(), n * p);
    bmm(
        backend,
        b,
        &gs,
        gs_t,
        &z,
        stacked(n, p),
        &mut grad_w2,
        factor(p, false),
    )?;
    let mut dz = backend.zeros(&[b, n * p])?;
    bmm(
        backend,
        b,
        &gs,
        stacked(n, p),
        w2,
        factor(p, false),
        &mut dz,
        stacked(n, p),
    )?;
    let dy1 = to_natural(backend, &dz, n, b, p)?;
    let mut grad_w1 = backend.zeros(&[b, p, p])?;
    let dy1_t = BatchView::strided(blocks(n, b, p).mat.t(), p);
    bmm(
        backend,
        b,
        &dy1,
        dy1_t,
        x,
        blocks(n, b, p),
        &mut grad_w1,
        factor(p, false),
    )?;
    let mut grad_x = backend.zeros(&[n, k])?;
    bmm(
        backend,
        b,
        &dy1,
        blocks(n, b, p),
        w1,
        factor(p, false),
        &mut grad_x,
        blocks(n, b, p),
    )?;
    Ok([out, grad_x, grad_w1, grad_w2])
}

#[cfg(test)]
mod tests {
    use super::*;
    use apex_core::MonarchInit;
    use apex_cpu::CpuBackend;

    #[test]
    fn separate_passes_equal_the_monarch_operator() {
        let cpu = CpuBackend::<f64>::new();
        for (k, n) in [(12, 5), (288, 7), (35, 3)] {
            let monarch = Monarch::new(&cpu, k, MonarchInit::Noise, false, 1).unwrap();
            let x = apex_benches::random_tensor(&cpu, &[n, k], 1.0, 2).unwrap();
            let g = apex_benches::random_tensor(&cpu, &[n, k], 1.0, 3).unwrap();
            let [out, grad_x, grad_w1, grad_w2] = forward_backward(&cpu, &monarch, &x, &g).unwrap();
            let want_out = monarch.forward(&cpu, &x).unwrap();
            let (want_grad_x, want_grads) = monarch.backward(&cpu, &x, &g).unwrap();
            for (got, want) in [
                (out, want_out),
                (grad_x, want_grad_x),
                (grad_w1, want_grads.blkdiag1),
                (grad_w2, want_grads.blkdiag2),
            ] {
                let (got, want) = (cpu.download(&got).unwrap(), cpu.download(&want).unwrap());
                for (a, b) in got.iter().zip(&want) {
                    assert!((a - b).abs() < 1e-12, "k={k}: {a} vs {b}");
                }
            }
        }
    }
}
