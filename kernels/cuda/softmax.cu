// Causal softmax and its backward, in place over [n, S, S] score blocks
// (apex_core::TransformerOps::{causal_softmax, softmax_backward}): the
// attention probabilities of every (sequence, head). One block per row.
#include "common.cuh"

struct SoftmaxArgs {
    float* x;            // scores → probabilities; or ∂L/∂P → ∂L/∂scores
    const float* probs;  // backward: P
    i64 rows;            // n·S
    i64 s;               // S
    float scale;
    int pad_;
};

// Row r is row i = r mod S of its block: softmax over j ≤ i of scale·x,
// exactly 0 beyond.
APEX_KERNEL(causal_softmax, SoftmaxArgs, ROW_THREADS) {
    __shared__ float scratch[ROW_THREADS];
    for (i64 r = blockIdx.x; r < args.rows; r += gridDim.x) {
        float* row = args.x + r * args.s;
        const i64 live = r % args.s + 1;
        float m = -3.402823466e+38f;  // -FLT_MAX: every row has a live entry
        for (i64 j = threadIdx.x; j < live; j += blockDim.x) m = max(m, row[j] * args.scale);
        m = block_max(m, scratch);
        float sum = 0.0f;
        for (i64 j = threadIdx.x; j < live; j += blockDim.x) {
            const float e = expf(row[j] * args.scale - m);
            row[j] = e;
            sum += e;
        }
        const float inv = 1.0f / block_sum(sum, scratch);
        for (i64 j = threadIdx.x; j < args.s; j += blockDim.x) row[j] = j < live ? row[j] * inv : 0.0f;
    }
}

// grad ← scale·P ⊙ (grad − Σ_j grad·P).
APEX_KERNEL(softmax_backward, SoftmaxArgs, ROW_THREADS) {
    __shared__ float scratch[ROW_THREADS];
    for (i64 r = blockIdx.x; r < args.rows; r += gridDim.x) {
        float* g = args.x + r * args.s;
        const float* p = args.probs + r * args.s;
        float dot = 0.0f;
        for (i64 j = threadIdx.x; j < args.s; j += blockDim.x) dot += g[j] * p[j];
        dot = block_sum(dot, scratch);
        for (i64 j = threadIdx.x; j < args.s; j += blockDim.x) g[j] = args.scale * p[j] * (g[j] - dot);
    }
}
