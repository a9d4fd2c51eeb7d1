//! Co-permuted FFN and attention blocks compute the same function as the
//! originals (spec §3.6, §0.3), checked with a minimal host forward on weights
//! permuted by the CPU backend: SwiGLU, and causal softmax attention with RoPE
//! and GQA, for MHA (4 heads) and GQA (9 heads in 3 KV groups).

use apex_core::permute::{
    permute_attention, permute_ffn, AttentionGeometry, AttentionWeights, FfnWeights, LayoutPlan,
};
use apex_core::selection::select_layer;
use apex_core::Backend;
use apex_cpu::{CpuBackend, CpuTensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

type Cpu = CpuBackend<f32>;

fn random(rng: &mut StdRng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-0.5..0.5)).collect()
}

/// `x · wᵀ + b` for x (rows × inner), w (out × inner) and b (out), row-major.
fn linear(x: &[f32], rows: usize, w: &[f32], b: Option<&Vec<f32>>, out: usize) -> Vec<f32> {
    let inner = x.len() / rows;
    assert_eq!(w.len(), out * inner);
    let mut y = vec![0.0; rows * out];
    for r in 0..rows {
        for o in 0..out {
            let bias = b.map_or(0.0, |b| b[o]);
            y[r * out + o] = bias
                + (0..inner)
                    .map(|i| x[r * inner + i] * w[o * inner + i])
                    .sum::<f32>();
        }
    }
    y
}

fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

fn swiglu(x: &[f32], tokens: usize, w: &FfnWeights<Vec<f32>>, d: usize, n: usize) -> Vec<f32> {
    let gate = linear(x, tokens, &w.gate, w.gate_bias.as_ref(), n);
    let up = linear(x, tokens, &w.up, w.up_bias.as_ref(), n);
    let h: Vec<f32> = gate.iter().zip(&up).map(|(g, u)| silu(*g) * u).collect();
    linear(&h, tokens, &w.down, None, d)
}

/// HF rotate-half RoPE on a (tokens × heads·d_h) matrix, base 10000.
fn rope(x: &mut [f32], tokens: usize, heads: usize, head_dim: usize) {
    let half = head_dim / 2;
    for t in 0..tokens {
        for h in 0..heads {
            let base = t * heads * head_dim + h * head_dim;
            for i in 0..half {
                let angle = t as f32 * 10_000f32.powf(-2.0 * i as f32 / head_dim as f32);
                let (sin, cos) = angle.sin_cos();
                let (a, b) = (x[base + i], x[base + i + half]);
                x[base + i] = a * cos - b * sin;
                x[base + i + half] = b * cos + a * sin;
            }
        }
    }
}

/// Causal softmax attention with GQA: head h reads KV group h / r.
fn attention(
    x: &[f32],
    tokens: usize,
    w: &AttentionWeights<Vec<f32>>,
    g: AttentionGeometry,
    d: usize,
) -> Vec<f32> {
    let (dh, r) = (g.head_dim, g.group_size());
    let mut q = linear(x, tokens, &w.q, w.q_bias.as_ref(), g.heads * dh);
    let mut k = linear(x, tokens, &w.k, w.k_bias.as_ref(), g.kv_heads * dh);
    let v = linear(x, tokens, &w.v, w.v_bias.as_ref(), g.kv_heads * dh);
    rope(&mut q, tokens, g.heads, dh);
    rope(&mut k, tokens, g.kv_heads, dh);
    let mut context = vec![0.0; tokens * g.heads * dh];
    for h in 0..g.heads {
        let group = h / r;
        for t in 0..tokens {
            let qt = &q[t * g.heads * dh + h * dh..][..dh];
            let logits: Vec<f32> = (0..=t)
                .map(|s| {
                    let ks = &k[s * g.kv_heads * dh + group * dh..][..dh];
                    qt.iter().zip(ks).map(|(a, b)| a * b).sum::<f32>() / (dh as f32).sqrt()
                })
                .collect();
            let max = logits.iter().cloned().fold(f32::MIN, f32::max);
            let weights: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
            let total: f32 = weights.iter().sum();
            for (s, p) in weights.iter().enumerate() {
                let vs = &v[s * g.kv_heads * dh + group * dh..][..dh];
                for i in 0..dh {
                    context[t * g.heads * dh + h * dh + i] += p / total * vs[i];
                }
            }
        }
    }
    linear(&context, tokens, &w.o, None, d)
}

fn assert_close(got: &[f32], want: &[f32]) {
    let worst = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(worst <= 1e-5, "max |diff| = {worst}");
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn up(cpu: &Cpu, data: &[f32], shape: &[usize]) -> CpuTensor<f32> {
    cpu.upload(data, shape).unwrap()
}

fn down(cpu: &Cpu, tensor: &CpuTensor<f32>) -> Vec<f32> {
    cpu.download(tensor).unwrap()
}

#[test]
fn permuted_swiglu_computes_the_same_outputs() {
    let (cpu, mut rng) = (Cpu::new(), StdRng::seed_from_u64(11));
    let (d, n, tokens) = (8, 24, 5);
    let host = FfnWeights {
        gate: random(&mut rng, n * d),
        up: random(&mut rng, n * d),
        down: random(&mut rng, d * n),
        gate_bias: Some(random(&mut rng, n)),
        up_bias: Some(random(&mut rng, n)),
    };
    let x = random(&mut rng, tokens * d);
    let scores = random(&mut rng, n)
        .iter()
        .map(|&s| s as f64)
        .collect::<Vec<_>>();
    let plan = select_layer(&scores, 5, Some(13), &[], false)
        .unwrap()
        .layout(n)
        .unwrap();
    assert_ne!(plan.order(), (0..n).collect::<Vec<_>>());

    let device = FfnWeights {
        gate: up(&cpu, &host.gate, &[n, d]),
        up: up(&cpu, &host.up, &[n, d]),
        down: up(&cpu, &host.down, &[d, n]),
        gate_bias: host.gate_bias.as_ref().map(|b| up(&cpu, b, &[n])),
        up_bias: host.up_bias.as_ref().map(|b| up(&cpu, b, &[n])),
    };
    let permuted = permute_ffn(&cpu, &plan, &device).unwrap();
    let permuted = FfnWeights {
        gate: down(&cpu, &permuted.gate),
        up: down(&cpu, &permuted.up),
        down: down(&cpu, &permuted.down),
        gate_bias: permuted.gate_bias.as_ref().map(|b| down(&cpu, b)),
        up_bias: permuted.up_bias.as_ref().map(|b| down(&cpu, b)),
    };
    // Row i of the permuted gate is row order[i] of the original.
    let first = plan.order()[0];
    assert_eq!(permuted.gate[..d], host.gate[first * d..(first + 1) * d]);

    assert_close(
        &swiglu(&x, tokens, &permuted, d, n),
        &swiglu(&x, tokens, &host, d, n),
    );
    // Control: permuting gate and up without down changes the function.
    let broken = FfnWeights {
        down: host.down.clone(),
        ..permuted
    };
    assert!(
        max_diff(
            &swiglu(&x, tokens, &broken, d, n),
            &swiglu(&x, tokens, &host, d, n)
        ) > 1e-3
    );
}

/// Checks one attention geometry and plan; `bias` adds q/k/v biases (Qwen-style).
fn attention_case(geometry: AttentionGeometry, plan: &LayoutPlan, bias: bool, seed: u64) {
    let (cpu, mut rng) = (Cpu::new(), StdRng::seed_from_u64(seed));
    let (dh, tokens) = (geometry.head_dim, 6);
    let d = geometry.heads * dh;
    let (q_rows, kv_rows) = (geometry.heads * dh, geometry.kv_heads * dh);
    let host = AttentionWeights {
        q: random(&mut rng, q_rows * d),
        k: random(&mut rng, kv_rows * d),
        v: random(&mut rng, kv_rows * d),
        o: random(&mut rng, d * q_rows),
        q_bias: bias.then(|| random(&mut rng, q_rows)),
        k_bias: bias.then(|| random(&mut rng, kv_rows)),
        v_bias: bias.then(|| random(&mut rng, kv_rows)),
    };
    let x = random(&mut rng, tokens * d);
    let device = AttentionWeights {
        q: up(&cpu, &host.q, &[q_rows, d]),
        k: up(&cpu, &host.k, &[kv_rows, d]),
        v: up(&cpu, &host.v, &[kv_rows, d]),
        o: up(&cpu, &host.o, &[d, q_rows]),
        q_bias: host.q_bias.as_ref().map(|b| up(&cpu, b, &[q_rows])),
        k_bias: host.k_bias.as_ref().map(|b| up(&cpu, b, &[kv_rows])),
        v_bias: host.v_bias.as_ref().map(|b| up(&cpu, b, &[kv_rows])),
    };
    let permuted = permute_attention(&cpu, plan, geometry, &device).unwrap();
    let permuted = AttentionWeights {
        q: down(&cpu, &permuted.q),
        k: down(&cpu, &permuted.k),
        v: down(&cpu, &permuted.v),
        o: down(&cpu, &permuted.o),
        q_bias: permuted.q_bias.as_ref().map(|b| down(&cpu, b)),
        k_bias: permuted.k_bias.as_ref().map(|b| down(&cpu, b)),
        v_bias: permuted.v_bias.as_ref().map(|b| down(&cpu, b)),
    };
    let want = attention(&x, tokens, &host, geometry, d);
    assert_close(&attention(&x, tokens, &permuted, geometry, d), &want);

    // New group 0 holds old group order[0]: its r query heads and its k rows.
    let (old, r) = (plan.order()[0], geometry.group_size());
    assert_eq!(
        permuted.q[..r * dh * d],
        host.q[old * r * dh * d..(old + 1) * r * dh * d]
    );
    assert_eq!(
        permuted.k[..dh * d],
        host.k[old * dh * d..(old + 1) * dh * d]
    );

    // Control: moving q and o but leaving k and v in place pairs the query
    // heads with the wrong KV groups.
    let broken = AttentionWeights {
        k: host.k.clone(),
        v: host.v.clone(),
        k_bias: host.k_bias.clone(),
        v_bias: host.v_bias.clone(),
        ..permuted
    };
    assert!(max_diff(&attention(&x, tokens, &broken, geometry, d), &want) > 1e-4);
}

#[test]
fn permuted_mha_attention_computes_the_same_outputs() {
    let geometry = AttentionGeometry {
        heads: 4,
        kv_heads: 4,
        head_dim: 4,
    };
    let plan = LayoutPlan::new(&[3], &[1], &[2], 4).unwrap();
    assert_eq!(plan.order(), &[3, 1, 2, 0]);
    attention_case(geometry, &plan, false, 21);
}

#[test]
fn permuted_gqa_attention_computes_the_same_outputs() {
    let geometry = AttentionGeometry {
        heads: 9,
        kv_heads: 3,
        head_dim: 4,
    };
    let plan = LayoutPlan::new(&[2], &[0], &[], 3).unwrap();
    assert_eq!(plan.order(), &[2, 0, 1]);
    attention_case(geometry, &plan, false, 22);
    attention_case(geometry, &plan, true, 23);
}

#[test]
fn wrong_shapes_are_typed_errors() {
    let cpu = Cpu::new();
    let plan = LayoutPlan::new(&[1], &[0], &[], 3).unwrap();
    let weights = FfnWeights {
        gate: cpu.zeros(&[4, 2]).unwrap(),
        up: cpu.zeros(&[3, 2]).unwrap(),
        down: cpu.zeros(&[2, 3]).unwrap(),
        gate_bias: None,
        up_bias: None,
    };
    assert!(matches!(
        permute_ffn(&cpu, &plan, &weights),
        Err(apex_core::ApexError::ShapeMismatch { .. })
    ));
    let geometry = AttentionGeometry {
        heads: 4,
        kv_heads: 2,
        head_dim: 2,
    };
    let weights = AttentionWeights {
        q: cpu.zeros(&[8, 8]).unwrap(),
        k: cpu.zeros(&[4, 8]).unwrap(),
        v: cpu.zeros(&[4, 8]).unwrap(),
        o: cpu.zeros(&[8, 8]).unwrap(),
        q_bias: None,
        k_bias: None,
        v_bias: None,
    };
    // A plan over 3 units cannot permute 2 KV groups.
    assert!(permute_attention(&cpu, &plan, geometry, &weights).is_err());
}
