// RMSNorm forward and backward (apex_core::TransformerOps::{rms_norm,
// rms_norm_backward}), row-wise over contiguous [T, d] tensors.
//
// One block per row. The forward's mean square is accumulated in double,
// as the CPU reference does; y = (x·inv_rms)·w in float, in that order. The
// weight gradient Σ_t grad_y·x·inv_rms is a column reduction (block 32 × 16,
// like column_dot), added into the existing gradient.
#include "common.cuh"

struct RmsNormArgs {
    const float* x;
    const float* weight;
    const float* inv_rms;  // backward: [T]
    const float* grad_y;   // backward: [T, d]
    float* y;              // forward: y [T, d]; backward: grad_x [T, d]
    float* inv_out;        // forward: inv_rms [T]; weight grad: grad_weight [d]
    i64 rows;
    i64 d;
    double eps;
};

APEX_KERNEL(rms_norm_forward, RmsNormArgs, ROW_THREADS) {
    __shared__ double scratch[ROW_THREADS];
    for (i64 t = blockIdx.x; t < args.rows; t += gridDim.x) {
        const float* x = args.x + t * args.d;
        double sum = 0.0;
        for (i64 j = threadIdx.x; j < args.d; j += blockDim.x) sum += (double)x[j] * (double)x[j];
        const double ms = block_sum(sum, scratch) / (double)args.d;
        const float r = (float)(1.0 / sqrt(ms + args.eps));
        if (threadIdx.x == 0) args.inv_out[t] = r;
        float* y = args.y + t * args.d;
        for (i64 j = threadIdx.x; j < args.d; j += blockDim.x) y[j] = x[j] * r * args.weight[j];
    }
}

// grad_x = r·(g − n·mean(g·n)), g = grad_y ⊙ w, n = x·r.
APEX_KERNEL(rms_norm_backward, RmsNormArgs, ROW_THREADS) {
    __shared__ float scratch[ROW_THREADS];
    for (i64 t = blockIdx.x; t < args.rows; t += gridDim.x) {
        const float* x = args.x + t * args.d;
        const float* gy = args.grad_y + t * args.d;
        const float r = args.inv_rms[t];
        float dot = 0.0f;
        for (i64 j = threadIdx.x; j < args.d; j += blockDim.x) dot += gy[j] * args.weight[j] * x[j] * r;
        const float mean = block_sum(dot, scratch) / (float)args.d;
        float* gx = args.y + t * args.d;
        for (i64 j = threadIdx.x; j < args.d; j += blockDim.x)
            gx[j] = r * (gy[j] * args.weight[j] - x[j] * r * mean);
    }
}

// grad_weight[j] += Σ_t grad_y[t,j]·x[t,j]·inv_rms[t]; block 32 × 16.
APEX_KERNEL(rms_norm_weight_grad, RmsNormArgs, 512) {
    __shared__ float partial[16][33];
    const i64 j = (i64)blockIdx.x * 32 + threadIdx.x;
    float sum = 0.0f;
    if (j < args.d) {
        for (i64 t = threadIdx.y; t < args.rows; t += 16)
            sum += args.grad_y[t * args.d + j] * args.x[t * args.d + j] * args.inv_rms[t];
    }
    partial[threadIdx.y][threadIdx.x] = sum;
    __syncthreads();
    if (threadIdx.y == 0 && j < args.d) {
        float total = 0.0f;
        for (int i = 0; i < 16; ++i) total += partial[i][threadIdx.x];
        args.inv_out[j] += total;
    }
}
