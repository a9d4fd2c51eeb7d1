//! Named gradient buffers, filled by the backward pass and read by the optimizer.
//!
//! Only trainable parameters ever get an entry: a frozen weight's gradient is
//! never computed, so a model that trains 5% of its weights allocates gradient
//! memory for those 5% only.

use apex_core::ops::{one, zero};
use apex_core::{ApexError, Backend, MatView};
use std::collections::BTreeMap;

/// Gradients keyed by parameter name (the HF tensor name for dense weights).
#[derive(Debug)]
pub struct Gradients<B: Backend> {
    map: BTreeMap<String, B::Tensor>,
}

impl<B: Backend> Default for Gradients<B> {
    fn default() -> Self {
        Gradients {
            map: BTreeMap::new(),
        }
    }
}

impl<B: Backend> Gradients<B> {
    /// No gradients yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The buffer for `name`, created zero-filled with `shape` on first use, so
    /// callers can accumulate into it with `β = 1`.
    pub fn slot(
        &mut self,
        backend: &B,
        name: &str,
        shape: &[usize],
    ) -> Result<&mut B::Tensor, ApexError> {
        if !self.map.contains_key(name) {
            self.map.insert(name.to_string(), backend.zeros(shape)?);
        }
        let slot = self.map.get_mut(name).expect("inserted above");
        if backend.shape(slot) != shape {
            return Err(ApexError::shape(
                "gradient slot",
                shape,
                backend.shape(slot),
            ));
        }
        Ok(slot)
    }

    /// Adds `grad` into the buffer for `name` (a copy on first use).
    pub fn accumulate(
        &mut self,
        backend: &B,
        name: &str,
        grad: &B::Tensor,
    ) -> Result<(), ApexError> {
        let shape = backend.shape(grad).to_vec();
        let (rows, cols) = match shape[..] {
            [r, c] => (r, c),
            _ => (1, shape.iter().product()),
        };
        let view = MatView::full(rows, cols);
        match self.map.get_mut(name) {
            Some(slot) => {
                if backend.shape(slot) != shape.as_slice() {
                    return Err(ApexError::shape(
                        "gradient accumulate",
                        &shape,
                        backend.shape(slot),
                    ));
                }
                backend.axpby(one::<B>(), grad, view, one::<B>(), slot, view)
            }
            None => {
                let mut copy = backend.zeros(&shape)?;
                backend.axpby(one::<B>(), grad, view, zero::<B>(), &mut copy, view)?;
                self.map.insert(name.to_string(), copy);
                Ok(())
            }
        }
    }

    /// The gradient of `name`, if the backward produced one.
    pub fn get(&self, name: &str) -> Option<&B::Tensor> {
        self.map.get(name)
    }

    /// All gradients in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &B::Tensor)> {
        self.map.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of parameters with a gradient.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no gradient was produced.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
