// Column dot products: out[out_offset + c] = Σ_r x[r, c]·z[r, c] + β·out[out_offset + c]
// over equal-shaped strided rows×cols views (gradients of per-column scales,
// squared column norms for the scores).
//
// A workgroup owns COLS adjacent columns; its ROWS thread rows each sum every
// ROWS-th row (neighbouring threads read neighbouring columns, so row-major
// reads coalesce), then the partial sums are added in workgroup memory in a
// fixed order, so results are deterministic. With β = 0, out is not read.

struct Params {
    rows: u32,
    cols: u32,
    out_offset: u32,
    beta: f32,
    x_off: u32,
    x_rs: u32,
    x_cs: u32,
    pad0: u32,
    z_off: u32,
    z_rs: u32,
    z_cs: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> z: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

const COLS: u32 = 64u;
const ROWS: u32 = 4u;

var<workgroup> partial: array<f32, COLS * ROWS>;

@compute @workgroup_size(COLS, ROWS)
fn column_dot(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let col = (wid.x + wid.y * groups.x) * COLS + lid.x;
    var sum = 0.0;
    if col < p.cols {
        for (var r = lid.y; r < p.rows; r += ROWS) {
            sum = fma(x[p.x_off + r * p.x_rs + col * p.x_cs], z[p.z_off + r * p.z_rs + col * p.z_cs], sum);
        }
    }
    partial[lid.y * COLS + lid.x] = sum;
    workgroupBarrier();
    if lid.y == 0u && col < p.cols {
        var total = partial[lid.x];
        for (var i = 1u; i < ROWS; i++) {
            total += partial[i * COLS + lid.x];
        }
        let at = p.out_offset + col;
        if p.beta != 0.0 {
            total += p.beta * out[at];
        }
        out[at] = total;
    }
}
