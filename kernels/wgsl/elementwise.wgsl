// Elementwise ops over equal-shaped strided rows×cols views:
//   axpby          y = α·x + β·y
//   binary         y = op(x, z) + β·y            (op: 0 add, 1 sub, 2 mul, 3 div)
//   scale_columns  y[r, c] = x[r, c]·v[v_offset + c] + β·y[r, c]
//   unary          y = f(x)                       (f: see `apply_unary`)
//   fill           y = value
// Element (r, c) of view V lives at V_off + r·V_rs + c·V_cs. One invocation
// handles one element; the grid is 2-D only because one dimension is capped at
// 65535 workgroups. With β = 0, y is not read (NaN in y does not propagate).

struct Params {
    rows: u32,
    cols: u32,
    op: u32,
    v_offset: u32,
    alpha: f32,
    beta: f32,
    value: f32,
    pad0: u32,
    x_off: u32,
    x_rs: u32,
    x_cs: u32,
    pad1: u32,
    z_off: u32,
    z_rs: u32,
    z_cs: u32,
    pad2: u32,
    y_off: u32,
    y_rs: u32,
    y_cs: u32,
    pad3: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
// The second operand: z of `binary`, the scale vector v of `scale_columns`.
@group(0) @binding(2) var<storage, read> z: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

const WG: u32 = 256u;

// (row, col) of this invocation, or rows (out of range) past the end.
fn element(gid: vec3<u32>, groups: vec3<u32>) -> vec2<u32> {
    let index = gid.x + gid.y * groups.x * WG;
    if p.cols == 0u || index >= p.rows * p.cols {
        return vec2<u32>(p.rows, 0u);
    }
    return vec2<u32>(index / p.cols, index % p.cols);
}

fn x_at(rc: vec2<u32>) -> u32 {
    return p.x_off + rc.x * p.x_rs + rc.y * p.x_cs;
}

fn z_at(rc: vec2<u32>) -> u32 {
    return p.z_off + rc.x * p.z_rs + rc.y * p.z_cs;
}

fn y_at(rc: vec2<u32>) -> u32 {
    return p.y_off + rc.x * p.y_rs + rc.y * p.y_cs;
}

// v + β·y[at], reading y only when β ≠ 0.
fn accumulate(v: f32, at: u32) -> f32 {
    if p.beta != 0.0 {
        return v + p.beta * y[at];
    }
    return v;
}

@compute @workgroup_size(WG)
fn axpby(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let rc = element(gid, groups);
    if rc.x >= p.rows {
        return;
    }
    let at = y_at(rc);
    y[at] = accumulate(p.alpha * x[x_at(rc)], at);
}

@compute @workgroup_size(WG)
fn binary(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let rc = element(gid, groups);
    if rc.x >= p.rows {
        return;
    }
    let u = x[x_at(rc)];
    let w = z[z_at(rc)];
    var v: f32;
    switch p.op {
        case 0u: { v = u + w; }
        case 1u: { v = u - w; }
        case 2u: { v = u * w; }
        default: { v = u / w; }
    }
    let at = y_at(rc);
    y[at] = accumulate(v, at);
}

@compute @workgroup_size(WG)
fn scale_columns(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let rc = element(gid, groups);
    if rc.x >= p.rows {
        return;
    }
    let at = y_at(rc);
    y[at] = accumulate(x[x_at(rc)] * z[p.v_offset + rc.y], at);
}

fn sigmoid(u: f32) -> f32 {
    return 1.0 / (1.0 + exp(-u));
}

// 0 silu, 1 silu gradient, 2 sqrt, 3 square, 4 exp, 5 neg (apex_core::UnaryOp order).
fn apply_unary(u: f32) -> f32 {
    switch p.op {
        case 0u: { return u / (1.0 + exp(-u)); }
        case 1u: {
            let s = sigmoid(u);
            return s * (1.0 + u * (1.0 - s));
        }
        case 2u: { return sqrt(u); }
        case 3u: { return u * u; }
        case 4u: { return exp(u); }
        default: { return -u; }
    }
}

@compute @workgroup_size(WG)
fn unary(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let rc = element(gid, groups);
    if rc.x >= p.rows {
        return;
    }
    y[y_at(rc)] = apply_unary(x[x_at(rc)]);
}

@compute @workgroup_size(WG)
fn fill(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let rc = element(gid, groups);
    if rc.x >= p.rows {
        return;
    }
    y[y_at(rc)] = p.value;
}
