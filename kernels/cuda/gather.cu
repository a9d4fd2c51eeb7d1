// Gathers: rows or columns of a contiguous 2-D tensor by an index list
// (apex_core::Backend::{gather_rows, gather_columns} — the APEX
// permutations and D/A/E selections). The host has checked every index
// against its bound; indices travel as u32.
#include "common.cuh"

struct GatherArgs {
    const float* x;
    float* out;
    const unsigned int* index;
    i64 rows;  // of x
    i64 cols;  // of x
    i64 count;  // of index
    int by_columns;  // 0: out[i, c] = x[index[i], c]; 1: out[r, j] = x[r, index[j]]
    int pad_;
};

APEX_KERNEL(gather, GatherArgs, 256) {
    const i64 out_cols = args.by_columns ? args.count : args.cols;
    const i64 out_rows = args.by_columns ? args.rows : args.count;
    const i64 c0 = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    const i64 col_step = (i64)gridDim.x * blockDim.x;
    const i64 row_step = (i64)gridDim.y * blockDim.y;
    for (i64 r = (i64)blockIdx.y * blockDim.y + threadIdx.y; r < out_rows; r += row_step) {
        float* dst = args.out + r * out_cols;
        if (args.by_columns) {
            const float* src = args.x + r * args.cols;
            for (i64 c = c0; c < out_cols; c += col_step) dst[c] = src[args.index[c]];
        } else {
            const float* src = args.x + (i64)args.index[r] * args.cols;
            for (i64 c = c0; c < out_cols; c += col_step) dst[c] = src[c];
        }
    }
}
