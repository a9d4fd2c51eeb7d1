// Host emulation of the CUDA built-ins that kernels/cuda/*.cu use, so the
// very same kernel sources run on a CPU (crates/apex-cuda/src/emulator.rs
// compiles them with a C++20 compiler into a shared library and launches
// them through `apex_emu_launch`).
//
// Execution model: one launch at a time; the blocks of a grid run one after
// another; the threads of a block are real OS threads, so __syncthreads() is
// a real barrier and races between threads of a block can show up. Static
// __shared__ arrays become function-local statics (one block runs at a
// time), dynamic shared memory is a per-launch buffer filled with NaN bytes
// so reads of unwritten shared memory poison the result. Not emulated: warp
// shuffles, atomics, cooperative groups, and the timing of anything.
#ifndef APEX_CUDA_EMU_H
#define APEX_CUDA_EMU_H

#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __restrict__ __restrict

struct uint3 {
    unsigned int x, y, z;
};
struct dim3 {
    unsigned int x, y, z;
};
struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(8) float2 {
    float x, y;
};

using std::max;
using std::min;

namespace apex_emu {

inline thread_local uint3 thread_idx;
inline thread_local uint3 block_idx;
inline dim3 block_dim;
inline dim3 grid_dim;
inline std::barrier<>* block_barrier = nullptr;
inline unsigned char* shared_buffer = nullptr;

inline void* dynamic_smem() { return shared_buffer; }

using Entry = void (*)(const void*);

struct Kernel {
    Entry entry;
    std::size_t args_size;
};

inline std::map<std::string, Kernel>& registry() {
    static std::map<std::string, Kernel> kernels;
    return kernels;
}

struct Registration {
    Registration(const char* name, std::size_t args_size, Entry entry) {
        registry()[name] = Kernel{entry, args_size};
    }
};

}  // namespace apex_emu

#define threadIdx (apex_emu::thread_idx)
#define blockIdx (apex_emu::block_idx)
#define blockDim (apex_emu::block_dim)
#define gridDim (apex_emu::grid_dim)

inline void __syncthreads() { apex_emu::block_barrier->arrive_and_wait(); }

template <class T>
inline T __ldg(const T* p) {
    return *p;
}

#define APEX_EMU_KERNEL(name, Args)                                                   \
    static void name(const Args args);                                                \
    static const apex_emu::Registration name##_registration(                          \
        #name, sizeof(Args), [](const void* p) { name(*static_cast<const Args*>(p)); }); \
    static void name(const Args args)

// Runs kernel `name` over the grid; 0 on success, else an error code with a
// message in `error`: 1 unknown kernel, 2 argument struct size mismatch
// (the Rust mirror and the C++ struct disagree), 3 invalid launch shape.
extern "C" int apex_emu_launch(const char* name, const void* args, std::size_t args_size,
                               const unsigned int* grid, const unsigned int* block,
                               unsigned int shared_bytes, char* error, std::size_t error_len) {
    static std::mutex launch_lock;
    std::lock_guard<std::mutex> guard(launch_lock);
    const auto found = apex_emu::registry().find(name);
    if (found == apex_emu::registry().end()) {
        std::snprintf(error, error_len, "unknown kernel `%s`", name);
        return 1;
    }
    if (found->second.args_size != args_size) {
        std::snprintf(error, error_len, "kernel `%s` takes a %zu-byte argument struct, got %zu",
                      name, found->second.args_size, args_size);
        return 2;
    }
    const std::size_t threads = std::size_t(block[0]) * block[1] * block[2];
    if (threads == 0 || threads > 1024 || grid[0] == 0 || grid[1] == 0 || grid[2] == 0 ||
        grid[1] > 65535 || grid[2] > 65535 || block[2] > 64) {
        std::snprintf(error, error_len, "kernel `%s`: invalid launch grid (%u,%u,%u) block (%u,%u,%u)",
                      name, grid[0], grid[1], grid[2], block[0], block[1], block[2]);
        return 3;
    }
    std::unique_ptr<float4[]> shared(new float4[shared_bytes / sizeof(float4) + 1]);
    std::memset(shared.get(), 0xff, (shared_bytes / sizeof(float4) + 1) * sizeof(float4));
    apex_emu::shared_buffer = reinterpret_cast<unsigned char*>(shared.get());
    apex_emu::block_dim = dim3{block[0], block[1], block[2]};
    apex_emu::grid_dim = dim3{grid[0], grid[1], grid[2]};
    std::barrier<> barrier(static_cast<std::ptrdiff_t>(threads));
    apex_emu::block_barrier = &barrier;
    const apex_emu::Entry entry = found->second.entry;
    std::vector<std::thread> workers;
    workers.reserve(threads);
    for (std::size_t w = 0; w < threads; ++w) {
        workers.emplace_back([=, &barrier] {
            apex_emu::thread_idx = uint3{unsigned(w % block[0]), unsigned(w / block[0] % block[1]),
                                         unsigned(w / (std::size_t(block[0]) * block[1]))};
            for (unsigned z = 0; z < grid[2]; ++z)
                for (unsigned y = 0; y < grid[1]; ++y)
                    for (unsigned x = 0; x < grid[0]; ++x) {
                        apex_emu::block_idx = uint3{x, y, z};
                        entry(args);
                        // No thread may start the next block while another still uses
                        // this block's shared memory.
                        barrier.arrive_and_wait();
                    }
        });
    }
    for (auto& t : workers) t.join();
    apex_emu::block_barrier = nullptr;
    apex_emu::shared_buffer = nullptr;
    return 0;
}

#endif  // APEX_CUDA_EMU_H
