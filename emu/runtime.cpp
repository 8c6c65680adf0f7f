// runtime.cpp: runs a grid on the host. Each block's threads are fibers (fiber.h) scheduled in rounds:
// a round resumes every runnable fiber once, in the launch's resume order, and each runs until it
// blocks (at __syncthreads or a warp collective) or exits (random orders hold some warps back for a
// few rounds, so that warps drift apart: see hold_back_warps). A warp collective completes when the 32nd
// lane of the warp arrives; a __syncthreads completes when, at the end of a round, every live thread
// of the block waits at it (exited threads count as arrived). A round that ends with nothing runnable
// and no barrier that can complete is a divergent barrier, a partial-warp collective or a deadlock;
// the launch then fails with the source lines involved.
//
// Cooperative launches (LaunchRequest::flags & kLaunchCooperative): every block of the grid is alive
// at once. Each block runs on its own host thread (so that its `__shared__` variables, which are
// thread_local, are its own), but only one runs at a time: a coordinator (the launching thread) gives
// a turn to each block that can progress, in the launch's resume order across blocks. On its turn a
// block runs one round of its fibers (in order: blocks advance in lockstep), or until its next grid
// barrier or exit (reversed), or a random one of those or 2-3 rounds (random orders): blocks also
// drift apart between grid barriers, so a missing grid barrier shows. A block whose live threads all
// wait at the grid barrier is parked; when every block is parked (exited threads count as arrived),
// the barrier opens. A block that exits entirely while others wait at a grid barrier, grid barriers
// at different source lines, and threads of one block split between __syncthreads and the grid
// barrier are errors.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdarg>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cuda_emu.h"
#include "fiber.h"

namespace emu {
namespace detail {
__thread const ThreadPub* tl_thread = nullptr;
__thread const BlockPub* tl_block = nullptr;
}  // namespace detail

namespace {

constexpr uint32_t kWarp = 32;
constexpr uint32_t kFullMask = 0xffffffffu;
constexpr size_t kMaxBlockThreads = 1024;

const char* warp_op_name(WarpOp op) {
    static const char* const kNames[] = {"__shfl_sync",   "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync",
                                         "__ballot_sync", "__any_sync",     "__all_sync",       "__syncwarp"};
    return kNames[static_cast<int>(op)];
}

std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string format(const char* fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return buf;
}

bool same_site(Site a, Site b) { return a.line == b.line && (a.file == b.file || std::strcmp(a.file, b.file) == 0); }

std::string where(Site s) { return format("%s:%d", s.file, s.line); }

std::string idx3(uint3 v) { return format("(%u,%u,%u)", v.x, v.y, v.z); }

uint64_t splitmix64(uint64_t& state) {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

enum class State : uint8_t { Ready, Barrier, Warp, Grid, Exited, Failed };

struct Fiber {
    detail::ThreadPub pub;  // threadIdx
    uint32_t linear = 0;    // x + y*bx + z*bx*by; warp = linear / 32, lane = linear % 32
    State state = State::Ready;
    Site site{};            // where it waits (Barrier, Warp)
    WarpOp op{};            // the collective it waits in
    int arg = 0, width = 32;
    uint64_t value = 0;     // its operand
    uint64_t result = 0;    // the collective's / barrier's result for it
    Context ctx;
};

struct WarpSlot {
    uint32_t arrived = 0, exited = 0;
    Site site{};
    WarpOp op{};
};

// Everything one worker thread needs to run blocks: reused across blocks and launches.
struct Worker {
    StackPool stacks;
    std::vector<Fiber> fibers;
    std::vector<WarpSlot> warps;
    std::vector<uint8_t> ready;
    std::vector<uint32_t> round;  // fibers to resume in this round, in order
    size_t round_pos = 0;          // the next one
    Context sched;
    detail::BlockPub block;
    uint32_t n = 0, live = 0, nready = 0;
    bool warp_multiple = true;
    // Barrier in progress.
    uint32_t at_barrier = 0, bar_count = 0, bar_first = 0, bar_other = 0;
    Site bar_site{};
    bool bar_mixed = false;
    // The kernel.
    const LaunchRequest* req = nullptr;
    void (*body)(const void*) = nullptr;
    const void* args = nullptr;
    Fiber* current = nullptr;
    uint32_t order = kOrderInOrder;
    uint64_t rng = 0;
    // Random orders: the warps running alone (bit k: warp k mod 64) and for how many more rounds.
    uint64_t hold_keep = 0;
    uint32_t hold_rounds = 0;
    bool failed = false;
    std::string error;
    // Cooperative launches: threads waiting at the grid barrier, and where.
    bool cooperative = false;
    uint32_t at_grid = 0;
    Site grid_site{};
};

__thread Worker* tl_worker = nullptr;

Worker& current_worker() {
    if (tl_worker == nullptr) {
        fprintf(stderr, "ortho-rnn emu: a CUDA built-in was called outside a kernel launch\n");
        std::abort();
    }
    return *tl_worker;
}

// Leaves fiber `f` for the next fiber of the round (directly: one switch per resume), or for the
// scheduler when the round is over or the block failed. Returns when `f` is resumed.
inline __attribute__((always_inline)) void yield(Worker& w, Fiber& f) {
    if (!w.failed && w.round_pos < w.round.size()) {
        Fiber& next = w.fibers[w.round[w.round_pos++]];
        w.current = &next;
        detail::tl_thread = &next.pub;
        switch_context(&f.ctx, &next.ctx);
    } else {
        switch_context(&f.ctx, &w.sched);
    }
}

[[noreturn]] void fail(Worker& w, Fiber& f, const std::string& msg) {
    if (!w.failed) {
        w.failed = true;
        w.error = format("block %s, thread %s: ", idx3(w.block.block_idx).c_str(), idx3(f.pub.thread_idx).c_str()) + msg;
    }
    f.state = State::Failed;
    switch_context(&f.ctx, &w.sched);
    std::abort();  // a failed fiber is never resumed
}

void make_ready(Worker& w, Fiber& f) {
    f.state = State::Ready;
    w.ready[f.linear] = 1;
    ++w.nready;
}

void thread_exit(Worker& w, Fiber& f) {
    f.state = State::Exited;
    --w.live;
    WarpSlot& ws = w.warps[f.linear / kWarp];
    ++ws.exited;
    if (ws.arrived > 0) {
        fail(w, f, format("exited while %u other lanes of its warp wait at %s at %s: the collective is reached "
                          "by only part of the warp",
                          ws.arrived, warp_op_name(ws.op), where(ws.site).c_str()));
    }
    yield(w, f);
    std::abort();  // an exited fiber is never resumed
}

void fiber_entry(void* arg) {
    Fiber& f = *static_cast<Fiber*>(arg);
    Worker& w = *tl_worker;
    w.body(w.args);
    thread_exit(w, f);
}

// The 32nd lane arrived: compute every lane's result (PTX shfl.sync semantics for the shuffles).
void complete_warp(Worker& w, uint32_t warp) {
    Fiber* lanes = &w.fibers[warp * kWarp];
    uint32_t ballot = 0;
    for (uint32_t l = 0; l < kWarp; ++l) ballot |= (lanes[l].value != 0 ? 1u : 0u) << l;
    for (uint32_t l = 0; l < kWarp; ++l) {
        Fiber& f = lanes[l];
        switch (f.op) {
            case WarpOp::ShflIdx:
            case WarpOp::ShflUp:
            case WarpOp::ShflDown:
            case WarpOp::ShflXor: {
                const int seg = kWarp - f.width;  // segment mask c[12:8]
                const int b = f.arg & 31;
                const int lane = int(l);
                const int max_lane = (lane & seg) | (f.op == WarpOp::ShflUp ? 0 : (31 & ~seg));
                const int min_lane = lane & seg;
                int j = lane;
                bool ok = true;
                if (f.op == WarpOp::ShflUp) {
                    j = lane - b;
                    ok = j >= max_lane;
                } else if (f.op == WarpOp::ShflDown) {
                    j = lane + b;
                    ok = j <= max_lane;
                } else if (f.op == WarpOp::ShflXor) {
                    j = lane ^ b;
                    ok = j <= max_lane;
                } else {
                    j = min_lane | (b & ~seg);
                    ok = j <= max_lane;
                }
                f.result = lanes[ok ? j : lane].value;
                break;
            }
            case WarpOp::Ballot: f.result = ballot; break;
            case WarpOp::Any: f.result = ballot != 0; break;
            case WarpOp::All: f.result = ballot == kFullMask; break;
            case WarpOp::SyncWarp: f.result = 0; break;
        }
        make_ready(w, f);
    }
}

// A live thread that is not waiting in warp `warp`'s collective, described for an error message.
std::string missing_lane(Worker& w, uint32_t warp) {
    for (uint32_t l = 0; l < kWarp; ++l) {
        Fiber& f = w.fibers[warp * kWarp + l];
        if (f.state == State::Warp) continue;
        std::string who = format("lane %u (thread %s)", l, idx3(f.pub.thread_idx).c_str());
        if (f.state == State::Exited) return who + " has exited";
        if (f.state == State::Barrier) return who + " waits at __syncthreads at " + where(f.site);
        return who + " is elsewhere";
    }
    return "no lane is missing";
}

enum class Resolve { Released, Parked, Failed };

// Called when a round ends with nothing runnable. Releases a complete barrier, reports a block whose
// live threads all wait at the grid barrier as parked, or fails the block.
Resolve resolve_block(Worker& w) {
    for (uint32_t warp = 0; warp < w.warps.size(); ++warp) {
        const WarpSlot& ws = w.warps[warp];
        if (ws.arrived == 0) continue;
        w.failed = true;
        w.error = format("block %s: deadlock: %s at %s is reached by only %u of the 32 lanes of warp %u; ",
                         idx3(w.block.block_idx).c_str(), warp_op_name(ws.op), where(ws.site).c_str(), ws.arrived,
                         warp) +
                  missing_lane(w, warp);
        return Resolve::Failed;
    }
    if (w.at_grid > 0) {
        if (w.at_barrier == 0 && w.at_grid == w.live) return Resolve::Parked;
        const Fiber* a = nullptr;
        const Fiber* b = nullptr;
        for (uint32_t i = 0; i < w.n; ++i) {
            const Fiber& f = w.fibers[i];
            if (f.state == State::Grid && a == nullptr) a = &f;
            if (f.state == State::Barrier && b == nullptr) b = &f;
        }
        w.failed = true;
        if (a != nullptr && b != nullptr) {
            w.error = format("block %s: deadlock: thread %s waits at the grid barrier at %s but thread %s waits at "
                             "__syncthreads at %s",
                             idx3(w.block.block_idx).c_str(), idx3(a->pub.thread_idx).c_str(), where(a->site).c_str(),
                             idx3(b->pub.thread_idx).c_str(), where(b->site).c_str());
        } else {
            w.error = format("block %s: internal scheduler error: %u at the grid barrier, %u at __syncthreads, %u live",
                             idx3(w.block.block_idx).c_str(), w.at_grid, w.at_barrier, w.live);
        }
        return Resolve::Failed;
    }
    if (w.at_barrier != w.live) {
        w.failed = true;
        w.error = format("block %s: internal scheduler error: %u of %u live threads at the barrier",
                         idx3(w.block.block_idx).c_str(), w.at_barrier, w.live);
        return Resolve::Failed;
    }
    if (w.bar_mixed) {
        const Fiber& a = w.fibers[w.bar_first];
        const Fiber& b = w.fibers[w.bar_other];
        w.failed = true;
        w.error = format("block %s: divergent __syncthreads: thread %s waits at %s but thread %s waits at %s",
                         idx3(w.block.block_idx).c_str(), idx3(a.pub.thread_idx).c_str(), where(a.site).c_str(),
                         idx3(b.pub.thread_idx).c_str(), where(b.site).c_str());
        return Resolve::Failed;
    }
    const uint64_t result = uint64_t(w.bar_count) | (uint64_t(w.bar_count == w.at_barrier) << 32);
    for (uint32_t i = 0; i < w.n; ++i) {
        Fiber& f = w.fibers[i];
        if (f.state != State::Barrier) continue;
        f.result = result;
        make_ready(w, f);
    }
    w.at_barrier = 0;
    w.bar_count = 0;
    w.bar_mixed = false;
    return Resolve::Released;
}

// Opens the grid barrier for a parked block: its waiting threads become runnable.
void release_grid(Worker& w) {
    for (uint32_t i = 0; i < w.n; ++i) {
        Fiber& f = w.fibers[i];
        if (f.state == State::Grid) make_ready(w, f);
    }
    w.at_grid = 0;
}

// Random orders: warps drift apart, as independent warps do on a GPU. Now and then (on about half of
// the rounds where no hold is in force) a random subset of the warps is chosen to run alone for the
// next 1-16 rounds; the other warps' runnable fibers stay runnable for later. Between two
// __syncthreads a warp can then get many warp collectives ahead of another, so that a barrier missing
// between collective-separated phases (one warp's writes, another warp's reads) shows. Without this,
// every warp passes one collective per round and all warps move in lockstep. When none of the chosen
// warps can run (they wait at a barrier for the others), the hold ends.
void hold_back_warps(Worker& w) {
    if (w.n <= kWarp || w.round.empty()) return;
    if (w.hold_rounds == 0) {
        if ((splitmix64(w.rng) & 1) == 0) return;
        w.hold_keep = splitmix64(w.rng);
        w.hold_rounds = 1 + static_cast<uint32_t>(splitmix64(w.rng) % 16);
    }
    --w.hold_rounds;
    auto kept = [&](uint32_t i) { return ((w.hold_keep >> ((i / kWarp) % 64)) & 1) != 0; };
    bool any = false;
    for (uint32_t i : w.round) any = any || kept(i);
    if (!any) {
        w.hold_rounds = 0;
        return;
    }
    size_t out = 0;
    for (uint32_t i : w.round)
        if (kept(i)) w.round[out++] = i;
    w.round.resize(out);
}

// Collects the runnable fibers in this launch's resume order.
void plan_round(Worker& w) {
    w.round.clear();
    if (w.order == kOrderReversed) {
        for (uint32_t i = w.n; i-- > 0;)
            if (w.ready[i]) w.round.push_back(i);
    } else {
        for (uint32_t i = 0; i < w.n; ++i)
            if (w.ready[i]) w.round.push_back(i);
        if (w.order == kOrderRandom) {
            for (size_t i = w.round.size(); i > 1; --i) std::swap(w.round[i - 1], w.round[splitmix64(w.rng) % i]);
            hold_back_warps(w);
        }
    }
    for (uint32_t i : w.round) w.ready[i] = 0;
    w.nready -= static_cast<uint32_t>(w.round.size());
}

// Prepares the fibers of block w.block.block_idx (all runnable, fresh contexts).
void begin_block(Worker& w) {
    const dim3 bd = w.block.block_dim;
    w.live = w.n;
    w.warp_multiple = w.n % kWarp == 0;
    w.warps.assign((w.n + kWarp - 1) / kWarp, WarpSlot{});
    w.ready.assign(w.n, 1);
    w.nready = w.n;
    w.at_barrier = w.bar_count = 0;
    w.at_grid = 0;
    w.bar_mixed = false;
    w.hold_rounds = 0;
    w.failed = false;
    for (uint32_t i = 0; i < w.n; ++i) {
        Fiber& f = w.fibers[i];
        f.pub.thread_idx = uint3{i % bd.x, (i / bd.x) % bd.y, i / (bd.x * bd.y)};
        f.linear = i;
        f.state = State::Ready;
        // Stack tops staggered by a cache line per fiber: at equal page offsets, the hot frames of
        // hundreds of fibers would compete for the same few cache sets.
        make_context(&f.ctx, w.stacks.lo(i), w.stacks.hi(i) - 64 * (i % 64), &fiber_entry, &f);
    }
}

enum class Step { Progress, Parked, Done, Failed };

// Runs one round of the block's runnable fibers (releasing a complete __syncthreads first when
// nothing is runnable) and says where the block stands.
Step step_block(Worker& w) {
    detail::tl_block = &w.block;
    if (w.nready == 0) {
        if (w.live == 0) return Step::Done;
        switch (resolve_block(w)) {
            case Resolve::Failed: return Step::Failed;
            case Resolve::Parked: return Step::Parked;
            case Resolve::Released: break;
        }
    }
    plan_round(w);
    // Each fiber of the round hands over to the next (yield); the last one switches back here.
    Fiber& first = w.fibers[w.round[0]];
    w.round_pos = 1;
    w.current = &first;
    detail::tl_thread = &first.pub;
    switch_context(&w.sched, &first.ctx);
    if (w.failed) return Step::Failed;
    if (w.nready == 0 && w.live == 0) return Step::Done;
    return Step::Progress;
}

// Runs one block to completion; false (with w.error set) if it failed.
bool run_block(Worker& w) {
    begin_block(w);
    for (;;) {
        switch (step_block(w)) {
            case Step::Done: return true;
            case Step::Failed: return false;
            case Step::Parked:  // a grid barrier outside a cooperative launch fails at the call
                w.error = "internal scheduler error: a block parked at a grid barrier in a plain launch";
                return false;
            case Step::Progress: break;
        }
    }
}

// One launch's grid, shared by the workers that run its blocks.
struct GridJob {
    const KernelInfo* info;
    const LaunchRequest* req;
    void (*body)(const void*);
    const void* args;
    uint64_t nblocks;
    uint32_t perm_bits;  // for the random block order
    uint64_t perm_mul, perm_add;
    std::atomic<uint64_t> next{0};
    std::atomic<bool> abort{false};
    std::mutex err_mu;
    std::string error;

    // The i-th block to run, as a linear block index.
    uint64_t block_at(uint64_t i) const {
        if (req->order == kOrderReversed) return nblocks - 1 - i;
        if (req->order != kOrderRandom) return i;
        // A bijection of [0, 2^bits) (xorshift then odd multiply-add), cycle-walked into [0, nblocks).
        const uint64_t mask = perm_bits >= 64 ? ~0ull : (1ull << perm_bits) - 1;
        uint64_t x = i;
        do {
            x ^= x >> (perm_bits / 2 + 1);
            x = (x * perm_mul + perm_add) & mask;
        } while (x >= nblocks);
        return x;
    }

    void record(const std::string& msg) {
        std::lock_guard<std::mutex> lk(err_mu);
        if (error.empty()) error = msg;
        abort.store(true);
    }
};

Worker& this_worker() {
    thread_local Worker worker;
    return worker;
}

// Sets up the calling thread's worker for the launch of `job`; false if fiber stacks cannot be mapped.
bool prepare_worker(Worker& w, const GridJob& job) {
    const LaunchRequest& r = *job.req;
    w.n = r.block[0] * r.block[1] * r.block[2];
    if (!w.stacks.reserve(w.n)) return false;
    if (w.fibers.size() < w.n) w.fibers.resize(w.n);
    w.req = job.req;
    w.body = job.body;
    w.args = job.args;
    w.order = r.order;
    w.cooperative = (r.flags & kLaunchCooperative) != 0;
    w.block.block_dim = dim3(r.block[0], r.block[1], r.block[2]);
    w.block.grid_dim = dim3(r.grid[0], r.grid[1], r.grid[2]);
    return true;
}

// Selects linear block `b` of the launch and seeds its random resume order.
void seed_block(Worker& w, uint64_t b) {
    const LaunchRequest& r = *w.req;
    w.block.block_idx = uint3{uint32_t(b % r.grid[0]), uint32_t(b / r.grid[0] % r.grid[1]),
                              uint32_t(b / (uint64_t(r.grid[0]) * r.grid[1]))};
    uint64_t seed = r.seed ^ (b * 0xD1B54A32D192ED03ull);
    w.rng = splitmix64(seed);
}

// Claims and runs blocks of `job` on the calling thread until none are left or one failed.
void run_worker(GridJob& job) {
    try {
        Worker& w = this_worker();
        if (!prepare_worker(w, job)) {
            job.record("could not map fiber stacks");
            return;
        }
        Worker* saved = tl_worker;
        tl_worker = &w;
        for (;;) {
            if (job.abort.load(std::memory_order_relaxed)) break;
            const uint64_t i = job.next.fetch_add(1);
            if (i >= job.nblocks) break;
            const uint64_t b = job.block_at(i);
            seed_block(w, b);
            if (!run_block(w)) {
                job.record(w.error);
                break;
            }
        }
        tl_worker = saved;
        detail::tl_thread = nullptr;
        detail::tl_block = nullptr;
    } catch (const std::exception& e) {
        job.record(std::string("internal error: ") + e.what());
    }
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// Entry points called from kernels (cuda_emu.h)
// ---------------------------------------------------------------------------------------------------
int barrier(Site site, BarrierOp op, int pred) {
    Worker& w = current_worker();
    Fiber& f = *w.current;
    const WarpSlot& ws = w.warps[f.linear / kWarp];
    if (ws.arrived > 0) {
        fail(w, f, format("deadlock: waits at __syncthreads at %s while %u lanes of its warp wait at %s at %s",
                          where(site).c_str(), ws.arrived, warp_op_name(ws.op), where(ws.site).c_str()));
    }
    f.state = State::Barrier;
    f.site = site;
    if (w.at_barrier == 0) {
        w.bar_site = site;
        w.bar_first = f.linear;
    } else if (!w.bar_mixed && !same_site(w.bar_site, site)) {
        w.bar_mixed = true;
        w.bar_other = f.linear;
    }
    ++w.at_barrier;
    w.bar_count += pred != 0 ? 1 : 0;
    yield(w, f);
    switch (op) {
        case BarrierOp::Plain: return 0;
        case BarrierOp::Count: return int(uint32_t(f.result));
        case BarrierOp::And: return int(f.result >> 32);
        case BarrierOp::Or: return uint32_t(f.result) != 0 ? 1 : 0;
    }
    return 0;
}

uint64_t warp_collective(Site site, WarpOp op, unsigned mask, uint64_t value, int arg, int width) {
    Worker& w = current_worker();
    Fiber& f = *w.current;
    if (mask != kFullMask) {
        fail(w, f, format("%s at %s: mask 0x%08x; emu supports only the full-warp mask 0xffffffff", warp_op_name(op),
                          where(site).c_str(), mask));
    }
    if (!w.warp_multiple) {
        fail(w, f, format("%s at %s: the block has %u threads, not a multiple of 32, so its last warp is partial",
                          warp_op_name(op), where(site).c_str(), w.n));
    }
    if (width < 1 || width > 32 || (width & (width - 1)) != 0) {
        fail(w, f, format("%s at %s: width %d is not a power of two in [1, 32]", warp_op_name(op), where(site).c_str(),
                          width));
    }
    const uint32_t warp = f.linear / kWarp;
    WarpSlot& ws = w.warps[warp];
    if (ws.exited > 0) {
        fail(w, f, format("%s at %s is reached by only part of warp %u: %u of its lanes have exited", warp_op_name(op),
                          where(site).c_str(), warp, ws.exited));
    }
    if (ws.arrived == 0) {
        ws.site = site;
        ws.op = op;
    } else if (ws.op != op || !same_site(ws.site, site)) {
        fail(w, f, format("lanes of warp %u wait at different warp collectives: %s at %s and %s at %s", warp,
                          warp_op_name(op), where(site).c_str(), warp_op_name(ws.op), where(ws.site).c_str()));
    }
    f.state = State::Warp;
    f.site = site;
    f.op = op;
    f.value = value;
    f.arg = arg;
    f.width = width;
    if (++ws.arrived == kWarp) {
        ws.arrived = 0;
        complete_warp(w, warp);
    }
    yield(w, f);
    return f.result;
}

void kernel_fault(Site site, const char* what) {
    Worker& w = current_worker();
    fail(w, *w.current, format("%s at %s", what, where(site).c_str()));
}

bool grid_is_cooperative() { return current_worker().cooperative; }

void grid_barrier(Site site) {
    Worker& w = current_worker();
    Fiber& f = *w.current;
    if (!w.cooperative) {
        fail(w, f, format("grid barrier (this_grid().sync()) at %s in a launch that is not cooperative: launch the "
                          "kernel with cuLaunchCooperativeKernel (Driver::launch_cooperative)",
                          where(site).c_str()));
    }
    const WarpSlot& ws = w.warps[f.linear / kWarp];
    if (ws.arrived > 0) {
        fail(w, f, format("deadlock: waits at the grid barrier at %s while %u lanes of its warp wait at %s at %s",
                          where(site).c_str(), ws.arrived, warp_op_name(ws.op), where(ws.site).c_str()));
    }
    if (w.at_grid == 0) {
        w.grid_site = site;
    } else if (!same_site(w.grid_site, site)) {
        fail(w, f, format("divergent grid barriers: this thread waits at %s, others of its block at %s",
                          where(site).c_str(), where(w.grid_site).c_str()));
    }
    f.state = State::Grid;
    f.site = site;
    ++w.at_grid;
    yield(w, f);
}

// ---------------------------------------------------------------------------------------------------
// Worker pool: helper threads that run blocks of a grid beside the launching thread.
// ---------------------------------------------------------------------------------------------------
class WorkerPool {
public:
    explicit WorkerPool(uint32_t helpers) {
        for (uint32_t i = 0; i < helpers; ++i) threads_.emplace_back([this] { loop(); });
    }
    ~WorkerPool() {
        {
            std::lock_guard<std::mutex> lk(mu_);
            stop_ = true;
        }
        start_.notify_all();
        for (std::thread& t : threads_) t.join();
    }
    // Runs `job` on every helper and the calling thread; one grid at a time.
    void run(GridJob& job) {
        std::lock_guard<std::mutex> one_at_a_time(launch_mu_);
        {
            std::lock_guard<std::mutex> lk(mu_);
            job_ = &job;
            ++generation_;
            pending_ = threads_.size();
        }
        start_.notify_all();
        run_worker(job);
        std::unique_lock<std::mutex> lk(mu_);
        done_.wait(lk, [this] { return pending_ == 0; });
        job_ = nullptr;
    }

private:
    void loop() {
        uint64_t seen = 0;
        for (;;) {
            GridJob* job;
            {
                std::unique_lock<std::mutex> lk(mu_);
                start_.wait(lk, [&] { return stop_ || generation_ != seen; });
                if (stop_) return;
                seen = generation_;
                job = job_;
            }
            run_worker(*job);
            std::lock_guard<std::mutex> lk(mu_);
            if (--pending_ == 0) done_.notify_all();
        }
    }

    std::mutex launch_mu_, mu_;
    std::condition_variable start_, done_;
    GridJob* job_ = nullptr;
    uint64_t generation_ = 0;
    size_t pending_ = 0;
    bool stop_ = false;
    std::vector<std::thread> threads_;
};


// ---------------------------------------------------------------------------------------------------
// Cooperative grids: one host thread per block, one block running at a time (see the file comment).
// ---------------------------------------------------------------------------------------------------
class CoopPool {
public:
    ~CoopPool() {
        {
            std::lock_guard<std::mutex> lk(mu_);
            for (auto& t : threads_) t->cmd = kStop;
        }
        for (auto& t : threads_) t->cv.notify_all();
        for (auto& t : threads_) t->thread.join();
    }

    // Runs the cooperative grid of `job`; returns an error message, empty on success.
    std::string run(GridJob& job) {
        std::lock_guard<std::mutex> one_at_a_time(launch_mu_);
        const uint64_t nb = job.nblocks;
        while (threads_.size() < nb) add_thread();
        job_ = &job;
        // Begin every block on its own thread.
        for (uint64_t b = 0; b < nb; ++b) {
            std::string err = command(b, kBegin, 0);
            if (!err.empty()) return err;
        }
        std::vector<Step> status(nb, Step::Progress);
        std::vector<uint64_t> order;
        order.reserve(nb);
        uint64_t rng = job.req->seed ^ 0xC00FE12Aull;
        uint64_t barriers = 0;
        for (;;) {
            order.clear();
            for (uint64_t b = 0; b < nb; ++b)
                if (status[b] == Step::Progress) order.push_back(b);
            if (order.empty()) {
                uint64_t parked = 0, done = 0;
                for (Step st : status) {
                    parked += st == Step::Parked ? 1 : 0;
                    done += st == Step::Done ? 1 : 0;
                }
                if (done == nb) return std::string();
                Worker* first = nullptr;
                for (uint64_t b = 0; b < nb; ++b) {
                    Worker& w = *threads_[b]->worker;
                    if (status[b] != Step::Parked) continue;
                    if (first == nullptr) {
                        first = &w;
                    } else if (!same_site(first->grid_site, w.grid_site)) {
                        return format("divergent grid barriers: block %s waits at %s but block %s waits at %s",
                                      idx3(first->block.block_idx).c_str(), where(first->grid_site).c_str(),
                                      idx3(w.block.block_idx).c_str(), where(w.grid_site).c_str());
                    }
                }
                if (done > 0) {
                    for (uint64_t b = 0; b < nb; ++b) {
                        if (status[b] != Step::Done) continue;
                        Worker& w = *threads_[b]->worker;
                        return format("deadlock: block %s exited while %llu blocks wait at the grid barrier at %s "
                                      "(every block must reach every grid barrier)",
                                      idx3(w.block.block_idx).c_str(), (unsigned long long)parked,
                                      where(first->grid_site).c_str());
                    }
                }
                ++barriers;
                for (uint64_t b = 0; b < nb; ++b) {
                    release_grid(*threads_[b]->worker);
                    status[b] = Step::Progress;
                }
                continue;
            }
            if (job.req->order == kOrderReversed) {
                std::reverse(order.begin(), order.end());
            } else if (job.req->order == kOrderRandom) {
                for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[splitmix64(rng) % i]);
            }
            for (uint64_t b : order) {
                // How far the block runs on this turn: one round (lockstep) in order, up to its next grid
                // barrier or exit when reversed, and a random choice of the two (or 2-3 rounds) in random
                // orders, so that blocks also drift apart between grid barriers and a missing one shows.
                uint32_t rounds = 1;
                if (job.req->order == kOrderReversed) {
                    rounds = 0;
                } else if (job.req->order == kOrderRandom) {
                    const uint64_t r = splitmix64(rng) % 4;
                    rounds = r == 0 ? 0 : uint32_t(r);
                }
                std::string err = command(b, kStep, rounds);
                if (!err.empty()) return err;
                status[b] = threads_[b]->last;
            }
        }
    }

private:
    enum Cmd { kIdle, kBegin, kStep, kStop };
    struct BlockThread {
        std::thread thread;
        std::condition_variable cv;
        Cmd cmd = kIdle;
        uint32_t rounds = 1;
        uint64_t block = 0;
        Step last = Step::Progress;
        std::string error;
        Worker* worker = nullptr;
    };

    void add_thread() {
        auto t = std::make_unique<BlockThread>();
        BlockThread* bt = t.get();
        bt->block = threads_.size();
        bt->thread = std::thread([this, bt] { loop(*bt); });
        threads_.push_back(std::move(t));
    }

    // Hands block `b` one command and waits for it to finish; returns its error, if any.
    // `rounds`: for kStep, the most rounds to run (0: until the block parks, exits or fails).
    std::string command(uint64_t b, Cmd c, uint32_t rounds) {
        BlockThread& t = *threads_[b];
        std::unique_lock<std::mutex> lk(mu_);
        t.cmd = c;
        t.rounds = rounds;
        t.cv.notify_one();
        done_.wait(lk, [&] { return t.cmd == kIdle; });
        return t.last == Step::Failed ? t.error : std::string();
    }

    void loop(BlockThread& t) {
        Worker& w = this_worker();
        t.worker = &w;
        for (;;) {
            Cmd c;
            {
                std::unique_lock<std::mutex> lk(mu_);
                t.cv.wait(lk, [&] { return t.cmd != kIdle; });
                c = t.cmd;
            }
            if (c == kStop) return;
            tl_worker = &w;
            try {
                if (c == kBegin) {
                    t.error.clear();
                    if (!prepare_worker(w, *job_)) {
                        t.last = Step::Failed;
                        t.error = "could not map fiber stacks";
                    } else {
                        seed_block(w, t.block);
                        begin_block(w);
                        t.last = Step::Progress;
                    }
                } else {
                    for (uint32_t k = 0; t.rounds == 0 || k < t.rounds; ++k) {
                        t.last = step_block(w);
                        if (t.last != Step::Progress) break;
                    }
                    if (t.last == Step::Failed) t.error = w.error;
                }
            } catch (const std::exception& e) {
                t.last = Step::Failed;
                t.error = std::string("internal error: ") + e.what();
            }
            tl_worker = nullptr;
            detail::tl_thread = nullptr;
            detail::tl_block = nullptr;
            {
                std::lock_guard<std::mutex> lk(mu_);
                t.cmd = kIdle;
            }
            done_.notify_all();
        }
    }

    std::mutex launch_mu_, mu_;
    std::condition_variable done_;
    GridJob* job_ = nullptr;
    std::vector<std::unique_ptr<BlockThread>> threads_;
};

CoopPool& coop_pool() {
    static CoopPool pool;
    return pool;
}

int run_grid(const KernelInfo* info, const LaunchRequest* req, void (*body)(const void*), const void* args,
             char* err, size_t cap) {
    const uint32_t *g = req->grid, *b = req->block;
    const uint64_t threads = uint64_t(b[0]) * b[1] * b[2];
    if (threads == 0 || g[0] == 0 || g[1] == 0 || g[2] == 0 || threads > kMaxBlockThreads || b[2] > 64 ||
        g[0] > 0x7fffffffu || g[1] > 65535 || g[2] > 65535) {
        snprintf(err, cap,
                 "kernel %s: invalid launch dimensions grid (%u,%u,%u) block (%u,%u,%u) (blocks of 1 to %zu threads, "
                 "block z <= 64, grid x < 2^31, grid y and z <= 65535)",
                 info->name, g[0], g[1], g[2], b[0], b[1], b[2], kMaxBlockThreads);
        return 1;
    }
    GridJob job;
    job.info = info;
    job.req = req;
    job.body = body;
    job.args = args;
    job.nblocks = uint64_t(g[0]) * g[1] * g[2];
    job.perm_bits = 1;
    while ((1ull << job.perm_bits) < job.nblocks) ++job.perm_bits;
    uint64_t s = req->seed;
    job.perm_mul = splitmix64(s) | 1;
    job.perm_add = splitmix64(s);
    if ((req->flags & kLaunchCooperative) != 0) {
        if (job.nblocks > kMaxCoopBlocks || job.nblocks * threads > kMaxCoopThreads) {
            snprintf(err, cap,
                     "kernel %s: a cooperative grid of %llu blocks of %llu threads is larger than the emulator "
                     "co-schedules (at most %u blocks and %llu threads in all): launch fewer blocks",
                     info->name, (unsigned long long)job.nblocks, (unsigned long long)threads, kMaxCoopBlocks,
                     (unsigned long long)kMaxCoopThreads);
            return 1;
        }
        std::string e = coop_pool().run(job);
        if (!e.empty()) {
            snprintf(err, cap, "%s", e.c_str());
            return 1;
        }
        return 0;
    }
    if (req->pool != nullptr) {
        static_cast<WorkerPool*>(req->pool)->run(job);
    } else {
        run_worker(job);
    }
    if (!job.error.empty()) {
        snprintf(err, cap, "%s", job.error.c_str());
        return 1;
    }
    return 0;
}

}  // namespace emu

extern "C" int ortho_emu_launch(const emu::KernelInfo* info, const emu::LaunchRequest* req, char* err, size_t cap) {
    try {
        return info->launch(info, req, err, cap);
    } catch (const std::exception& e) {
        snprintf(err, cap, "kernel %s: internal error: %s", info->name, e.what());
        return 1;
    }
}

extern "C" void* ortho_emu_pool_new(uint32_t helpers) {
    try {
        return new emu::WorkerPool(helpers);
    } catch (...) {
        return nullptr;
    }
}

extern "C" void ortho_emu_pool_free(void* pool) { delete static_cast<emu::WorkerPool*>(pool); }
