// Fused Monarch products (spec §4.1, §5.1): both block-diagonal stages in one
// dispatch, the stride permutation done through workgroup memory instead of a
// transpose pass or a second, badly-strided GEMM.
//
// k = b·p; blkdiag1 = W1 and blkdiag2 = W2 are [b, p, p], contiguous. For one row:
//   monarch_forward (out = x·Mᵀ + β·out):
//     y1[i·p + a]   = Σ_j W1[i, a, j] · x[i·p + j]          stage 1
//     out[σ·b + λ]  = Σ_ρ W2[λ, σ, ρ] · y1[ρ·b + λ]         stage 2 (reads y1 permuted)
//   monarch_transposed (out = g·M + β·out):
//     mid[ρ·b + λ]  = Σ_σ W2[λ, σ, ρ] · g[σ·b + λ]
//     out[i·p + j]  = Σ_a W1[i, a, j] · mid[i·p + a]
// The intermediate (y1 resp. mid, n×k contiguous) is also written to `stage`:
// the weight gradients need it.
//
// A workgroup owns `rows_per_group` (≤ MAX_ROWS) consecutive rows: their
// intermediate (rows_per_group·k ≤ SHARED floats) stays in workgroup memory
// between the stages, and each weight value read is used for all of them.
// x, g and out are strided views: element (r, c) at off + r·rs + c·cs.
// With β = 0, out is not read.

struct Params {
    rows: u32,
    k: u32,
    nblocks: u32,
    block: u32,
    rows_per_group: u32,
    beta: f32,
    pad0: u32,
    pad1: u32,
    in_off: u32,
    in_rs: u32,
    in_cs: u32,
    pad2: u32,
    out_off: u32,
    out_rs: u32,
    out_cs: u32,
    pad3: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> w1: array<f32>;
@group(0) @binding(3) var<storage, read> w2: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> stage: array<f32>;

const WG: u32 = 256u;
const MAX_ROWS: u32 = 8u;
// Workgroup floats for the intermediate: 16 KiB, the portable WebGPU limit.
const SHARED: u32 = 4096u;

var<workgroup> mid: array<f32, SHARED>;

fn in_at(row: u32, col: u32) -> u32 {
    return p.in_off + row * p.in_rs + col * p.in_cs;
}

// First row of this workgroup and how many rows it owns.
fn row_range(wid: vec3<u32>, groups: vec3<u32>) -> vec2<u32> {
    let row0 = (wid.x + wid.y * groups.x) * p.rows_per_group;
    if row0 >= p.rows {
        return vec2<u32>(row0, 0u);
    }
    return vec2<u32>(row0, min(p.rows_per_group, p.rows - row0));
}

// Keeps a value in the workgroup tile and in the global intermediate.
fn keep(r: u32, row0: u32, f: u32, v: f32) {
    mid[r * p.k + f] = v;
    stage[(row0 + r) * p.k + f] = v;
}

fn store(row: u32, col: u32, v: f32) {
    let at = p.out_off + row * p.out_rs + col * p.out_cs;
    if p.beta != 0.0 {
        out[at] = v + p.beta * out[at];
    } else {
        out[at] = v;
    }
}

@compute @workgroup_size(WG)
fn monarch_forward(
    @builtin(local_invocation_index) lidx: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let range = row_range(wid, groups);
    let row0 = range.x;
    let count = range.y;
    let b = p.nblocks;
    let q = p.block;
    // Stage 1: output f = i·p + a of block i reads row f of W1 (W1[i, a, :]).
    for (var f = lidx; f < p.k; f += WG) {
        let base = (f / q) * q;
        var acc: array<f32, MAX_ROWS>;
        for (var j = 0u; j < q; j++) {
            let w = w1[f * q + j];
            for (var r = 0u; r < MAX_ROWS; r++) {
                if r < count {
                    acc[r] = fma(w, input[in_at(row0 + r, base + j)], acc[r]);
                }
            }
        }
        for (var r = 0u; r < count; r++) {
            keep(r, row0, f, acc[r]);
        }
    }
    workgroupBarrier();
    // Stage 2: output o = σ·b + λ reads W2[λ, σ, :] and y1 at ρ·b + λ.
    for (var o = lidx; o < p.k; o += WG) {
        let sigma = o / b;
        let lambda = o % b;
        let w_row = (lambda * q + sigma) * q;
        var acc: array<f32, MAX_ROWS>;
        for (var rho = 0u; rho < q; rho++) {
            let w = w2[w_row + rho];
            for (var r = 0u; r < MAX_ROWS; r++) {
                if r < count {
                    acc[r] = fma(w, mid[r * p.k + rho * b + lambda], acc[r]);
                }
            }
        }
        for (var r = 0u; r < count; r++) {
            store(row0 + r, o, acc[r]);
        }
    }
}

@compute @workgroup_size(WG)
fn monarch_transposed(
    @builtin(local_invocation_index) lidx: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let range = row_range(wid, groups);
    let row0 = range.x;
    let count = range.y;
    let b = p.nblocks;
    let q = p.block;
    // Stage A: mid f = ρ·b + λ sums column ρ of W2[λ] against g at σ·b + λ.
    // Neighbouring invocations take neighbouring ρ (one λ), so their W2 reads
    // are adjacent and their g reads are one broadcast value.
    for (var t = lidx; t < p.k; t += WG) {
        let lambda = t / q;
        let rho = t % q;
        let f = rho * b + lambda;
        var acc: array<f32, MAX_ROWS>;
        for (var sigma = 0u; sigma < q; sigma++) {
            let w = w2[(lambda * q + sigma) * q + rho];
            for (var r = 0u; r < MAX_ROWS; r++) {
                if r < count {
                    acc[r] = fma(w, input[in_at(row0 + r, sigma * b + lambda)], acc[r]);
                }
            }
        }
        for (var r = 0u; r < count; r++) {
            keep(r, row0, f, acc[r]);
        }
    }
    workgroupBarrier();
    // Stage B: output o = i·p + j sums column j of W1[i] against mid[i·p + a].
    for (var o = lidx; o < p.k; o += WG) {
        let i = o / q;
        let j = o % q;
        var acc: array<f32, MAX_ROWS>;
        for (var a = 0u; a < q; a++) {
            let w = w1[(i * q + a) * q + j];
            for (var r = 0u; r < MAX_ROWS; r++) {
                if r < count {
                    acc[r] = fma(w, mid[r * p.k + i * q + a], acc[r]);
                }
            }
        }
        for (var r = 0u; r < count; r++) {
            store(row0 + r, o, acc[r]);
        }
    }
}
