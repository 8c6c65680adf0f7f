// fiber.cpp: context switch and fiber stacks (see fiber.h).
#include "fiber.h"

#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>

#if ORTHO_EMU_ASM_SWITCH
// ortho_emu_switch(void** save_sp /* rdi */, void* new_sp /* rsi */): push the System V callee-saved
// registers, store rsp, load the new rsp, pop its registers and return into it.
// ortho_emu_fiber_start: the first "return address" of a fresh fiber; calls r13(r12) and never returns.
// (mxcsr and the x87 control word are not switched: kernels do not change them.)
__asm__(
    ".text\n"
    ".p2align 4\n"
    ".globl ortho_emu_switch\n"
    ".hidden ortho_emu_switch\n"
    ".type ortho_emu_switch,@function\n"
    "ortho_emu_switch:\n"
    "    pushq %rbp\n"
    "    pushq %rbx\n"
    "    pushq %r12\n"
    "    pushq %r13\n"
    "    pushq %r14\n"
    "    pushq %r15\n"
    "    movq %rsp, (%rdi)\n"
    "    movq %rsi, %rsp\n"
    "    popq %r15\n"
    "    popq %r14\n"
    "    popq %r13\n"
    "    popq %r12\n"
    "    popq %rbx\n"
    "    popq %rbp\n"
    "    ret\n"
    ".size ortho_emu_switch, .-ortho_emu_switch\n"
    ".p2align 4\n"
    ".globl ortho_emu_fiber_start\n"
    ".hidden ortho_emu_fiber_start\n"
    ".type ortho_emu_fiber_start,@function\n"
    "ortho_emu_fiber_start:\n"
    "    movq %r12, %rdi\n"
    "    callq *%r13\n"
    "    ud2\n"
    ".size ortho_emu_fiber_start, .-ortho_emu_fiber_start\n");

extern "C" void ortho_emu_switch(void** save_sp, void* new_sp);
extern "C" void ortho_emu_fiber_start();
#endif

namespace emu {

#if ORTHO_EMU_ASM_SWITCH

void switch_context(Context* from, Context* to) { ortho_emu_switch(&from->sp, to->sp); }

void make_context(Context* ctx, char* lo, char* hi, void (*entry)(void*), void* arg) {
    (void)lo;
    // Frame popped by ortho_emu_switch, lowest address first: r15 r14 r13 r12 rbx rbp, return address.
    // After the 7 pops rsp = top - 16, 16-byte aligned as the call in ortho_emu_fiber_start needs.
    uintptr_t top = reinterpret_cast<uintptr_t>(hi) & ~uintptr_t(15);
    void** sp = reinterpret_cast<void**>(top - 72);
    std::memset(sp, 0, 72);
    sp[2] = reinterpret_cast<void*>(entry);  // r13
    sp[3] = arg;                             // r12
    sp[6] = reinterpret_cast<void*>(&ortho_emu_fiber_start);
    ctx->sp = sp;
}

#else

namespace {
// makecontext passes int arguments only: the entry and its argument travel as 32-bit halves.
void ucontext_entry(unsigned e_hi, unsigned e_lo, unsigned a_hi, unsigned a_lo) {
    auto entry = reinterpret_cast<void (*)(void*)>((uintptr_t(e_hi) << 32) | e_lo);
    void* arg = reinterpret_cast<void*>((uintptr_t(a_hi) << 32) | a_lo);
    entry(arg);
}
}  // namespace

void switch_context(Context* from, Context* to) { swapcontext(&from->uc, &to->uc); }

void make_context(Context* ctx, char* lo, char* hi, void (*entry)(void*), void* arg) {
    getcontext(&ctx->uc);
    ctx->uc.uc_stack.ss_sp = lo;
    ctx->uc.uc_stack.ss_size = size_t(hi - lo);
    ctx->uc.uc_link = nullptr;
    uint64_t e = reinterpret_cast<uintptr_t>(entry), a = reinterpret_cast<uintptr_t>(arg);
    makecontext(&ctx->uc, reinterpret_cast<void (*)()>(&ucontext_entry), 4, unsigned(e >> 32), unsigned(e),
                unsigned(a >> 32), unsigned(a));
}

#endif

StackPool::~StackPool() {
    if (region_ != nullptr) munmap(region_, count_ * (kStackBytes + page_));
    release_guards();
}

namespace {
constexpr size_t kGuardBudget = 16384;
std::atomic<size_t> guarded_stacks{0};
}  // namespace

void StackPool::release_guards() {
    guarded_stacks.fetch_sub(guarded_);
    guarded_ = 0;
}

bool StackPool::reserve(size_t n) {
    if (n <= count_) return true;
    if (page_ == 0) page_ = size_t(sysconf(_SC_PAGESIZE));
    if (region_ != nullptr) munmap(region_, count_ * (kStackBytes + page_));
    release_guards();
    region_ = nullptr;
    count_ = 0;
    // Grow in steps of 256 stacks so that typical block sizes map once.
    size_t want = (n + 255) / 256 * 256;
    size_t bytes = want * (kStackBytes + page_);
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return false;
    region_ = static_cast<char*>(p);
    count_ = want;
    // If mprotect fails (e.g. at the process map-count limit) that stack merely has no guard page. Each
    // guard splits the mapping (two map entries per stack), so guards stop at a process-wide budget well
    // under the default limit of 65530 entries: a cooperative grid has thousands of fibers on as many as a
    // thousand host threads, and other mappings of the process must still succeed.
    if (guarded_stacks.fetch_add(want) + want <= kGuardBudget) {
        for (size_t i = 0; i < want; ++i) mprotect(region_ + i * (kStackBytes + page_), page_, PROT_NONE);
        guarded_ = want;
    } else {
        guarded_stacks.fetch_sub(want);
    }
    return true;
}

char* StackPool::lo(size_t i) const { return region_ + i * (kStackBytes + page_) + page_; }

char* StackPool::hi(size_t i) const { return lo(i) + kStackBytes; }

}  // namespace emu
