// Embedding backward (apex_core::TransformerOps::scatter_add_rows):
// table[index[i], :] += rows[i, :], repeated indices accumulating. The host
// groups the sources of each destination row (CSR, sources in index order),
// so every destination is written by one thread per column and the sums run
// in the CPU reference's order: deterministic, no atomics.
#include "common.cuh"

struct ScatterArgs {
    const float* rows;            // [n, d]
    float* table;                 // [V, d]
    const unsigned int* targets;  // [u] destination rows
    const unsigned int* offsets;  // [u + 1] into sources
    const unsigned int* sources;  // [n] source rows, grouped by target
    i64 unique;
    i64 d;
};

// x over columns, y over destinations (grid-stride on both).
APEX_KERNEL(scatter_add_rows, ScatterArgs, 256) {
    const i64 col_step = (i64)gridDim.x * blockDim.x;
    const i64 row_step = (i64)gridDim.y * blockDim.y;
    for (i64 u = (i64)blockIdx.y * blockDim.y + threadIdx.y; u < args.unique; u += row_step) {
        float* dst = args.table + (i64)args.targets[u] * args.d;
        const unsigned int begin = args.offsets[u];
        const unsigned int end = args.offsets[u + 1];
        for (i64 c = (i64)blockIdx.x * blockDim.x + threadIdx.x; c < args.d; c += col_step) {
            float acc = dst[c];
            for (unsigned int s = begin; s < end; ++s) acc += args.rows[(i64)args.sources[s] * args.d + c];
            dst[c] = acc;
        }
    }
}
