// Batched strided GEMM: C[i] = α·A[i]·B[i] + β·C[i] for every batch entry i.
//
// A[i] is m×k, B[i] is k×n, C[i] is m×n, each a strided view: element (r, c)
// of A[i] lives at a_off + i·a_bs + r·a_rs + c·a_cs (likewise B, C), so
// transposes, column slices and the Monarch stride permutations need no copy.
//
// One workgroup computes a (WG_M·TM)×(WG_N·TN) tile of one C[i]. Every BK-deep
// slice of A and B is staged in workgroup memory, then each thread accumulates
// a TM×TN block in registers (register blocking): per BK step a thread reads
// TM + TN values from workgroup memory and issues TM·TN fused multiply-adds.
// Thread (x, y) owns rows y + i·WG_M and columns x + j·WG_N, so neighbouring
// threads read neighbouring workgroup-memory words (no bank conflicts) and
// write neighbouring C elements (coalesced for row-major C).
//
// The tile shape is chosen per call through the pipeline-overridable constants
// below (a 128×128 tile for large products, smaller ones for the thin Monarch
// blocks); the register arrays are sized for the largest.
//
// With β = 0, C is not read, so NaN in C does not propagate.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    // bit 0: A is loaded along m (its row stride is the small one, e.g. Aᵀ views);
    // bit 1: B is loaded along k (e.g. Bᵀ views). Chosen so global reads coalesce.
    flags: u32,
    alpha: f32,
    beta: f32,
    // Grid offsets, for products larger than one dispatch's grid.
    batch_base: u32,
    tile_m_base: u32,
    tile_n_base: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
    a_off: u32,
    a_rs: u32,
    a_cs: u32,
    a_bs: u32,
    b_off: u32,
    b_rs: u32,
    b_cs: u32,
    b_bs: u32,
    c_off: u32,
    c_rs: u32,
    c_cs: u32,
    c_bs: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

// Threads per workgroup along m and n, and outputs per thread along m and n.
override WG_M: u32 = 16u;
override WG_N: u32 = 16u;
override TM: u32 = 4u;
override TN: u32 = 4u;

const BK: u32 = 8u;
const MAX_T: u32 = 8u;
const MAX_TILE: u32 = 128u;
// Row padding of the staged tiles: loads along k then hit distinct banks.
const STRIDE: u32 = MAX_TILE + 4u;

var<workgroup> a_tile: array<f32, BK * STRIDE>; // [kk][row]
var<workgroup> b_tile: array<f32, BK * STRIDE>; // [kk][col]

@compute @workgroup_size(WG_N, WG_M)
fn gemm(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let bm = WG_M * TM;
    let bn = WG_N * TN;
    let threads = WG_M * WG_N;
    let entry = p.batch_base + wid.z;
    let row0 = (p.tile_m_base + wid.y) * bm;
    let col0 = (p.tile_n_base + wid.x) * bn;
    let a_base = p.a_off + entry * p.a_bs;
    let b_base = p.b_off + entry * p.b_bs;
    let a_along_m = (p.flags & 1u) != 0u;
    let b_along_k = (p.flags & 2u) != 0u;

    var acc: array<f32, 64>; // MAX_T × MAX_T, zero-initialised
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        for (var i = lidx; i < bm * BK; i += threads) {
            var r: u32;
            var kk: u32;
            if a_along_m {
                r = i % bm;
                kk = i / bm;
            } else {
                kk = i % BK;
                r = i / BK;
            }
            let gr = row0 + r;
            let gk = k0 + kk;
            var v = 0.0;
            if gr < p.m && gk < p.k {
                v = a[a_base + gr * p.a_rs + gk * p.a_cs];
            }
            a_tile[kk * STRIDE + r] = v;
        }
        for (var i = lidx; i < bn * BK; i += threads) {
            var col: u32;
            var kk: u32;
            if b_along_k {
                kk = i % BK;
                col = i / BK;
            } else {
                col = i % bn;
                kk = i / bn;
            }
            let gc = col0 + col;
            let gk = k0 + kk;
            var v = 0.0;
            if gc < p.n && gk < p.k {
                v = b[b_base + gk * p.b_rs + gc * p.b_cs];
            }
            b_tile[kk * STRIDE + col] = v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            var af: array<f32, MAX_T>;
            var bf: array<f32, MAX_T>;
            for (var i = 0u; i < TM; i++) {
                af[i] = a_tile[kk * STRIDE + lid.y + i * WG_M];
            }
            for (var j = 0u; j < TN; j++) {
                bf[j] = b_tile[kk * STRIDE + lid.x + j * WG_N];
            }
            for (var i = 0u; i < TM; i++) {
                for (var j = 0u; j < TN; j++) {
                    acc[i * MAX_T + j] = fma(af[i], bf[j], acc[i * MAX_T + j]);
                }
            }
        }
        workgroupBarrier();
    }

    let c_base = p.c_off + entry * p.c_bs;
    for (var i = 0u; i < TM; i++) {
        let gr = row0 + lid.y + i * WG_M;
        if gr >= p.m {
            break;
        }
        for (var j = 0u; j < TN; j++) {
            let gc = col0 + lid.x + j * WG_N;
            if gc < p.n {
                let at = c_base + gr * p.c_rs + gc * p.c_cs;
                var v = p.alpha * acc[i * MAX_T + j];
                if p.beta != 0.0 {
                    v += p.beta * c[at];
                }
                c[at] = v;
            }
        }
    }
}
