//! Primitive-level cross-checks: every [`Backend`] primitive on random
//! strided views (row-major, column-major, padded, interleaved, offset,
//! broadcast batch entries), compared with the CPU reference in f64.
//!
//! Whole buffers are compared, not just the views, so a write outside the
//! output view fails too; with β = 0 the output buffer starts as NaN, so
//! reading it (instead of overwriting) fails as well. Besides random shapes,
//! each run includes fixed shapes that reach the size-dependent paths of a
//! GPU backend (large tiles, split-K, fused Monarch with several row tiles).

use apex_core::{ops, ApexError, Backend, BatchView, BinaryOp, Element, MatView, Monarch, UnaryOp};
use apex_cpu::CpuBackend;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How large the random shapes get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// Dimensions up to ~40 (fast on emulators and CPUs).
    Small,
    /// Dimensions up to ~600 and K up to ~3000 (for real devices).
    Large,
}

impl Scale {
    fn max_dim(self) -> usize {
        match self {
            Scale::Small => 40,
            Scale::Large => 600,
        }
    }
}

/// A host buffer and the view of it an operand uses.
#[derive(Clone, Debug)]
struct Operand {
    data: Vec<f64>,
    view: MatView,
}

/// A random non-self-overlapping layout of a `rows × cols` view.
fn random_view(rng: &mut StdRng, rows: usize, cols: usize) -> MatView {
    let offset = if rng.random_bool(0.5) {
        rng.random_range(0..5)
    } else {
        0
    };
    match rng.random_range(0..4) {
        0 => MatView::full(rows, cols),
        1 => MatView::full(cols, rows).t(),
        2 => MatView {
            offset,
            rows,
            cols,
            row_stride: cols + rng.random_range(1..4),
            col_stride: 1,
        },
        _ => {
            let step = rng.random_range(2..4);
            MatView {
                offset,
                rows,
                cols,
                row_stride: cols.max(1) * step + rng.random_range(0..2),
                col_stride: step,
            }
        }
    }
}

/// `len` values in ±1, rounded through f32 so every backend sees the same inputs.
fn random_values(rng: &mut StdRng, len: usize) -> Vec<f64> {
    (0..len)
        .map(|_| rng.random_range(-1.0f64..=1.0) as f32 as f64)
        .collect()
}

/// A buffer holding a random layout of a `rows × cols` view (plus slack),
/// filled with values in ±1.
fn operand(rng: &mut StdRng, rows: usize, cols: usize) -> Operand {
    let view = random_view(rng, rows, cols);
    let len = view.extent() + rng.random_range(0..3);
    Operand {
        data: random_values(rng, len),
        view,
    }
}

/// One check's outcome: the largest error relative to the output's scale.
fn compare(what: &str, got: &[f64], want: &[f64], rtol: f64) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!(
            "{what}: {} elements, expected {}",
            got.len(),
            want.len()
        ));
    }
    let scale = want
        .iter()
        .filter(|w| w.is_finite())
        .fold(1e-30f64, |m, w| m.max(w.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let ok = if w.is_nan() {
            g.is_nan()
        } else {
            (g - w).abs() <= rtol * (scale + w.abs())
        };
        if !ok {
            return Err(format!(
                "{what}: element {i} is {g}, expected {w} (rtol {rtol}, scale {scale:.3e})"
            ));
        }
    }
    Ok(())
}

fn up<B: Backend>(backend: &B, data: &[f64]) -> B::Tensor {
    ops::upload_f64(backend, data, &[data.len()]).expect("upload")
}

fn down<B: Backend>(backend: &B, t: &B::Tensor) -> Vec<f64> {
    ops::download_f64(backend, t).expect("download")
}

/// Runs `op` on `backend` and on the f64 CPU reference with the same host
/// buffers; compares the written buffer.
fn cross_check<B: Backend>(
    backend: &B,
    what: &str,
    rtol: f64,
    inputs: &[&Operand],
    output: &Operand,
    op: &dyn Fn(&dyn Exec) -> apex_core::Result<()>,
) -> Result<(), String> {
    let cpu = CpuBackend::<f64>::new();
    let want = run_on(&cpu, inputs, output, op).map_err(|e| format!("{what}: reference: {e}"))?;
    let got = run_on(backend, inputs, output, op).map_err(|e| format!("{what}: {e}"))?;
    compare(what, &got, &want, rtol)
}

/// Object-safe access to the primitives, so one closure drives both backends.
trait Exec {
    fn gemm(
        &self,
        batch: usize,
        alpha: f64,
        a: BatchView,
        b: BatchView,
        beta: f64,
        c: BatchView,
    ) -> apex_core::Result<()>;
    fn axpby(&self, alpha: f64, x: MatView, beta: f64, y: MatView) -> apex_core::Result<()>;
    fn binary(
        &self,
        op: BinaryOp,
        x: MatView,
        z: MatView,
        beta: f64,
        y: MatView,
    ) -> apex_core::Result<()>;
    fn scale_columns(
        &self,
        x: MatView,
        v_offset: usize,
        beta: f64,
        y: MatView,
    ) -> apex_core::Result<()>;
    fn column_dot(
        &self,
        x: MatView,
        z: MatView,
        beta: f64,
        out_offset: usize,
    ) -> apex_core::Result<()>;
    fn unary(&self, op: UnaryOp, x: MatView, y: MatView) -> apex_core::Result<()>;
    fn fill(&self, y: MatView, value: f64) -> apex_core::Result<()>;
}

/// Inputs 0, 1 are the first two operands (x/a, z/b); the output is `out`.
struct Bound<'a, B: Backend> {
    backend: &'a B,
    inputs: Vec<B::Tensor>,
    out: std::cell::RefCell<B::Tensor>,
}

impl<B: Backend> Exec for Bound<'_, B> {
    fn gemm(
        &self,
        batch: usize,
        alpha: f64,
        a: BatchView,
        b: BatchView,
        beta: f64,
        c: BatchView,
    ) -> apex_core::Result<()> {
        self.backend.gemm(
            batch,
            B::Elem::from_f64(alpha),
            &self.inputs[0],
            a,
            &self.inputs[1],
            b,
            B::Elem::from_f64(beta),
            &mut self.out.borrow_mut(),
            c,
        )
    }
    fn axpby(&self, alpha: f64, x: MatView, beta: f64, y: MatView) -> apex_core::Result<()> {
        self.backend.axpby(
            B::Elem::from_f64(alpha),
            &self.inputs[0],
            x,
            B::Elem::from_f64(beta),
            &mut self.out.borrow_mut(),
            y,
        )
    }
    fn binary(
        &self,
        op: BinaryOp,
        x: MatView,
        z: MatView,
        beta: f64,
        y: MatView,
    ) -> apex_core::Result<()> {
        self.backend.binary(
            op,
            &self.inputs[0],
            x,
            &self.inputs[1],
            z,
            B::Elem::from_f64(beta),
            &mut self.out.borrow_mut(),
            y,
        )
    }
    fn scale_columns(
        &self,
        x: MatView,
        v_offset: usize,
        beta: f64,
        y: MatView,
    ) -> apex_core::Result<()> {
        self.backend.scale_columns(
            &self.inputs[0],
            x,
            &self.inputs[1],
            v_offset,
            B::Elem::from_f64(beta),
            &mut self.out.borrow_mut(),
            y,
        )
    }
    fn column_dot(
        &self,
        x: MatView,
        z: MatView,
        beta: f64,
        out_offset: usize,
    ) -> apex_core::Result<()> {
        self.backend.column_dot(
            &self.inputs[0],
            x,
            &self.inputs[1],
            z,
            B::Elem::from_f64(beta),
            &mut self.out.borrow_mut(),
            out_offset,
        )
    }
    fn unary(&self, op: UnaryOp, x: MatView, y: MatView) -> apex_core::Result<()> {
        self.backend
            .unary(op, &self.inputs[0], x, &mut self.out.borrow_mut(), y)
    }
    fn fill(&self, y: MatView, value: f64) -> apex_core::Result<()> {
        self.backend
            .fill(&mut self.out.borrow_mut(), y, B::Elem::from_f64(value))
    }
}

fn run_on<B: Backend>(
    backend: &B,
    inputs: &[&Operand],
    output: &Operand,
    op: &dyn Fn(&dyn Exec) -> apex_core::Result<()>,
) -> apex_core::Result<Vec<f64>> {
    let bound = Bound {
        backend,
        inputs: inputs.iter().map(|o| up(backend, &o.data)).collect(),
        out: std::cell::RefCell::new(up(backend, &output.data)),
    };
    op(&bound)?;
    let out = bound.out.into_inner();
    Ok(down(backend, &out))
}

/// A random batched GEMM of the given sizes with random layouts.
fn gemm_case<B: Backend>(
    backend: &B,
    rng: &mut StdRng,
    (batch, m, n, k): (usize, usize, usize, usize),
) -> Result<(), String> {
    let mut batched = |rows, cols, may_broadcast: bool| {
        let view = random_view(rng, rows, cols);
        let entry = view.extent().max(1);
        let stride = if may_broadcast && rng.random_bool(0.25) {
            0
        } else {
            entry + rng.random_range(0..2)
        };
        let len = view.extent() + stride * batch.saturating_sub(1) + 1;
        (BatchView::strided(view, stride), len)
    };
    let (a, a_len) = batched(m, k, true);
    let (b, b_len) = batched(k, n, true);
    let (c, c_len) = batched(m, n, false);
    let alpha = rng.random_range(-1.5..1.5);
    let beta = if rng.random_bool(0.5) {
        0.0
    } else {
        rng.random_range(-1.5..1.5)
    };
    let what = format!(
        "gemm batch={batch} m={m} n={n} k={k} α={alpha:.2} β={beta:.2} a={a:?} b={b:?} c={c:?}"
    );
    cross_check_gemm(
        backend,
        rng,
        &what,
        (batch, alpha, beta),
        (a, a_len),
        (b, b_len),
        (c, c_len),
    )
}

/// Random A and B values and C (NaN-filled when β = 0, so a GEMM that reads C
/// then fails), drawn in that order; then `C = α·A·B + β·C` on `backend`
/// against the f64 CPU reference.
fn cross_check_gemm<B: Backend>(
    backend: &B,
    rng: &mut StdRng,
    what: &str,
    (batch, alpha, beta): (usize, f64, f64),
    (a, a_len): (BatchView, usize),
    (b, b_len): (BatchView, usize),
    (c, c_len): (BatchView, usize),
) -> Result<(), String> {
    let a_op = Operand {
        data: random_values(rng, a_len),
        view: a.mat,
    };
    let b_op = Operand {
        data: random_values(rng, b_len),
        view: b.mat,
    };
    let c_op = Operand {
        data: if beta == 0.0 {
            vec![f64::NAN; c_len]
        } else {
            random_values(rng, c_len)
        },
        view: c.mat,
    };
    cross_check(backend, what, 2e-4, &[&a_op, &b_op], &c_op, &|e| {
        e.gemm(batch, alpha, a, b, beta, c)
    })
}

/// How [`gemm_layout_cases`] stores one operand: a leading offset, the matrix
/// row-major or transposed, rows padded by `pad`; batch entries follow each
/// other (entry size rounded up to a multiple of 4 when `offset` and `pad`
/// are, so alignment holds in every entry).
#[derive(Clone, Copy, Debug)]
struct Placement {
    offset: usize,
    transposed: bool,
    pad: usize,
}

impl Placement {
    fn place(self, rows: usize, cols: usize, batch: usize) -> (BatchView, usize) {
        let (stored_rows, stored_cols) = if self.transposed {
            (cols, rows)
        } else {
            (rows, cols)
        };
        let ld = stored_cols + self.pad;
        let mat = MatView {
            offset: self.offset,
            rows: stored_rows,
            cols: stored_cols,
            row_stride: ld,
            col_stride: 1,
        };
        let mat = if self.transposed { mat.t() } else { mat };
        let entry = if (self.offset | self.pad) % 4 == 0 {
            (stored_rows * ld).next_multiple_of(4)
        } else {
            stored_rows * ld + 1
        };
        (
            BatchView::strided(mat, entry),
            self.offset + entry * batch.max(1) + 1,
        )
    }
}

/// GEMMs on fixed layouts that a vectorising GPU backend loads differently:
/// unit-stride operands whose offsets and strides are multiples of 4 (vector
/// loads along either dimension), the same with a misaligned offset or
/// stride, and extents that are not multiples of 4; at sizes that reach the
/// small, medium and large tiles of the wgpu backend.
fn gemm_layout_cases<B: Backend>(backend: &B, rng: &mut StdRng) -> Result<(), String> {
    let layouts = [
        Placement {
            offset: 0,
            transposed: false,
            pad: 0,
        },
        Placement {
            offset: 4,
            transposed: false,
            pad: 4,
        },
        Placement {
            offset: 8,
            transposed: true,
            pad: 4,
        },
        Placement {
            offset: 1,
            transposed: false,
            pad: 0,
        },
        Placement {
            offset: 2,
            transposed: true,
            pad: 1,
        },
    ];
    // (batch, m, n, k): multiples of 4 and not; the last two are large
    // enough for wgpu's 64- and 128-wide tiles and run fewer layout pairs.
    let shapes = [
        (2, 36, 44, 20),
        (2, 35, 43, 21),
        (32, 124, 124, 36),
        (32, 252, 196, 20),
    ];
    for (s, &(batch, m, n, k)) in shapes.iter().enumerate() {
        for (i, &la) in layouts.iter().enumerate() {
            for (j, &lb) in layouts.iter().enumerate() {
                if s >= 2 && j != (i + 1) % layouts.len() {
                    continue;
                }
                let lc = layouts[(i + j) % layouts.len()];
                let (a, a_len) = la.place(m, k, batch);
                let (b, b_len) = lb.place(k, n, batch);
                let (c, c_len) = lc.place(m, n, batch);
                let beta = if (i + j) % 2 == 0 { 0.0 } else { 0.5 };
                let what = format!(
                    "gemm layout batch={batch} m={m} n={n} k={k} β={beta} a={la:?} b={lb:?} c={lc:?}"
                );
                cross_check_gemm(
                    backend,
                    rng,
                    &what,
                    (batch, 0.75, beta),
                    (a, a_len),
                    (b, b_len),
                    (c, c_len),
                )?;
            }
        }
    }
    Ok(())
}

/// A batched GEMM whose batch entries are interleaved element by element
/// (batch stride 1, as in the Monarch weight gradients):
/// A[λ](i, l) = a[l·m·batch + i·batch + λ], B[λ](l, j) = b[l·n·batch + j·batch + λ].
fn interleaved_gemm_case<B: Backend>(
    backend: &B,
    rng: &mut StdRng,
    (batch, m, n, k): (usize, usize, usize, usize),
) -> Result<(), String> {
    let a = BatchView::strided(
        MatView {
            offset: 0,
            rows: m,
            cols: k,
            row_stride: batch,
            col_stride: m * batch,
        },
        1,
    );
    let b = BatchView::strided(
        MatView {
            offset: 0,
            rows: k,
            cols: n,
            row_stride: n * batch,
            col_stride: batch,
        },
        1,
    );
    let c = BatchView::strided(MatView::full(m, n), m * n);
    let a_op = Operand {
        data: random_values(rng, k * m * batch),
        view: a.mat,
    };
    let b_op = Operand {
        data: random_values(rng, k * n * batch),
        view: b.mat,
    };
    let beta = rng.random_range(-1.0..1.0);
    let c_op = Operand {
        data: random_values(rng, batch * m * n),
        view: c.mat,
    };
    let what = format!("interleaved gemm batch={batch} m={m} n={n} k={k} β={beta:.2}");
    cross_check(backend, &what, 2e-4, &[&a_op, &b_op], &c_op, &|e| {
        e.gemm(batch, 1.0, a, b, beta, c)
    })
}

/// Elementwise ops, column scaling, column dots and fills on one random shape.
fn elementwise_cases<B: Backend>(
    backend: &B,
    rng: &mut StdRng,
    rows: usize,
    cols: usize,
) -> Result<(), String> {
    let x = operand(rng, rows, cols);
    let z = {
        let mut z = operand(rng, rows, cols);
        // Keep divisors away from zero.
        for v in &mut z.data {
            *v = v.signum() * (0.5 + v.abs());
        }
        z
    };
    let y = operand(rng, rows, cols);
    let nan_y = Operand {
        data: vec![f64::NAN; y.data.len()],
        view: y.view,
    };
    let beta = rng.random_range(-1.5..1.5);
    let shape = format!("{rows}×{cols} x={:?} y={:?}", x.view, y.view);
    let (xv, zv, yv) = (x.view, z.view, y.view);
    for (out, b) in [(&y, beta), (&nan_y, 0.0)] {
        cross_check(
            backend,
            &format!("axpby β={b} {shape}"),
            1e-5,
            &[&x],
            out,
            &|e| e.axpby(0.75, xv, b, yv),
        )?;
        for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div] {
            cross_check(
                backend,
                &format!("{op:?} β={b} {shape}"),
                1e-5,
                &[&x, &z],
                out,
                &|e| e.binary(op, xv, zv, b, yv),
            )?;
        }
        let v_offset = rng.random_range(0..3);
        let v = Operand {
            data: random_values(rng, v_offset + cols + 1),
            view: MatView::row_vector(cols),
        };
        cross_check(
            backend,
            &format!("scale_columns β={b} {shape}"),
            1e-5,
            &[&x, &v],
            out,
            &|e| e.scale_columns(xv, v_offset, b, yv),
        )?;
    }
    let positive = Operand {
        data: x.data.iter().map(|v| v.abs() + 0.01).collect(),
        view: x.view,
    };
    for op in [
        UnaryOp::Silu,
        UnaryOp::SiluGrad,
        UnaryOp::Sqrt,
        UnaryOp::Square,
        UnaryOp::Exp,
        UnaryOp::Neg,
    ] {
        let input = if op == UnaryOp::Sqrt { &positive } else { &x };
        cross_check(
            backend,
            &format!("{op:?} {shape}"),
            1e-5,
            &[input],
            &y,
            &|e| e.unary(op, xv, yv),
        )?;
    }
    cross_check(backend, &format!("fill {shape}"), 0.0, &[], &y, &|e| {
        e.fill(yv, -2.5)
    })?;
    let out_offset = rng.random_range(0..3);
    for b in [0.0, beta] {
        let out = Operand {
            data: if b == 0.0 {
                vec![f64::NAN; out_offset + cols + 2]
            } else {
                random_values(rng, out_offset + cols + 2)
            },
            view: MatView::row_vector(cols),
        };
        cross_check(
            backend,
            &format!("column_dot β={b} {shape}"),
            1e-4,
            &[&x, &z],
            &out,
            &|e| e.column_dot(xv, zv, b, out_offset),
        )?;
    }
    Ok(())
}

fn gather_cases<B: Backend>(
    backend: &B,
    rng: &mut StdRng,
    rows: usize,
    cols: usize,
) -> Result<(), String> {
    let data = random_values(rng, rows * cols);
    let cpu = CpuBackend::<f64>::new();
    let x_ref = ops::upload_f64(&cpu, &data, &[rows, cols]).expect("upload");
    let x = ops::upload_f64(backend, &data, &[rows, cols]).map_err(|e| e.to_string())?;
    let count = rng.random_range(0..(2 * rows.max(cols)) + 1);
    let row_index: Vec<usize> = (0..count)
        .map(|_| rng.random_range(0..rows.max(1)))
        .collect();
    let col_index: Vec<usize> = (0..count)
        .map(|_| rng.random_range(0..cols.max(1)))
        .collect();
    if rows > 0 {
        let want = down(
            &cpu,
            &cpu.gather_rows(&x_ref, &row_index).expect("reference"),
        );
        let got = backend
            .gather_rows(&x, &row_index)
            .map_err(|e| e.to_string())?;
        compare(
            &format!("gather_rows {rows}×{cols}"),
            &down(backend, &got),
            &want,
            0.0,
        )?;
    }
    if cols > 0 {
        let want = down(
            &cpu,
            &cpu.gather_columns(&x_ref, &col_index).expect("reference"),
        );
        let got = backend
            .gather_columns(&x, &col_index)
            .map_err(|e| e.to_string())?;
        compare(
            &format!("gather_columns {rows}×{cols}"),
            &down(backend, &got),
            &want,
            0.0,
        )?;
    }
    Ok(())
}

/// Every primitive on `cases` random shapes plus the fixed path-reaching
/// shapes of `scale`; the first mismatch is returned with its description.
pub fn check_primitives<B: Backend>(
    backend: &B,
    scale: Scale,
    cases: usize,
    seed: u64,
) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let max = scale.max_dim();
    let mut gemms: Vec<(usize, usize, usize, usize)> = match scale {
        // Emulators report 4 multiprocessors: 256² fills them with 128² tiles;
        // 40×36 over K = 700 makes them split K.
        Scale::Small => vec![
            (1, 256, 260, 24),
            (2, 40, 36, 700),
            (3, 1, 1, 1),
            (2, 0, 3, 4),
        ],
        Scale::Large => vec![
            (1, 1024, 1000, 520),
            (43, 48, 48, 4096),
            (24, 32, 32, 2048),
            (1, 300, 7, 3000),
        ],
    };
    for _ in 0..cases {
        gemms.push((
            rng.random_range(1..5),
            rng.random_range(0..max),
            rng.random_range(1..max),
            rng.random_range(0..max),
        ));
    }
    for shape in gemms {
        gemm_case(backend, &mut rng, shape)?;
    }
    // Own stream: the random cases after this one keep their values.
    gemm_layout_cases(backend, &mut StdRng::seed_from_u64(seed ^ 0x5eed))?;
    let interleaved: &[(usize, usize, usize, usize)] = match scale {
        // 40 entries: two lane groups, the second partly empty; K = 600 splits.
        Scale::Small => &[(40, 7, 9, 600), (17, 3, 33, 20)],
        Scale::Large => &[(43, 48, 48, 4096), (24, 32, 32, 4096), (64, 64, 64, 777)],
    };
    for &shape in interleaved {
        interleaved_gemm_case(backend, &mut rng, shape)?;
    }
    for _ in 0..cases {
        let (rows, cols) = (rng.random_range(0..max), rng.random_range(1..max));
        elementwise_cases(backend, &mut rng, rows, cols)?;
        gather_cases(backend, &mut rng, rows, cols)?;
    }
    elementwise_cases(backend, &mut rng, 1, 1)?;
    elementwise_cases(backend, &mut rng, max, 1)?;
    Ok(())
}

/// A backend's Monarch override (`forward_into`, `apply_transposed_into`),
/// including the stage-1 intermediate it returns, against the CPU f64
/// reference composite, on strided row views with β ≠ 0 and β = 0.
pub fn check_monarch_override<B: Backend>(
    backend: &B,
    scale: Scale,
    seed: u64,
) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(seed);
    // (b, p, rows): p % 4 == 0 and not, rows not a multiple of any row tile.
    let shapes: &[(usize, usize, usize)] = match scale {
        Scale::Small => &[
            (2, 2, 1),
            (3, 4, 5),
            (4, 3, 9),
            (5, 8, 35),
            (1, 7, 3),
            (6, 4, 70),
            // Blocks of 32 and more: a GPU backend may hand these to the
            // composite (wgpu does).
            (2, 32, 5),
            (3, 36, 7),
        ],
        Scale::Large => &[
            (43, 48, 1000),
            (24, 32, 777),
            (16, 18, 512),
            (64, 64, 300),
            (7, 5, 4099),
        ],
    };
    let cpu = CpuBackend::<f64>::new();
    for &(b, p, n) in shapes {
        let k = b * p;
        let w1 = random_values(&mut rng, b * p * p);
        let w2 = random_values(&mut rng, b * p * p);
        fn make<C: Backend>(
            be: &C,
            w1: &[f64],
            w2: &[f64],
            shape: &[usize],
        ) -> apex_core::Result<Monarch<C>> {
            Monarch::from_factors(
                be,
                ops::upload_f64(be, w1, shape)?,
                ops::upload_f64(be, w2, shape)?,
            )
        }
        let reference = make(&cpu, &w1, &w2, &[b, p, p]).expect("reference monarch");
        let monarch = make(backend, &w1, &w2, &[b, p, p]).map_err(|e| e.to_string())?;
        // x: columns [2, 2+k) of a wider matrix; out: a padded view, β random.
        let width = k + 5;
        let x_data = random_values(&mut rng, n * width);
        let x_view = MatView::full(n, width).columns(2..2 + k);
        let out_stride = k + rng.random_range(0..3);
        let out_view = MatView {
            offset: 1,
            rows: n,
            cols: k,
            row_stride: out_stride,
            col_stride: 1,
        };
        for (transposed, beta) in [(false, 0.7), (true, -0.4), (false, 0.0), (true, 0.0)] {
            let out_data = if beta == 0.0 {
                vec![f64::NAN; out_view.extent() + 1]
            } else {
                random_values(&mut rng, out_view.extent() + 1)
            };
            let what = format!("monarch b={b} p={p} n={n} transposed={transposed} β={beta}");
            let io = MonarchIo {
                transposed,
                x: &x_data,
                x_view,
                beta,
                out: &out_data,
                out_view,
            };
            let want = io
                .run(&cpu, &reference)
                .map_err(|e| format!("{what}: reference: {e}"))?;
            let got = io
                .run(backend, &monarch)
                .map_err(|e| format!("{what}: {e}"))?;
            compare(&format!("{what} out"), &got.0, &want.0, 2e-4)?;
            compare(&format!("{what} intermediate"), &got.1, &want.1, 2e-4)?;
        }
        // The whole backward: both products and the factor gradients (whose
        // GEMMs read the interleaved layout).
        let g_data = random_values(&mut rng, n * k);
        let what = format!("monarch backward b={b} p={p} n={n}");
        let want = monarch_backward(&cpu, &reference, &x_data, &g_data, n, k)
            .map_err(|e| format!("{what}: reference: {e}"))?;
        let got = monarch_backward(backend, &monarch, &x_data, &g_data, n, k)
            .map_err(|e| format!("{what}: {e}"))?;
        for (name, (g, w)) in ["∂x", "∂W1", "∂W2"].iter().zip(got.iter().zip(&want)) {
            compare(&format!("{what} {name}"), g, w, 2e-4)?;
        }
    }
    Ok(())
}

/// `Monarch::backward` for x = columns [2, 2+k) of `x_data` (n rows of
/// width k + 5) and a contiguous gradient: (∂x, ∂W1, ∂W2).
fn monarch_backward<C: Backend>(
    be: &C,
    monarch: &Monarch<C>,
    x_data: &[f64],
    g_data: &[f64],
    n: usize,
    k: usize,
) -> apex_core::Result<[Vec<f64>; 3]> {
    let wide = ops::upload_f64(be, x_data, &[n, k + 5])?;
    let x = ops::copy_view(be, &wide, MatView::full(n, k + 5).columns(2..2 + k))?;
    let g = ops::upload_f64(be, g_data, &[n, k])?;
    let (grad_x, grads) = monarch.backward(be, &x, &g)?;
    Ok([
        ops::download_f64(be, &grad_x)?,
        ops::download_f64(be, &grads.blkdiag1)?,
        ops::download_f64(be, &grads.blkdiag2)?,
    ])
}

/// One Monarch application on host buffers.
struct MonarchIo<'a> {
    transposed: bool,
    x: &'a [f64],
    x_view: MatView,
    beta: f64,
    out: &'a [f64],
    out_view: MatView,
}

impl MonarchIo<'_> {
    /// The output buffer and the returned intermediate.
    fn run<C: Backend>(
        &self,
        be: &C,
        monarch: &Monarch<C>,
    ) -> apex_core::Result<(Vec<f64>, Vec<f64>)> {
        let x = ops::upload_f64(be, self.x, &[self.x.len()])?;
        let mut out = ops::upload_f64(be, self.out, &[self.out.len()])?;
        let beta = C::Elem::from_f64(self.beta);
        let mid = if self.transposed {
            monarch.apply_transposed_into(be, &x, self.x_view, beta, &mut out, self.out_view)?
        } else {
            monarch.forward_into(be, &x, self.x_view, beta, &mut out, self.out_view)?
        };
        Ok((ops::download_f64(be, &out)?, ops::download_f64(be, &mid)?))
    }
}

/// Out-of-bounds views, bad indices and self-overlapping outputs must be
/// typed errors on every backend (never a device fault).
pub fn check_errors<B: Backend>(backend: &B) -> Result<(), String> {
    let x = backend.zeros(&[4, 5]).map_err(|e| e.to_string())?;
    let mut y = backend.zeros(&[4, 5]).map_err(|e| e.to_string())?;
    let full = MatView::full(4, 5);
    let past_end = MatView { offset: 1, ..full };
    let expect = |what: &str, r: apex_core::Result<()>, ok: fn(&ApexError) -> bool| match r {
        Err(e) if ok(&e) => Ok(()),
        other => Err(format!("{what}: expected a typed error, got {other:?}")),
    };
    let one = B::Elem::from_f64(1.0);
    let zero = B::Elem::from_f64(0.0);
    expect(
        "axpby past the end",
        backend.axpby(one, &x, past_end, zero, &mut y, full),
        |e| matches!(e, ApexError::ViewOutOfBounds { .. }),
    )?;
    expect(
        "gemm past the end",
        backend.gemm(
            2,
            one,
            &x,
            BatchView::strided(MatView::full(2, 5), 11),
            &x,
            BatchView::strided(MatView::full(5, 2), 3),
            zero,
            &mut y,
            BatchView::strided(MatView::full(2, 2), 10),
        ),
        |e| matches!(e, ApexError::ViewOutOfBounds { .. }),
    )?;
    let overlapping = MatView {
        row_stride: 2,
        ..MatView::full(4, 3)
    };
    expect(
        "self-overlapping output",
        backend.fill(&mut y, overlapping, one),
        |e| matches!(e, ApexError::InvalidConfig { .. }),
    )?;
    match backend.gather_rows(&x, &[0, 4]) {
        Err(ApexError::InvalidIndex { .. }) => {}
        other => return Err(format!("gather_rows out of range: got {other:?}")),
    }
    match backend.gather_columns(&x, &[5]) {
        Err(ApexError::InvalidIndex { .. }) => {}
        other => return Err(format!("gather_columns out of range: got {other:?}")),
    }
    Ok(())
}
