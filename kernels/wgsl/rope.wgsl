// Rotary position embedding in place on a contiguous [T, heads·head_dim]
// tensor, HF LLaMA "rotate_half" layout (apex_core::TransformerOps::rope).
// For row t (position pos = t mod seq_len), head h and i < half = head_dim/2:
//   x'[i]      = x[i]·cos f − x[i+half]·sin f
//   x'[i+half] = x[i+half]·cos f + x[i]·sin f
// cos and sin (negated for the inverse rotation) come from a [seq_len, half]
// table computed on the host in f64, so no f32 sin of a large angle is taken.
// One invocation per rotated pair.

struct Params {
    rows: u32,
    width: u32,
    head_dim: u32,
    seq_len: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// Interleaved (cos, sin) per (position, frequency).
@group(0) @binding(1) var<storage, read> table: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;

const WG: u32 = 256u;

@compute @workgroup_size(WG)
fn rope(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let half = p.head_dim / 2u;
    let pairs_per_row = p.width / 2u;
    let index = gid.x + gid.y * groups.x * WG;
    if index >= p.rows * pairs_per_row {
        return;
    }
    let t = index / pairs_per_row;
    let pair = index % pairs_per_row;
    let head = pair / half;
    let i = pair % half;
    let cs = table[(t % p.seq_len) * half + i];
    let lo = t * p.width + head * p.head_dim + i;
    let hi = lo + half;
    let x1 = x[lo];
    let x2 = x[hi];
    x[lo] = x1 * cs.x - x2 * cs.y;
    x[hi] = x2 * cs.x + x1 * cs.y;
}
