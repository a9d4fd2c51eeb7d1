// One AdamW update in place over equal-length param, grad, m, v
// (apex_core::TransformerOps::adamw_step). With g = grad_scale·grad:
//   m ← β1·m + (1−β1)·g,  v ← β2·v + (1−β2)·g²,
//   p ← (1 − lr·wd)·p − lr·(m·c1) / (sqrt(v·c2) + eps)
// where c1 = 1/(1−β1^step), c2 = 1/(1−β2^step) are computed on the host in f64.

struct Params {
    n: u32,
    beta1: f32,
    beta2: f32,
    one_minus_beta1: f32,
    one_minus_beta2: f32,
    grad_scale: f32,
    decay: f32,
    lr: f32,
    c1: f32,
    c2: f32,
    eps: f32,
    pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> param: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;

const WG: u32 = 256u;

@compute @workgroup_size(WG)
fn adamw_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * WG;
    if i >= p.n {
        return;
    }
    let g = p.grad_scale * grad[i];
    let m1 = p.beta1 * m[i] + p.one_minus_beta1 * g;
    let v1 = p.beta2 * v[i] + p.one_minus_beta2 * g * g;
    m[i] = m1;
    v[i] = v1;
    param[i] = p.decay * param[i] - p.lr * (m1 * p.c1) / (sqrt(v1 * p.c2) + p.eps);
}
