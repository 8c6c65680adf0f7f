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

// The parameters of every GEMM entry point (kernels/gemm.cu, kernels/gemm_tc.cu; the launcher is
// src/backend/cuda/gemm.rs). Split-K: blockIdx.z = split * batch + b, split s covers k in
// [s kchunk, (s + 1) kchunk); with part != 0 the raw products go to part[blockIdx.z][M][N] (no epilogue).
#define GEMM_KERNEL_ARGS                                                                                          \
    int M, int N, int K, const float *__restrict__ A, long long sab, int sar, int sac,                            \
        const float *__restrict__ B, long long sbb, int sbr, int sbc, float *C, long long scb, int ldc,          \
        float alpha, float beta, const float *bias, int act, const float *act_param, float *act_out,            \
        const float *pre, const float *hval, int batch, int kchunk, float *part
#define GEMM_KERNEL_PASS                                                                                          \
    M, N, K, A, sab, sar, sac, B, sbb, sbr, sbc, C, scb, ldc, alpha, beta, bias, act, act_param, act_out, pre,   \
        hval, batch, kchunk, part

// The GEMM epilogue (kernels/gemm.cu, kernels/gemm_tc.cu) of columns c and c + 1 of one row of C (c
// even; column c + 1 only when c + 1 < N), from the raw products p0, p1: v = alpha p + beta C (beta == 0
// never reads C) + bias[c]; C = v; then act_out = act(v) (act_out != 0, pre == 0) or
// act_out = J_act(pre)^T v (pre != 0; hval = act(pre)). `idx` indexes C(r, c); act_out, pre and hval
// share C's indexing. OPLU pairs the columns (c, c + 1), hence the pairs.
__device__ __forceinline__ void gemm_epilogue_pair(long long idx, int c, int N, float p0, float p1, float alpha,
                                                   float beta, float* C, const float* bias, int act,
                                                   const float* act_param, float* act_out, const float* pre,
                                                   const float* hval) {
    const bool two = c + 1 < N;
    float v0 = alpha * p0, v1 = alpha * p1;
    if (beta != 0.f) {
        v0 += beta * C[idx];
        if (two) v1 += beta * C[idx + 1];
    }
    if (bias) {
        v0 += bias[c];
        if (two) v1 += bias[c + 1];
    }
    C[idx] = v0;
    if (two) C[idx + 1] = v1;
    if (!act_out) return;
    if (act == ACT_OPLU) {
        if (!two) return;  // OPLU needs an even width (checked by the launcher's callers)
        if (!pre) {
            act_out[idx] = fmaxf(v0, v1);
            act_out[idx + 1] = fminf(v0, v1);
        } else {
            const bool keep = pre[idx] >= pre[idx + 1];
            act_out[idx] = keep ? v0 : v1;
            act_out[idx + 1] = keep ? v1 : v0;
        }
    } else if (!pre) {
        act_out[idx] = act_elem(act, v0, act_param, c);
        if (two) act_out[idx + 1] = act_elem(act, v1, act_param, c + 1);
    } else {
        act_out[idx] = act_elem_bwd(act, pre[idx], hval[idx], v0, act_param, c);
        if (two) act_out[idx + 1] = act_elem_bwd(act, pre[idx + 1], hval[idx + 1], v1, act_param, c + 1);
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
