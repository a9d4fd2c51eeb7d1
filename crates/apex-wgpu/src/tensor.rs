//! The device tensor: a shared storage buffer plus a shape, copy-on-write like
//! the CPU reference's `CpuTensor`.

use crate::device::Gpu;
use apex_core::layout::{self, numel};
use apex_core::{ApexError, Result};
use std::sync::Arc;

/// A dense row-major f32 tensor in a wgpu storage buffer. Cloning (and
/// [`apex_core::Backend::reshape`]) shares the buffer; the first write through a
/// shared handle copies it on the device, so clones never see each other's writes.
#[derive(Clone, Debug)]
pub struct WgpuTensor {
    buffer: Arc<wgpu::Buffer>,
    shape: Vec<usize>,
}

impl WgpuTensor {
    pub(crate) fn new(buffer: wgpu::Buffer, shape: &[usize]) -> Self {
        WgpuTensor {
            buffer: Arc::new(buffer),
            shape: shape.to_vec(),
        }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        numel(&self.shape)
    }

    /// True for a tensor with no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The buffer, for reading.
    pub(crate) fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    /// The buffer, for writing: a buffer shared with another handle is first
    /// copied on the device (recorded in order with the pending dispatches).
    pub(crate) fn buffer_mut(&mut self, gpu: &Gpu) -> Result<&wgpu::Buffer> {
        if Arc::get_mut(&mut self.buffer).is_none() {
            let copy = gpu.storage(self.len(), None)?;
            let bytes = self.buffer.size();
            gpu.encode(|encoder| encoder.copy_buffer_to_buffer(&self.buffer, 0, &copy, 0, bytes))?;
            self.buffer = Arc::new(copy);
        }
        Ok(&self.buffer)
    }

    /// `(rows, cols)` of a 2-D tensor.
    pub(crate) fn dims2(&self, op: &'static str) -> Result<(usize, usize)> {
        layout::dims2(op, &self.shape)
    }

    /// The same buffer with a new shape of equal element count.
    pub(crate) fn reshaped(&self, shape: &[usize]) -> Result<Self> {
        if numel(shape) != self.len() {
            return Err(ApexError::shape("reshape", &self.shape, shape));
        }
        Ok(WgpuTensor {
            buffer: Arc::clone(&self.buffer),
            shape: shape.to_vec(),
        })
    }
}
