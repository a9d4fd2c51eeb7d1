//! The device context: adapter and queue, the pipeline cache, the command
//! encoder that batches dispatches, buffer allocation and read-back.
//!
//! Dispatches are recorded into one pending command encoder and submitted in
//! batches ([`MAX_PENDING`] at a time, or when the host needs data), so a chain
//! of small ops costs one submit, not one per op. wgpu reports validation and
//! out-of-memory errors through a callback; it is captured here and every call
//! that can raise one returns it as [`ApexError::Backend`] instead of panicking.

use crate::kernels::{Kernel, Shader};
use crate::params::Params;
use apex_core::{ApexError, Result};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use wgpu::util::DeviceExt;

/// The backend name in [`ApexError::Backend`].
pub(crate) const BACKEND: &str = "wgpu";

/// Dispatches recorded before the encoder is submitted without being asked.
const MAX_PENDING: usize = 256;

/// An [`ApexError::Backend`] of this crate.
pub(crate) fn backend_error(message: impl Into<String>) -> ApexError {
    ApexError::Backend {
        backend: BACKEND,
        message: message.into(),
    }
}

/// A named set of overridable shader constants: one pipeline per kernel and variant.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Variant {
    pub name: &'static str,
    pub constants: &'static [(&'static str, f64)],
}

impl Variant {
    /// The shader's own constant values.
    pub(crate) const DEFAULT: Variant = Variant {
        name: "default",
        constants: &[],
    };
}

struct Pipeline {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

#[derive(Default)]
struct Pending {
    encoder: Option<wgpu::CommandEncoder>,
    dispatches: usize,
}

/// One opened adapter: device, queue and the caches built on them.
pub(crate) struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    error: Arc<Mutex<Option<String>>>,
    modules: Mutex<HashMap<Shader, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<(Kernel, &'static str), Arc<Pipeline>>>,
    pending: Mutex<Pending>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere cannot leave these caches half-updated in a way that
    // matters (entries are inserted whole), so a poisoned lock is still usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A grid of `count` workgroups laid out as x·y with x within the per-dimension
/// limit; shaders linearise it as `x + y·num_workgroups.x`.
pub(crate) fn grid(count: usize, max_per_dim: u32) -> Result<[u32; 3]> {
    let max = max_per_dim as usize;
    let x = count.clamp(1, max);
    let y = count.div_ceil(x).max(1);
    if y > max {
        return Err(backend_error(format!(
            "{count} workgroups exceed the {max}×{max} dispatch grid"
        )));
    }
    Ok([x as u32, y as u32, 1])
}

impl Gpu {
    /// Opens the default adapter (`WGPU_ADAPTER_NAME` / `WGPU_BACKEND` /
    /// `WGPU_POWER_PREF` select another) with all of its limits.
    pub(crate) fn open() -> Result<Gpu> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = pollster::block_on(wgpu::util::initialize_adapter_from_env_or_default(
            &instance, None,
        ))
        .map_err(|e| {
            backend_error(format!(
                "no wgpu adapter (install mesa-vulkan-drivers for lavapipe): {e}"
            ))
        })?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("apex-wgpu"),
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| backend_error(format!("cannot open {}: {e}", info.name)))?;
        let error = Arc::new(Mutex::new(None));
        let sink = Arc::clone(&error);
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            lock(&sink).get_or_insert_with(|| e.to_string());
        }));
        Ok(Gpu {
            device,
            queue,
            info,
            limits,
            error,
            modules: Mutex::default(),
            pipelines: Mutex::default(),
            pending: Mutex::default(),
        })
    }

    pub(crate) fn info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    pub(crate) fn max_workgroups_per_dim(&self) -> u32 {
        self.limits.max_compute_workgroups_per_dimension
    }

    /// The first error wgpu reported since the last check, as a typed error.
    fn check(&self) -> Result<()> {
        match lock(&self.error).take() {
            Some(message) => Err(backend_error(message)),
            None => Ok(()),
        }
    }

    /// A zero-filled (wgpu zero-initialises) or uploaded f32 storage buffer of
    /// `len` elements. Empty tensors get one padding element: wgpu cannot bind
    /// an empty buffer.
    pub(crate) fn storage(&self, len: usize, data: Option<&[f32]>) -> Result<wgpu::Buffer> {
        let bytes = (len.max(1) as u64) * 4;
        let limit = self
            .limits
            .max_buffer_size
            .min(self.limits.max_storage_buffer_binding_size);
        if bytes > limit {
            return Err(backend_error(format!(
                "a tensor of {len} f32 ({bytes} bytes) exceeds the adapter's {limit}-byte storage binding limit"
            )));
        }
        let usage = wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST;
        let buffer = match data {
            Some(values) if !values.is_empty() => {
                let contents: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                self.device
                    .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                        label: Some("apex tensor"),
                        contents: &contents,
                        usage,
                    })
            }
            _ => self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("apex tensor"),
                size: bytes,
                usage,
                mapped_at_creation: false,
            }),
        };
        self.check()?;
        Ok(buffer)
    }

    /// A read-only storage buffer of u32 words (gather indices; callers skip
    /// empty gathers, so `words` is never empty).
    pub(crate) fn index_buffer(&self, words: &[u32]) -> Result<wgpu::Buffer> {
        let contents: Vec<u8> = words.iter().flat_map(|v| v.to_le_bytes()).collect();
        let buffer = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("apex index"),
                contents: &contents,
                usage: wgpu::BufferUsages::STORAGE,
            });
        self.check()?;
        Ok(buffer)
    }

    /// Runs `record` on the pending command encoder.
    pub(crate) fn encode(&self, record: impl FnOnce(&mut wgpu::CommandEncoder)) -> Result<()> {
        let mut pending = lock(&self.pending);
        let encoder = pending.encoder.get_or_insert_with(|| {
            self.device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("apex batch"),
                })
        });
        record(encoder);
        pending.dispatches += 1;
        if pending.dispatches >= MAX_PENDING {
            self.submit(&mut pending);
        }
        drop(pending);
        self.check()
    }

    fn submit(&self, pending: &mut Pending) {
        if let Some(encoder) = pending.encoder.take() {
            self.queue.submit([encoder.finish()]);
            pending.dispatches = 0;
            // Frees the resources of finished submissions; never blocks.
            let _ = self.device.poll(wgpu::PollType::Poll);
        }
    }

    /// Submits everything recorded so far and waits until the device is idle.
    pub(crate) fn synchronize(&self) -> Result<()> {
        self.submit(&mut lock(&self.pending));
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| backend_error(format!("waiting for the device: {e}")))?;
        self.check()
    }

    /// Copies `buffer`'s first `len` elements to the host (submitting pending work).
    pub(crate) fn read(&self, buffer: &wgpu::Buffer, len: usize) -> Result<Vec<f32>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let bytes = len as u64 * 4;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("apex read-back"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.encode(|encoder| encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, bytes))?;
        self.submit(&mut lock(&self.pending));
        let (sender, receiver) = mpsc::channel();
        staging
            .slice(..)
            .map_async(wgpu::MapMode::Read, move |result| {
                let _ = sender.send(result);
            });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| backend_error(format!("waiting for the device: {e}")))?;
        self.check()?;
        receiver
            .recv()
            .map_err(|_| backend_error("read-back mapping was dropped"))?
            .map_err(|e| backend_error(format!("read-back mapping failed: {e}")))?;
        let values = {
            let view = staging
                .slice(..)
                .get_mapped_range()
                .map_err(|e| backend_error(format!("read-back range: {e}")))?;
            view.chunks_exact(4)
                .map(|w| f32::from_le_bytes([w[0], w[1], w[2], w[3]]))
                .collect()
        };
        staging.unmap();
        Ok(values)
    }

    fn pipeline(&self, kernel: Kernel, variant: Variant) -> Result<Arc<Pipeline>> {
        if let Some(p) = lock(&self.pipelines).get(&(kernel, variant.name)) {
            return Ok(Arc::clone(p));
        }
        let module = lock(&self.modules)
            .entry(kernel.shader)
            .or_insert_with(|| {
                self.device
                    .create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(kernel.shader.file()),
                        source: wgpu::ShaderSource::Wgsl(Cow::Borrowed(kernel.shader.source())),
                    })
            })
            .clone();
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(kernel.entry),
                layout: None,
                module: &module,
                entry_point: Some(kernel.entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: variant.constants,
                    // Every kernel writes its workgroup memory before reading it.
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
        self.check().map_err(|e| {
            backend_error(format!("{} in {}: {e}", kernel.entry, kernel.shader.file()))
        })?;
        let layout = pipeline.get_bind_group_layout(0);
        let entry = Arc::new(Pipeline { pipeline, layout });
        lock(&self.pipelines).insert((kernel, variant.name), Arc::clone(&entry));
        Ok(entry)
    }

    /// Records one dispatch of `kernel` (compiled with `variant`'s constants):
    /// `params` at binding 0, `buffers` at their bindings, `groups` workgroups.
    pub(crate) fn dispatch(
        &self,
        kernel: Kernel,
        variant: Variant,
        params: Params,
        buffers: &[(u32, &wgpu::Buffer)],
        groups: [u32; 3],
    ) -> Result<()> {
        let pipeline = self.pipeline(kernel, variant)?;
        let words = params.into_words();
        let contents: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let uniform = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("apex params"),
                contents: &contents,
                usage: wgpu::BufferUsages::UNIFORM,
            });
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: uniform.as_entire_binding(),
        }];
        entries.extend(
            buffers
                .iter()
                .map(|(binding, buffer)| wgpu::BindGroupEntry {
                    binding: *binding,
                    resource: buffer.as_entire_binding(),
                }),
        );
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(kernel.entry),
            layout: &pipeline.layout,
            entries: &entries,
        });
        self.check()?;
        self.encode(|encoder| {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(kernel.entry),
                timestamp_writes: None,
            });
            pass.set_pipeline(&pipeline.pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_stay_within_the_per_dimension_limit() {
        assert_eq!(grid(1, 65535).unwrap(), [1, 1, 1]);
        assert_eq!(grid(0, 65535).unwrap(), [1, 1, 1]);
        assert_eq!(grid(70000, 65535).unwrap(), [65535, 2, 1]);
        assert_eq!(grid(10, 4).unwrap(), [4, 3, 1]);
        assert!(grid(17, 4).is_err());
    }
}
