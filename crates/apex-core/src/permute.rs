//! The per-layer unit layout [D | A | tuned-only | rest] and the weight
//! co-permutation that realises it without changing the model function
//! (spec §3.5, §3.6, §0.3).
//!
//! After [`permute_ffn`] / [`permute_attention`], the expansion operators only
//! ever see contiguous blocks: positions [0, k) hold D, [k, 2k) hold A,
//! [2k, t) the tuned-only units, [t, n) the frozen rest.

use crate::backend::Backend;
use crate::error::{ApexError, Result};
use crate::model_config::ModelConfig;
use crate::ops::dims2;

/// A per-layer permutation of units: new position i holds old unit
/// `order[i]`, laid out as [D (ascending score) | A (descending score) |
/// tuned-only | remaining units in ascending index order].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayoutPlan {
    order: Vec<usize>,
    inverse: Vec<usize>,
    k: usize,
    tuned: usize,
}

impl LayoutPlan {
    /// The layout for D, A (equal lengths k) and the tuned-only units over
    /// `units` units. Fails unless the lists are disjoint, in range and free
    /// of duplicates, so the result is always a permutation.
    pub fn new(
        disadvantageous: &[usize],
        advantageous: &[usize],
        tuned_only: &[usize],
        units: usize,
    ) -> Result<Self> {
        const OP: &str = "layout plan";
        if disadvantageous.len() != advantageous.len() {
            return Err(ApexError::shape(
                OP,
                &[disadvantageous.len()],
                &[advantageous.len()],
            ));
        }
        let mut placed = vec![false; units];
        let mut order = Vec::with_capacity(units);
        for &unit in disadvantageous.iter().chain(advantageous).chain(tuned_only) {
            if unit >= units || placed[unit] {
                return Err(ApexError::InvalidIndex {
                    op: OP,
                    index: unit,
                    bound: units,
                });
            }
            placed[unit] = true;
            order.push(unit);
        }
        let tuned = order.len();
        order.extend((0..units).filter(|&u| !placed[u]));
        let mut inverse = vec![0; units];
        for (position, &unit) in order.iter().enumerate() {
            inverse[unit] = position;
        }
        Ok(LayoutPlan {
            order,
            inverse,
            k: disadvantageous.len(),
            tuned,
        })
    }

    /// Number of units n.
    pub fn units(&self) -> usize {
        self.order.len()
    }

    /// k = |D| = |A|.
    pub fn k(&self) -> usize {
        self.k
    }

    /// t: units tuned directly (D, A and tuned-only), positions [0, t).
    pub fn tuned(&self) -> usize {
        self.tuned
    }

    /// New position → old unit index.
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    /// Old unit index → new position.
    pub fn inverse(&self) -> &[usize] {
        &self.inverse
    }

    /// D in the old index space (positions [0, k)).
    pub fn disadvantageous(&self) -> &[usize] {
        &self.order[..self.k]
    }

    /// A in the old index space (positions [k, 2k)).
    pub fn advantageous(&self) -> &[usize] {
        &self.order[self.k..2 * self.k]
    }

    /// Tuned-only units in the old index space (positions [2k, t)).
    pub fn tuned_only(&self) -> &[usize] {
        &self.order[2 * self.k..self.tuned]
    }

    /// The new positions of old units `old` (spec §3.5's `inverse_order`).
    pub fn remap(&self, old: &[usize]) -> Result<Vec<usize>> {
        old.iter()
            .map(|&unit| {
                self.inverse
                    .get(unit)
                    .copied()
                    .ok_or(ApexError::InvalidIndex {
                        op: "layout remap",
                        index: unit,
                        bound: self.units(),
                    })
            })
            .collect()
    }

    /// Row (or column) indices when every unit is a block of `width`
    /// consecutive rows: new block i holds old block `order[i]`.
    pub fn expand(&self, width: usize) -> Vec<usize> {
        self.order
            .iter()
            .flat_map(|&unit| unit * width..(unit + 1) * width)
            .collect()
    }
}

/// Head geometry of an attention block: H query heads in H_kv KV groups of
/// r = H/H_kv heads, each d_h wide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionGeometry {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl AttentionGeometry {
    /// The geometry of a (validated) model config.
    pub fn from_config(config: &ModelConfig) -> Self {
        AttentionGeometry {
            heads: config.num_attention_heads,
            kv_heads: config.kv_heads(),
            head_dim: config.head_dim(),
        }
    }

    /// r, query heads per KV group.
    pub fn group_size(&self) -> usize {
        self.heads / self.kv_heads.max(1)
    }

    fn validate(&self) -> Result<()> {
        if self.kv_heads == 0 || self.head_dim == 0 || self.heads % self.kv_heads != 0 {
            return Err(ApexError::config(
                "attention geometry",
                format!(
                    "{} heads of width {} do not form {} KV groups",
                    self.heads, self.head_dim, self.kv_heads
                ),
            ));
        }
        Ok(())
    }
}

/// The weights of a SwiGLU FFN block in the nn.Linear convention: gate and up
/// N × d, down d × N, optional gate/up biases of length N. (A down bias lives
/// on the output side and is not permuted.)
#[derive(Clone, Debug)]
pub struct FfnWeights<T> {
    pub gate: T,
    pub up: T,
    pub down: T,
    pub gate_bias: Option<T>,
    pub up_bias: Option<T>,
}

/// The weights of an attention block: q (H·d_h) × d, k and v (H_kv·d_h) × d,
/// o d × (H·d_h), optional q/k/v biases. (An o bias is not permuted.)
#[derive(Clone, Debug)]
pub struct AttentionWeights<T> {
    pub q: T,
    pub k: T,
    pub v: T,
    pub o: T,
    pub q_bias: Option<T>,
    pub k_bias: Option<T>,
    pub v_bias: Option<T>,
}

fn expect_rows<B: Backend>(
    backend: &B,
    x: &B::Tensor,
    rows: usize,
    op: &'static str,
) -> Result<()> {
    let (r, c) = dims2(backend, x, op)?;
    if r != rows {
        return Err(ApexError::shape(op, &[rows, c], &[r, c]));
    }
    Ok(())
}

fn expect_columns<B: Backend>(
    backend: &B,
    x: &B::Tensor,
    cols: usize,
    op: &'static str,
) -> Result<()> {
    let (r, c) = dims2(backend, x, op)?;
    if c != cols {
        return Err(ApexError::shape(op, &[r, cols], &[r, c]));
    }
    Ok(())
}

fn permute_rows<B: Backend>(
    backend: &B,
    x: &B::Tensor,
    index: &[usize],
    op: &'static str,
) -> Result<B::Tensor> {
    expect_rows(backend, x, index.len(), op)?;
    backend.gather_rows(x, index)
}

fn permute_columns<B: Backend>(
    backend: &B,
    x: &B::Tensor,
    index: &[usize],
    op: &'static str,
) -> Result<B::Tensor> {
    expect_columns(backend, x, index.len(), op)?;
    backend.gather_columns(x, index)
}

fn permute_bias<B: Backend>(
    backend: &B,
    bias: Option<&B::Tensor>,
    index: &[usize],
    op: &'static str,
) -> Result<Option<B::Tensor>> {
    let Some(bias) = bias else {
        return Ok(None);
    };
    if backend.shape(bias) != [index.len()] {
        return Err(ApexError::shape(op, &[index.len()], backend.shape(bias)));
    }
    let column = backend.reshape(bias, &[index.len(), 1])?;
    let permuted = backend.gather_rows(&column, index)?;
    Ok(Some(backend.reshape(&permuted, &[index.len()])?))
}

/// Applies an FFN channel layout: gate and up rows and down columns move by
/// `plan.order()`, so SwiGLU computes exactly the same function.
pub fn permute_ffn<B: Backend>(
    backend: &B,
    plan: &LayoutPlan,
    weights: &FfnWeights<B::Tensor>,
) -> Result<FfnWeights<B::Tensor>> {
    let order = plan.order();
    Ok(FfnWeights {
        gate: permute_rows(backend, &weights.gate, order, "permute gate_proj")?,
        up: permute_rows(backend, &weights.up, order, "permute up_proj")?,
        down: permute_columns(backend, &weights.down, order, "permute down_proj")?,
        gate_bias: permute_bias(
            backend,
            weights.gate_bias.as_ref(),
            order,
            "permute gate bias",
        )?,
        up_bias: permute_bias(backend, weights.up_bias.as_ref(), order, "permute up bias")?,
    })
}

/// Applies an attention layout whose units are KV groups (spec §0.3): each
/// group moves as a whole: the r·d_h q rows of its heads, its d_h k and v
/// rows, and the r·d_h o columns of its heads. Heads keep their order inside
/// the group and RoPE acts within a head, so the function is unchanged. For
/// MHA (r = 1) this is the reference's head-block permutation.
pub fn permute_attention<B: Backend>(
    backend: &B,
    plan: &LayoutPlan,
    geometry: AttentionGeometry,
    weights: &AttentionWeights<B::Tensor>,
) -> Result<AttentionWeights<B::Tensor>> {
    geometry.validate()?;
    if plan.units() != geometry.kv_heads {
        return Err(ApexError::shape(
            "permute attention",
            &[geometry.kv_heads],
            &[plan.units()],
        ));
    }
    let query_rows = plan.expand(geometry.group_size() * geometry.head_dim);
    let kv_rows = plan.expand(geometry.head_dim);
    Ok(AttentionWeights {
        q: permute_rows(backend, &weights.q, &query_rows, "permute q_proj")?,
        k: permute_rows(backend, &weights.k, &kv_rows, "permute k_proj")?,
        v: permute_rows(backend, &weights.v, &kv_rows, "permute v_proj")?,
        o: permute_columns(backend, &weights.o, &query_rows, "permute o_proj")?,
        q_bias: permute_bias(
            backend,
            weights.q_bias.as_ref(),
            &query_rows,
            "permute q bias",
        )?,
        k_bias: permute_bias(backend, weights.k_bias.as_ref(), &kv_rows, "permute k bias")?,
        v_bias: permute_bias(backend, weights.v_bias.as_ref(), &kv_rows, "permute v bias")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_d_a_tuned_then_rest_ascending() {
        let plan = LayoutPlan::new(&[4, 1], &[0, 6], &[5], 7).unwrap();
        assert_eq!(plan.order(), &[4, 1, 0, 6, 5, 2, 3]);
        assert_eq!(plan.inverse(), &[2, 1, 5, 6, 0, 4, 3]);
        assert_eq!((plan.k(), plan.tuned()), (2, 5));
        assert_eq!(plan.disadvantageous(), &[4, 1]);
        assert_eq!(plan.advantageous(), &[0, 6]);
        assert_eq!(plan.tuned_only(), &[5]);
        assert_eq!(plan.remap(&[5, 4]).unwrap(), vec![4, 0]);
    }

    #[test]
    fn overlapping_or_out_of_range_units_are_rejected() {
        assert!(matches!(
            LayoutPlan::new(&[1], &[1], &[], 3),
            Err(ApexError::InvalidIndex { index: 1, .. })
        ));
        assert!(matches!(
            LayoutPlan::new(&[0], &[3], &[], 3),
            Err(ApexError::InvalidIndex { index: 3, .. })
        ));
        assert!(LayoutPlan::new(&[0], &[], &[], 3).is_err());
        let plan = LayoutPlan::new(&[0], &[1], &[], 3).unwrap();
        assert!(plan.remap(&[3]).is_err());
    }

    #[test]
    fn group_blocks_expand_to_contiguous_rows() {
        let plan = LayoutPlan::new(&[2], &[0], &[], 3).unwrap();
        assert_eq!(plan.expand(2), vec![4, 5, 0, 1, 2, 3]);
    }
}
