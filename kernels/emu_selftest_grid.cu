// emu_selftest_grid.cu: kernels that exercise cooperative launches and the grid-wide barrier
// (cooperative_groups::this_grid().sync()) of the emulation harness (tests/emu_harness.rs). They are
// launched cooperatively (Driver::launch_cooperative) unless a test says otherwise.
// `selftest_grid_racy_rotate_f32` lacks its grid barrier on purpose; `selftest_grid_divergent_f32`,
// `selftest_grid_early_exit_f32` and `selftest_grid_mixed_f32` are invalid on purpose.

#ifndef ORTHO_EMU
#include <cooperative_groups.h>
#endif

namespace cg = cooperative_groups;

// Rotates x left by `steps` positions, one position per step, through two buffers and a grid barrier
// per step: out = x[(i + steps) % n]. a, b: [n] (a holds x on entry); n = gridDim.x * blockDim.x.
// The result is in a when `steps` is even, in b otherwise. Every block reads values other blocks
// wrote in the previous step, so a missing grid barrier shows under some resume order.
extern "C" __global__ void selftest_grid_rotate_f32(float* a, float* b, int steps) {
    const int n = gridDim.x * blockDim.x;
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    for (int s = 0; s < steps; ++s) {
        const float* src = (s % 2 == 0) ? a : b;
        float* dst = (s % 2 == 0) ? b : a;
        dst[i] = src[(i + 1) % n];
        cg::this_grid().sync();
    }
}

// As selftest_grid_rotate_f32 without the grid barrier: wrong under some resume order.
extern "C" __global__ void selftest_grid_racy_rotate_f32(float* a, float* b, int steps) {
    const int n = gridDim.x * blockDim.x;
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    for (int s = 0; s < steps; ++s) {
        const float* src = (s % 2 == 0) ? a : b;
        float* dst = (s % 2 == 0) ? b : a;
        dst[i] = src[(i + 1) % n];
        __syncthreads();
    }
}

// Shared memory stays per block while every block is alive: each block stores its index in a
// __shared__ word, passes two grid barriers (so that other blocks run in between), and writes what it
// reads back. Then block sums through shared memory and a grid-wide combination of the partials:
// out[b] = blockIdx.x read back after the barriers; total[0] = sum of x over the grid, computed by
// every block from the partials in block order (partial: [gridDim.x]).
extern "C" __global__ void selftest_grid_shared_f32(const float* x, float* partial, float* out, float* total) {
    __shared__ float mine;
    __shared__ float s[256];
    const int t = threadIdx.x;
    if (t == 0) mine = (float)blockIdx.x;
    s[t] = x[blockIdx.x * blockDim.x + t];
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
        if (t < stride) s[t] += s[t + stride];
        __syncthreads();
    }
    if (t == 0) partial[blockIdx.x] = s[0];
    cg::this_grid().sync();
    float sum = 0.f;
    for (unsigned b = 0; b < gridDim.x; ++b) sum += partial[b];
    cg::this_grid().sync();
    if (t == 0) {
        out[blockIdx.x] = mine;
        if (blockIdx.x == gridDim.x - 1) total[0] = sum;
    }
}

// Invalid: even and odd blocks wait at grid barriers on different lines.
extern "C" __global__ void selftest_grid_divergent_f32(float* x) {
    if (blockIdx.x % 2 == 0) {
        x[blockIdx.x] = 1.f;
        cg::this_grid().sync();  // divergent grid barrier A
    } else {
        x[blockIdx.x] = 2.f;
        cg::this_grid().sync();  // divergent grid barrier B
    }
}

// Invalid: block 0 returns while the other blocks wait at the grid barrier.
extern "C" __global__ void selftest_grid_early_exit_f32(float* x) {
    if (blockIdx.x == 0) return;
    x[blockIdx.x] = 1.f;
    cg::this_grid().sync();  // early-exit grid barrier
}

// Invalid: thread 0 of each block waits at the grid barrier while the others wait at __syncthreads.
extern "C" __global__ void selftest_grid_mixed_f32(float* x) {
    if (threadIdx.x == 0) {
        cg::this_grid().sync();  // mixed grid barrier
    } else {
        __syncthreads();  // mixed block barrier
    }
    x[blockIdx.x * blockDim.x + threadIdx.x] = 1.f;
}
