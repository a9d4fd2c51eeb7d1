//! AdamW with parameter groups and global-norm clipping (spec §6.3).
//!
//! Moments live on the device next to the parameters, keyed by parameter name.
//! A new [`AdamW`] has no moments: creating one per APEX stage is the
//! reference's optimizer reset.

use crate::error::{Result, TrainError};
use apex_core::ops::{self, zero};
use apex_core::{AdamWStep, Backend, MatView, TransformerOps};
use apex_model::{Gradients, LlamaModel, ParamGroup};
use std::collections::HashMap;

/// Optimizer hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Decoupled decay for [`ParamGroup::Decay`] tensors (0 in the reference).
    pub weight_decay: f64,
    /// Global-norm clipping threshold (1.0 in the reference); `None` disables it.
    pub max_grad_norm: Option<f64>,
    /// Learning-rate factor of the Monarch factors (`mixer_lr_scale`).
    pub monarch_lr_scale: f64,
}

impl Default for AdamWConfig {
    /// The reference: betas (0.9, 0.95), eps 1e−8, no decay, clip at 1.0.
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.0,
            max_grad_norm: Some(1.0),
            monarch_lr_scale: 1.0,
        }
    }
}

struct Moments<B: Backend> {
    m: B::Tensor,
    v: B::Tensor,
    step: u64,
}

/// AdamW state for one stage.
pub struct AdamW<B: Backend> {
    config: AdamWConfig,
    moments: HashMap<String, Moments<B>>,
}

/// Σ x² of a tensor of any shape (seen as one row).
fn sum_of_squares<B: Backend>(backend: &B, x: &B::Tensor) -> Result<f64> {
    let n: usize = backend.shape(x).iter().product();
    if n == 0 {
        return Ok(0.0);
    }
    // A [n/c, c] view keeps the column-dot short and wide.
    let cols = (1..=n.min(4096)).rev().find(|c| n % c == 0).unwrap_or(1);
    let flat = backend.reshape(x, &[n / cols, cols])?;
    let view = MatView::full(n / cols, cols);
    let mut out = backend.zeros(&[cols])?;
    backend.column_dot(&flat, view, &flat, view, zero::<B>(), &mut out, 0)?;
    Ok(ops::download_f64(backend, &out)?.iter().sum())
}

/// `sqrt(Σ_tensors Σ g²)`, the global gradient norm.
pub fn global_grad_norm<B: Backend>(backend: &B, grads: &Gradients<B>) -> Result<f64> {
    let mut total = 0.0;
    for (_, g) in grads.iter() {
        total += sum_of_squares(backend, g)?;
    }
    Ok(total.sqrt())
}

impl<B: TransformerOps> AdamW<B> {
    /// A fresh optimizer (no moments).
    pub fn new(config: AdamWConfig) -> Self {
        AdamW {
            config,
            moments: HashMap::new(),
        }
    }

    /// One update of every trainable tensor of `model` that has a gradient, at
    /// learning rate `lr`. Returns the global gradient norm before clipping.
    pub fn step(
        &mut self,
        backend: &B,
        model: &mut LlamaModel<B>,
        grads: &Gradients<B>,
        lr: f64,
    ) -> Result<f64> {
        let norm = global_grad_norm(backend, grads)?;
        if !norm.is_finite() {
            return Err(TrainError::Diverged {
                step: 0,
                what: "the gradient norm".into(),
            });
        }
        let grad_scale = match self.config.max_grad_norm {
            Some(max) if norm > max => max / (norm + 1e-6),
            _ => 1.0,
        };
        let config = self.config;
        let moments = &mut self.moments;
        model.visit_trainable(&mut |name, group, param| {
            let Some(grad) = grads.get(name) else {
                return Ok(());
            };
            let shape = backend.shape(param).to_vec();
            if !moments.contains_key(name) {
                moments.insert(
                    name.to_string(),
                    Moments {
                        m: backend.zeros(&shape)?,
                        v: backend.zeros(&shape)?,
                        step: 0,
                    },
                );
            }
            let state = moments.get_mut(name).expect("inserted above");
            state.step += 1;
            let (group_lr, decay) = match group {
                ParamGroup::Decay => (lr, config.weight_decay),
                ParamGroup::NoDecay => (lr, 0.0),
                ParamGroup::Monarch => (lr * config.monarch_lr_scale, config.weight_decay),
            };
            backend.adamw_step(
                param,
                grad,
                &mut state.m,
                &mut state.v,
                &AdamWStep {
                    lr: group_lr,
                    beta1: config.beta1,
                    beta2: config.beta2,
                    eps: config.eps,
                    weight_decay: decay,
                    step: state.step,
                    grad_scale,
                },
            )
        })?;
        Ok(norm)
    }
}
