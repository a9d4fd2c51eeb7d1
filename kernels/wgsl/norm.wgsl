// RMSNorm over the rows of a contiguous [T, d] tensor (apex_core::TransformerOps):
//   rms_norm              inv[t] = 1/sqrt(mean_j x[t,j]² + eps), y[t,j] = x[t,j]·inv[t]·w[j]
//   rms_norm_backward     grad_x[t,j] = inv[t]·(g[t,j] − n[t,j]·mean_i g[t,i]·n[t,i]),
//                         with n = x·inv[t] and g = grad_y ⊙ w
//   rms_norm_weight_grad  grad_w[j] += Σ_t grad_y[t,j]·x[t,j]·inv[t]   (rows in order)
// The row kernels run one workgroup per row and reduce in workgroup memory in a
// fixed order (deterministic); the weight gradient runs one invocation per column.

struct Params {
    rows: u32,
    d: u32,
    eps: f32,
    pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
// Forward: inv_rms (written). Backward: inv_rms (read).
@group(0) @binding(3) var<storage, read_write> inv_rms: array<f32>;
// Forward: y. Backward: grad_x. Weight gradient: grad_w.
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read> grad_y: array<f32>;

const WG: u32 = 64u;

var<workgroup> partial: array<f32, WG>;

fn row_of(wid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return wid.x + wid.y * groups.x;
}

// Sum of `v` over the workgroup, the same value returned to every invocation.
fn workgroup_sum(lid: u32, v: f32) -> f32 {
    partial[lid] = v;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if lid < stride {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(WG)
fn rms_norm(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let t = row_of(wid, groups);
    let live = t < p.rows;
    var ss = 0.0;
    if live {
        for (var j = lid; j < p.d; j += WG) {
            let a = x[t * p.d + j];
            ss = fma(a, a, ss);
        }
    }
    let r = 1.0 / sqrt(workgroup_sum(lid, ss) / f32(p.d) + p.eps);
    if live {
        if lid == 0u {
            inv_rms[t] = r;
        }
        for (var j = lid; j < p.d; j += WG) {
            out[t * p.d + j] = x[t * p.d + j] * r * w[j];
        }
    }
}

@compute @workgroup_size(WG)
fn rms_norm_backward(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let t = row_of(wid, groups);
    let live = t < p.rows;
    var r = 0.0;
    var dot = 0.0;
    if live {
        r = inv_rms[t];
        for (var j = lid; j < p.d; j += WG) {
            let at = t * p.d + j;
            dot += grad_y[at] * w[j] * x[at] * r;
        }
    }
    let mean = workgroup_sum(lid, dot) / f32(p.d);
    if live {
        for (var j = lid; j < p.d; j += WG) {
            let at = t * p.d + j;
            out[at] = r * (grad_y[at] * w[j] - x[at] * r * mean);
        }
    }
}

@compute @workgroup_size(WG)
fn rms_norm_weight_grad(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let j = gid.x + gid.y * groups.x * WG;
    if j >= p.d {
        return;
    }
    var acc = out[j];
    for (var t = 0u; t < p.rows; t++) {
        let at = t * p.d + j;
        acc += grad_y[at] * x[at] * inv_rms[t];
    }
    out[j] = acc;
}
