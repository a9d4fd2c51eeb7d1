//! The CUDA tensor: a shared, copy-on-write device buffer plus a shape.

use crate::device::Buffer;
use std::sync::Arc;

/// A dense row-major f32 tensor in device memory. Cloning is cheap (the
/// buffer is shared, like the CPU backend's); the first write to a shared
/// buffer copies it on the device, so clones stay independent.
#[derive(Clone, Debug)]
pub struct CudaTensor {
    pub(crate) buffer: Arc<Buffer>,
    pub(crate) shape: Vec<usize>,
    /// The device that owns `buffer` ([`crate::device::Device::id`]).
    pub(crate) device: u64,
}

impl CudaTensor {
    /// The logical shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.buffer.len()
    }

    /// True for a tensor with no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
