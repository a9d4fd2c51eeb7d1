// Rotary position embedding in place (apex_core::TransformerOps::rope), HF
// LLaMA rotate_half layout, over x [T, heads·head_dim]. The host computes the
// cos/sin table [seq_len, head_dim/2] in double exactly as the CPU reference
// does (the sine already negated for the inverse rotation), so both backends
// rotate by the same rounded angles.
#include "common.cuh"

struct RopeArgs {
    float* x;
    const float* table;  // [seq_len][half][2]: cos, sin
    i64 rows;
    i64 width;
    i64 half;
    i64 seq_len;
};

// One thread per (row, pair): pairs (i, i+half) of every head.
APEX_KERNEL(rope, RopeArgs, 256) {
    const i64 pairs_per_row = args.width / 2;
    const i64 total = args.rows * pairs_per_row;
    for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (i64)gridDim.x * blockDim.x) {
        const i64 t = e / pairs_per_row;
        const i64 pair = e - t * pairs_per_row;
        const i64 head = pair / args.half;
        const i64 i = pair - head * args.half;
        float* base = args.x + t * args.width + head * 2 * args.half;
        const float* cs = args.table + ((t % args.seq_len) * args.half + i) * 2;
        const float c = cs[0];
        const float s = cs[1];
        const float x1 = base[i];
        const float x2 = base[i + args.half];
        base[i] = x1 * c - x2 * s;
        base[i + args.half] = x2 * c + x1 * s;
    }
}
