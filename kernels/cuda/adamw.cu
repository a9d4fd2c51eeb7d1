// One AdamW update in place (apex_core::TransformerOps::adamw_step),
// elementwise over param, grad, m, v of equal length. The bias corrections
// are computed on the host in double, as the CPU reference does:
//   g = s·grad; m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g²;
//   p = (1 − lr·wd)·p − lr·(m·c1) / (sqrt(v·c2) + eps).
#include "common.cuh"

struct AdamWArgs {
    float* param;
    const float* grad;
    float* m;
    float* v;
    i64 len;
    float beta1;
    float beta2;
    float one_minus_beta1;
    float one_minus_beta2;
    float grad_scale;
    float decay;  // 1 − lr·weight_decay
    float lr;
    float c1;  // 1 / (1 − β1^step)
    float c2;  // 1 / (1 − β2^step)
    float eps;
};

APEX_KERNEL(adamw_step, AdamWArgs, 256) {
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < args.len;
         i += (i64)gridDim.x * blockDim.x) {
        const float g = args.grad_scale * args.grad[i];
        const float m = args.beta1 * args.m[i] + args.one_minus_beta1 * g;
        const float v = args.beta2 * args.v[i] + args.one_minus_beta2 * g * g;
        args.m[i] = m;
        args.v[i] = v;
        args.param[i] = args.decay * args.param[i] - args.lr * (m * args.c1) / (sqrtf(v * args.c2) + args.eps);
    }
}
