//! Argument checks of every [`TransformerOps`](crate::TransformerOps) method,
//! written once so that every backend rejects the same inputs with the same
//! typed error before it touches any data or launches anything.
//!
//! Each function takes the operands' shapes (from [`Backend::shape`](crate::Backend::shape))
//! and returns the dimensions the backend needs.

use crate::error::{ApexError, Result};
use crate::layout::{check_indices, dims2, expect_shape};
use crate::transformer_ops::{AdamWStep, IGNORE_INDEX};

/// `[n, S, S]` → `(n, S)`.
fn square_blocks(op: &'static str, shape: &[usize]) -> Result<(usize, usize)> {
    match shape {
        [n, s, s2] if s == s2 => Ok((*n, *s)),
        other => Err(ApexError::shape(op, &[0, 0, 0], other)),
    }
}

/// RMSNorm forward: `x`: `[T, d]`, `weight`: `[d]` → `(T, d)`.
pub fn rms_norm(x: &[usize], weight: &[usize]) -> Result<(usize, usize)> {
    const OP: &str = "rms_norm";
    let (rows, d) = dims2(OP, x)?;
    expect_shape(OP, weight, &[d])?;
    Ok((rows, d))
}

/// RMSNorm backward: `x`, `grad_y`: `[T, d]`, `weight` and the optional
/// weight gradient: `[d]`, `inv_rms`: `[T]` → `(T, d)`.
pub fn rms_norm_backward(
    x: &[usize],
    weight: &[usize],
    inv_rms: &[usize],
    grad_y: &[usize],
    grad_weight: Option<&[usize]>,
) -> Result<(usize, usize)> {
    const OP: &str = "rms_norm_backward";
    let (rows, d) = dims2(OP, x)?;
    expect_shape(OP, weight, &[d])?;
    expect_shape(OP, inv_rms, &[rows])?;
    expect_shape(OP, grad_y, &[rows, d])?;
    if let Some(gw) = grad_weight {
        expect_shape(OP, gw, &[d])?;
    }
    Ok((rows, d))
}

/// RoPE: `x`: `[T, width]` with an even `head_dim` dividing `width` and a
/// positive `seq_len` dividing `T` → `(T, width)`.
pub fn rope(x: &[usize], head_dim: usize, seq_len: usize) -> Result<(usize, usize)> {
    let (rows, width) = dims2("rope", x)?;
    if head_dim == 0 || head_dim % 2 != 0 || width % head_dim != 0 {
        return Err(ApexError::config(
            "rope.head_dim",
            format!("{head_dim} must be even and divide the row width {width}"),
        ));
    }
    if seq_len == 0 || rows % seq_len != 0 {
        return Err(ApexError::config(
            "rope.seq_len",
            format!("{seq_len} must be positive and divide the row count {rows}"),
        ));
    }
    Ok((rows, width))
}

/// Causal softmax: `scores`: `[n, S, S]` → `(n, S)`.
pub fn causal_softmax(scores: &[usize]) -> Result<(usize, usize)> {
    square_blocks("causal_softmax", scores)
}

/// Softmax backward: `probs` and `grad` both `[n, S, S]` → `(n, S)`.
pub fn softmax_backward(probs: &[usize], grad: &[usize]) -> Result<(usize, usize)> {
    const OP: &str = "softmax_backward";
    let (n, s) = square_blocks(OP, probs)?;
    expect_shape(OP, grad, &[n, s, s])?;
    Ok((n, s))
}

/// Cross-entropy: `logits`: `[T, V]`, one label per row, each in `0..V` or
/// [`IGNORE_INDEX`] → `(T, V, number of labelled rows)`.
pub fn cross_entropy(logits: &[usize], labels: &[i64]) -> Result<(usize, usize, usize)> {
    const OP: &str = "cross_entropy";
    let (rows, vocab) = dims2(OP, logits)?;
    if labels.len() != rows {
        return Err(ApexError::shape(OP, &[rows], &[labels.len()]));
    }
    if let Some(&bad) = labels
        .iter()
        .find(|&&l| l != IGNORE_INDEX && !(0..vocab as i64).contains(&l))
    {
        return Err(ApexError::InvalidIndex {
            op: OP,
            index: bad.max(0) as usize,
            bound: vocab,
        });
    }
    let count = labels.iter().filter(|&&l| l != IGNORE_INDEX).count();
    Ok((rows, vocab, count))
}

/// Embedding scatter-add: `rows`: `[n, d]`, one index per row, each below
/// `V`, `table`: `[V, d]` → `(n, d, V)`.
pub fn scatter_add_rows(
    rows: &[usize],
    index: &[usize],
    table: &[usize],
) -> Result<(usize, usize, usize)> {
    const OP: &str = "scatter_add_rows";
    let (n, d) = dims2(OP, rows)?;
    let (v, table_d) = dims2(OP, table)?;
    if index.len() != n {
        return Err(ApexError::shape(OP, &[n], &[index.len()]));
    }
    if table_d != d {
        return Err(ApexError::shape(OP, &[v, d], &[v, table_d]));
    }
    check_indices(OP, index, v)?;
    Ok((n, d, v))
}

/// The per-step constants of an AdamW update, derived once for every backend.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWCoefficients {
    /// `1 / (1 − β1^step)`.
    pub bias_correction1: f64,
    /// `1 / (1 − β2^step)`.
    pub bias_correction2: f64,
    /// `1 − lr·weight_decay`, the decoupled decay factor.
    pub decay: f64,
}

/// AdamW: `grad`, `m`, `v` shaped like `param`, steps counted from 1 →
/// the step's coefficients.
pub fn adamw_step(
    param: &[usize],
    grad: &[usize],
    m: &[usize],
    v: &[usize],
    step: &AdamWStep,
) -> Result<AdamWCoefficients> {
    for shape in [grad, m, v] {
        expect_shape("adamw_step", shape, param)?;
    }
    if step.step == 0 {
        return Err(ApexError::config("adamw.step", "steps are counted from 1"));
    }
    let t = i32::try_from(step.step).unwrap_or(i32::MAX);
    Ok(AdamWCoefficients {
        bias_correction1: 1.0 / (1.0 - step.beta1.powi(t)),
        bias_correction2: 1.0 / (1.0 - step.beta2.powi(t)),
        decay: 1.0 - step.lr * step.weight_decay,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_are_checked_with_typed_errors() {
        assert_eq!(rms_norm(&[3, 4], &[4]).unwrap(), (3, 4));
        assert!(matches!(
            rms_norm(&[3, 4], &[5]),
            Err(ApexError::ShapeMismatch { .. })
        ));
        assert!(matches!(
            rope(&[6, 8], 3, 2),
            Err(ApexError::InvalidConfig { .. })
        ));
        assert!(matches!(
            rope(&[6, 8], 4, 4),
            Err(ApexError::InvalidConfig { .. })
        ));
        assert_eq!(softmax_backward(&[2, 3, 3], &[2, 3, 3]).unwrap(), (2, 3));
        assert!(causal_softmax(&[2, 3, 4]).is_err());
        assert_eq!(
            cross_entropy(&[3, 5], &[0, IGNORE_INDEX, 4]).unwrap(),
            (3, 5, 2)
        );
        assert!(matches!(
            cross_entropy(&[2, 5], &[5, 0]),
            Err(ApexError::InvalidIndex {
                index: 5,
                bound: 5,
                ..
            })
        ));
        assert!(matches!(
            scatter_add_rows(&[2, 3], &[0, 7], &[4, 3]),
            Err(ApexError::InvalidIndex { index: 7, .. })
        ));
    }

    #[test]
    fn adamw_coefficients_follow_the_step() {
        let step = AdamWStep {
            lr: 0.1,
            beta1: 0.5,
            beta2: 0.75,
            eps: 1e-8,
            weight_decay: 0.2,
            step: 2,
            grad_scale: 1.0,
        };
        let c = adamw_step(&[3], &[3], &[3], &[3], &step).unwrap();
        assert_eq!(c.bias_correction1, 1.0 / 0.75);
        assert_eq!(c.bias_correction2, 1.0 / (1.0 - 0.5625));
        assert!((c.decay - 0.98).abs() < 1e-15);
        let first = AdamWStep { step: 0, ..step };
        assert!(matches!(
            adamw_step(&[3], &[3], &[3], &[3], &first),
            Err(ApexError::InvalidConfig { .. })
        ));
    }
}
