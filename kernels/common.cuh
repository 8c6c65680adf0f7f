// common.cuh: device helpers shared by every kernel family (prepended to each family's source,
// both for NVRTC and for the emulation harness).
//
// Conventions: matrices are row-major; every entry point is `extern "C" __global__` with a name
// unique across all families, `<op>_<fwd|bwd>_<dtype>` where that fits; sizes are `int`; 64-bit
// batch strides are `long long`. Kernels keep to the emu subset (DESIGN.md): static __shared__,
// __syncthreads, full-warp shuffles, atomics, float math, __half / __nv_bfloat16.
#ifndef ORTHO_EMU
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#endif

// Activation codes; the Rust side passes the same numbers (backend::cuda::act_code).
#define ACT_TANH 0
#define ACT_RELU 1
#define ACT_PRELU 2
#define ACT_OPLU 3
#define ACT_MODRELU 4
#define ACT_IDENTITY 5

// -infinity; NVRTC has no INFINITY macro (it comes from the host <math.h>, which NVRTC does not include).
__device__ __forceinline__ float neg_inf() { return __uint_as_float(0xff800000u); }

__device__ __forceinline__ float sgnf(float x) { return x > 0.f ? 1.f : (x < 0.f ? -1.f : 0.f); }

// Element-wise activations (OPLU is handled by callers, which see both members of a pair).
// `param`: PReLU slope [1] or modReLU bias [cols]; `col` is the element's column.
__device__ __forceinline__ float act_elem(int kind, float x, const float* param, int col) {
    switch (kind) {
        case ACT_TANH: return tanhf(x);
        case ACT_RELU: return fmaxf(x, 0.f);
        case ACT_PRELU: return x > 0.f ? x : param[0] * x;
        case ACT_MODRELU: {
            float m = fabsf(x) + param[col];
            return m > 0.f ? sgnf(x) * m : 0.f;
        }
        default: return x;
    }
}

// d act / d x times g for the element-wise activations.
__device__ __forceinline__ float act_elem_bwd(int kind, float x, float h, float g, const float* param, int col) {
    switch (kind) {
        case ACT_TANH: return g * (1.f - h * h);
        case ACT_RELU: return x > 0.f ? g : 0.f;
        case ACT_PRELU: return x > 0.f ? g : param[0] * g;
        case ACT_MODRELU: return fabsf(x) + param[col] > 0.f ? g : 0.f;
        default: return g;
    }
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ double warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over a block of up to 1024 threads (blockDim.x a multiple of 32, 1-D). Every thread gets the sum.
__device__ __forceinline__ double block_sum_d(double v) {
    __shared__ double partial[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
    v = warp_sum_d(v);
    __syncthreads();  // partial[] may still be read by a previous call
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    double t = lane < nwarps ? partial[lane] : 0.0;
    return warp_sum_d(t);
}

// Grid-stride loop over [0, n).
#define GRID_STRIDE(i, n) for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (long long)gridDim.x * blockDim.x)
