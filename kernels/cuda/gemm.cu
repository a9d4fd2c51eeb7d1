// General batched strided GEMM: C[i] = α·A[i]·B[i] + β·C[i] for every
// batch entry, any row/column/batch strides (apex_core::Backend::gemm). It
// serves every product cuBLAS cannot take (neither stride of an operand is
// 1, as in the Monarch weight gradients where both operands are read with a
// column stride of b) and is the measured alternative to cuBLAS elsewhere.
//
// Classic shared-memory tiling with register blocking:
// * a CTA owns a BM×BN tile of C; K advances in BK-deep slices staged in
//   shared memory, double-buffered, the next slice prefetched into registers
//   while the current one is multiplied (one barrier per slice);
// * each thread accumulates a TM×TN micro-tile, split in two halves BM/2
//   (BN/2) apart so that the float4/float2 fragment reads are bank-conflict
//   free;
// * global loads are scalar and predicated (any stride, any alignment); the
//   host tells each operand which axis its lanes should walk (the unit-stride
//   one), so the loads coalesce for row- and column-major operands alike;
// * split-K: when tiles·batch cannot fill the machine (small outputs with a
//   long K, e.g. Monarch ∂W over T tokens), grid.z also spans `splits` K
//   ranges that write partial sums to a workspace, and gemm_splitk_reduce
//   applies α, β. Deterministic: no atomics.
#include "common.cuh"

struct GemmArgs {
    const float* a;
    const float* b;
    float* c;
    float* workspace;  // splits > 1: partial sums, [splits][batch][m][n]
    View av;           // m × k
    View bv;           // k × n
    View cv;           // m × n
    i64 a_batch_stride;
    i64 b_batch_stride;
    i64 c_batch_stride;
    i64 batch;
    i64 m;
    i64 n;
    i64 k;
    i64 k_chunk;   // K range of one split, a multiple of BK
    i64 job_base;  // first (batch, split) job of this launch: job = batch·splits + split
    float alpha;
    float beta;   // 0: C is not read
    int splits;
    int a_k_fast;  // 1: A's lanes walk k (its column stride is the unit one)
    int b_n_fast;  // 1: B's lanes walk n
    int pad_;
};

template <int N>
__device__ __forceinline__ void gemm_load_fragment(const float* p, float* dst) {
    if constexpr (N == 4) {
        const float4 v = *reinterpret_cast<const float4*>(p);
        dst[0] = v.x;
        dst[1] = v.y;
        dst[2] = v.z;
        dst[3] = v.w;
    } else if constexpr (N == 2) {
        const float2 v = *reinterpret_cast<const float2*>(p);
        dst[0] = v.x;
        dst[1] = v.y;
    } else {
#pragma unroll
        for (int i = 0; i < N; ++i) dst[i] = p[i];
    }
}

// SPLIT_K: whether this instantiation may run with splits > 1 (the large
// tiles never do: the host only splits when tiles cannot fill the machine).
template <int BM, int BN, int BK, int TM, int TN, bool SPLIT_K>
__device__ __forceinline__ void gemm_tiles(const GemmArgs& g) {
    constexpr int THREADS_N = BN / TN;
    constexpr int THREADS = (BM / TM) * THREADS_N;
    constexpr int A_LOADS = BM * BK / THREADS;
    constexpr int B_LOADS = BK * BN / THREADS;
    constexpr int HM = TM / 2;
    constexpr int HN = TN / 2;
    static_assert(THREADS % BM == 0 && THREADS % BN == 0 && THREADS % BK == 0, "loader layout");
    static_assert(A_LOADS * THREADS == BM * BK && B_LOADS * THREADS == BK * BN, "tile split");
    // +4 keeps rows 16-byte aligned and makes the transposing stores of the
    // k-fast loads conflict free.
    __shared__ __align__(16) float As[2][BK][BM + 4];
    __shared__ __align__(16) float Bs[2][BK][BN + 4];

    const int tid = threadIdx.x;
    const int tx = tid % THREADS_N;
    const int ty = tid / THREADS_N;
    const i64 m0 = (i64)blockIdx.y * BM;
    const i64 n0 = (i64)blockIdx.x * BN;
    const i64 per_batch = g.m * g.n;

    // One (batch entry, split) job per grid.z index; the host launches again
    // with a later job_base when there are more than grid.z allows. (A loop
    // over jobs here costs the 8×8 kernel register spills.)
    {
        const i64 job = g.job_base + blockIdx.z;
        const i64 batch = SPLIT_K ? job / g.splits : job;
        const int split = SPLIT_K ? (int)(job % g.splits) : 0;
        const i64 k_begin = SPLIT_K ? split * g.k_chunk : 0;
        const i64 k_end = SPLIT_K ? min(g.k, k_begin + g.k_chunk) : g.k;
        const int tiles = k_end > k_begin ? (int)((k_end - k_begin + BK - 1) / BK) : 0;
        const float* a = g.a + g.av.offset + batch * g.a_batch_stride;
        const float* b = g.b + g.bv.offset + batch * g.b_batch_stride;

        // Loader: element s of this thread's share of a tile sits at tile
        // coordinates (i0 + s·di, l0 + s·dl), where one of di, dl is 0 because
        // THREADS is a multiple of both tile sides; the fast axis is the
        // operand's unit-stride one.
        const int a_i0 = g.a_k_fast ? tid / BK : tid % BM;
        const int a_l0 = g.a_k_fast ? tid % BK : tid / BM;
        const int a_di = g.a_k_fast ? THREADS / BK : 0;
        const int a_dl = g.a_k_fast ? 0 : THREADS / BM;
        const int b_j0 = g.b_n_fast ? tid % BN : tid / BK;
        const int b_l0 = g.b_n_fast ? tid / BN : tid % BK;
        const int b_dj = g.b_n_fast ? 0 : THREADS / BK;
        const int b_dl = g.b_n_fast ? THREADS / BN : 0;
        // Running pointers to this thread's first element of the next slice.
        const float* a_src = a + (m0 + a_i0) * g.av.row_stride + (k_begin + a_l0) * g.av.col_stride;
        const float* b_src = b + (k_begin + b_l0) * g.bv.row_stride + (n0 + b_j0) * g.bv.col_stride;
        const i64 a_slice = BK * g.av.col_stride;
        const i64 b_slice = BK * g.bv.row_stride;
        const i64 a_step = a_di * g.av.row_stride + a_dl * g.av.col_stride;
        const i64 b_step = b_dl * g.bv.row_stride + b_dj * g.bv.col_stride;
        const int a_rows_left = (int)min((i64)BM, g.m - m0) - a_i0;
        const int b_cols_left = (int)min((i64)BN, g.n - n0) - b_j0;
        int k_left = (int)(k_end - k_begin);  // k not yet loaded
        float a_reg[A_LOADS];
        float b_reg[B_LOADS];
        // Loads the next slice into registers (zeros outside the matrix) and
        // advances the pointers.
        auto load = [&]() {
#pragma unroll
            for (int s = 0; s < A_LOADS; ++s)
                a_reg[s] = s * a_di < a_rows_left && a_l0 + s * a_dl < k_left ? a_src[s * a_step] : 0.0f;
#pragma unroll
            for (int s = 0; s < B_LOADS; ++s)
                b_reg[s] = s * b_dj < b_cols_left && b_l0 + s * b_dl < k_left ? b_src[s * b_step] : 0.0f;
            a_src += a_slice;
            b_src += b_slice;
            k_left -= BK;
        };
        auto store = [&](int buf) {
#pragma unroll
            for (int s = 0; s < A_LOADS; ++s) As[buf][a_l0 + s * a_dl][a_i0 + s * a_di] = a_reg[s];
#pragma unroll
            for (int s = 0; s < B_LOADS; ++s) Bs[buf][b_l0 + s * b_dl][b_j0 + s * b_dj] = b_reg[s];
        };

        float acc[TM][TN];
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
            for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;

        if (tiles > 0) {
            load();
            store(0);
        }
        __syncthreads();
        for (int t = 0; t < tiles; ++t) {
            const int cur = t & 1;
            if (t + 1 < tiles) load();
#pragma unroll
            for (int l = 0; l < BK; ++l) {
                float af[TM];
                float bf[TN];
                gemm_load_fragment<HM>(&As[cur][l][ty * HM], af);
                gemm_load_fragment<HM>(&As[cur][l][BM / 2 + ty * HM], af + HM);
                gemm_load_fragment<HN>(&Bs[cur][l][tx * HN], bf);
                gemm_load_fragment<HN>(&Bs[cur][l][BN / 2 + tx * HN], bf + HN);
#pragma unroll
                for (int i = 0; i < TM; ++i)
#pragma unroll
                    for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(af[i], bf[j], acc[i][j]);
            }
            if (t + 1 < tiles) store(cur ^ 1);
            __syncthreads();
        }

        // Epilogue: α·acc + β·C into C, or the raw partial sum into this
        // split's slice of the workspace.
        const bool direct = !SPLIT_K || g.splits == 1;
        float* dst = direct ? g.c + g.cv.offset + batch * g.c_batch_stride
                            : g.workspace + (split * g.batch + batch) * per_batch;
        const i64 dst_row_stride = direct ? g.cv.row_stride : g.n;
        const i64 dst_col_stride = direct ? g.cv.col_stride : 1;
        const float alpha = direct ? g.alpha : 1.0f;
        const float beta = direct ? g.beta : 0.0f;
#pragma unroll
        for (int i = 0; i < TM; ++i) {
            const i64 row = m0 + (i < HM ? ty * HM + i : BM / 2 + ty * HM + (i - HM));
            if (row < g.m) {
                float* dst_row = dst + row * dst_row_stride;
#pragma unroll
                for (int j = 0; j < TN; ++j) {
                    const i64 col = n0 + (j < HN ? tx * HN + j : BN / 2 + tx * HN + (j - HN));
                    if (col < g.n) store_scaled(dst_row, col * dst_col_stride, alpha * acc[i][j], beta);
                }
            }
        }
    }
}

// 128×128 tiles, 8×8 per thread: large products (one full wave or more),
// never split. Two resident CTAs per SM (≤ 128 registers) hide the
// global-load latency.
APEX_KERNEL_MIN_BLOCKS(gemm_large, GemmArgs, 256, 2) { gemm_tiles<128, 128, 8, 8, 8, false>(args); }

// 64×64 tiles, 4×4 per thread: small outputs, four times the CTAs, split-K.
APEX_KERNEL_MIN_BLOCKS(gemm_small, GemmArgs, 256, 2) { gemm_tiles<64, 64, 8, 4, 4, true>(args); }

// C = α·Σ_splits partial + β·C over every batch entry (flat grid-stride).
APEX_KERNEL(gemm_splitk_reduce, GemmArgs, 256) {
    const i64 per_batch = args.m * args.n;
    const i64 total = args.batch * per_batch;
    for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (i64)gridDim.x * blockDim.x) {
        float sum = 0.0f;
        for (int s = 0; s < args.splits; ++s) sum += args.workspace[s * total + e];
        const i64 batch = e / per_batch;
        const i64 rem = e - batch * per_batch;
        const i64 row = rem / args.n;
        const i64 col = rem - row * args.n;
        store_scaled(args.c,
                     args.cv.offset + batch * args.c_batch_stride + row * args.cv.row_stride +
                         col * args.cv.col_stride,
                     args.alpha * sum, args.beta);
    }
}
