// The fused Monarch products (apex_core::Backend::{monarch_forward,
// monarch_apply_transposed, monarch_add_scaled}): both block-diagonal stages
// and the stride permutation between them in one kernel, the intermediate
// kept in shared memory; optionally a column-scaled view is added in the
// epilogue (APEX's "y ⊙ v + mix", which would otherwise be another pass).
//
// Shapes: rows of x (n × k, k = b·p) are the batch; W1, W2 are b blocks of
// p×p (contiguous [b, p, p]). For one row (spec §4.1):
//
//   forward   y1[i·p+a] = Σ_j W1[i,a,j]·x[i·p+j]           stage 1, group i
//             out[σ·b+λ] = Σ_ρ W2[λ,σ,ρ]·y1[ρ·b+λ]         stage 2, group λ
//   transposed mid[ρ·b+λ] = Σ_σ W2[λ,σ,ρ]·g[σ·b+λ]         stage 1, group λ
//             out[i·p+j] = Σ_a W1[i,a,j]·mid[i·p+a]        stage 2, group i
//
// Every stage is "for each group, a p×p block times p inputs", so one
// template covers all four: the forward reads its weights as W[g][o][q]
// (output o, input q) and the transposed apply as W[g][q][o]. Stage 2 needs
// whole rows of the stage-1 result (each of its groups gathers one entry
// from every stage-1 group), so a CTA owns R complete rows: stage 1 writes
// them to shared memory already permuted into stage 2's group-contiguous
// order (and, unpermuted, to `mid` in global memory, which the weight
// gradients need), one barrier, stage 2 reads shared memory only. Compared
// with the composite (two batched GEMMs through a k-strided intermediate)
// this saves the intermediate's re-read and a launch, and keeps all stride-b
// traffic on chip.
//
// Work split: a thread owns 4 consecutive outputs o of one group for all R
// rows (R×4 accumulators), so each weight is fetched once per CTA and used
// R times. With p % 4 == 0 (VEC) weights and stage-2 inputs move as float4;
// otherwise scalar loads with guards. Shared memory: R·k floats (dynamic);
// the host picks R so that it fits.
#include "common.cuh"

struct MonarchArgs {
    const float* in;        // n × k view `inv`
    float* out;             // n × k view `outv`
    float* mid;             // n × k contiguous: the stage-1 result, natural order
    const float* w_first;   // forward: W1; transposed: W2
    const float* w_second;  // forward: W2; transposed: W1
    const float* add;        // optional (null: none): n × k view `addv`, column c
    const float* add_scale;  //   scaled by add_scale[c] and added to the result
    View inv;
    View outv;
    View addv;
    i64 n;
    float beta;  // out = result [+ add ⊙ add_scale] + beta·out; 0: out is not read
    int nblocks;  // b
    int block;    // p
    int in_vec;   // 1: inv is contiguous and 16-byte aligned (float4 input loads)
};

// Weight for output o, input q of group g.
template <bool TRANS>
__device__ __forceinline__ i64 monarch_weight_index(int g, int o, int q, int p) {
    return TRANS ? ((i64)g * p + q) * p + o : ((i64)g * p + o) * p + q;
}

// Loads the 4×4 weights w[u][v] for outputs o0+u, inputs q+v (VEC only).
template <bool TRANS>
__device__ __forceinline__ void monarch_weights4(const float* w, int g, int o0, int q, int p,
                                                 float (&out)[4][4]) {
#pragma unroll
    for (int t = 0; t < 4; ++t) {
        const float4 v = __ldg(reinterpret_cast<const float4*>(
            w + (TRANS ? monarch_weight_index<TRANS>(g, o0, q + t, p)
                       : monarch_weight_index<TRANS>(g, o0 + t, q, p))));
        if constexpr (TRANS) {
            out[0][t] = v.x;
            out[1][t] = v.y;
            out[2][t] = v.z;
            out[3][t] = v.w;
        } else {
            out[t][0] = v.x;
            out[t][1] = v.y;
            out[t][2] = v.z;
            out[t][3] = v.w;
        }
    }
}

template <int R, bool VEC, bool TRANS>
__device__ __forceinline__ void monarch_fused(const MonarchArgs& args) {
    APEX_DYNAMIC_SMEM(float, stage);  // R × k, stage-2 order: group g's inputs at g·p + q
    const int b = args.nblocks;
    const int p = args.block;
    const int k = b * p;
    const i64 row0 = (i64)blockIdx.x * R;
    const int quads = (p + 3) / 4;
    const int tasks = b * quads;

    // ---- stage 1: global input → registers → shared (permuted) + mid ----
    for (int task = threadIdx.x; task < tasks; task += blockDim.x) {
        const int g = task / quads;
        const int o0 = (task - g * quads) * 4;
        float acc[R][4];
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
            for (int u = 0; u < 4; ++u) acc[r][u] = 0.0f;
        // Input column of (group g, input q): blocked (g·p+q) or interleaved (q·b+g).
        auto in_col = [&](int q) { return TRANS ? (i64)q * b + g : (i64)g * p + q; };
        if constexpr (VEC) {
            for (int q = 0; q < p; q += 4) {
                float w[4][4];
                monarch_weights4<TRANS>(args.w_first, g, o0, q, p, w);
#pragma unroll
                for (int r = 0; r < R; ++r) {
                    float x[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                    const i64 row = row0 + r;
                    if (row < args.n) {
                        if (!TRANS && args.in_vec) {
                            const float4 v = __ldg(reinterpret_cast<const float4*>(
                                args.in + at(args.inv, row, in_col(q))));
                            x[0] = v.x;
                            x[1] = v.y;
                            x[2] = v.z;
                            x[3] = v.w;
                        } else {
#pragma unroll
                            for (int v = 0; v < 4; ++v) x[v] = args.in[at(args.inv, row, in_col(q + v))];
                        }
                    }
#pragma unroll
                    for (int u = 0; u < 4; ++u)
#pragma unroll
                        for (int v = 0; v < 4; ++v) acc[r][u] = fmaf(w[u][v], x[v], acc[r][u]);
                }
            }
        } else {
            for (int q = 0; q < p; ++q) {
                float w[4];
#pragma unroll
                for (int u = 0; u < 4; ++u)
                    w[u] = o0 + u < p
                               ? __ldg(args.w_first + monarch_weight_index<TRANS>(g, o0 + u, q, p))
                               : 0.0f;
#pragma unroll
                for (int r = 0; r < R; ++r) {
                    const i64 row = row0 + r;
                    const float x = row < args.n ? args.in[at(args.inv, row, in_col(q))] : 0.0f;
#pragma unroll
                    for (int u = 0; u < 4; ++u) acc[r][u] = fmaf(w[u], x, acc[r][u]);
                }
            }
        }
#pragma unroll
        for (int u = 0; u < 4; ++u) {
            const int o = o0 + u;
            if (o < p) {
                // Natural position of this stage-1 output, and where stage 2 wants it.
                const int natural = TRANS ? o * b + g : g * p + o;
                const int staged = TRANS ? natural : (natural % b) * p + natural / b;
#pragma unroll
                for (int r = 0; r < R; ++r) {
                    stage[r * k + staged] = acc[r][u];
                    if (row0 + r < args.n) args.mid[(row0 + r) * k + natural] = acc[r][u];
                }
            }
        }
    }
    __syncthreads();

    // ---- stage 2: shared → registers → global output ----
    for (int task = threadIdx.x; task < tasks; task += blockDim.x) {
        const int g = task / quads;
        const int o0 = (task - g * quads) * 4;
        float acc[R][4];
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
            for (int u = 0; u < 4; ++u) acc[r][u] = 0.0f;
        if constexpr (VEC) {
            for (int q = 0; q < p; q += 4) {
                float w[4][4];
                monarch_weights4<TRANS>(args.w_second, g, o0, q, p, w);
#pragma unroll
                for (int r = 0; r < R; ++r) {
                    const float4 v = *reinterpret_cast<const float4*>(stage + r * k + g * p + q);
                    const float x[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
                    for (int u = 0; u < 4; ++u)
#pragma unroll
                        for (int t = 0; t < 4; ++t) acc[r][u] = fmaf(w[u][t], x[t], acc[r][u]);
                }
            }
        } else {
            for (int q = 0; q < p; ++q) {
                float w[4];
#pragma unroll
                for (int u = 0; u < 4; ++u)
                    w[u] = o0 + u < p
                               ? __ldg(args.w_second + monarch_weight_index<TRANS>(g, o0 + u, q, p))
                               : 0.0f;
#pragma unroll
                for (int r = 0; r < R; ++r) {
                    const float x = stage[r * k + g * p + q];
#pragma unroll
                    for (int u = 0; u < 4; ++u) acc[r][u] = fmaf(w[u], x, acc[r][u]);
                }
            }
        }
#pragma unroll
        for (int u = 0; u < 4; ++u) {
            const int o = o0 + u;
            if (o < p) {
                const i64 col = TRANS ? (i64)g * p + o : (i64)o * b + g;
#pragma unroll
                for (int r = 0; r < R; ++r) {
                    const i64 row = row0 + r;
                    if (row < args.n) {
                        float value = acc[r][u];
                        if (args.add) value += args.add[at(args.addv, row, col)] * args.add_scale[col];
                        store_scaled(args.out, at(args.outv, row, col), value, args.beta);
                    }
                }
            }
        }
    }
}

#define MONARCH_KERNEL(name, R, VEC, TRANS) \
    APEX_KERNEL(name, MonarchArgs, 256) { monarch_fused<R, VEC, TRANS>(args); }

MONARCH_KERNEL(monarch_forward_r4, 4, false, false)
MONARCH_KERNEL(monarch_forward_r8, 8, false, false)
MONARCH_KERNEL(monarch_forward_r16, 16, false, false)
MONARCH_KERNEL(monarch_forward_r4_vec, 4, true, false)
MONARCH_KERNEL(monarch_forward_r8_vec, 8, true, false)
MONARCH_KERNEL(monarch_forward_r16_vec, 16, true, false)
MONARCH_KERNEL(monarch_transposed_r4, 4, false, true)
MONARCH_KERNEL(monarch_transposed_r8, 8, false, true)
MONARCH_KERNEL(monarch_transposed_r16, 16, false, true)
MONARCH_KERNEL(monarch_transposed_r4_vec, 4, true, true)
MONARCH_KERNEL(monarch_transposed_r8_vec, 8, true, true)
MONARCH_KERNEL(monarch_transposed_r16_vec, 16, true, true)
