// Batched strided GEMM: C[i] = α·A[i]·B[i] + β·C[i] for every batch entry i.
//
// A[i] is m×k, B[i] is k×n, C[i] is m×n, each a strided view: element (r, c)
// of A[i] lives at a_off + i·a_bs + r·a_rs + c·a_cs (likewise B, C), so
// transposes, column slices and the Monarch stride permutations need no copy.
//
// This file is the hand-written half of the kernel. `crates/apex-wgpu/src/
// matmul/generate.rs` replaces the tile-shape block below with one tile's
// values and appends the `gemm` entry point: straight-line code in which every
// accumulator and operand fragment is a named `vec4<f32>` variable, so no
// register array is ever indexed at run time (naga does not unroll loops, and
// GPU compilers typically put a dynamically indexed private array in local
// memory).
//
// One workgroup of WG_N×WG_M threads computes a BM×BN tile of one C[i]
// (BM = WG_M·TM, BN = WG_N·TN). Per BK-deep step it stages an A tile
// (a_tile[row][k], vec4 along k) and a B tile (b_tile[k][col], vec4 along n)
// in workgroup memory; thread (x, y) then accumulates rows y + i·WG_M and the
// column quads 4·(x + j·WG_N) .. +3: per 4 k it reads TM + TN vec4s from
// workgroup memory and issues TM·TN/4 vec4 FMAs. Neighbouring threads read
// neighbouring quads (no bank conflicts) and write neighbouring C columns.
// The next step's operands are loaded into registers while the current one
// is computed (register double buffering; the staged tiles stay within the
// 16 KiB workgroup memory WebGPU guarantees).
//
// Operand loads take one of three paths, chosen per call on the host
// (a_mode, b_mode) from the views:
//   1: unit stride along k (A) or n (B): one aligned vec4 per load;
//   2: unit stride along m (A, e.g. Aᵀ views) or k (B, e.g. Bᵀ views):
//      one aligned vec4 per load, scattered into the tile by component;
//   0: any strides: scalar loads.
// The vec4 paths need the vector's start aligned to 4 floats and the loaded
// extent (k, m, n or k) a multiple of 4, so a vec4 is either wholly inside the
// view or wholly outside it (then not read): no read ever leaves the view.
// `a` and `b` are bound as vec4 arrays (the host pads every buffer to whole
// vec4s); the scalar path reads single components.
//
// With β = 0, C is not read, so NaN in C does not propagate.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    a_mode: u32,
    alpha: f32,
    beta: f32,
    // Grid offsets, for products larger than one dispatch's grid.
    batch_base: u32,
    tile_m_base: u32,
    tile_n_base: u32,
    b_mode: u32,
    pad0: u32,
    pad1: u32,
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
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

// Tile shape (threads along m and n, outputs per thread, k per step).
// generate.rs replaces everything from here to "end of tile shape".
const WG_M: u32 = 16u;
const WG_N: u32 = 16u;
const TM: u32 = 8u;
const TN: u32 = 8u;
const BK: u32 = 16u;
// End of tile shape.

const BM: u32 = WG_M * TM;
const BN: u32 = WG_N * TN;
const BK4: u32 = BK / 4u;
const BN4: u32 = BN / 4u;
const TN4: u32 = TN / 4u;
const THREADS: u32 = WG_M * WG_N;

// The staged tiles, flat: a_tile[row·BK4 + k/4], b_tile[k·BN4 + col/4] (vec4
// quads). They are declared with the thread's own coordinate as the only
// non-constant index of a read in the inner product (row = i·WG_M + y, quad =
// j·WG_N + x), so naga's bounds clamp applies to lid.y resp. lid.x alone and
// the compiler can fold the constant part into the load's address. (wgpu 30
// has no safe way to drop naga's bounds checks: `create_shader_module_trusted`
// is `unsafe`. Storage-buffer checks are left to the driver where Vulkan's
// robustBufferAccess2 exists.)
var<workgroup> a_tile: array<array<array<vec4<f32>, BK4>, WG_M>, TM>;
var<workgroup> b_tile: array<array<array<vec4<f32>, WG_N>, TN4>, BK>;

// Quad q of the flat a_tile / b_tile, whole or one lane.
fn put_a(q: u32, v: vec4<f32>) {
    a_tile[q / (WG_M * BK4)][(q / BK4) % WG_M][q % BK4] = v;
}

fn put_a_lane(q: u32, lane: u32, x: f32) {
    a_tile[q / (WG_M * BK4)][(q / BK4) % WG_M][q % BK4][lane] = x;
}

fn put_b(q: u32, v: vec4<f32>) {
    b_tile[q / BN4][(q % BN4) / WG_N][q % WG_N] = v;
}

fn put_b_lane(q: u32, lane: u32, x: f32) {
    b_tile[q / BN4][(q % BN4) / WG_N][q % WG_N][lane] = x;
}

// Element e (a flat f32 index) of A or B.
fn a_elem(e: u32) -> f32 {
    return a[e >> 2u][e & 3u];
}

fn b_elem(e: u32) -> f32 {
    return b[e >> 2u][e & 3u];
}

// A(r, gk) through the scalar path, zero outside the view.
fn a_scalar(a_base: u32, r: u32, gk: u32) -> f32 {
    if r < p.m && gk < p.k {
        return a_elem(a_base + r * p.a_rs + gk * p.a_cs);
    }
    return 0.0;
}

// B(gk, col) through the scalar path, zero outside the view.
fn b_scalar(b_base: u32, gk: u32, col: u32) -> f32 {
    if gk < p.k && col < p.n {
        return b_elem(b_base + gk * p.b_rs + col * p.b_cs);
    }
    return 0.0;
}

// Load slot s of this thread's share of the A tile at k0 (four values; which
// four depends on a_mode, see stage_a). Zero outside the view.
fn load_a(s: u32, lidx: u32, a_base: u32, row0: u32, k0: u32) -> vec4<f32> {
    switch p.a_mode {
        case 1u: {
            // Row r, k quad kc: quad index lidx + s·THREADS = r·BK4 + kc.
            let r = row0 + lidx / BK4 + s * (THREADS / BK4);
            let gk = k0 + 4u * (lidx % BK4);
            if r < p.m && gk < p.k {
                return a[(a_base + r * p.a_rs + gk) >> 2u];
            }
            return vec4<f32>();
        }
        case 2u: {
            // Row quad, one k: consecutive threads take consecutive k, so the
            // scattered component stores hit consecutive words.
            let r = row0 + 4u * (lidx / BK + s * (THREADS / BK));
            let gk = k0 + lidx % BK;
            if r < p.m && gk < p.k {
                return a[(a_base + r + gk * p.a_cs) >> 2u];
            }
            return vec4<f32>();
        }
        default: {
            // Four rows THREADS/BK apart, one k per thread.
            let r = row0 + lidx / BK + 4u * s * (THREADS / BK);
            let gk = k0 + lidx % BK;
            let step = THREADS / BK;
            return vec4<f32>(
                a_scalar(a_base, r, gk),
                a_scalar(a_base, r + step, gk),
                a_scalar(a_base, r + 2u * step, gk),
                a_scalar(a_base, r + 3u * step, gk),
            );
        }
    }
}

// Stores what load_a(s) returned into a_tile.
fn stage_a(s: u32, lidx: u32, v: vec4<f32>) {
    switch p.a_mode {
        case 1u: {
            put_a(lidx + s * THREADS, v);
        }
        case 2u: {
            let r = 4u * (lidx / BK + s * (THREADS / BK));
            let kk = lidx % BK;
            let q = r * BK4 + kk / 4u;
            put_a_lane(q, kk % 4u, v.x);
            put_a_lane(q + BK4, kk % 4u, v.y);
            put_a_lane(q + 2u * BK4, kk % 4u, v.z);
            put_a_lane(q + 3u * BK4, kk % 4u, v.w);
        }
        default: {
            let r = lidx / BK + 4u * s * (THREADS / BK);
            let kk = lidx % BK;
            let q = r * BK4 + kk / 4u;
            let step = (THREADS / BK) * BK4;
            put_a_lane(q, kk % 4u, v.x);
            put_a_lane(q + step, kk % 4u, v.y);
            put_a_lane(q + 2u * step, kk % 4u, v.z);
            put_a_lane(q + 3u * step, kk % 4u, v.w);
        }
    }
}

// Load slot s of this thread's share of the B tile at k0.
fn load_b(s: u32, lidx: u32, b_base: u32, col0: u32, k0: u32) -> vec4<f32> {
    switch p.b_mode {
        case 1u: {
            // k row, column quad: quad index lidx + s·THREADS = kk·BN4 + quad.
            let gk = k0 + lidx / BN4 + s * (THREADS / BN4);
            let col = col0 + 4u * (lidx % BN4);
            if gk < p.k && col < p.n {
                return b[(b_base + gk * p.b_rs + col) >> 2u];
            }
            return vec4<f32>();
        }
        case 2u: {
            // k quad, one column: consecutive threads take consecutive columns.
            let gk = k0 + 4u * (lidx / BN + s * (THREADS / BN));
            let col = col0 + lidx % BN;
            if gk < p.k && col < p.n {
                return b[(b_base + gk + col * p.b_cs) >> 2u];
            }
            return vec4<f32>();
        }
        default: {
            // Four k rows THREADS/BN apart, one column per thread.
            let gk = k0 + lidx / BN + 4u * s * (THREADS / BN);
            let col = col0 + lidx % BN;
            let step = THREADS / BN;
            return vec4<f32>(
                b_scalar(b_base, gk, col),
                b_scalar(b_base, gk + step, col),
                b_scalar(b_base, gk + 2u * step, col),
                b_scalar(b_base, gk + 3u * step, col),
            );
        }
    }
}

// Stores what load_b(s) returned into b_tile.
fn stage_b(s: u32, lidx: u32, v: vec4<f32>) {
    switch p.b_mode {
        case 1u: {
            put_b(lidx + s * THREADS, v);
        }
        case 2u: {
            let kk = 4u * (lidx / BN + s * (THREADS / BN));
            let col = lidx % BN;
            let q = kk * BN4 + col / 4u;
            put_b_lane(q, col % 4u, v.x);
            put_b_lane(q + BN4, col % 4u, v.y);
            put_b_lane(q + 2u * BN4, col % 4u, v.z);
            put_b_lane(q + 3u * BN4, col % 4u, v.w);
        }
        default: {
            let kk = lidx / BN + 4u * s * (THREADS / BN);
            let col = lidx % BN;
            let q = kk * BN4 + col / 4u;
            let step = (THREADS / BN) * BN4;
            put_b_lane(q, col % 4u, v.x);
            put_b_lane(q + step, col % 4u, v.y);
            put_b_lane(q + 2u * step, col % 4u, v.z);
            put_b_lane(q + 3u * step, col % 4u, v.w);
        }
    }
}

// C(r, col) = α·x + β·C(r, col), for row_at = the address of C(r, 0).
fn store_one(row_at: u32, col: u32, x: f32) {
    if col < p.n {
        let at = row_at + col * p.c_cs;
        var v = p.alpha * x;
        if p.beta != 0.0 {
            v += p.beta * c[at];
        }
        c[at] = v;
    }
}

// Columns col .. col + 3 of row r of C from one accumulator quad.
fn store_quad(c_base: u32, r: u32, col: u32, v: vec4<f32>) {
    if r < p.m {
        let row_at = c_base + r * p.c_rs;
        store_one(row_at, col, v.x);
        store_one(row_at, col + 1u, v.y);
        store_one(row_at, col + 2u, v.z);
        store_one(row_at, col + 3u, v.w);
    }
}
