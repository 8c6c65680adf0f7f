// The C ABI between the Rust side (src/backend/cuda/emu.rs), the emulation runtime (runtime.cpp) and
// the trampolines build.rs generates for every kernel. Rust mirrors these structs with #[repr(C)];
// both sides assert the sizes below, so a change here must be made in emu.rs too.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace emu {

// Order in which runnable fibers (threads of a block) and blocks of a grid are resumed.
enum ResumeOrderCode : uint32_t {
    kOrderInOrder = 0,   // ascending thread / block index
    kOrderReversed = 1,  // descending
    kOrderRandom = 2,    // seeded random permutation at every scheduling point
};

// LaunchRequest::flags.
enum LaunchFlags : uint32_t {
    // A cooperative launch (cuLaunchCooperativeKernel): every block of the grid is alive at once and
    // may wait at the grid-wide barrier (cooperative_groups::this_grid().sync()).
    kLaunchCooperative = 1,
};

// Limits of a cooperative grid the emulator co-schedules (each block runs on its own host thread,
// each thread of a block is a fiber). The launch code also checks the device's own limit (SM count
// times blocks per SM) before launching.
constexpr uint32_t kMaxCoopBlocks = 1024;
constexpr uint64_t kMaxCoopThreads = 65536;

// One launch, as Rust hands it over. `params[i]` points at argument i (cuLaunchKernel style), whose C
// type Rust believes has `sizes[i]` bytes.
struct LaunchRequest {
    uint32_t grid[3];
    uint32_t block[3];
    void* const* params;
    const size_t* sizes;
    size_t nparams;
    uint32_t order;  // ResumeOrderCode
    uint32_t flags;  // kLaunchCooperative
    uint64_t seed;     // for kOrderRandom
    void* pool;        // a WorkerPool from ortho_emu_pool_new, or null: run on the calling thread only
};

struct KernelInfo;

// Checks and unpacks the arguments, then runs the grid. Returns 0 on success; otherwise writes a
// NUL-terminated message into err[0..cap) and returns nonzero.
typedef int (*LaunchFn)(const KernelInfo* self, const LaunchRequest* req, char* err, size_t cap);

// One registered entry point. All pointers address static data.
struct KernelInfo {
    const char* family;           // file stem of kernels/<family>.cu
    const char* name;             // the extern "C" entry point's name
    uint32_t nparams;             // number of parameters
    uint32_t reserved;
    const uint32_t* param_sizes;  // sizeof each parameter type (nparams entries)
    const uint8_t* param_is_ptr;  // 1 where the parameter is a pointer (nparams entries)
    LaunchFn launch;
};

static_assert(sizeof(LaunchRequest) == 72, "LaunchRequest layout is mirrored in emu.rs");
static_assert(sizeof(KernelInfo) == 48, "KernelInfo layout is mirrored in emu.rs");

// Runs `body(args)` once per thread of every block of the grid described by `req` (the generated
// trampolines call this after unpacking the arguments). Same return convention as LaunchFn.
int run_grid(const KernelInfo* info, const LaunchRequest* req, void (*body)(const void*), const void* args,
             char* err, size_t cap);

}  // namespace emu

extern "C" {
// The registry build.rs generates: every kernel of every kernels/*.cu. Sets *count.
const emu::KernelInfo* const* ortho_emu_registry(size_t* count);
// Launches through info->launch, catching C++ exceptions at the FFI boundary.
int ortho_emu_launch(const emu::KernelInfo* info, const emu::LaunchRequest* req, char* err, size_t cap);
// A pool of `helpers` extra worker threads (the launching thread is always a worker too); null on failure.
void* ortho_emu_pool_new(uint32_t helpers);
void ortho_emu_pool_free(void* pool);
}
