// cuda_emu.h: the CUDA kernel subset ortho-rnn's kernels keep to, mapped onto host C++17.
//
// Each thread of a block is a cooperative fiber (runtime.cpp); fibers switch only at __syncthreads,
// at warp collectives and at thread exit, so everything between two such points runs without
// interruption. Blocks run one at a time per worker thread, which is why __shared__ can be
// `static thread_local`. The synchronization points carry __FILE__/__LINE__ so that divergent
// barriers, partial-warp collectives and deadlocks are reported with the source line.
//
// Kernel files include <cuda_fp16.h>/<cuda_bf16.h>/<cuda_pipeline.h>/<mma.h> only under
// `#ifndef ORTHO_EMU`; this header provides __half and __nv_bfloat16 (cuda_emu_math.h), cp.async
// (cuda_emu_pipeline.h) and nvcuda::wmma (cuda_emu_wmma.h).
#pragma once

#ifndef ORTHO_EMU
#define ORTHO_EMU 1
#endif

// Standard headers a kernel might include: included here, at global scope, so that an #include inside
// a kernel family's namespace is a no-op thanks to the include guards.
#include <assert.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cfloat>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

#include "emu_abi.h"

// ---------------------------------------------------------------------------------------------------
// Qualifiers
// ---------------------------------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// One copy per worker thread; a worker runs one block at a time, so the threads of a block share it.
#define __shared__ static thread_local
// Constant memory must be initialized in the source (there is no cuMemcpyToSymbol in the Driver).
#define __constant__ const

// ---------------------------------------------------------------------------------------------------
// Vector types and built-in variables
// ---------------------------------------------------------------------------------------------------
struct uint3 {
    unsigned int x, y, z;
};
struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
    constexpr operator uint3() const { return uint3{x, y, z}; }
};

#define ORTHO_EMU_VEC2(T, N, A)                                                                     \
    struct __attribute__((aligned(A))) N {                                                          \
        T x, y;                                                                                     \
    };                                                                                              \
    inline N make_##N(T x, T y) { return N{x, y}; }
#define ORTHO_EMU_VEC4(T, N, A)                                                                     \
    struct __attribute__((aligned(A))) N {                                                          \
        T x, y, z, w;                                                                               \
    };                                                                                              \
    inline N make_##N(T x, T y, T z, T w) { return N{x, y, z, w}; }
ORTHO_EMU_VEC2(float, float2, 8)
ORTHO_EMU_VEC4(float, float4, 16)
ORTHO_EMU_VEC2(int, int2, 8)
ORTHO_EMU_VEC4(int, int4, 16)
ORTHO_EMU_VEC2(unsigned int, uint2, 8)
ORTHO_EMU_VEC4(unsigned int, uint4, 16)
ORTHO_EMU_VEC2(double, double2, 16)
#undef ORTHO_EMU_VEC2
#undef ORTHO_EMU_VEC4
inline uint3 make_uint3(unsigned int x, unsigned int y, unsigned int z) { return uint3{x, y, z}; }

constexpr int warpSize = 32;

namespace emu {

// A synchronization call site.
struct Site {
    const char* file;
    int line;
};

namespace detail {
struct ThreadPub {
    uint3 thread_idx;
};
struct BlockPub {
    uint3 block_idx;
    dim3 block_dim;
    dim3 grid_dim;
};
// Set by the scheduler before it resumes a fiber / starts a block (runtime.cpp).
extern __thread const ThreadPub* tl_thread;
extern __thread const BlockPub* tl_block;
}  // namespace detail

// Warp collectives, in the order of the names in runtime.cpp.
enum class WarpOp : uint8_t { ShflIdx, ShflUp, ShflDown, ShflXor, Ballot, Any, All, SyncWarp };
// __syncthreads variants.
enum class BarrierOp : uint8_t { Plain, Count, And, Or };

// Runtime entry points (runtime.cpp). They switch fibers, so they are opaque calls to the compiler:
// memory written before them is visible to the other threads of the block after them.
int barrier(Site site, BarrierOp op, int pred);
uint64_t warp_collective(Site site, WarpOp op, unsigned mask, uint64_t value, int arg, int width);
[[noreturn]] void kernel_fault(Site site, const char* what);
// The grid-wide barrier of a cooperative launch (cooperative_groups::this_grid().sync()): returns when
// every live thread of every block of the grid waits at it. Outside a cooperative launch it fails the
// launch, as the real call is undefined there.
void grid_barrier(Site site);
// Whether the running launch is cooperative (grid_group::is_valid()).
bool grid_is_cooperative();

template <class T>
inline uint64_t to_bits64(T v) {
    static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= 8, "warp shuffles move values of at most 8 bytes");
    uint64_t b = 0;
    std::memcpy(&b, &v, sizeof(T));
    return b;
}
template <class T>
inline T from_bits64(uint64_t b) {
    T v;
    std::memcpy(&v, &b, sizeof(T));
    return v;
}
template <class T>
inline T shfl(Site s, WarpOp op, unsigned mask, T var, int arg, int width = 32) {
    return from_bits64<T>(warp_collective(s, op, mask, to_bits64(var), arg, width));
}
// `__syncwarp()` and `__syncwarp(mask)` without variadic-macro comma tricks: SyncWarp{site}(mask).
struct SyncWarp {
    Site site;
    void operator()(unsigned mask = 0xffffffffu) const { warp_collective(site, WarpOp::SyncWarp, mask, 0, 0, 32); }
};

}  // namespace emu

#define threadIdx (::emu::detail::tl_thread->thread_idx)
#define blockIdx (::emu::detail::tl_block->block_idx)
#define blockDim (::emu::detail::tl_block->block_dim)
#define gridDim (::emu::detail::tl_block->grid_dim)

#define ORTHO_EMU_SITE (::emu::Site{__FILE__, __LINE__})

// ---------------------------------------------------------------------------------------------------
// Synchronization
// ---------------------------------------------------------------------------------------------------
#define __syncthreads() ((void)::emu::barrier(ORTHO_EMU_SITE, ::emu::BarrierOp::Plain, 0))
#define __syncthreads_count(p) ::emu::barrier(ORTHO_EMU_SITE, ::emu::BarrierOp::Count, (p) ? 1 : 0)
#define __syncthreads_and(p) ::emu::barrier(ORTHO_EMU_SITE, ::emu::BarrierOp::And, (p) ? 1 : 0)
#define __syncthreads_or(p) ::emu::barrier(ORTHO_EMU_SITE, ::emu::BarrierOp::Or, (p) ? 1 : 0)
#define __syncwarp(...) ::emu::SyncWarp{ORTHO_EMU_SITE}(__VA_ARGS__)
#define __shfl_sync(mask, var, ...) ::emu::shfl(ORTHO_EMU_SITE, ::emu::WarpOp::ShflIdx, mask, var, __VA_ARGS__)
#define __shfl_up_sync(mask, var, ...) ::emu::shfl(ORTHO_EMU_SITE, ::emu::WarpOp::ShflUp, mask, var, __VA_ARGS__)
#define __shfl_down_sync(mask, var, ...) ::emu::shfl(ORTHO_EMU_SITE, ::emu::WarpOp::ShflDown, mask, var, __VA_ARGS__)
#define __shfl_xor_sync(mask, var, ...) ::emu::shfl(ORTHO_EMU_SITE, ::emu::WarpOp::ShflXor, mask, var, __VA_ARGS__)
#define __ballot_sync(mask, pred) \
    ((unsigned)::emu::warp_collective(ORTHO_EMU_SITE, ::emu::WarpOp::Ballot, mask, (pred) ? 1 : 0, 0, 32))
#define __any_sync(mask, pred) \
    ((int)::emu::warp_collective(ORTHO_EMU_SITE, ::emu::WarpOp::Any, mask, (pred) ? 1 : 0, 0, 32))
#define __all_sync(mask, pred) \
    ((int)::emu::warp_collective(ORTHO_EMU_SITE, ::emu::WarpOp::All, mask, (pred) ? 1 : 0, 0, 32))
// ---------------------------------------------------------------------------------------------------
// Cooperative groups: the grid of a cooperative launch. Kernels include <cooperative_groups.h> only
// under `#ifndef ORTHO_EMU` and call `cooperative_groups::this_grid().sync()` (or through a namespace
// alias) at each barrier: `this_grid()` is a macro here that records its call site, which is what
// error messages about a grid barrier name.
// ---------------------------------------------------------------------------------------------------
namespace cooperative_groups {
struct grid_group {
    ::emu::Site site;
    void sync() const { ::emu::grid_barrier(site); }
    bool is_valid() const { return ::emu::grid_is_cooperative(); }
    unsigned long long num_blocks() const {
        const dim3 g = ::emu::detail::tl_block->grid_dim;
        return (unsigned long long)g.x * g.y * g.z;
    }
    unsigned long long block_rank() const {
        const ::emu::detail::BlockPub& b = *::emu::detail::tl_block;
        return b.block_idx.x + (unsigned long long)b.grid_dim.x * (b.block_idx.y + (unsigned long long)b.grid_dim.y * b.block_idx.z);
    }
    unsigned long long num_threads() const {
        const dim3 d = ::emu::detail::tl_block->block_dim;
        return num_blocks() * d.x * d.y * d.z;
    }
    unsigned long long size() const { return num_threads(); }
    unsigned long long thread_rank() const {
        const dim3 d = ::emu::detail::tl_block->block_dim;
        const uint3 t = ::emu::detail::tl_thread->thread_idx;
        return block_rank() * d.x * d.y * d.z + t.x + (unsigned long long)d.x * (t.y + (unsigned long long)d.y * t.z);
    }
};
inline grid_group this_grid_at(::emu::Site site) { return grid_group{site}; }
}  // namespace cooperative_groups
#define this_grid() this_grid_at(ORTHO_EMU_SITE)

#define __trap() ::emu::kernel_fault(ORTHO_EMU_SITE, "__trap()")
// A failed device-side assert aborts the launch with an error instead of the process.
#undef assert
#define assert(e) ((e) ? (void)0 : ::emu::kernel_fault(ORTHO_EMU_SITE, "assertion failed: " #e))

inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_signal_fence(__ATOMIC_SEQ_CST); }

// ---------------------------------------------------------------------------------------------------
// Atomics: real host atomics, since blocks may run on several worker threads at once.
// ---------------------------------------------------------------------------------------------------
namespace emu {
template <class T>
inline T atomic_fetch_add(T* a, T v) {
    return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST);
}
// Read-modify-write through a compare-and-swap loop on the value's bits.
template <class T, class Bits, class F>
inline T atomic_update(T* addr, F f) {
    static_assert(sizeof(T) == sizeof(Bits), "bit width");
    Bits* p = reinterpret_cast<Bits*>(addr);
    Bits old = __atomic_load_n(p, __ATOMIC_RELAXED);
    for (;;) {
        T cur;
        std::memcpy(&cur, &old, sizeof(T));
        T next = f(cur);
        Bits nb;
        std::memcpy(&nb, &next, sizeof(T));
        if (__atomic_compare_exchange_n(p, &old, nb, true, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) return cur;
    }
}
}  // namespace emu

inline int atomicAdd(int* a, int v) { return emu::atomic_fetch_add(a, v); }
inline unsigned int atomicAdd(unsigned int* a, unsigned int v) { return emu::atomic_fetch_add(a, v); }
inline unsigned long long atomicAdd(unsigned long long* a, unsigned long long v) { return emu::atomic_fetch_add(a, v); }
inline float atomicAdd(float* a, float v) {
    return emu::atomic_update<float, uint32_t>(a, [v](float x) { return x + v; });
}
inline double atomicAdd(double* a, double v) {
    return emu::atomic_update<double, uint64_t>(a, [v](double x) { return x + v; });
}
inline int atomicSub(int* a, int v) { return __atomic_fetch_sub(a, v, __ATOMIC_SEQ_CST); }
inline unsigned int atomicSub(unsigned int* a, unsigned int v) { return __atomic_fetch_sub(a, v, __ATOMIC_SEQ_CST); }

#define ORTHO_EMU_ATOMIC_MINMAX(T)                                                                   \
    inline T atomicMax(T* a, T v) {                                                                  \
        return emu::atomic_update<T, T>(a, [v](T x) { return x > v ? x : v; });                      \
    }                                                                                                \
    inline T atomicMin(T* a, T v) {                                                                  \
        return emu::atomic_update<T, T>(a, [v](T x) { return x < v ? x : v; });                      \
    }                                                                                                \
    inline T atomicAnd(T* a, T v) { return __atomic_fetch_and(a, v, __ATOMIC_SEQ_CST); }             \
    inline T atomicOr(T* a, T v) { return __atomic_fetch_or(a, v, __ATOMIC_SEQ_CST); }               \
    inline T atomicXor(T* a, T v) { return __atomic_fetch_xor(a, v, __ATOMIC_SEQ_CST); }             \
    inline T atomicExch(T* a, T v) { return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST); }           \
    inline T atomicCAS(T* a, T compare, T v) {                                                       \
        __atomic_compare_exchange_n(a, &compare, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);       \
        return compare;                                                                              \
    }
ORTHO_EMU_ATOMIC_MINMAX(int)
ORTHO_EMU_ATOMIC_MINMAX(unsigned int)
ORTHO_EMU_ATOMIC_MINMAX(long long)
ORTHO_EMU_ATOMIC_MINMAX(unsigned long long)
#undef ORTHO_EMU_ATOMIC_MINMAX
inline float atomicExch(float* a, float v) {
    return emu::atomic_update<float, uint32_t>(a, [v](float) { return v; });
}

#include "cuda_emu_math.h"
// cp.async (<cuda_pipeline.h>) and the tensor-core WMMA API (<mma.h>): kernels include those headers only
// under `#ifndef ORTHO_EMU`.
#include "cuda_emu_pipeline.h"
#include "cuda_emu_wmma.h"
