//! How the optimizer sees a model: named trainable tensors with a parameter
//! group, offered one at a time to a visitor.

use apex_core::{Backend, Element, Result};

/// The optimizer group of a parameter (spec §6.3): weight decay applies to
/// `Decay` only, and `Monarch` tensors may run at a scaled learning rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParamGroup {
    /// Weights, embeddings, LM head, LoRA factors, `s2`, `mixer_vec`, `mixer_scale`.
    Decay,
    /// Norm weights and biases.
    NoDecay,
    /// `blkdiag1` / `blkdiag2` (learning rate × `mixer_lr_scale`).
    Monarch,
}

/// Receives `(name, group, tensor)` for every trainable tensor.
pub type ParamVisitor<'a, B> =
    dyn FnMut(&str, ParamGroup, &mut <B as Backend>::Tensor) -> Result<()> + 'a;

/// `value` in the backend's element type.
pub fn elem<B: Backend>(value: f64) -> B::Elem {
    <B::Elem as Element>::from_f64(value)
}
