// Row and column gathers into a new contiguous tensor, from a contiguous
// rows×cols source and a u32 index list (validated on the host):
//   gather_rows     out[i, c] = x[index[i], c]       (out: len(index)×cols)
//   gather_columns  out[r, j] = x[r, index[j]]       (out: rows×len(index))
// Used for the APEX unit permutations; one invocation per output element.

struct Params {
    // Output dims.
    rows: u32,
    cols: u32,
    // Row length of the source.
    src_cols: u32,
    pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> index: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

const WG: u32 = 256u;

fn linear(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.x + gid.y * groups.x * WG;
}

@compute @workgroup_size(WG)
fn gather_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = linear(gid, groups);
    if p.cols == 0u || i >= p.rows * p.cols {
        return;
    }
    let r = i / p.cols;
    let c = i % p.cols;
    out[i] = x[index[r] * p.src_cols + c];
}

@compute @workgroup_size(WG)
fn gather_columns(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = linear(gid, groups);
    if p.cols == 0u || i >= p.rows * p.cols {
        return;
    }
    let r = i / p.cols;
    let c = i % p.cols;
    out[i] = x[r * p.src_cols + index[c]];
}

// Embedding backward, scatter_add_rows: table[dest[u], c] += Σ rows[src, c]
// over the sources of destination u, in source order (so repeated indices add
// up exactly as the CPU reference does, with no float atomics). The host sorts
// the index list into `offsets` (per destination, into `index`) and `index`
// (source rows); here `rows` = number of destinations, `cols` = d.
@group(0) @binding(4) var<storage, read> offsets: array<u32>;
@group(0) @binding(5) var<storage, read> dest: array<u32>;

@compute @workgroup_size(WG)
fn scatter_add_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = linear(gid, groups);
    if p.cols == 0u || i >= p.rows * p.cols {
        return;
    }
    let u = i / p.cols;
    let c = i % p.cols;
    let at = dest[u] * p.cols + c;
    var acc = out[at];
    for (var s = offsets[u]; s < offsets[u + 1u]; s++) {
        acc += x[index[s] * p.cols + c];
    }
    out[at] = acc;
}
