//! The parameters one layer's expansion modules share (spec §4.5): a single
//! Monarch map and a single `mixer_vec` v, used by up + gate + down in an FFN
//! layer and by v_proj + o_proj in an attention layer. Each module's backward
//! *accumulates* into one [`MixerGrads`] (spec §5.4).

use crate::backend::Backend;
use crate::error::{ApexError, Result};
use crate::monarch::{Monarch, MonarchGrads, MonarchInit};
use crate::ops;

/// A layer's shared mixer: Monarch M (k×k) and `mixer_vec` v (k, ones at init).
#[derive(Clone, Debug)]
pub struct Mixer<B: Backend> {
    pub monarch: Monarch<B>,
    /// v, length k (spec name `mixer_vec`).
    pub mixer_vec: B::Tensor,
}

/// Gradients of a [`Mixer`], summed over the modules that share it.
#[derive(Clone, Debug)]
pub struct MixerGrads<B: Backend> {
    pub monarch: MonarchGrads<B>,
    pub mixer_vec: B::Tensor,
}

impl<B: Backend> Mixer<B> {
    /// A fresh mixer of size k: v = 1 and M initialised by `init` (seeded).
    pub fn new(
        backend: &B,
        k: usize,
        init: MonarchInit,
        largest_divisor: bool,
        seed: u64,
    ) -> Result<Self> {
        let monarch = Monarch::new(backend, k, init, largest_divisor, seed)?;
        Ok(Mixer {
            mixer_vec: ops::ones(backend, k)?,
            monarch,
        })
    }

    /// Wraps given parameters; `mixer_vec` must have length k.
    pub fn from_parts(backend: &B, monarch: Monarch<B>, mixer_vec: B::Tensor) -> Result<Self> {
        let k = ops::len1(backend, &mixer_vec, "mixer.mixer_vec")?;
        if k != monarch.size() {
            return Err(ApexError::shape("mixer.mixer_vec", &[monarch.size()], &[k]));
        }
        Ok(Mixer { monarch, mixer_vec })
    }

    /// k.
    pub fn size(&self) -> usize {
        self.monarch.size()
    }
}

impl<B: Backend> MixerGrads<B> {
    /// Zero gradients shaped like `mixer`.
    pub fn zeros(backend: &B, mixer: &Mixer<B>) -> Result<Self> {
        Ok(MixerGrads {
            monarch: MonarchGrads::zeros(backend, &mixer.monarch)?,
            mixer_vec: backend.zeros(&[mixer.size()])?,
        })
    }
}
