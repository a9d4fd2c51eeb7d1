// Token cross-entropy (apex_core::TransformerOps::cross_entropy) over logits
// [T, V] with one label per row (IGNORE_INDEX = -100 skips the row). One
// block per row; max, log-sum-exp and probabilities in double like the CPU
// reference. Per-row losses go out as doubles (summed on the host in f64);
// the optional gradient is grad_scale·(softmax − onehot), 0 on ignored rows.
#include "common.cuh"

struct CrossEntropyArgs {
    const float* logits;
    const int* labels;   // [T], -100 = ignored
    double* losses;      // [T]
    float* grad;         // [T, V] or null
    i64 rows;
    i64 vocab;
    double grad_scale;
};

APEX_KERNEL(cross_entropy, CrossEntropyArgs, ROW_THREADS) {
    __shared__ double scratch[ROW_THREADS];
    for (i64 t = blockIdx.x; t < args.rows; t += gridDim.x) {
        const int label = args.labels[t];
        const float* row = args.logits + t * args.vocab;
        float* g = args.grad != nullptr ? args.grad + t * args.vocab : nullptr;
        if (label < 0) {
            if (threadIdx.x == 0) args.losses[t] = 0.0;
            if (g != nullptr)
                for (i64 j = threadIdx.x; j < args.vocab; j += blockDim.x) g[j] = 0.0f;
            continue;  // uniform: the whole block skips this row
        }
        double m = -1.7976931348623157e+308;  // -DBL_MAX
        for (i64 j = threadIdx.x; j < args.vocab; j += blockDim.x) m = max(m, (double)row[j]);
        m = block_max(m, scratch);
        double sum = 0.0;
        for (i64 j = threadIdx.x; j < args.vocab; j += blockDim.x) sum += exp((double)row[j] - m);
        const double log_z = m + log(block_sum(sum, scratch));
        if (threadIdx.x == 0) args.losses[t] = log_z - (double)row[label];
        if (g != nullptr) {
            for (i64 j = threadIdx.x; j < args.vocab; j += blockDim.x) {
                const double p = exp((double)row[j] - log_z);
                g[j] = (float)(args.grad_scale * (p - (j == label ? 1.0 : 0.0)));
            }
        }
    }
}
