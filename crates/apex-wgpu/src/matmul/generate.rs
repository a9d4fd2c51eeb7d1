//! The `gemm` entry point of `matmul.wgsl`, generated per [`Tile`].
//!
//! The hand-written part of the shader (loads, staging, stores) works for any
//! tile; the inner product is written out here as straight-line WGSL, one
//! named `vec4<f32>` per accumulator quad and operand fragment. naga emits
//! loops as loops, and GPU compilers typically place a private array indexed
//! by a loop counter in local memory; named variables stay in registers.

use super::Tile;
use std::fmt::Write;

const TEMPLATE: &str = include_str!("../../../../kernels/wgsl/matmul.wgsl");
/// The tile-shape block of the template: from this line …
const SHAPE_START: &str = "const WG_M: u32 = ";
/// … to this one (kept).
const SHAPE_END: &str = "// End of tile shape.";

impl Tile {
    /// Load slots per thread for the A and the B tile (four values each).
    fn slots(&self) -> (u32, u32) {
        let quads = 4 * self.threads();
        (self.rows() * self.bk / quads, self.bk * self.cols() / quads)
    }

    /// Why this tile cannot be generated, if it cannot: the index arithmetic
    /// of the shader's loaders assumes each of these.
    pub(crate) fn unsupported(&self) -> Option<&'static str> {
        let threads = self.threads();
        let divides = |d: u32, n: u32| d != 0 && n.is_multiple_of(d);
        if [self.wg_m, self.wg_n, self.tm, self.tn, self.bk].contains(&0) {
            Some("empty tile")
        } else if !divides(4, self.tn) || !divides(4, self.bk) {
            Some("tn and bk must be multiples of 4")
        } else if ![self.bk, self.bk / 4, self.cols(), self.cols() / 4]
            .iter()
            .all(|&d| divides(d, threads))
        {
            Some("threads must be a multiple of bk and of the tile width")
        } else if !divides(4 * threads, self.rows() * self.bk)
            || !divides(4 * threads, self.bk * self.cols())
        {
            Some("each tile must split into whole quads per thread")
        } else if 4 * (self.rows() * self.bk + self.bk * self.cols()) > 16384 {
            Some("the staged tiles exceed WebGPU's guaranteed 16 KiB of workgroup memory")
        } else {
            None
        }
    }
}

/// The complete WGSL module for `tile`.
pub(crate) fn wgsl(tile: Tile) -> String {
    if let Some(why) = tile.unsupported() {
        panic!("GEMM tile {tile:?}: {why}");
    }
    let start = TEMPLATE
        .find(SHAPE_START)
        .expect("matmul.wgsl: tile-shape block");
    let end = TEMPLATE
        .find(SHAPE_END)
        .expect("matmul.wgsl: end of tile shape");
    let mut out = String::with_capacity(TEMPLATE.len() + 16 * 1024);
    out.push_str(&TEMPLATE[..start]);
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "const WG_M: u32 = {}u;\nconst WG_N: u32 = {}u;\nconst TM: u32 = {}u;\nconst TN: u32 = {}u;\nconst BK: u32 = {}u;",
        tile.wg_m, tile.wg_n, tile.tm, tile.tn, tile.bk
    );
    out.push_str(&TEMPLATE[end..]);
    entry_point(&mut out, tile);
    out
}

fn entry_point(out: &mut String, tile: Tile) {
    let Tile {
        wg_m,
        wg_n,
        tm,
        tn,
        bk,
    } = tile;
    let (quads_n, bk4) = (tn / 4, bk / 4);
    let (slots_a, slots_b) = tile.slots();
    let _ = write!(
        out,
        "
// Generated for a {rows}×{cols} tile: {wg_n}×{wg_m} threads, {tm}×{tn} outputs each, BK = {bk}.
@compute @workgroup_size({wg_n}, {wg_m})
fn gemm(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) lidx: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {{
    let entry = p.batch_base + wid.z;
    let row0 = (p.tile_m_base + wid.y) * BM;
    let col0 = (p.tile_n_base + wid.x) * BN;
    let a_base = p.a_off + entry * p.a_bs;
    let b_base = p.b_off + entry * p.b_bs;
    let ty = lid.y;
    let tx = lid.x;
",
        rows = tile.rows(),
        cols = tile.cols(),
    );
    for i in 0..tm {
        for j in 0..quads_n {
            let _ = writeln!(out, "    var acc_{i}_{j} = vec4<f32>();");
        }
    }
    for s in 0..slots_a {
        let _ = writeln!(out, "    var la{s} = load_a({s}u, lidx, a_base, row0, 0u);");
    }
    for s in 0..slots_b {
        let _ = writeln!(out, "    var lb{s} = load_b({s}u, lidx, b_base, col0, 0u);");
    }
    out.push_str("    for (var k0 = 0u; k0 < p.k; k0 += BK) {\n        workgroupBarrier();\n");
    for s in 0..slots_a {
        let _ = writeln!(out, "        stage_a({s}u, lidx, la{s});");
    }
    for s in 0..slots_b {
        let _ = writeln!(out, "        stage_b({s}u, lidx, lb{s});");
    }
    out.push_str(
        "        workgroupBarrier();\n        // The next step's operands load while this one is computed.\n        if k0 + BK < p.k {\n",
    );
    for s in 0..slots_a {
        let _ = writeln!(
            out,
            "            la{s} = load_a({s}u, lidx, a_base, row0, k0 + BK);"
        );
    }
    for s in 0..slots_b {
        let _ = writeln!(
            out,
            "            lb{s} = load_b({s}u, lidx, b_base, col0, k0 + BK);"
        );
    }
    out.push_str("        }\n");
    const LANES: [char; 4] = ['x', 'y', 'z', 'w'];
    for kc in 0..bk4 {
        let _ = writeln!(out, "        {{ // k0 + {} .. k0 + {}", 4 * kc, 4 * kc + 3);
        for t in 0..4 {
            for j in 0..quads_n {
                let _ = writeln!(
                    out,
                    "            let b{t}_{j} = b_tile[{}u][{j}u][tx];",
                    4 * kc + t
                );
            }
        }
        for i in 0..tm {
            let _ = writeln!(out, "            let a{i} = a_tile[{i}u][ty][{kc}u];");
            for (t, lane) in LANES.iter().enumerate() {
                for j in 0..quads_n {
                    let _ = writeln!(
                        out,
                        "            acc_{i}_{j} = fma(vec4<f32>(a{i}.{lane}), b{t}_{j}, acc_{i}_{j});"
                    );
                }
            }
        }
        out.push_str("        }\n");
    }
    out.push_str(
        "    }\n    let c_base = p.c_off + entry * p.c_bs;\n    let c_row = row0 + lid.y;\n    let c_col = col0 + 4u * lid.x;\n",
    );
    for i in 0..tm {
        for j in 0..quads_n {
            let _ = writeln!(
                out,
                "    store_quad(c_base, c_row + {}u, c_col + {}u, acc_{i}_{j});",
                i * wg_m,
                4 * j * wg_n
            );
        }
    }
    out.push_str("}\n");
}
