// Shared definitions for every kernel file in kernels/cuda.
//
// NVRTC has no include path at run time, so crates/apex-cuda splices this
// file in place of each file's include line before compiling. The
// same sources also build as plain C++ against the host emulator
// (crates/apex-cuda/emulator/cuda_emu.h, APEX_CUDA_EMULATOR defined), which
// is how CI runs them without a GPU: kernels therefore avoid warp shuffles
// and atomics, and every thread of a block reaches every __syncthreads().
#ifndef APEX_COMMON_CUH
#define APEX_COMMON_CUH

#ifdef APEX_CUDA_EMULATOR
#define APEX_KERNEL(name, Args, threads) APEX_EMU_KERNEL(name, Args)
#define APEX_KERNEL_MIN_BLOCKS(name, Args, threads, min_blocks) APEX_EMU_KERNEL(name, Args)
#define APEX_DYNAMIC_SMEM(T, name) T* name = reinterpret_cast<T*>(apex_emu::dynamic_smem())
#else
// Every kernel takes one argument struct by value, mirrored field for field
// by a #[repr(C)] struct in crates/apex-cuda/src/kernels.rs.
#define APEX_KERNEL(name, Args, threads) \
    extern "C" __global__ void __launch_bounds__(threads) name(const Args args)
// ... and with a floor on resident CTAs per SM, which caps registers per
// thread at 64K / (threads · min_blocks).
#define APEX_KERNEL_MIN_BLOCKS(name, Args, threads, min_blocks) \
    extern "C" __global__ void __launch_bounds__(threads, min_blocks) name(const Args args)
#define APEX_DYNAMIC_SMEM(T, name)                                 \
    extern __shared__ __align__(16) unsigned char apex_dynamic_smem_[]; \
    T* name = reinterpret_cast<T*>(apex_dynamic_smem_)
#endif

typedef long long i64;

// A strided 2-D window into a row-major buffer (apex_core::MatView):
// element (r, c) lives at offset + r*row_stride + c*col_stride, in elements.
struct View {
    i64 offset;
    i64 rows;
    i64 cols;
    i64 row_stride;
    i64 col_stride;
};

__device__ __forceinline__ i64 at(const View& v, i64 r, i64 c) {
    return v.offset + r * v.row_stride + c * v.col_stride;
}

// y = value + beta*y, where beta == 0 means "do not read y" (NaN in y must
// not propagate), exactly like the CPU reference backend.
__device__ __forceinline__ void store_scaled(float* y, i64 index, float value, float beta) {
    y[index] = beta != 0.0f ? value + beta * y[index] : value;
}

// Block-wide reductions through shared memory (no warp shuffles, so the
// emulator runs them too). `scratch` holds blockDim.x values; blockDim.x must
// be a power of two. Every thread of the block must call them, and they end
// with a barrier so `scratch` can be reused at once.
template <class T>
__device__ __forceinline__ T block_sum(T value, T* scratch) {
    scratch[threadIdx.x] = value;
    __syncthreads();
    for (unsigned int s = blockDim.x / 2; s > 0; s /= 2) {
        if (threadIdx.x < s) scratch[threadIdx.x] += scratch[threadIdx.x + s];
        __syncthreads();
    }
    const T total = scratch[0];
    __syncthreads();
    return total;
}

template <class T>
__device__ __forceinline__ T block_max(T value, T* scratch) {
    scratch[threadIdx.x] = value;
    __syncthreads();
    for (unsigned int s = blockDim.x / 2; s > 0; s /= 2) {
        if (threadIdx.x < s) scratch[threadIdx.x] = max(scratch[threadIdx.x], scratch[threadIdx.x + s]);
        __syncthreads();
    }
    const T total = scratch[0];
    __syncthreads();
    return total;
}

// Row-wise kernels (norms, softmax, cross-entropy) run one 256-thread block
// per row, grid-striding over rows.
#define ROW_THREADS 256

#endif  // APEX_COMMON_CUH
