//! Benchmark workloads, written once on the [`Backend`] trait so every backend
//! runs the same code. `ops.rs` times them with criterion; `cargo xtask bench`
//! reads criterion's estimates and prints the table (time, ratio to the dense
//! baseline of the same run, GFLOP/s). [`WORKLOADS`] names each benchmark, its
//! baseline and its FLOP count in one place.

use apex_core::{
    ops, Backend, BinaryOp, MatView, MixColumn, MixRow, Mixer, MixerGrads, Monarch, MonarchInit,
    Result, UnaryOp,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// SmolLM2-135M FFN shape used by the layer-pair benchmark (issue 2 target).
pub const FFN_D: usize = 576;
pub const FFN_N: usize = 1536;
pub const FFN_K: usize = 288;
pub const FFN_T_TUNED: usize = 714;
pub const FFN_TOKENS: usize = 512;
/// Square matmul size for the GFLOP/s target.
pub const MATMUL_N: usize = 1024;

/// One row of the bench table.
pub struct Workload {
    /// Criterion group and function id (`target/criterion/<group>/<id>`).
    pub group: &'static str,
    pub id: &'static str,
    pub shape: &'static str,
    /// The id (same group) whose time is the ratio's denominator.
    pub baseline: &'static str,
    /// Floating-point operations of one iteration (2 per multiply-add).
    pub flops: f64,
}

fn gemm_flops(m: usize, n: usize, k: usize) -> f64 {
    2.0 * (m * n * k) as f64
}

/// Every benchmark, in table order.
pub fn workloads() -> Vec<Workload> {
    let (t, d, n, k, tt) = (FFN_TOKENS, FFN_D, FFN_N, FFN_K, FFN_T_TUNED);
    let p = k / apex_core::find_divisor(k, false);
    let monarch_fwd = 2.0 * gemm_flops(t, k, p);
    vec![
        Workload {
            group: "matmul",
            id: "apex-gemm",
            shape: "1024x1024x1024 f32",
            baseline: "ndarray-dot",
            flops: gemm_flops(MATMUL_N, MATMUL_N, MATMUL_N),
        },
        Workload {
            group: "matmul",
            id: "ndarray-dot",
            shape: "1024x1024x1024 f32",
            baseline: "ndarray-dot",
            flops: gemm_flops(MATMUL_N, MATMUL_N, MATMUL_N),
        },
        Workload {
            group: "monarch",
            id: "forward",
            shape: "T=512 k=288 (b=16,p=18)",
            baseline: "dense-kxk-forward",
            flops: monarch_fwd,
        },
        Workload {
            group: "monarch",
            id: "dense-kxk-forward",
            shape: "T=512 k=288 dense",
            baseline: "dense-kxk-forward",
            flops: gemm_flops(t, k, k),
        },
        Workload {
            group: "monarch",
            id: "forward-backward",
            shape: "T=512 k=288 (b=16,p=18)",
            baseline: "dense-kxk-forward",
            flops: 3.0 * monarch_fwd,
        },
        Workload {
            group: "ffn-pair",
            id: "dense",
            shape: "d=576 N=1536 T=512 fwd+bwd",
            baseline: "dense",
            flops: 6.0 * gemm_flops(t, n, d),
        },
        Workload {
            group: "ffn-pair",
            id: "apex",
            shape: "d=576 N=1536 k=288 t=714 T=512 fwd+bwd",
            baseline: "dense",
            flops: 4.0 * gemm_flops(t, n, d) + 2.0 * gemm_flops(tt, d, t) + 4.0 * monarch_fwd,
        },
    ]
}

/// Seeded uniform(−scale, scale) values.
pub fn random_values(len: usize, scale: f64, seed: u64) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len).map(|_| rng.random_range(-scale..=scale)).collect()
}

/// A seeded random tensor on `backend`.
pub fn random_tensor<B: Backend>(
    backend: &B,
    shape: &[usize],
    scale: f64,
    seed: u64,
) -> Result<B::Tensor> {
    ops::upload_f64(
        backend,
        &random_values(shape.iter().product(), scale, seed),
        shape,
    )
}

/// Dense FFN pair (`X·W_upᵀ → SiLU → ·W_downᵀ`), the full fine-tuning baseline:
/// forward plus backward with weight gradients for both matrices and ∂X.
pub struct DensePair<B: Backend> {
    pub x: B::Tensor,
    pub w_up: B::Tensor,
    pub w_down: B::Tensor,
    pub grad_out: B::Tensor,
}

/// The same pair with APEX modules: MixColumn up (rows [0,t) tuned) → SiLU →
/// MixRow down (columns [0,t) tuned), one shared mixer.
pub struct ApexPair<B: Backend> {
    pub x: B::Tensor,
    pub up: MixColumn<B>,
    pub down: MixRow<B>,
    pub mixer: Mixer<B>,
    pub grad_out: B::Tensor,
}

impl<B: Backend> DensePair<B> {
    pub fn new(backend: &B) -> Result<Self> {
        Ok(DensePair {
            x: random_tensor(backend, &[FFN_TOKENS, FFN_D], 1.0, 1)?,
            w_up: random_tensor(backend, &[FFN_N, FFN_D], 0.05, 2)?,
            w_down: random_tensor(backend, &[FFN_D, FFN_N], 0.05, 3)?,
            grad_out: random_tensor(backend, &[FFN_TOKENS, FFN_D], 1.0, 4)?,
        })
    }

    /// One forward + backward; returns ∂X so nothing is optimised away.
    pub fn step(&self, backend: &B) -> Result<B::Tensor> {
        let (t, d, n) = (FFN_TOKENS, FFN_D, FFN_N);
        let xv = MatView::full(t, d);
        let hv = MatView::full(t, n);
        let h = ops::matmul(backend, &self.x, xv, &self.w_up, MatView::full(n, d).t())?;
        let mut a = backend.zeros(&[t, n])?;
        backend.unary(UnaryOp::Silu, &h, hv, &mut a, hv)?;
        let _out = ops::matmul(backend, &a, hv, &self.w_down, MatView::full(d, n).t())?;
        let gv = MatView::full(t, d);
        let _grad_w_down = ops::matmul(backend, &self.grad_out, gv.t(), &a, hv)?;
        let grad_a = ops::matmul(
            backend,
            &self.grad_out,
            gv,
            &self.w_down,
            MatView::full(d, n),
        )?;
        let mut silu_grad = backend.zeros(&[t, n])?;
        backend.unary(UnaryOp::SiluGrad, &h, hv, &mut silu_grad, hv)?;
        let mut grad_h = backend.zeros(&[t, n])?;
        backend.binary(
            BinaryOp::Mul,
            &grad_a,
            hv,
            &silu_grad,
            hv,
            ops::zero::<B>(),
            &mut grad_h,
            hv,
        )?;
        let _grad_w_up = ops::matmul(backend, &grad_h, hv.t(), &self.x, xv)?;
        ops::matmul(backend, &grad_h, hv, &self.w_up, MatView::full(n, d))
    }
}

impl<B: Backend> ApexPair<B> {
    pub fn new(backend: &B) -> Result<Self> {
        let dense = DensePair::new(backend)?;
        Ok(ApexPair {
            up: MixColumn::new(backend, &dense.w_up, None, FFN_K, FFN_T_TUNED, true)?,
            down: MixRow::new(backend, &dense.w_down, None, FFN_K, FFN_T_TUNED, true)?,
            mixer: Mixer::new(backend, FFN_K, MonarchInit::Noise, false, 5)?,
            x: dense.x,
            grad_out: dense.grad_out,
        })
    }

    /// One forward + backward with gradients for S, c, v, M and ∂X only.
    pub fn step(&self, backend: &B) -> Result<B::Tensor> {
        let (t, n) = (FFN_TOKENS, FFN_N);
        let hv = MatView::full(t, n);
        let (h, up_cache) = self.up.forward(backend, &self.mixer, &self.x)?;
        let mut a = backend.zeros(&[t, n])?;
        backend.unary(UnaryOp::Silu, &h, hv, &mut a, hv)?;
        let (_out, down_cache) = self.down.forward(backend, &self.mixer, &a)?;
        let mut shared = MixerGrads::zeros(backend, &self.mixer)?;
        let (_grad_s_down, grad_a) = self.down.backward(
            backend,
            &self.mixer,
            &down_cache,
            &self.grad_out,
            &mut shared,
            true,
        )?;
        let grad_a = grad_a.expect("requested");
        let mut silu_grad = backend.zeros(&[t, n])?;
        backend.unary(UnaryOp::SiluGrad, &h, hv, &mut silu_grad, hv)?;
        let mut grad_h = backend.zeros(&[t, n])?;
        backend.binary(
            BinaryOp::Mul,
            &grad_a,
            hv,
            &silu_grad,
            hv,
            ops::zero::<B>(),
            &mut grad_h,
            hv,
        )?;
        let (_grads, grad_x) =
            self.up
                .backward(backend, &self.mixer, &up_cache, &grad_h, &mut shared, true)?;
        Ok(grad_x.expect("requested"))
    }
}

/// Monarch at the FFN shape: T×k input.
pub struct MonarchBench<B: Backend> {
    pub monarch: Monarch<B>,
    pub x: B::Tensor,
    pub dense: B::Tensor,
}

impl<B: Backend> MonarchBench<B> {
    pub fn new(backend: &B) -> Result<Self> {
        let monarch = Monarch::new(backend, FFN_K, MonarchInit::Noise, false, 7)?;
        Ok(MonarchBench {
            dense: monarch.dense(backend)?,
            x: random_tensor(backend, &[FFN_TOKENS, FFN_K], 1.0, 8)?,
            monarch,
        })
    }

    /// The same map as one dense k×k GEMM (what a naive implementation does).
    pub fn dense_forward(&self, backend: &B) -> Result<B::Tensor> {
        ops::matmul(
            backend,
            &self.x,
            MatView::full(FFN_TOKENS, FFN_K),
            &self.dense,
            MatView::full(FFN_K, FFN_K).t(),
        )
    }
}
