// fiber.h: execution contexts for the threads of a block, and per-worker stacks (fiber.cpp).
//
// On x86-64 a context switch saves the callee-saved registers and rsp on the old stack and restores them
// from the new one (a dozen instructions, no system call). Elsewhere, or when built with
// ORTHO_EMU_UCONTEXT, it falls back to glibc's swapcontext, which is ~13x slower (it saves the signal
// mask with a system call per switch).
#pragma once

#include <stddef.h>
#include <stdint.h>

#if defined(__x86_64__) && !defined(ORTHO_EMU_UCONTEXT)
#define ORTHO_EMU_ASM_SWITCH 1
#else
#define ORTHO_EMU_ASM_SWITCH 0
#include <ucontext.h>
#endif

namespace emu {

// A saved execution context.
struct Context {
#if ORTHO_EMU_ASM_SWITCH
    void* sp = nullptr;
#else
    ucontext_t uc;
#endif
};

// Saves the running context into `from` and resumes `to`. Returns when something switches back to `from`.
void switch_context(Context* from, Context* to);

// Prepares `ctx` to run `entry(arg)` on the stack [lo, hi) when first switched to. `entry` must never
// return (it switches away for the last time instead).
void make_context(Context* ctx, char* lo, char* hi, void (*entry)(void*), void* arg);

// Fiber stacks of one worker thread: allocated once, grown on demand, reused for every block. Each stack
// has a PROT_NONE guard page below it, so an overflow faults instead of corrupting a neighbour.
class StackPool {
public:
    static constexpr size_t kStackBytes = 64 * 1024;
    StackPool() = default;
    StackPool(const StackPool&) = delete;
    StackPool& operator=(const StackPool&) = delete;
    ~StackPool();
    // Makes at least `n` stacks available; false if the memory could not be mapped.
    bool reserve(size_t n);
    char* lo(size_t i) const;  // lowest usable address of stack i
    char* hi(size_t i) const;  // one past the highest

private:
    void release_guards();
    char* region_ = nullptr;
    size_t guarded_ = 0;  // stacks of this pool with a guard page (counted in a process-wide budget)
    size_t count_ = 0;
    size_t page_ = 0;
};

}  // namespace emu
