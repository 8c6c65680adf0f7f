// cuda_emu_pipeline.h: asynchronous global-to-shared copies (cp.async through <cuda_pipeline.h>:
// __pipeline_memcpy_async, __pipeline_commit, __pipeline_wait_prior) for the emulation harness.
//
// Each thread keeps its own queue of copies. __pipeline_memcpy_async only queues a copy in the thread's
// open batch; __pipeline_commit closes the batch as a group; __pipeline_wait_prior(N) performs, in issue
// order, the copies of every committed group except the N most recent (N above 8 counts as 8, as in
// NVIDIA's header), and copies not yet committed stay queued. Copies thus land as late as the hardware
// allows, so a kernel that reads shared memory before the matching wait (or, for data another thread
// copied, before the wait and the __syncthreads after it) reads stale data here. Copies still queued when
// a thread exits are performed then (the hardware completes them too).
//
// Checks (violations abort the launch naming the line): the size is 4, 8 or 16 bytes, the zero-fill
// count is at most the size, and both addresses are aligned to the size. With zfill == size nothing is
// read from the source, which must still be aligned.
//
// The queues are indexed by the thread's linear index in its block, in per-worker storage (a worker runs
// one block at a time, like __shared__); the launch trampoline (emu_launch.h) calls
// emu::async_copy::thread_begin / thread_end around every thread.
#pragma once

#include <vector>

namespace emu {
namespace async_copy {

struct Copy {
    void* dst;
    const void* src;
    uint32_t size, zfill;
    uint64_t group;  // the index of the group it belongs to (the number of commits before it)
};

struct Queue {
    std::vector<Copy> pending;
    uint64_t committed = 0;
};

inline std::vector<Queue>& queues() {
    static thread_local std::vector<Queue> q;
    return q;
}

inline Queue& mine() {
    const unsigned t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    std::vector<Queue>& q = queues();
    if (q.size() <= t) q.resize(size_t(t) + 1);
    return q[t];
}

inline void perform(const Copy& c) {
    const uint32_t from_src = c.size - c.zfill;
    if (from_src > 0) std::memcpy(c.dst, c.src, from_src);
    if (c.zfill > 0) std::memset(static_cast<char*>(c.dst) + from_src, 0, c.zfill);
}

// Performs the queued copies of groups below `limit`, in issue order, and drops them.
inline void complete_below(Queue& q, uint64_t limit) {
    size_t kept = 0;
    for (size_t i = 0; i < q.pending.size(); ++i) {
        if (q.pending[i].group < limit) {
            perform(q.pending[i]);
        } else {
            q.pending[kept++] = q.pending[i];
        }
    }
    q.pending.resize(kept);
}

inline void thread_begin() {
    Queue& q = mine();
    q.pending.clear();
    q.committed = 0;
}

inline void thread_end() {
    Queue& q = mine();
    complete_below(q, UINT64_MAX);
    q.committed = 0;
}

}  // namespace async_copy
}  // namespace emu

inline void __pipeline_memcpy_async(void* dst_shared, const void* src_global, size_t size_and_align, size_t zfill = 0,
                                    const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    const ::emu::Site site{file, line};
    char msg[200];
    if (size_and_align != 4 && size_and_align != 8 && size_and_align != 16) {
        snprintf(msg, sizeof msg, "__pipeline_memcpy_async: size %zu is not 4, 8 or 16 bytes", size_and_align);
        ::emu::kernel_fault(site, msg);
    }
    if (zfill > size_and_align) {
        snprintf(msg, sizeof msg, "__pipeline_memcpy_async: zfill %zu exceeds the size %zu", zfill, size_and_align);
        ::emu::kernel_fault(site, msg);
    }
    const uintptr_t mask = size_and_align - 1;
    if ((reinterpret_cast<uintptr_t>(dst_shared) & mask) != 0 || (reinterpret_cast<uintptr_t>(src_global) & mask) != 0) {
        snprintf(msg, sizeof msg, "__pipeline_memcpy_async: destination %p or source %p is not %zu-byte aligned",
                 dst_shared, src_global, size_and_align);
        ::emu::kernel_fault(site, msg);
    }
    ::emu::async_copy::Queue& q = ::emu::async_copy::mine();
    q.pending.push_back(::emu::async_copy::Copy{dst_shared, src_global, uint32_t(size_and_align), uint32_t(zfill),
                                                 q.committed});
}

inline void __pipeline_commit() { ++::emu::async_copy::mine().committed; }

inline void __pipeline_wait_prior(size_t prior) {
    ::emu::async_copy::Queue& q = ::emu::async_copy::mine();
    const uint64_t keep = prior > 8 ? 8 : prior;
    if (q.committed > keep) ::emu::async_copy::complete_below(q, q.committed - keep);
}
