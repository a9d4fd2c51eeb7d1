//! Benchmark workloads, written once on the [`Backend`] trait so every backend
//! runs the same code. `ops.rs` times them with criterion; `cargo xtask bench`
//! reads criterion's estimates and prints the table (time, ratio to the dense
//! baseline of the same run, GFLOP/s). [`workloads`] names each benchmark, its
//! baseline and its FLOP count in one place.

use apex_core::{
    ops, Backend, BinaryOp, MatView, MixColumn, MixRow, Mixer, MixerGrads, Monarch, MonarchGrads,
    MonarchInit, Result, UnaryOp,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The sizes of one bench run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizes {
    /// Square matmul size for the GFLOP/s row.
    pub matmul: usize,
    /// FFN layer pair: tokens T, model dim d, FFN dim N, APEX k and tuned t.
    pub tokens: usize,
    pub d: usize,
    pub n: usize,
    pub k: usize,
    pub t_tuned: usize,
}

impl Sizes {
    /// SmolLM2-135M's FFN at T = 512 (the issue 2 target) and a 1024³ matmul.
    pub const FULL: Sizes = Sizes {
        matmul: 1024,
        tokens: 512,
        d: 576,
        n: 1536,
        k: 288,
        t_tuned: 714,
    };
    /// For a discrete GPU: the same FFN, a 2048³ matmul.
    pub const GPU: Sizes = Sizes {
        matmul: 2048,
        ..Sizes::FULL
    };
    /// For a software Vulkan (lavapipe, ≈ 0.5 GFLOP/s): every row in well under a second.
    pub const SOFTWARE: Sizes = Sizes {
        matmul: 128,
        tokens: 64,
        d: 96,
        n: 256,
        k: 48,
        t_tuned: 120,
    };
}

/// The sizes the wgpu rows use on `adapter`: small on a software Vulkan.
pub fn wgpu_sizes(adapter: &apex_wgpu::AdapterSummary) -> Sizes {
    if adapter.software {
        Sizes::SOFTWARE
    } else {
        Sizes::GPU
    }
}

/// One row of the bench table.
pub struct Workload {
    /// Criterion group and function id (`target/criterion/<group>/<id>`).
    pub group: String,
    pub id: &'static str,
    pub shape: String,
    /// The id (same group) whose time is the ratio's denominator.
    pub baseline: &'static str,
    /// Floating-point operations of one iteration (2 per multiply-add).
    pub flops: f64,
}

fn gemm_flops(m: usize, n: usize, k: usize) -> f64 {
    2.0 * (m * n * k) as f64
}

/// Which backend a table is for: the wgpu one adds the composite (unfused)
/// Monarch rows that its fused kernels are measured against, and has no
/// ndarray row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Cpu,
    Wgpu,
}

impl Target {
    /// Prefix of the criterion group names.
    pub fn group_prefix(self) -> &'static str {
        match self {
            Target::Cpu => "",
            Target::Wgpu => "wgpu-",
        }
    }
}

/// Every benchmark of `target` at `sizes`, in table order.
pub fn workloads(target: Target, sizes: Sizes) -> Vec<Workload> {
    let Sizes {
        matmul: mm,
        tokens: t,
        d,
        n,
        k,
        t_tuned: tt,
    } = sizes;
    let b = apex_core::find_divisor(k, false);
    let p = k / b;
    let monarch_fwd = 2.0 * gemm_flops(t, k, p);
    let prefix = target.group_prefix();
    let row = |group: &str, id, shape: String, baseline, flops| Workload {
        group: format!("{prefix}{group}"),
        id,
        shape,
        baseline,
        flops,
    };
    let square = format!("{mm}x{mm}x{mm} f32");
    let monarch_shape = format!("T={t} k={k} (b={b},p={p})");
    let mut rows = vec![row(
        "matmul",
        "apex-gemm",
        square.clone(),
        if target == Target::Cpu {
            "ndarray-dot"
        } else {
            "apex-gemm"
        },
        gemm_flops(mm, mm, mm),
    )];
    if target == Target::Cpu {
        rows.push(row(
            "matmul",
            "ndarray-dot",
            square,
            "ndarray-dot",
            gemm_flops(mm, mm, mm),
        ));
    }
    rows.push(row(
        "monarch",
        "forward",
        monarch_shape.clone(),
        "dense-kxk-forward",
        monarch_fwd,
    ));
    if target == Target::Wgpu {
        rows.push(row(
            "monarch",
            "forward-composite",
            monarch_shape.clone(),
            "dense-kxk-forward",
            monarch_fwd,
        ));
    }
    rows.push(row(
        "monarch",
        "dense-kxk-forward",
        format!("T={t} k={k} dense"),
        "dense-kxk-forward",
        gemm_flops(t, k, k),
    ));
    rows.push(row(
        "monarch",
        "forward-backward",
        monarch_shape.clone(),
        "dense-kxk-forward",
        3.0 * monarch_fwd,
    ));
    if target == Target::Wgpu {
        rows.push(row(
            "monarch",
            "forward-backward-composite",
            monarch_shape,
            "dense-kxk-forward",
            3.0 * monarch_fwd,
        ));
    }
    rows.push(row(
        "ffn-pair",
        "dense",
        format!("d={d} N={n} T={t} fwd+bwd"),
        "dense",
        6.0 * gemm_flops(t, n, d),
    ));
    rows.push(row(
        "ffn-pair",
        "apex",
        format!("d={d} N={n} k={k} t={tt} T={t} fwd+bwd"),
        "dense",
        4.0 * gemm_flops(t, n, d) + 2.0 * gemm_flops(tt, d, t) + 4.0 * monarch_fwd,
    ));
    rows
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
    pub sizes: Sizes,
    pub x: B::Tensor,
    pub w_up: B::Tensor,
    pub w_down: B::Tensor,
    pub grad_out: B::Tensor,
}

/// The same pair with APEX modules: MixColumn up (rows [0,t) tuned) → SiLU →
/// MixRow down (columns [0,t) tuned), one shared mixer.
pub struct ApexPair<B: Backend> {
    pub sizes: Sizes,
    pub x: B::Tensor,
    pub up: MixColumn<B>,
    pub down: MixRow<B>,
    pub mixer: Mixer<B>,
    pub grad_out: B::Tensor,
}

impl<B: Backend> DensePair<B> {
    pub fn new(backend: &B, sizes: Sizes) -> Result<Self> {
        let (t, d, n) = (sizes.tokens, sizes.d, sizes.n);
        Ok(DensePair {
            sizes,
            x: random_tensor(backend, &[t, d], 1.0, 1)?,
            w_up: random_tensor(backend, &[n, d], 0.05, 2)?,
            w_down: random_tensor(backend, &[d, n], 0.05, 3)?,
            grad_out: random_tensor(backend, &[t, d], 1.0, 4)?,
        })
    }

    /// One forward + backward; returns ∂X so nothing is optimised away.
    pub fn step(&self, backend: &B) -> Result<B::Tensor> {
        let (t, d, n) = (self.sizes.tokens, self.sizes.d, self.sizes.n);
        let xv = MatView::full(t, d);
        let hv = MatView::full(t, n);
        let h = ops::matmul(backend, &self.x, xv, &self.w_up, MatView::full(n, d).t())?;
        let mut a = backend.empty(&[t, n])?;
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
        let mut silu_grad = backend.empty(&[t, n])?;
        backend.unary(UnaryOp::SiluGrad, &h, hv, &mut silu_grad, hv)?;
        let mut grad_h = backend.empty(&[t, n])?;
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
    pub fn new(backend: &B, sizes: Sizes) -> Result<Self> {
        let dense = DensePair::new(backend, sizes)?;
        let (k, t) = (sizes.k, sizes.t_tuned);
        Ok(ApexPair {
            sizes,
            up: MixColumn::new(backend, &dense.w_up, None, k, t, true)?,
            down: MixRow::new(backend, &dense.w_down, None, k, t, true)?,
            mixer: Mixer::new(backend, k, MonarchInit::Noise, false, 5)?,
            x: dense.x,
            grad_out: dense.grad_out,
        })
    }

    /// One forward + backward with gradients for S, c, v, M and ∂X only.
    pub fn step(&self, backend: &B) -> Result<B::Tensor> {
        let (t, n) = (self.sizes.tokens, self.sizes.n);
        let hv = MatView::full(t, n);
        let (h, up_cache) = self.up.forward(backend, &self.mixer, &self.x)?;
        let mut a = backend.empty(&[t, n])?;
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
        let mut silu_grad = backend.empty(&[t, n])?;
        backend.unary(UnaryOp::SiluGrad, &h, hv, &mut silu_grad, hv)?;
        let mut grad_h = backend.empty(&[t, n])?;
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
    tokens: usize,
}

impl<B: Backend> MonarchBench<B> {
    pub fn new(backend: &B, sizes: Sizes) -> Result<Self> {
        let monarch = Monarch::new(backend, sizes.k, MonarchInit::Noise, false, 7)?;
        Ok(MonarchBench {
            dense: monarch.dense(backend)?,
            x: random_tensor(backend, &[sizes.tokens, sizes.k], 1.0, 8)?,
            tokens: sizes.tokens,
            monarch,
        })
    }

    /// The same map as one dense k×k GEMM (what a naive implementation does).
    pub fn dense_forward(&self, backend: &B) -> Result<B::Tensor> {
        let k = self.monarch.size();
        ops::matmul(
            backend,
            &self.x,
            MatView::full(self.tokens, k),
            &self.dense,
            MatView::full(k, k).t(),
        )
    }

    /// X·Mᵀ as the two-GEMM composite (block matmuls with the permutations in
    /// their strides), bypassing any fused override of the backend.
    pub fn forward_composite(&self, backend: &B) -> Result<B::Tensor> {
        let view = MatView::full(self.tokens, self.monarch.size());
        let mut out = backend.zeros(&[self.tokens, self.monarch.size()])?;
        self.monarch
            .forward_composite(backend, &self.x, view, ops::zero::<B>(), &mut out, view)?;
        Ok(out)
    }

    /// Forward, transposed apply and both factor gradients (`x` doubles as the
    /// output gradient), fused through the backend's overrides or as composites.
    pub fn forward_backward(&self, backend: &B, fused: bool) -> Result<MonarchGrads<B>> {
        let (n, k) = (self.tokens, self.monarch.size());
        let view = MatView::full(n, k);
        let zero = ops::zero::<B>();
        let mut out = backend.zeros(&[n, k])?;
        let mut grad_x = backend.zeros(&[n, k])?;
        let m = &self.monarch;
        let (stage1, mid) = if fused {
            (
                m.forward_into(backend, &self.x, view, zero, &mut out, view)?,
                m.apply_transposed_into(backend, &self.x, view, zero, &mut grad_x, view)?,
            )
        } else {
            (
                m.forward_composite(backend, &self.x, view, zero, &mut out, view)?,
                m.apply_transposed_composite(backend, &self.x, view, zero, &mut grad_x, view)?,
            )
        };
        let mut grads = MonarchGrads::zeros(backend, m)?;
        m.accumulate_grads(
            backend, &self.x, view, &stage1, &self.x, view, &mid, zero, &mut grads,
        )?;
        Ok(grads)
    }
}
