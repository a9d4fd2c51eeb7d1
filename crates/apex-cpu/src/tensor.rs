//! The CPU tensor: a shared, copy-on-write buffer plus a shape.

use apex_core::layout::{self, numel};
use apex_core::{ApexError, Element, Result};
use std::sync::Arc;

/// A dense row-major tensor in host memory. Cloning is cheap (the buffer is
/// shared); the first write to a shared buffer copies it.
#[derive(Clone, Debug)]
pub struct CpuTensor<E> {
    data: Arc<Vec<E>>,
    shape: Vec<usize>,
}

impl<E: Element> CpuTensor<E> {
    /// A zero-filled tensor.
    pub fn zeros(shape: &[usize]) -> Self {
        CpuTensor {
            data: Arc::new(vec![E::ZERO; numel(shape)]),
            shape: shape.to_vec(),
        }
    }

    /// Wraps `data` (row-major) as a tensor of `shape`.
    pub fn from_vec(data: Vec<E>, shape: &[usize]) -> Result<Self> {
        if data.len() != numel(shape) {
            return Err(ApexError::ShapeMismatch {
                op: "upload",
                expected: shape.to_vec(),
                got: vec![data.len()],
            });
        }
        Ok(CpuTensor {
            data: Arc::new(data),
            shape: shape.to_vec(),
        })
    }

    /// The elements, row-major.
    pub fn data(&self) -> &[E] {
        &self.data
    }

    /// Mutable elements (copies the buffer first if it is shared).
    pub fn data_mut(&mut self) -> &mut [E] {
        Arc::make_mut(&mut self.data).as_mut_slice()
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True for a tensor with no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// `(rows, cols)` of a 2-D tensor.
    pub fn dims2(&self, op: &'static str) -> Result<(usize, usize)> {
        layout::dims2(op, &self.shape)
    }

    /// The same buffer with a new shape of equal element count.
    pub fn reshaped(&self, shape: &[usize]) -> Result<Self> {
        if numel(shape) != self.len() {
            return Err(ApexError::shape("reshape", &self.shape, shape));
        }
        Ok(CpuTensor {
            data: Arc::clone(&self.data),
            shape: shape.to_vec(),
        })
    }
}
