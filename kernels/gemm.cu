// gemm.cu: tiled, batched GEMM with a fused epilogue.
//
//   C[b] = alpha * op(A)[b] op(B)[b] + beta * C[b] + bias      (row-major, b = blockIdx.z)
//   forward epilogue:  out = act(C)                    (act_out != 0, pre == 0)
//   backward epilogue: out = J_act(pre)^T C            (act_out != 0, pre != 0; h = act(pre))
//
// Operands are addressed by strides, so transposes and sub-matrices need no copies:
//   op(A)(i, k) = A[b * sab + i * sar + k * sac],  op(B)(k, j) = B[b * sbb + k * sbr + j * sbc],
//   C(i, j) = C[b * scb + i * ldc + j]; `out`, `pre` and `h` share C's indexing.
// beta == 0 never reads C. OPLU pairs columns (2i, 2i+1): TN is even and tiles start at even
// columns, so both members of a pair belong to one thread.
//
// Variants: gemm_f32 (128x128 tiles, 8x8 per thread) for large products, gemm_small_f32 (32x32
// tiles, 2x2 per thread) for the skinny per-step products of the recurrence, and
// gemm_f16_f32 / gemm_bf16_f32 (64x64, 4x4) with half-precision operands accumulated in f32.
// All use 256 threads per block; the grid is (ceil(N/BN), ceil(M/BM), batch).

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename TA, int BM, int BN, int BK, int TM, int TN>
__device__ __forceinline__ void gemm_tile(int M, int N, int K, const TA* __restrict__ A, long long sab, int sar,
                                          int sac, const TA* __restrict__ B, long long sbb, int sbr, int sbc,
                                          float* C, long long scb, int ldc, float alpha, float beta,
                                          const float* bias, int act, const float* act_param, float* act_out,
                                          const float* pre, const float* hval) {
    const int NT = (BM / TM) * (BN / TN);
    __shared__ float As[BK][BM];
    __shared__ float Bs[BK][BN];
    const int t = threadIdx.x;
    const int tx = t % (BN / TN), ty = t / (BN / TN);
    const int row0 = blockIdx.y * BM, col0 = blockIdx.x * BN;
    const long long b = blockIdx.z;
    A += b * sab;
    B += b * sbb;
    float acc[TM][TN];
    for (int i = 0; i < TM; ++i)
        for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;

    for (int k0 = 0; k0 < K; k0 += BK) {
        for (int e = t; e < BM * BK; e += NT) {
            int ai = e / BK, ak = e % BK;
            int r = row0 + ai, k = k0 + ak;
            As[ak][ai] = (r < M && k < K) ? to_f32(A[(long long)r * sar + (long long)k * sac]) : 0.f;
        }
        for (int e = t; e < BK * BN; e += NT) {
            int bk = e / BN, bn = e % BN;
            int k = k0 + bk, c = col0 + bn;
            Bs[bk][bn] = (k < K && c < N) ? to_f32(B[(long long)k * sbr + (long long)c * sbc]) : 0.f;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < BK; ++kk) {
            float av[TM], bv[TN];
            for (int i = 0; i < TM; ++i) av[i] = As[kk][ty * TM + i];
            for (int j = 0; j < TN; ++j) bv[j] = Bs[kk][tx * TN + j];
            for (int i = 0; i < TM; ++i)
                for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
        }
        __syncthreads();
    }

    // Fully unrolled so that acc[][] is indexed by constants and stays in registers (otherwise, on
    // sm_80, the 128x128 variant keeps it in a 256-byte local-memory stack frame).
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        int r = row0 + ty * TM + i;
        if (r >= M) continue;
        long long rowoff = b * scb + (long long)r * ldc;
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            int c = col0 + tx * TN + j;
            if (c >= N) continue;
            long long idx = rowoff + c;
            float v = alpha * acc[i][j];
            if (beta != 0.f) v += beta * C[idx];
            if (bias) v += bias[c];
            acc[i][j] = v;
            C[idx] = v;
        }
        if (!act_out) continue;
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            int c = col0 + tx * TN + j;
            if (c >= N) continue;
            long long idx = rowoff + c;
            if (act == ACT_OPLU) {
                if ((j & 1) || c + 1 >= N) continue;
                float g0 = acc[i][j], g1 = acc[i][j + 1];
                if (!pre) {
                    act_out[idx] = fmaxf(g0, g1);
                    act_out[idx + 1] = fminf(g0, g1);
                } else {
                    bool keep = pre[idx] >= pre[idx + 1];
                    act_out[idx] = keep ? g0 : g1;
                    act_out[idx + 1] = keep ? g1 : g0;
                }
            } else if (!pre) {
                act_out[idx] = act_elem(act, acc[i][j], act_param, c);
            } else {
                act_out[idx] = act_elem_bwd(act, pre[idx], hval[idx], acc[i][j], act_param, c);
            }
        }
    }
}

#define GEMM_ARGS                                                                                                  \
    int M, int N, int K, const TYPE *A, long long sab, int sar, int sac, const TYPE *B, long long sbb, int sbr,    \
        int sbc, float *C, long long scb, int ldc, float alpha, float beta, const float *bias, int act,           \
        const float *act_param, float *act_out, const float *pre, const float *hval
#define GEMM_PASS M, N, K, A, sab, sar, sac, B, sbb, sbr, sbc, C, scb, ldc, alpha, beta, bias, act, act_param, act_out, pre, hval

#define TYPE float
extern "C" __global__ void __launch_bounds__(256) gemm_f32(GEMM_ARGS) {
    gemm_tile<float, 128, 128, 8, 8, 8>(GEMM_PASS);
}
extern "C" __global__ void __launch_bounds__(256) gemm_small_f32(GEMM_ARGS) {
    gemm_tile<float, 32, 32, 8, 2, 2>(GEMM_PASS);
}
#undef TYPE
#define TYPE __half
extern "C" __global__ void __launch_bounds__(256) gemm_f16_f32(GEMM_ARGS) {
    gemm_tile<__half, 64, 64, 8, 4, 4>(GEMM_PASS);
}
#undef TYPE
#define TYPE __nv_bfloat16
extern "C" __global__ void __launch_bounds__(256) gemm_bf16_f32(GEMM_ARGS) {
    gemm_tile<__nv_bfloat16, 64, 64, 8, 4, 4>(GEMM_PASS);
}
#undef TYPE

// Conversions for the half-precision GEMM operands.
extern "C" __global__ void convert_f16_f32(long long n, const float* x, __half* y) {
    GRID_STRIDE(i, n) y[i] = __float2half(x[i]);
}
extern "C" __global__ void convert_bf16_f32(long long n, const float* x, __nv_bfloat16* y) {
    GRID_STRIDE(i, n) y[i] = __float2bfloat16(x[i]);
}
