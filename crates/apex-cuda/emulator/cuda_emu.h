// Host emulation of the CUDA built-ins that kernels/cuda/*.cu use, so the
// very same kernel sources run on a CPU (crates/apex-cuda/src/emulator.rs
// compiles them with a C++20 compiler into a shared library and launches
// them through `apex_emu_launch`).
//
// Execution model: one launch at a time; the blocks of a grid run one after
// another; the threads of a block are real OS threads (a persistent pool),
// so __syncthreads() is a real barrier and races between threads of a block
// can show up. Static
// __shared__ arrays become function-local statics (one block runs at a
// time), dynamic shared memory is a per-launch buffer filled with NaN bytes
// so reads of unwritten shared memory poison the result. Not emulated: warp
// shuffles, atomics, cooperative groups, and the timing of anything.
#ifndef APEX_CUDA_EMU_H
#define APEX_CUDA_EMU_H

#include <algorithm>
#include <barrier>
#include <cmath>
#include <condition_variable>
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

namespace apex_emu {

// One launch's work, shared by the worker threads that run it.
struct Job {
    Entry entry;
    const void* args;
    unsigned int grid[3];
    unsigned int block[3];
    std::size_t threads;
};

// Persistent worker threads (spawning a block's worth of OS threads per
// launch dominated the emulator's run time). Worker w plays thread w of
// every block of the current job; the blocks run one after another.
class Pool {
  public:
    void run(const Job& job) {
        std::unique_lock<std::mutex> lock(mutex_);
        while (workers_.size() < job.threads) {
            const std::size_t w = workers_.size();
            workers_.emplace_back([this, w] { work(w); });
        }
        job_ = job;
        pending_ = job.threads;
        ++generation_;
        start_.notify_all();
        done_.wait(lock, [this] { return pending_ == 0; });
    }

  private:
    void work(std::size_t w) {
        std::uint64_t seen = 0;
        for (;;) {
            Job job;
            {
                std::unique_lock<std::mutex> lock(mutex_);
                start_.wait(lock, [&] { return generation_ != seen; });
                seen = generation_;
                if (w >= job_.threads) continue;
                job = job_;
            }
            const unsigned int* block = job.block;
            thread_idx = uint3{unsigned(w % block[0]), unsigned(w / block[0] % block[1]),
                               unsigned(w / (std::size_t(block[0]) * block[1]))};
            for (unsigned z = 0; z < job.grid[2]; ++z)
                for (unsigned y = 0; y < job.grid[1]; ++y)
                    for (unsigned x = 0; x < job.grid[0]; ++x) {
                        block_idx = uint3{x, y, z};
                        job.entry(job.args);
                        // No thread may start the next block while another still
                        // uses this block's shared memory.
                        block_barrier->arrive_and_wait();
                    }
            std::lock_guard<std::mutex> lock(mutex_);
            if (--pending_ == 0) done_.notify_one();
        }
    }

    std::mutex mutex_;
    std::condition_variable start_;
    std::condition_variable done_;
    std::vector<std::thread> workers_;
    Job job_{};
    std::size_t pending_ = 0;
    std::uint64_t generation_ = 0;
};

}  // namespace apex_emu

// Runs kernel `name` over the grid; 0 on success, else an error code with a
// message in `error`: 1 unknown kernel, 2 argument struct size mismatch
// (the Rust mirror and the C++ struct disagree), 3 invalid launch shape.
extern "C" int apex_emu_launch(const char* name, const void* args, std::size_t args_size,
                               const unsigned int* grid, const unsigned int* block,
                               unsigned int shared_bytes, char* error, std::size_t error_len) {
    static std::mutex launch_lock;
    // Workers live for the process (detached at exit by leaking the pool).
    static apex_emu::Pool* pool = new apex_emu::Pool();
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
    apex_emu::Job job{found->second.entry, args, {grid[0], grid[1], grid[2]},
                      {block[0], block[1], block[2]}, threads};
    pool->run(job);
    apex_emu::block_barrier = nullptr;
    apex_emu::shared_buffer = nullptr;
    return 0;
}

#endif  // APEX_CUDA_EMU_H
