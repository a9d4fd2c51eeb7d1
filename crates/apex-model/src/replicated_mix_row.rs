//! o_proj under GQA (spec §0.3): the mixed KV-group block of v_proj feeds all
//! `r` query heads of its group, so o_proj applies the shared Monarch and
//! `mixer_vec` to each of its `r` query-head replicas.
//!
//! After the group permutation the columns of o_proj (`d × H·d_h`) are
//! group-major: group `g` owns `[g·r·d_h, (g+1)·r·d_h)`, and inside it head
//! `j` owns `d_h` columns. Replica `j` is the `H_kv·d_h` columns of the `j`-th
//! head of every group; in replica order its groups are laid out
//! `[D | A | E | F]` exactly like v_proj's rows, so each replica is an ordinary
//! [`MixRow`] sharing the v_proj mixer, and `o = Σ_j MixRow_j(ctx_j)`. For MHA
//! (`r = 1`) this is one MixRow over all columns, the reference's o_proj.

use apex_core::ops::{self, one, zero};
use apex_core::{Backend, MatView, MixRow, MixRowCache, Mixer, MixerGrads, Result};

/// o_proj as `r` MixRow modules over its query-head replicas.
#[derive(Clone, Debug)]
pub struct ReplicatedMixRow<B: Backend> {
    /// One MixRow per head position `j < r`, each `d × H_kv·d_h`.
    pub replicas: Vec<MixRow<B>>,
    kv_heads: usize,
    head_dim: usize,
}

/// Caches of the replica forwards.
#[derive(Clone, Debug)]
pub struct ReplicatedCache<B: Backend> {
    caches: Vec<MixRowCache<B>>,
}

/// Per replica ∂S (`d × t_dims`), and ∂ctx when requested.
pub type ReplicatedGrads<B> = (Vec<<B as Backend>::Tensor>, Option<<B as Backend>::Tensor>);

/// Columns of replica `j` in the full `H·d_h` width.
fn replica_columns(j: usize, group: usize, kv_heads: usize, head_dim: usize) -> Vec<usize> {
    (0..kv_heads)
        .flat_map(|g| {
            let start = (g * group + j) * head_dim;
            start..start + head_dim
        })
        .collect()
}

impl<B: Backend> ReplicatedMixRow<B> {
    /// Splits `weight` (`d × H·d_h`, groups permuted to `[D|A|E|F]`) into `r`
    /// replicas with `k_dims` mixed and `t_dims` tuned columns each
    /// (`k_dims = k_groups·d_h`, `t_dims = t_groups·d_h`).
    pub fn new(
        backend: &B,
        weight: &B::Tensor,
        kv_heads: usize,
        head_dim: usize,
        k_dims: usize,
        t_dims: usize,
        mix_channels: bool,
    ) -> Result<Self> {
        let (_, width) = ops::dims2(backend, weight, "o_proj")?;
        if kv_heads == 0 || head_dim == 0 || width % (kv_heads * head_dim) != 0 {
            return Err(apex_core::ApexError::config(
                "o_proj",
                format!("width {width} is not H_kv·d_h·r for H_kv = {kv_heads}, d_h = {head_dim}"),
            ));
        }
        let group = width / (kv_heads * head_dim);
        let replicas = (0..group)
            .map(|j| {
                let w = backend
                    .gather_columns(weight, &replica_columns(j, group, kv_heads, head_dim))?;
                MixRow::new(backend, &w, None, k_dims, t_dims, mix_channels)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ReplicatedMixRow {
            replicas,
            kv_heads,
            head_dim,
        })
    }

    fn group(&self) -> usize {
        self.replicas.len()
    }

    fn columns(&self, j: usize) -> Vec<usize> {
        replica_columns(j, self.group(), self.kv_heads, self.head_dim)
    }

    /// `o = Σ_j MixRow_j(ctx[:, replica j])` for ctx `[T, H·d_h]`.
    pub fn forward(
        &self,
        backend: &B,
        mixer: &Mixer<B>,
        x: &B::Tensor,
    ) -> Result<(B::Tensor, ReplicatedCache<B>)> {
        let mut out: Option<B::Tensor> = None;
        let mut caches = Vec::with_capacity(self.group());
        for (j, replica) in self.replicas.iter().enumerate() {
            let xj = backend.gather_columns(x, &self.columns(j))?;
            let (yj, cache) = replica.forward(backend, mixer, &xj)?;
            caches.push(cache);
            match out.as_mut() {
                None => out = Some(yj),
                Some(acc) => {
                    let v = ops::full(backend, &yj, "o_proj")?;
                    backend.axpby(one::<B>(), &yj, v, one::<B>(), acc, v)?;
                }
            }
        }
        let out = out.ok_or_else(|| apex_core::ApexError::config("o_proj", "no replicas"))?;
        Ok((out, ReplicatedCache { caches }))
    }

    /// Backward: per replica ∂S (`d × t_dims`), and ∂ctx when `need_grad_x`;
    /// the mixer gradients of every replica add into `shared`.
    pub fn backward(
        &self,
        backend: &B,
        mixer: &Mixer<B>,
        cache: &ReplicatedCache<B>,
        g: &B::Tensor,
        shared: &mut MixerGrads<B>,
        need_grad_x: bool,
    ) -> Result<ReplicatedGrads<B>> {
        let (rows, _) = ops::dims2(backend, g, "o_proj.backward")?;
        let width = self.group() * self.kv_heads * self.head_dim;
        let mut grad_x = if need_grad_x {
            Some(backend.zeros(&[rows, width])?)
        } else {
            None
        };
        let mut grad_s2 = Vec::with_capacity(self.group());
        for (j, (replica, c)) in self.replicas.iter().zip(&cache.caches).enumerate() {
            let (gs, gx) = replica.backward(backend, mixer, c, g, shared, need_grad_x)?;
            grad_s2.push(gs);
            if let (Some(dst), Some(gx)) = (grad_x.as_mut(), gx) {
                let src = MatView::full(rows, self.kv_heads * self.head_dim);
                let full = MatView::full(rows, width);
                let group = self.group();
                for gi in 0..self.kv_heads {
                    let start = (gi * group + j) * self.head_dim;
                    backend.axpby(
                        one::<B>(),
                        &gx,
                        src.columns(gi * self.head_dim..(gi + 1) * self.head_dim),
                        zero::<B>(),
                        dst,
                        full.columns(start..start + self.head_dim),
                    )?;
                }
            }
        }
        Ok((grad_s2, grad_x))
    }

    /// The fused dense o_proj weight (`d × H·d_h`).
    pub fn fuse(&self, backend: &B, mixer: &Mixer<B>) -> Result<B::Tensor> {
        let group = self.group();
        let (rows, _) = self.replicas[0].linear.dims();
        let width = group * self.kv_heads * self.head_dim;
        let mut weight = backend.zeros(&[rows, width])?;
        let full = MatView::full(rows, width);
        for (j, replica) in self.replicas.iter().enumerate() {
            let (wj, _) = replica.fuse(backend, mixer)?;
            let src = MatView::full(rows, self.kv_heads * self.head_dim);
            for gi in 0..self.kv_heads {
                let start = (gi * group + j) * self.head_dim;
                backend.axpby(
                    one::<B>(),
                    &wj,
                    src.columns(gi * self.head_dim..(gi + 1) * self.head_dim),
                    zero::<B>(),
                    &mut weight,
                    full.columns(start..start + self.head_dim),
                )?;
            }
        }
        Ok(weight)
    }
}
