//! Operator tests: one generic body per property, instantiated for every
//! backend by `on_every_backend!`. Finite-difference gradient checks run in f64
//! on the CPU backend. Each property is checked against an independent
//! formulation (host loops written from the spec), never against itself.

use apex_conformance::backends::{self, Available};
use apex_conformance::{
    differentiable_inputs, primitives, random_case, run_case, transformer, Case, Op, Sizes,
};
use apex_core::transformer_ops::TransformerOps;
use apex_core::{
    ops, Backend, Element, MatView, MixColumn, MixRow, Mixer, MixerGrads, Monarch, MonarchInit,
    UnaryOp,
};
use apex_cpu::CpuBackend;
use libtest_mimic::{Arguments, Trial};

/// A named test body generic over the backend.
type GenericBody<B> = (&'static str, fn(&B));

/// Every generic body, instantiated for one backend type.
fn generic_bodies<B: Backend>() -> Vec<GenericBody<B>> {
    vec![
        ("monarch_spec_unit_test_1", monarch_spec_unit_test_1::<B>),
        ("monarch_spec_unit_test_2", monarch_spec_unit_test_2::<B>),
        (
            "monarch_dense_matches_the_block_formula",
            monarch_dense_matches_the_block_formula::<B>,
        ),
        (
            "monarch_forward_and_transposed_apply_match_dense",
            monarch_forward_and_transposed_apply_match_dense::<B>,
        ),
        (
            "mix_column_fused_forward_equals_unfused",
            mix_column_fused_forward_equals_unfused::<B>,
        ),
        (
            "mix_row_fused_forward_equals_unfused",
            mix_row_fused_forward_equals_unfused::<B>,
        ),
        (
            "mix_row_input_side_equals_weight_side",
            mix_row_input_side_equals_weight_side::<B>,
        ),
        (
            "function_is_preserved_at_stage_start",
            function_is_preserved_at_stage_start::<B>,
        ),
        ("shape_errors_are_typed", shape_errors_are_typed::<B>),
        (
            "primitives_match_the_cpu_reference",
            primitives_match_the_cpu_reference::<B>,
        ),
        (
            "monarch_override_matches_the_reference",
            monarch_override_matches_the_reference::<B>,
        ),
        (
            "bad_views_are_typed_errors",
            bad_views_are_typed_errors::<B>,
        ),
    ]
}

/// One trial per generic body for `backend`; an unavailable backend's trials
/// are ignored (reported as skipped, not passed) and the reason is printed.
fn backend_trials<B: Backend>(label: &str, backend: Available<B>, trials: &mut Vec<Trial>) {
    if let Err(why) = &backend {
        eprintln!("SKIPPED backend {label}: {why}");
    }
    for (name, body) in generic_bodies::<B>() {
        trials.push(backend_trial(format!("{name}::{label}"), &backend, body));
    }
}

/// The [`TransformerOps`] trials, for backends that implement them.
fn transformer_trials<B: TransformerOps>(
    label: &str,
    backend: &Available<B>,
    trials: &mut Vec<Trial>,
) {
    let bodies: [GenericBody<B>; 3] = [
        (
            "transformer_ops_match_the_cpu_reference",
            transformer_ops_match_the_cpu_reference::<B>,
        ),
        (
            "transformer_errors_are_typed",
            transformer_errors_are_typed::<B>,
        ),
        (
            "training_trajectory_matches_cpu_f32",
            training_trajectory_matches_cpu_f32::<B>,
        ),
    ];
    for (name, body) in bodies {
        trials.push(backend_trial(format!("{name}::{label}"), backend, body));
    }
}

/// A short APEX run and a short full fine-tuning run on `backend` follow the
/// cpu-f32 loss curves step by step and end with the same fused weights. The
/// host emulator (one OS thread per CUDA thread) runs a shorter APEX-only run.
fn training_trajectory_matches_cpu_f32<B: TransformerOps>(backend: &B) {
    use apex_conformance::trajectory::{compare_trajectories, run_trajectory, TrajectorySpec};
    let emulated = backend.name().contains("emulated");
    let specs = if emulated {
        vec![TrajectorySpec::tiny(apex_train::Method::Apex).with_steps(3)]
    } else {
        vec![
            TrajectorySpec::tiny(apex_train::Method::Apex),
            TrajectorySpec::tiny(apex_train::Method::Full),
        ]
    };
    for spec in specs {
        let want = run_trajectory(&CpuBackend::<f32>::new(), &spec).unwrap();
        let got = run_trajectory(backend, &spec).unwrap();
        compare_trajectories(&got, &want, 1e-3)
            .unwrap_or_else(|e| panic!("{} {}: {e}", backend.name(), spec.method.name()));
    }
}

fn transformer_ops_match_the_cpu_reference<B: TransformerOps>(backend: &B) {
    transformer::check_transformer_ops(backend, 31)
        .unwrap_or_else(|e| panic!("{}: {e}", backend.name()));
}

fn transformer_errors_are_typed<B: TransformerOps>(backend: &B) {
    transformer::check_transformer_errors(backend)
        .unwrap_or_else(|e| panic!("{}: {e}", backend.name()));
}

/// A trial running `body` on `backend`, or an ignored one when it is unavailable.
fn backend_trial<B: Backend>(name: String, backend: &Available<B>, body: fn(&B)) -> Trial {
    match backend {
        Ok(b) => {
            let b = b.clone();
            Trial::test(name, move || {
                body(&b);
                Ok(())
            })
        }
        Err(_) => Trial::test(name, || Ok(())).with_ignored_flag(true),
    }
}

fn main() {
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    backend_trials("cpu_f64", backends::cpu_f64(), &mut trials);
    backend_trials("cpu_f32", backends::cpu_f32(), &mut trials);
    transformer_trials("cpu_f64", &backends::cpu_f64(), &mut trials);
    transformer_trials("cpu_f32", &backends::cpu_f32(), &mut trials);
    #[cfg(feature = "wgpu")]
    {
        let wgpu = backends::wgpu();
        backend_trials("wgpu", wgpu.clone(), &mut trials);
        transformer_trials("wgpu", &wgpu, &mut trials);
        trials.push(backend_trial(
            "properties::backend_agrees_with_cpu_f64::wgpu".into(),
            &wgpu,
            properties::backend_agrees_with_cpu_f64,
        ));
    }
    #[cfg(feature = "cuda")]
    for (label, backend) in [
        ("cuda", backends::cuda()),
        ("cuda_emulated", backends::cuda_emulated()),
    ] {
        backend_trials(label, backend.clone(), &mut trials);
        transformer_trials(label, &backend, &mut trials);
        trials.push(backend_trial(
            format!("properties::backend_agrees_with_cpu_f64::{label}"),
            &backend,
            properties::backend_agrees_with_cpu_f64,
        ));
    }
    let plain: Vec<(&str, fn())> = vec![
        (
            "monarch_gradients_match_finite_differences",
            monarch_gradients_match_finite_differences,
        ),
        (
            "mix_column_gradients_match_finite_differences",
            mix_column_gradients_match_finite_differences,
        ),
        (
            "mix_row_gradients_match_finite_differences",
            mix_row_gradients_match_finite_differences,
        ),
        (
            "s2_gradients_match_finite_differences",
            s2_gradients_match_finite_differences,
        ),
        (
            "shared_mixer_gradients_accumulate_across_up_gate_down",
            shared_mixer_gradients_accumulate_across_up_gate_down,
        ),
        (
            "properties::mix_column_fusion_is_exact_and_backends_agree",
            properties::mix_column_fusion_is_exact_and_backends_agree,
        ),
        (
            "properties::mix_row_fusion_is_exact_and_backends_agree",
            properties::mix_row_fusion_is_exact_and_backends_agree,
        ),
        (
            "properties::gradients_match_a_random_directional_derivative",
            properties::gradients_match_a_random_directional_derivative,
        ),
    ];
    for (name, body) in plain {
        trials.push(Trial::test(name, move || {
            body();
            Ok(())
        }));
    }
    libtest_mimic::run(&args, trials).exit();
}

fn tol<B: Backend>() -> f64 {
    if <B::Elem as Element>::EPSILON < 1e-10 {
        1e-10
    } else {
        2e-4
    }
}

fn assert_close(what: &str, got: &[f64], want: &[f64], rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1e-30f64, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= rtol * scale + rtol * w.abs(),
            "{what}[{i}]: got {g}, want {w} (rtol {rtol})"
        );
    }
}

fn host_matmul_t(x: &[f64], rows: usize, inner: usize, w: &[f64], cols: usize) -> Vec<f64> {
    // x (rows×inner) · wᵀ (w: cols×inner)
    let mut out = vec![0.0; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            out[r * cols + c] = (0..inner)
                .map(|j| x[r * inner + j] * w[c * inner + j])
                .sum();
        }
    }
    out
}

/// M from spec §4.1's closed form: M[σ·b+λ, i·p+j] = Σ_ρ W2[λ,σ,ρ]·W1[i,a,j]
/// with f = ρ·b+λ, i = f / p, a = f mod p.
fn dense_from_formula(w1: &[f64], w2: &[f64], b: usize, p: usize) -> Vec<f64> {
    let k = b * p;
    let mut m = vec![0.0; k * k];
    for lambda in 0..b {
        for sigma in 0..p {
            for rho in 0..p {
                let f = rho * b + lambda;
                let (i, a) = (f / p, f % p);
                for j in 0..p {
                    m[(sigma * b + lambda) * k + i * p + j] +=
                        w2[(lambda * p + sigma) * p + rho] * w1[(i * p + a) * p + j];
                }
            }
        }
    }
    m
}

fn monarch_from<B: Backend>(backend: &B, w1: &[f64], w2: &[f64], b: usize, p: usize) -> Monarch<B> {
    let f1 = ops::upload_f64(backend, w1, &[b, p, p]).unwrap();
    let f2 = ops::upload_f64(backend, w2, &[b, p, p]).unwrap();
    Monarch::from_factors(backend, f1, f2).unwrap()
}

fn monarch_spec_unit_test_1<B: Backend>(backend: &B) {
    let (b, p) = (2, 2);
    let w1: Vec<f64> = (0..8).map(|n| 1.0 + n as f64).collect(); // 1 + 4i + 2a + j
    let w2: Vec<f64> = (0..8).map(|n| 10.0 + n as f64).collect();
    let m = monarch_from(backend, &w1, &w2, b, p);
    let dense = ops::download_f64(backend, &m.dense(backend).unwrap()).unwrap();
    let want = [
        10., 20., 55., 66., 42., 56., 105., 120., 12., 24., 65., 78., 48., 64., 119., 136.,
    ];
    assert_close("dense", &dense, &want, 0.0);
    let x = ops::upload_f64(backend, &[1., 2., 3., 4.], &[1, 4]).unwrap();
    let out = ops::download_f64(backend, &m.forward(backend, &x).unwrap()).unwrap();
    assert_close("forward", &out, &[479., 949., 567., 1077.], 0.0);
}

fn monarch_spec_unit_test_2<B: Backend>(backend: &B) {
    let (b, p) = (2, 3);
    let w1: Vec<f64> = (0..18).map(|n| ((n % 5) as f64) - 2.0).collect();
    let w2: Vec<f64> = (0..18).map(|n| ((n % 7) as f64) - 3.0).collect();
    let m = monarch_from(backend, &w1, &w2, b, p);
    let dense = ops::download_f64(backend, &m.dense(backend).unwrap()).unwrap();
    let want = [
        8., 3., -2., 0., -1., -2., -1., -2., 2., -2., -1., 0., -1., 0., 1., 0., 2., 4., 2., 4.,
        -4., 12., -3., -3., -3., -3., -3., 0., -2., -4., -2., -4., 4., -2., 2., 1.,
    ];
    assert_close("dense", &dense, &want, 0.0);
}

fn monarch_dense_matches_the_block_formula<B: Backend>(backend: &B) {
    for (k, seed) in [(12, 1), (35, 2), (7, 3), (49, 4), (10, 5)] {
        let case = random_case(
            Op::Monarch,
            true,
            false,
            Sizes {
                rows: 3,
                k,
                t: 0,
                n_in: 0,
                n_out: 0,
            },
            seed,
        );
        let (w1, w2) = (&case.inputs["blkdiag1"], &case.inputs["blkdiag2"]);
        let (b, p) = (w1.shape[0], w1.shape[1]);
        let m = monarch_from(backend, &w1.data, &w2.data, b, p);
        let dense = ops::download_f64(backend, &m.dense(backend).unwrap()).unwrap();
        assert_close(
            &format!("dense k={k}"),
            &dense,
            &dense_from_formula(&w1.data, &w2.data, b, p),
            tol::<B>(),
        );
    }
}

fn monarch_forward_and_transposed_apply_match_dense<B: Backend>(backend: &B) {
    let k = 35;
    let rows = 4;
    let case = random_case(
        Op::Monarch,
        true,
        false,
        Sizes {
            rows,
            k,
            t: 0,
            n_in: 0,
            n_out: 0,
        },
        9,
    );
    let (w1, w2) = (&case.inputs["blkdiag1"], &case.inputs["blkdiag2"]);
    let (b, p) = (w1.shape[0], w1.shape[1]);
    let dense = dense_from_formula(&w1.data, &w2.data, b, p);
    let m = monarch_from(backend, &w1.data, &w2.data, b, p);
    let x_host = &case.inputs["x"].data;
    let x = ops::upload_f64(backend, x_host, &[rows, k]).unwrap();
    let out = ops::download_f64(backend, &m.forward(backend, &x).unwrap()).unwrap();
    assert_close(
        "x·Mᵀ",
        &out,
        &host_matmul_t(x_host, rows, k, &dense, k),
        tol::<B>(),
    );
    // x·M = x·(Mᵀ)ᵀ
    let mut dense_t = vec![0.0; k * k];
    for r in 0..k {
        for c in 0..k {
            dense_t[c * k + r] = dense[r * k + c];
        }
    }
    let view = MatView::full(rows, k);
    let mut got = backend.zeros(&[rows, k]).unwrap();
    m.apply_transposed_into(backend, &x, view, ops::zero::<B>(), &mut got, view)
        .unwrap();
    let got = ops::download_f64(backend, &got).unwrap();
    assert_close(
        "x·M",
        &got,
        &host_matmul_t(x_host, rows, k, &dense_t, k),
        tol::<B>(),
    );
}

/// out = x·W_newᵀ + b_new computed on the host from a case's fused outputs.
fn fused_forward(case: &Case, outputs: &apex_conformance::Outputs) -> Vec<f64> {
    let x = &case.inputs["x"];
    let w = &outputs["fused_weight"];
    let (rows, n_in, n_out) = (x.shape[0], x.shape[1], w.shape[0]);
    let mut out = host_matmul_t(&x.data, rows, n_in, &w.data, n_out);
    let bias = outputs
        .get("fused_bias")
        .or_else(|| case.inputs.get("bias"));
    if let Some(bias) = bias {
        for r in 0..rows {
            for c in 0..n_out {
                out[r * n_out + c] += bias.data[c];
            }
        }
    }
    out
}

const MIX_SIZES: [Sizes; 3] = [
    Sizes {
        rows: 5,
        k: 6,
        t: 15,
        n_in: 7,
        n_out: 20,
    },
    Sizes {
        rows: 3,
        k: 10,
        t: 20,
        n_in: 9,
        n_out: 20,
    },
    Sizes {
        rows: 4,
        k: 7,
        t: 17,
        n_in: 5,
        n_out: 23,
    },
];

fn mix_column_fused_forward_equals_unfused<B: Backend>(backend: &B) {
    for (i, sizes) in MIX_SIZES.iter().enumerate() {
        for mix in [true, false] {
            for bias in [false, true] {
                let case = random_case(Op::MixColumn, mix, bias, *sizes, 100 + i as u64);
                let outputs = run_case(backend, &case).unwrap();
                assert_close(
                    &format!("{sizes:?} mix={mix} bias={bias}"),
                    &fused_forward(&case, &outputs),
                    &outputs["out"].data,
                    tol::<B>(),
                );
            }
        }
    }
}

fn mix_row_sizes(s: Sizes) -> Sizes {
    // For MixRow the mixed dimension is the input: swap the roles.
    Sizes {
        n_in: s.n_out,
        n_out: s.n_in,
        ..s
    }
}

fn mix_row_fused_forward_equals_unfused<B: Backend>(backend: &B) {
    for (i, sizes) in MIX_SIZES.iter().enumerate() {
        for mix in [true, false] {
            for bias in [false, true] {
                let case =
                    random_case(Op::MixRow, mix, bias, mix_row_sizes(*sizes), 200 + i as u64);
                let outputs = run_case(backend, &case).unwrap();
                assert_close(
                    &format!("{sizes:?} mix={mix} bias={bias}"),
                    &fused_forward(&case, &outputs),
                    &outputs["out"].data,
                    tol::<B>(),
                );
            }
        }
    }
}

/// The reference's weight-side MixRow: Ŵ built on the host from the formula M.
fn mix_row_input_side_equals_weight_side<B: Backend>(backend: &B) {
    for (i, sizes) in MIX_SIZES.iter().enumerate() {
        for mix in [true, false] {
            let s = mix_row_sizes(*sizes);
            let case = random_case(Op::MixRow, mix, false, s, 300 + i as u64);
            let (w1, w2) = (&case.inputs["blkdiag1"], &case.inputs["blkdiag2"]);
            let (b, p) = (w1.shape[0], w1.shape[1]);
            let m = dense_from_formula(&w1.data, &w2.data, b, p);
            let (k, t, n_in, n_out) = (s.k, s.t, s.n_in, s.n_out);
            let (w, s2, v) = (
                &case.inputs["weight"].data,
                &case.inputs["s2"].data,
                &case.inputs["mixer_vec"].data,
            );
            let u = |o: usize, c: usize| w[o * n_in + c] + if c < t { s2[o * t + c] } else { 0.0 };
            let mut w_hat = vec![0.0; n_out * n_in];
            for o in 0..n_out {
                for c in 0..n_in {
                    // (U_A·Mᵀ)[o, c] = Σ_j U_A[o, j]·M[c, j]
                    let mon = |c: usize| (0..k).map(|j| u(o, k + j) * m[c * k + j]).sum::<f64>();
                    w_hat[o * n_in + c] = match (c, mix) {
                        (c, true) if c < k => u(o, c) * v[c] + mon(c),
                        (c, false) if c < k => u(o, c) * v[c],
                        (c, false) if c < 2 * k => mon(c - k) + u(o, c),
                        (c, _) => u(o, c),
                    };
                }
            }
            let x = &case.inputs["x"].data;
            let want = host_matmul_t(x, s.rows, n_in, &w_hat, n_out);
            let got = run_case(backend, &case).unwrap();
            assert_close(
                &format!("{s:?} mix={mix}"),
                &got["out"].data,
                &want,
                tol::<B>(),
            );
        }
    }
}

/// Spec §4.6: S = 0, v = c = 1 and M = 0 (`random` init) reproduce the base layer.
fn function_is_preserved_at_stage_start<B: Backend>(backend: &B) {
    let (rows, n_in, n_out, k, t) = (4, 9, 16, 4, 11);
    let case = random_case(
        Op::S2Column,
        true,
        false,
        Sizes {
            rows,
            k,
            t,
            n_in,
            n_out,
        },
        7,
    );
    let x = ops::upload_f64(backend, &case.inputs["x"].data, &[rows, n_in]).unwrap();
    let w = ops::upload_f64(backend, &case.inputs["weight"].data, &[n_out, n_in]).unwrap();
    let mixer = Mixer::new(backend, k, MonarchInit::Random, false, 1).unwrap();
    let base = host_matmul_t(
        &case.inputs["x"].data,
        rows,
        n_in,
        &case.inputs["weight"].data,
        n_out,
    );
    let column = MixColumn::new(backend, &w, None, k, t, true).unwrap();
    let (out, _) = column.forward(backend, &mixer, &x).unwrap();
    assert_close(
        "mix_column at init",
        &ops::download_f64(backend, &out).unwrap(),
        &base,
        tol::<B>(),
    );
    // Row side: weight n_in_row = n_out above.
    let x_row = ops::upload_f64(backend, &vec![0.5; rows * n_out], &[rows, n_out]).unwrap();
    let w_row = backend.reshape(&w, &[n_in, n_out]).unwrap();
    let row = MixRow::new(backend, &w_row, None, k, t, true).unwrap();
    let (out, _) = row.forward(backend, &mixer, &x_row).unwrap();
    let base = host_matmul_t(
        &vec![0.5; rows * n_out],
        rows,
        n_out,
        &case.inputs["weight"].data,
        n_in,
    );
    assert_close(
        "mix_row at init",
        &ops::download_f64(backend, &out).unwrap(),
        &base,
        tol::<B>(),
    );
}

/// Every primitive on random strided views (and the shapes that reach a GPU
/// backend's large-tile and split-K paths) against the f64 CPU reference.
fn primitives_match_the_cpu_reference<B: Backend>(backend: &B) {
    primitives::check_primitives(backend, primitives::Scale::Small, 6, 17)
        .unwrap_or_else(|e| panic!("{}: {e}", backend.name()));
}

/// A fused Monarch override (if the backend has one) equals the composite,
/// intermediate included, on strided views with and without β.
fn monarch_override_matches_the_reference<B: Backend>(backend: &B) {
    primitives::check_monarch_override(backend, primitives::Scale::Small, 23)
        .unwrap_or_else(|e| panic!("{}: {e}", backend.name()));
}

fn bad_views_are_typed_errors<B: Backend>(backend: &B) {
    primitives::check_errors(backend).unwrap_or_else(|e| panic!("{}: {e}", backend.name()));
}

fn shape_errors_are_typed<B: Backend>(backend: &B) {
    use apex_core::ApexError;
    let w = backend.zeros(&[10, 6]).unwrap();
    assert!(matches!(
        MixColumn::new(backend, &w, None, 3, 11, true),
        Err(ApexError::InvalidConfig { .. })
    ));
    assert!(matches!(
        MixColumn::new(backend, &w, None, 4, 7, true),
        Err(ApexError::InvalidConfig { .. })
    ));
    let column = MixColumn::new(backend, &w, None, 2, 6, true).unwrap();
    let mixer = Mixer::new(backend, 2, MonarchInit::Noise, false, 0).unwrap();
    let wrong_x = backend.zeros(&[3, 5]).unwrap();
    assert!(matches!(
        column.forward(backend, &mixer, &wrong_x),
        Err(ApexError::ShapeMismatch { .. })
    ));
    let wrong_mixer = Mixer::new(backend, 3, MonarchInit::Noise, false, 0).unwrap();
    let x = backend.zeros(&[3, 6]).unwrap();
    assert!(matches!(
        column.forward(backend, &wrong_mixer, &x),
        Err(ApexError::ShapeMismatch { .. })
    ));
    let bad_bias = backend.zeros(&[9]).unwrap();
    assert!(matches!(
        MixRow::new(backend, &w, Some(bad_bias), 2, 5, true),
        Err(ApexError::ShapeMismatch { .. })
    ));
}

// ---- finite differences (f64, CPU) -------------------------------------------

/// Central differences of L = Σ out ⊙ G over every element of every
/// differentiable input, compared with the analytic gradients.
fn check_gradients(case: &Case) {
    let cpu = CpuBackend::<f64>::new();
    let analytic = run_case(&cpu, case).unwrap();
    let h = 1e-6;
    for &name in differentiable_inputs(case.op) {
        let grad = &analytic[&format!("grad_{name}")];
        let numeric: Vec<f64> = (0..case.inputs[name].data.len())
            .map(|i| {
                let mut plus = case.clone();
                plus.inputs.get_mut(name).unwrap().data[i] += h;
                let mut minus = case.clone();
                minus.inputs.get_mut(name).unwrap().data[i] -= h;
                (plus.loss(&cpu).unwrap() - minus.loss(&cpu).unwrap()) / (2.0 * h)
            })
            .collect();
        assert_close(
            &format!("{:?} mix={} ∂{name}", case.op, case.mix),
            &grad.data,
            &numeric,
            1e-6,
        );
    }
}

fn monarch_gradients_match_finite_differences() {
    for (k, seed) in [(6, 1), (12, 2), (7, 3), (10, 4)] {
        check_gradients(&random_case(
            Op::Monarch,
            true,
            false,
            Sizes {
                rows: 3,
                k,
                t: 0,
                n_in: 0,
                n_out: 0,
            },
            seed,
        ));
    }
}

fn mix_column_gradients_match_finite_differences() {
    for mix in [true, false] {
        for bias in [false, true] {
            check_gradients(&random_case(Op::MixColumn, mix, bias, MIX_SIZES[0], 11));
        }
    }
}

fn mix_row_gradients_match_finite_differences() {
    for mix in [true, false] {
        for bias in [false, true] {
            check_gradients(&random_case(
                Op::MixRow,
                mix,
                bias,
                mix_row_sizes(MIX_SIZES[0]),
                12,
            ));
        }
    }
}

fn s2_gradients_match_finite_differences() {
    let sizes = Sizes {
        rows: 4,
        k: 0,
        t: 3,
        n_in: 6,
        n_out: 5,
    };
    for op in [Op::S2Column, Op::S2Row] {
        for bias in [false, true] {
            check_gradients(&random_case(op, true, bias, sizes, 13));
        }
    }
}

/// An FFN layer pair with one shared mixer: up and gate are MixColumns, down a
/// MixRow; loss = Σ down(SiLU(gate)·up) ⊙ G. The shared ∂v, ∂W1, ∂W2 must be
/// the sum over the three modules (spec §5.4) — checked by finite differences
/// of the whole layer.
fn shared_mixer_gradients_accumulate_across_up_gate_down() {
    let cpu = CpuBackend::<f64>::new();
    let (rows, d, n, k, t) = (3, 5, 14, 3, 9);
    let base = random_case(
        Op::MixColumn,
        true,
        false,
        Sizes {
            rows,
            k,
            t,
            n_in: d,
            n_out: n,
        },
        21,
    );
    let extra = random_case(
        Op::MixRow,
        true,
        false,
        Sizes {
            rows,
            k,
            t,
            n_in: n,
            n_out: d,
        },
        22,
    );
    let (w1, w2, v) = (
        &base.inputs["blkdiag1"],
        &base.inputs["blkdiag2"],
        &base.inputs["mixer_vec"].data,
    );
    let (b, p) = (w1.shape[0], w1.shape[1]);
    let up_w = base.inputs["weight"].data.clone();
    let gate_w: Vec<f64> = up_w.iter().map(|x| 0.7 * x - 0.1).collect();
    let down_w = extra.inputs["weight"].data.clone();
    let g = extra.inputs["grad_out"].data.clone();
    let x = base.inputs["x"].data.clone();

    let layer = |w1: &[f64], w2: &[f64], v: &[f64]| {
        let up = MixColumn::new(
            &cpu,
            &ops::upload_f64(&cpu, &up_w, &[n, d]).unwrap(),
            None,
            k,
            t,
            true,
        )
        .unwrap();
        let mut gate = MixColumn::new(
            &cpu,
            &ops::upload_f64(&cpu, &gate_w, &[n, d]).unwrap(),
            None,
            k,
            t,
            true,
        )
        .unwrap();
        gate.mixer_scale = ops::upload_f64(&cpu, &vec![0.8; k], &[k]).unwrap();
        let down = MixRow::new(
            &cpu,
            &ops::upload_f64(&cpu, &down_w, &[d, n]).unwrap(),
            None,
            k,
            t,
            true,
        )
        .unwrap();
        let monarch = monarch_from(&cpu, w1, w2, b, p);
        let mixer =
            Mixer::from_parts(&cpu, monarch, ops::upload_f64(&cpu, v, &[k]).unwrap()).unwrap();
        (up, gate, down, mixer)
    };
    let loss_and_grads = |w1: &[f64], w2: &[f64], v: &[f64], with_grads: bool| {
        let (up, gate, down, mixer) = layer(w1, w2, v);
        let xt = ops::upload_f64(&cpu, &x, &[rows, d]).unwrap();
        let (u, u_cache) = up.forward(&cpu, &mixer, &xt).unwrap();
        let (gt, g_cache) = gate.forward(&cpu, &mixer, &xt).unwrap();
        let full = MatView::full(rows, n);
        let mut act = cpu.zeros(&[rows, n]).unwrap();
        cpu.unary(UnaryOp::Silu, &gt, full, &mut act, full).unwrap();
        let mut h = cpu.zeros(&[rows, n]).unwrap();
        cpu.binary(
            apex_core::BinaryOp::Mul,
            &act,
            full,
            &u,
            full,
            0.0,
            &mut h,
            full,
        )
        .unwrap();
        let (out, d_cache) = down.forward(&cpu, &mixer, &h).unwrap();
        let loss: f64 = ops::download_f64(&cpu, &out)
            .unwrap()
            .iter()
            .zip(&g)
            .map(|(a, b)| a * b)
            .sum();
        if !with_grads {
            return (loss, None);
        }
        let mut shared = MixerGrads::zeros(&cpu, &mixer).unwrap();
        let gt_out = ops::upload_f64(&cpu, &g, &[rows, d]).unwrap();
        let (_, grad_h) = down
            .backward(&cpu, &mixer, &d_cache, &gt_out, &mut shared, true)
            .unwrap();
        let grad_h = grad_h.unwrap();
        let mut grad_u = cpu.zeros(&[rows, n]).unwrap();
        cpu.binary(
            apex_core::BinaryOp::Mul,
            &grad_h,
            full,
            &act,
            full,
            0.0,
            &mut grad_u,
            full,
        )
        .unwrap();
        let mut silu_grad = cpu.zeros(&[rows, n]).unwrap();
        cpu.unary(UnaryOp::SiluGrad, &gt, full, &mut silu_grad, full)
            .unwrap();
        let mut grad_g = cpu.zeros(&[rows, n]).unwrap();
        cpu.binary(
            apex_core::BinaryOp::Mul,
            &grad_h,
            full,
            &u,
            full,
            0.0,
            &mut grad_g,
            full,
        )
        .unwrap();
        let mut grad_gate = cpu.zeros(&[rows, n]).unwrap();
        cpu.binary(
            apex_core::BinaryOp::Mul,
            &grad_g,
            full,
            &silu_grad,
            full,
            0.0,
            &mut grad_gate,
            full,
        )
        .unwrap();
        up.backward(&cpu, &mixer, &u_cache, &grad_u, &mut shared, false)
            .unwrap();
        gate.backward(&cpu, &mixer, &g_cache, &grad_gate, &mut shared, false)
            .unwrap();
        let grads = [
            ops::download_f64(&cpu, &shared.monarch.blkdiag1).unwrap(),
            ops::download_f64(&cpu, &shared.monarch.blkdiag2).unwrap(),
            ops::download_f64(&cpu, &shared.mixer_vec).unwrap(),
        ];
        (loss, Some(grads))
    };
    let params = [w1.data.clone(), w2.data.clone(), v.clone()];
    let (_, grads) = loss_and_grads(&params[0], &params[1], &params[2], true);
    let grads = grads.unwrap();
    let h = 1e-6;
    for (which, name) in ["blkdiag1", "blkdiag2", "mixer_vec"].iter().enumerate() {
        let numeric: Vec<f64> = (0..params[which].len())
            .map(|i| {
                let eval = |delta: f64| {
                    let mut p = params.clone();
                    p[which][i] += delta;
                    loss_and_grads(&p[0], &p[1], &p[2], false).0
                };
                (eval(h) - eval(-h)) / (2.0 * h)
            })
            .collect();
        assert_close(&format!("shared ∂{name}"), &grads[which], &numeric, 1e-6);
    }
}

// ---- properties over random sizes ------------------------------------------

mod properties {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    fn sizes() -> impl Strategy<Value = (Sizes, bool, bool, u64)> {
        // k up to 21 covers primes (b = 1), prime factors (k = 10, 14, 15, 21) and squares.
        (
            1usize..=21,
            0usize..=4,
            0usize..=4,
            1usize..=7,
            1usize..=6,
            any::<bool>(),
            any::<bool>(),
            any::<u64>(),
        )
            .prop_map(|(k, extra_t, extra_out, n_other, rows, mix, bias, seed)| {
                let t = 2 * k + extra_t;
                (
                    Sizes {
                        rows,
                        k,
                        t,
                        n_in: n_other,
                        n_out: t + extra_out,
                    },
                    mix,
                    bias,
                    seed,
                )
            })
    }

    fn runner() -> TestRunner {
        TestRunner::new(Config {
            cases: 48,
            failure_persistence: None,
            ..Config::default()
        })
    }

    /// Runs `property` over random cases; a failure panics with proptest's minimal case.
    fn check(
        strategy: impl Strategy<Value = ((Sizes, bool, bool, u64), usize)>,
        property: impl Fn(Case) -> Result<(), TestCaseError>,
        op_of: impl Fn(usize) -> Op,
    ) {
        runner()
            .run(&strategy, |((s, mix, bias, seed), op_index)| {
                let op = op_of(op_index);
                let s = if matches!(op, Op::MixRow | Op::S2Row) {
                    mix_row_sizes(s)
                } else {
                    s
                };
                property(random_case(op, mix, bias, s, seed))
            })
            .unwrap_or_else(|e| panic!("{e}"));
    }

    fn all_backends_agree(case: &Case) -> Result<(), TestCaseError> {
        let reference = run_case(&CpuBackend::<f64>::new(), case).unwrap();
        let f32_outputs = run_case(&CpuBackend::<f32>::new(), case).unwrap();
        for (name, want) in &reference {
            let report = apex_conformance::compare(name, &f32_outputs[name], want, 1e-4);
            prop_assert!(
                report.passed(),
                "cpu-f32 vs cpu-f64 {:?} {name}: {report:?}",
                case.op
            );
        }
        Ok(())
    }

    fn fusion_is_exact(case: Case) -> Result<(), TestCaseError> {
        let outputs = run_case(&CpuBackend::<f64>::new(), &case).unwrap();
        let fused = fused_forward(&case, &outputs);
        let scale = outputs["out"]
            .data
            .iter()
            .fold(1e-30f64, |m, v| m.max(v.abs()));
        for (f, o) in fused.iter().zip(&outputs["out"].data) {
            prop_assert!((f - o).abs() <= 1e-10 * scale, "fused {f} vs unfused {o}");
        }
        all_backends_agree(&case)
    }

    /// Random cases of every op on `backend` against the CPU in f64, at the
    /// f32 tolerance of spec §0.1.
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    pub fn backend_agrees_with_cpu_f64<B: Backend>(backend: &B) {
        const OPS: [Op; 5] = [
            Op::Monarch,
            Op::MixColumn,
            Op::MixRow,
            Op::S2Column,
            Op::S2Row,
        ];
        check(
            (sizes(), 0usize..5),
            |case| {
                let reference = run_case(&CpuBackend::<f64>::new(), &case).unwrap();
                let outputs = run_case(backend, &case).unwrap();
                for (name, want) in &reference {
                    let report = apex_conformance::compare(name, &outputs[name], want, 1e-4);
                    prop_assert!(
                        report.passed(),
                        "{} vs cpu-f64 {:?} mix={} {name}: {report:?}",
                        backend.name(),
                        case.op,
                        case.mix
                    );
                }
                Ok(())
            },
            |i| OPS[i],
        );
    }

    pub fn mix_column_fusion_is_exact_and_backends_agree() {
        check((sizes(), Just(0)), fusion_is_exact, |_| Op::MixColumn);
    }

    pub fn mix_row_fusion_is_exact_and_backends_agree() {
        check((sizes(), Just(0)), fusion_is_exact, |_| Op::MixRow);
    }

    /// Directional derivative: (L(θ+hδ) − L(θ−hδ))/2h = ⟨∇L, δ⟩ over all differentiable inputs.
    pub fn gradients_match_a_random_directional_derivative() {
        const OPS: [Op; 5] = [
            Op::Monarch,
            Op::MixColumn,
            Op::MixRow,
            Op::S2Column,
            Op::S2Row,
        ];
        check(
            (sizes(), 0usize..5),
            |case| {
                let op = case.op;
                let cpu = CpuBackend::<f64>::new();
                let grads = run_case(&cpu, &case).unwrap();
                // A second random case of the same shapes serves as the direction δ.
                let direction: Vec<Vec<f64>> = differentiable_inputs(op)
                    .iter()
                    .map(|&name| {
                        case.inputs[name]
                            .data
                            .iter()
                            .enumerate()
                            .map(|(i, _)| (((i * 7919 + 13) % 101) as f64 / 50.0) - 1.0)
                            .collect()
                    })
                    .collect();
                let h = 1e-6;
                let shifted = |sign: f64| {
                    let mut c = case.clone();
                    for (&name, d) in differentiable_inputs(op).iter().zip(&direction) {
                        for (x, d) in c.inputs.get_mut(name).unwrap().data.iter_mut().zip(d) {
                            *x += sign * h * d;
                        }
                    }
                    c.loss(&cpu).unwrap()
                };
                let numeric = (shifted(1.0) - shifted(-1.0)) / (2.0 * h);
                let analytic: f64 = differentiable_inputs(op)
                    .iter()
                    .zip(&direction)
                    .map(|(&name, d)| {
                        grads[&format!("grad_{name}")]
                            .data
                            .iter()
                            .zip(d)
                            .map(|(g, d)| g * d)
                            .sum::<f64>()
                    })
                    .sum();
                prop_assert!(
                    (numeric - analytic).abs() <= 1e-6 * (1.0 + analytic.abs()),
                    "{op:?}: numeric {numeric} vs analytic {analytic}"
                );
                Ok(())
            },
            |i| OPS[i],
        );
    }
}
