// Reductions: column dot products out[c] = Σ_r x[r,c]·z[r,c] + β·out[c]
// (apex_core::Backend::column_dot — the gradients of mixer_vec / mixer_scale
// and squared column norms for scoring).
//
// Block 32×16: threadIdx.x owns one column of a 32-column chunk, threadIdx.y
// strides over rows; the 16 partial sums meet in shared memory. No atomics,
// so the result is deterministic run to run.
#include "common.cuh"

#define COLUMN_DOT_LANES 16

struct ColumnDotArgs {
    const float* x;
    const float* z;
    float* out;
    View xv;
    View zv;
    i64 out_offset;
    float beta;  // 0: out is not read
    int pad_;
};

APEX_KERNEL(column_dot, ColumnDotArgs, 32 * COLUMN_DOT_LANES) {
    __shared__ float partial[COLUMN_DOT_LANES][33];
    const i64 c = (i64)blockIdx.x * 32 + threadIdx.x;
    float sum = 0.0f;
    if (c < args.xv.cols) {
        for (i64 r = threadIdx.y; r < args.xv.rows; r += COLUMN_DOT_LANES) {
            sum += args.x[at(args.xv, r, c)] * args.z[at(args.zv, r, c)];
        }
    }
    partial[threadIdx.y][threadIdx.x] = sum;
    __syncthreads();
    if (threadIdx.y == 0 && c < args.xv.cols) {
        float total = 0.0f;
#pragma unroll
        for (int i = 0; i < COLUMN_DOT_LANES; ++i) total += partial[i][threadIdx.x];
        store_scaled(args.out, args.out_offset + c, total, args.beta);
    }
}
