// emu_selftest.cu: small kernels that exercise the CUDA subset the emulation harness supports
// (emu/cuda_emu.h). They exist only to test the harness (tests/emu_harness.rs): each correct kernel is
// checked against a host reference under every resume order; `selftest_racy_shift_f32` lacks a barrier
// on purpose and `selftest_divergent_barrier_f32` / `selftest_partial_warp_f32` are invalid on purpose.
// Layouts are row-major; `i` below is a thread's global linear index.

#ifndef ORTHO_EMU
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

#define SELFTEST_FULL_MASK 0xffffffffu
#define SELFTEST_REDUCE_THREADS 256
#define SELFTEST_BMM_TILE 16
#define SELFTEST_SHIFT_THREADS 64

// partial[b] = sum of x[j] over the grid-stride share of block b (j = b*blockDim + t + k*gridDim*blockDim).
// x: [n]; partial: [gridDim.x]. blockDim.x must be a power of two <= 256. Shared-memory tree reduction.
extern "C" __global__ void selftest_reduce_f32(const float* __restrict__ x, float* __restrict__ partial, int n) {
    __shared__ float s[SELFTEST_REDUCE_THREADS];
    const unsigned t = threadIdx.x;
    float acc = 0.0f;
    for (int j = blockIdx.x * blockDim.x + t; j < n; j += gridDim.x * blockDim.x) acc += x[j];
    s[t] = acc;
    __syncthreads();
    for (unsigned stride = blockDim.x / 2; stride > 0; stride >>= 1) {
        if (t < stride) s[t] += s[t + stride];
        __syncthreads();
    }
    if (t == 0) partial[blockIdx.x] = s[0];
}

// Warp collectives. x: [total threads]; out: [total threads, 14], per thread i with lane l, warp base w:
//  0 xor-butterfly warp sum        1 __shfl_down_sync tree (lane 0 holds the warp sum)
//  2 inclusive __shfl_up_sync scan 3 x[w + (7l+3)%32]          4 __shfl_xor_sync(x, 5, width 8)
//  5 __shfl_down_sync(x, 3, 16)    6 __shfl_up_sync(x, 2, 8)   7 __ballot_sync(x > 0)
//  8 __any_sync(x == 7)            9 __all_sync(x >= 0)       10,11 hi/lo of a 64-bit shuffle from lane 31-l
// 12 x[i ^ 1] through shared memory and __syncwarp    13 __syncthreads_count(x > 0)
// blockDim.x must be a multiple of 32 (up to 1024).
extern "C" __global__ void selftest_warp_ops_i32(const int* __restrict__ x, int* __restrict__ out) {
    __shared__ int s[1024];
    const int t = threadIdx.x, lane = t % 32;
    const int i = blockIdx.x * blockDim.x + t;
    const int v = x[i];
    int* o = out + i * 14;

    int sum = v;
    for (int m = 16; m > 0; m /= 2) sum += __shfl_xor_sync(SELFTEST_FULL_MASK, sum, m);
    o[0] = sum;

    int down = v;
    for (int d = 16; d > 0; d /= 2) down += __shfl_down_sync(SELFTEST_FULL_MASK, down, d);
    o[1] = down;

    int scan = v;
    for (int d = 1; d < 32; d *= 2) {
        const int y = __shfl_up_sync(SELFTEST_FULL_MASK, scan, d);
        if (lane >= d) scan += y;
    }
    o[2] = scan;

    o[3] = __shfl_sync(SELFTEST_FULL_MASK, v, (7 * lane + 3) % 32);
    o[4] = __shfl_xor_sync(SELFTEST_FULL_MASK, v, 5, 8);
    o[5] = __shfl_down_sync(SELFTEST_FULL_MASK, v, 3, 16);
    o[6] = __shfl_up_sync(SELFTEST_FULL_MASK, v, 2, 8);
    o[7] = (int)__ballot_sync(SELFTEST_FULL_MASK, v > 0);
    o[8] = __any_sync(SELFTEST_FULL_MASK, v == 7);
    o[9] = __all_sync(SELFTEST_FULL_MASK, v >= 0);

    const unsigned long long wide = ((unsigned long long)(unsigned)v << 32) | (unsigned)lane;
    const unsigned long long got = __shfl_sync(SELFTEST_FULL_MASK, wide, 31 - lane);
    o[10] = (int)(unsigned)(got >> 32);
    o[11] = (int)(unsigned)(got & 0xffffffffull);

    s[t] = v;
    __syncwarp();
    o[12] = s[t ^ 1];

    o[13] = __syncthreads_count(v > 0);
}

// Atomics from every thread of every block. x: [n] (values >= 0); c: [24] int, u: [6] unsigned, f: [1]
// float, d: [1] double, w: [1] unsigned long long, all zeroed by the caller except c[3] = INT_MAX,
// u[2] = 0xffffffff and u[3] = n. Afterwards: c[0] = n, c[1] = sum x, c[2] = max x, c[3] = min x,
// c[4] = 2n (CAS loop), c[5] = some j < n, c[8 + b] = #{j : x[j] % 16 == b} (through a shared-memory
// histogram), u[0] = 3n, u[1] = n-1, u[2] = 0, u[3] = 0, u[4] = OR of 1<<(j%32), u[5] = XOR of all j,
// f = n, d = sum x / 2, w = n << 33.
extern "C" __global__ void selftest_atomics_i32(const int* __restrict__ x, int n, int* c, unsigned* u, float* f,
                                                double* d, unsigned long long* w) {
    __shared__ int hist[16];
    const int t = threadIdx.x;
    const int j = blockIdx.x * blockDim.x + t;
    if (t < 16) hist[t] = 0;
    __syncthreads();
    if (j < n) {
        const int v = x[j];
        atomicAdd(&c[0], 1);
        atomicAdd(&c[1], v);
        atomicMax(&c[2], v);
        atomicMin(&c[3], v);
        int assumed = 0, old;
        while ((old = atomicCAS(&c[4], assumed, assumed + 2)) != assumed) assumed = old;
        atomicExch(&c[5], j);
        atomicAdd(&hist[v % 16], 1);
        atomicAdd(&u[0], 3u);
        atomicMax(&u[1], (unsigned)j);
        atomicMin(&u[2], (unsigned)j);
        atomicSub(&u[3], 1u);
        atomicOr(&u[4], 1u << (j % 32));
        atomicXor(&u[5], (unsigned)j);
        atomicAdd(f, 1.0f);
        atomicAdd(d, 0.5 * v);
        atomicAdd(w, 1ull << 33);
    }
    __syncthreads();
    if (t < 16) atomicAdd(&c[8 + t], hist[t]);
}

// Round trips through half precision: h[i] = __float2half(x[i]), back[i] = __half2float(h[i]). x: [n].
extern "C" __global__ void selftest_cast_f16(const float* __restrict__ x, __half* h, float* back, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    h[i] = __float2half(x[i]);
    back[i] = __half2float(h[i]);
}

// Round trips through bfloat16, as selftest_cast_f16.
extern "C" __global__ void selftest_cast_bf16(const float* __restrict__ x, __nv_bfloat16* h, float* back, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    h[i] = __float2bfloat16(x[i]);
    back[i] = __bfloat162float(h[i]);
}

// Every thread records its built-in variables. out: [gridDim.x*y*z * blockDim.x*y*z, 12]; the record of a
// thread sits at ((block z*gy + y)*gx + x) * threads-per-block + (tz*by + ty)*bx + tx and holds
// threadIdx.xyz, blockIdx.xyz, blockDim.xyz, gridDim.xyz.
extern "C" __global__ void selftest_index_u32(unsigned* out) {
    const unsigned block = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
    const unsigned tpb = blockDim.x * blockDim.y * blockDim.z;
    const unsigned thread = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
    unsigned* o = out + (block * tpb + thread) * 12;
    const dim3 dims[4] = {dim3(threadIdx.x, threadIdx.y, threadIdx.z), dim3(blockIdx.x, blockIdx.y, blockIdx.z),
                          blockDim, gridDim};
    for (int k = 0; k < 4; ++k) {
        o[3 * k] = dims[k].x;
        o[3 * k + 1] = dims[k].y;
        o[3 * k + 2] = dims[k].z;
    }
}

// Batched matmul c[b] = a[b] * bm[b] with 16x16 shared-memory tiles. a: [batch, m, k]; bm: [batch, k, n];
// c: [batch, m, n]. Grid (ceil(n/16), ceil(m/16), batch), block (16, 16).
extern "C" __global__ void selftest_bmm_f32(const float* __restrict__ a, const float* __restrict__ bm,
                                            float* __restrict__ c, int m, int n, int k) {
    __shared__ float as[SELFTEST_BMM_TILE][SELFTEST_BMM_TILE];
    __shared__ float bs[SELFTEST_BMM_TILE][SELFTEST_BMM_TILE + 1];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int row = blockIdx.y * SELFTEST_BMM_TILE + ty, col = blockIdx.x * SELFTEST_BMM_TILE + tx;
    const long long batch = blockIdx.z;
    a += batch * m * k;
    bm += batch * k * n;
    c += batch * m * n;
    float acc = 0.0f;
    for (int k0 = 0; k0 < k; k0 += SELFTEST_BMM_TILE) {
        as[ty][tx] = (row < m && k0 + tx < k) ? a[(long long)row * k + k0 + tx] : 0.0f;
        bs[ty][tx] = (k0 + ty < k && col < n) ? bm[(long long)(k0 + ty) * n + col] : 0.0f;
        __syncthreads();
        for (int kk = 0; kk < SELFTEST_BMM_TILE; ++kk) acc += as[ty][kk] * bs[kk][tx];
        __syncthreads();
    }
    if (row < m && col < n) c[(long long)row * n + col] = acc;
}

// y[i] = x[i-1] within each block of 64 threads (thread 0 keeps its own value), through shared memory.
// x, y: [gridDim.x * 64]. `with_barrier` = 0 omits the needed __syncthreads: a race that in-order
// scheduling happens to hide and reversed / random scheduling exposes.
__device__ void selftest_shift(const float* x, float* y, bool with_barrier) {
    __shared__ float s[SELFTEST_SHIFT_THREADS];
    const int t = threadIdx.x;
    const int i = blockIdx.x * SELFTEST_SHIFT_THREADS + t;
    s[t] = x[i];
    if (with_barrier) __syncthreads();
    y[i] = t > 0 ? s[t - 1] : s[t];
    __syncthreads();
    s[t] = -1.0f;  // poison, so that the next block cannot read this block's values by luck
}

extern "C" __global__ void selftest_shift_f32(const float* __restrict__ x, float* __restrict__ y) {
    selftest_shift(x, y, true);
}

extern "C" __global__ void selftest_racy_shift_f32(const float* __restrict__ x, float* __restrict__ y) {
    selftest_shift(x, y, false);
}

// Threads past the end return before the block's barrier (an exited thread counts as arrived).
// y[i] = x[i] + x[base + (t+1) % active] where active = min(blockDim.x, n - base). x, y: [n]; blockDim <= 128.
extern "C" __global__ void selftest_early_exit_f32(const float* __restrict__ x, float* __restrict__ y, int n) {
    __shared__ float s[128];
    const int t = threadIdx.x;
    const int base = blockIdx.x * blockDim.x;
    if (base + t >= n) return;
    const int active = min((int)blockDim.x, n - base);
    s[t] = x[base + t];
    __syncthreads();
    y[base + t] = s[t] + s[(t + 1) % active];
}

// Invalid on purpose: the two halves of the block wait at different __syncthreads. y: [blockDim.x].
extern "C" __global__ void selftest_divergent_barrier_f32(float* y) {
    if (threadIdx.x < 32) {
        y[threadIdx.x] = 1.0f;
        __syncthreads();  // selftest: divergent barrier A
    } else {
        __syncthreads();  // selftest: divergent barrier B
        y[threadIdx.x] = 2.0f;
    }
}

// Invalid under emu on purpose: only lanes 0-15 of each warp shuffle. mode 0 passes the full mask (invalid
// CUDA: lanes 16-31 never arrive); mode 1 passes the matching mask 0xffff (valid CUDA, but emu supports only
// full-warp collectives); mode 2 sends lanes 16-31 to a __syncthreads instead (a deadlock). y: [blockDim.x].
extern "C" __global__ void selftest_partial_warp_f32(float* y, int mode) {
    float v = (float)threadIdx.x;
    if (threadIdx.x % 32 < 16) {
        if (mode == 0) {
            v = __shfl_xor_sync(SELFTEST_FULL_MASK, v, 1);  // selftest: partial warp
        } else if (mode == 1) {
            v = __shfl_xor_sync(0x0000ffffu, v, 1);  // selftest: partial mask
        } else {
            v = __shfl_xor_sync(SELFTEST_FULL_MASK, v, 1);  // selftest: deadlock shuffle
        }
    } else if (mode == 2) {
        __syncthreads();  // selftest: deadlock barrier
    }
    y[threadIdx.x] = v;
}

// Two block sums in a row through common.cuh's block_sum_d, the pattern of a kernel that reduces twice:
// the second call must not overwrite the shared partials while another warp still reads the first
// call's. out[2 i] = sum of the block's x, out[2 i + 1] = sum of 2 x + 1, for every thread i.
// x: [gridDim.x * blockDim.x]; out: [2 * gridDim.x * blockDim.x]; blockDim.x a multiple of 32.
extern "C" __global__ void selftest_block_sum_twice_f64(const double* __restrict__ x, double* __restrict__ out) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    double v = x[i];
    double s1 = block_sum_d(v);
    double s2 = block_sum_d(2.0 * v + 1.0);
    out[2 * i] = s1;
    out[2 * i + 1] = s2;
}

// Warps that communicate through shared memory with only warp collectives between a write and another
// warp's read (no __syncthreads): each thread writes 1 to its slot, waits at a block barrier, then
// passes two warp collectives around writing 2 to its slot, and reads the slot of the thread 32 ahead
// (another warp). On a GPU the read sees 1 or 2 (a race); the emulator shows both only if its warps can
// drift apart by more than a collective. out[i] = the value read. blockDim.x = 64.
extern "C" __global__ void selftest_warp_drift_i32(int* out) {
    __shared__ int s[64];
    const int t = threadIdx.x, lane = t & 31;
    s[t] = 1;
    __syncthreads();
    int v = __shfl_sync(0xffffffffu, lane, 0);
    s[t] = 2 + v;  // v == 0 (lane 0's lane)
    v = __shfl_sync(0xffffffffu, v, 1);
    out[blockIdx.x * 64 + t] = s[(t + 32) % 64] + v;
}
