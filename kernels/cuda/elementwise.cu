// Elementwise family: axpby, binary ops, column scaling, unary ops and fill,
// all over strided 2-D views (apex_core::Backend::{axpby, binary,
// scale_columns, unary, fill}).
//
// One kernel with an op code: these passes are memory-bound, so the uniform
// switch costs nothing next to the loads, and one launch path serves all of
// them. `scale_columns` is MUL with z a broadcast view of the vector
// (row_stride 0). The host orients every view so that threadIdx.x walks the
// output's unit-stride axis (coalesced stores).
#include "common.cuh"

// Op codes, mirrored by `ElementwiseOp` in crates/apex-cuda/src/kernels.rs.
#define EW_AXPBY 0      // alpha * x
#define EW_ADD 1        // x + z
#define EW_SUB 2        // x - z
#define EW_MUL 3        // x * z
#define EW_DIV 4        // x / z
#define EW_SILU 5       // x * sigmoid(x)
#define EW_SILU_GRAD 6  // sigmoid(x) * (1 + x * (1 - sigmoid(x)))
#define EW_SQRT 7
#define EW_SQUARE 8
#define EW_EXP 9
#define EW_NEG 10
#define EW_FILL 11      // value

struct ElementwiseArgs {
    const float* x;
    const float* z;
    float* y;
    View xv;
    View zv;
    View yv;
    float alpha;
    float beta;  // y = f(x, z) + beta*y; 0: y is not read
    float value;
    int op;
};

__device__ __forceinline__ float elementwise_apply(int op, float a, float b, float alpha,
                                                   float value) {
    switch (op) {
        case EW_AXPBY: return alpha * a;
        case EW_ADD: return a + b;
        case EW_SUB: return a - b;
        case EW_MUL: return a * b;
        case EW_DIV: return a / b;
        case EW_SILU: return a / (1.0f + expf(-a));
        case EW_SILU_GRAD: {
            const float s = 1.0f / (1.0f + expf(-a));
            return s * (1.0f + a * (1.0f - s));
        }
        case EW_SQRT: return sqrtf(a);
        case EW_SQUARE: return a * a;
        case EW_EXP: return expf(a);
        case EW_NEG: return -a;
        default: return value;
    }
}

// Block (bx, by) with bx*by = 256: x over columns, y over rows; both axes
// grid-stride, so any view size runs with any grid.
APEX_KERNEL(elementwise, ElementwiseArgs, 256) {
    const int op = args.op;
    const bool reads_x = op != EW_FILL;
    const bool reads_z = op >= EW_ADD && op <= EW_DIV;
    const i64 col_step = (i64)gridDim.x * blockDim.x;
    const i64 row_step = (i64)gridDim.y * blockDim.y;
    for (i64 r = (i64)blockIdx.y * blockDim.y + threadIdx.y; r < args.yv.rows; r += row_step) {
        for (i64 c = (i64)blockIdx.x * blockDim.x + threadIdx.x; c < args.yv.cols;
             c += col_step) {
            const float a = reads_x ? args.x[at(args.xv, r, c)] : 0.0f;
            const float b = reads_z ? args.z[at(args.zv, r, c)] : 0.0f;
            store_scaled(args.y, at(args.yv, r, c),
                         elementwise_apply(op, a, b, args.alpha, args.value), args.beta);
        }
    }
}
