//! Seeded random cases of every operator, for property tests, cross-backend
//! checks and benchmarks.

use crate::case::{Case, HostTensor, Op};
use apex_core::find_divisor;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

/// Sizes of a case. `rows` is T (or n for Monarch); `k` the Monarch size
/// (D and A each k); `t` the tuned size (e for S2); `n_in`/`n_out` the weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizes {
    pub rows: usize,
    pub k: usize,
    pub t: usize,
    pub n_in: usize,
    pub n_out: usize,
}

/// A random case of `op`: values in ±1, `mixer_vec`/`mixer_scale` in 1 ± 0.3,
/// both Monarch factors non-zero, non-zero S. Reproducible from `seed`.
pub fn random_case(op: Op, mix: bool, bias: bool, sizes: Sizes, seed: u64) -> Case {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut tensor = |shape: &[usize], centre: f64, spread: f64| -> HostTensor {
        let n = shape.iter().product();
        let data = (0..n)
            .map(|_| {
                // Round through f32 so f32 and f64 backends see identical inputs.
                (centre + rng.random_range(-spread..=spread)) as f32 as f64
            })
            .collect();
        HostTensor::new(data, shape)
    };
    let Sizes {
        rows,
        k,
        t,
        n_in,
        n_out,
    } = sizes;
    let mut inputs = BTreeMap::new();
    let mut add = |name: &str, t: HostTensor| {
        inputs.insert(name.to_string(), t);
    };
    let nblocks = find_divisor(k.max(1), false);
    let p = k.max(1) / nblocks;
    let factor = [nblocks, p, p];
    match op {
        Op::Monarch => {
            add("x", tensor(&[rows, k], 0.0, 1.0));
            add("blkdiag1", tensor(&factor, 0.0, 1.0));
            add("blkdiag2", tensor(&factor, 0.0, 1.0));
            add("grad_out", tensor(&[rows, k], 0.0, 1.0));
        }
        Op::MixColumn | Op::MixRow | Op::S2Column | Op::S2Row => {
            add("x", tensor(&[rows, n_in], 0.0, 1.0));
            add("weight", tensor(&[n_out, n_in], 0.0, 1.0));
            add("grad_out", tensor(&[rows, n_out], 0.0, 1.0));
            if bias {
                add("bias", tensor(&[n_out], 0.0, 1.0));
            }
            let column_side = matches!(op, Op::MixColumn | Op::S2Column);
            let s2_shape = if column_side { [t, n_in] } else { [n_out, t] };
            add("s2", tensor(&s2_shape, 0.0, 0.5));
            if matches!(op, Op::MixColumn | Op::MixRow) {
                add("blkdiag1", tensor(&factor, 0.0, 1.0));
                add("blkdiag2", tensor(&factor, 0.0, 1.0));
                add("mixer_vec", tensor(&[k], 1.0, 0.3));
                if op == Op::MixColumn {
                    add("mixer_scale", tensor(&[k], 1.0, 0.3));
                }
            }
        }
    }
    Case { op, mix, inputs }
}

/// The inputs of `op` that carry gradients (everything trainable, plus x).
pub fn differentiable_inputs(op: Op) -> &'static [&'static str] {
    match op {
        Op::Monarch => &["x", "blkdiag1", "blkdiag2"],
        Op::MixColumn => &[
            "x",
            "s2",
            "blkdiag1",
            "blkdiag2",
            "mixer_vec",
            "mixer_scale",
        ],
        Op::MixRow => &["x", "s2", "blkdiag1", "blkdiag2", "mixer_vec"],
        Op::S2Column | Op::S2Row => &["x", "s2"],
    }
}
