// gemm_tc.cu: tensor-core GEMM through the WMMA API, TF32 (m16n16k8) and BF16 (m16n16k16) operands
// with f32 accumulation. Same operation, arguments, epilogue and split-K convention as gemm.cu (see
// its header and GEMM_KERNEL_ARGS in common.cuh); operands are f32 in memory and rounded to the
// tensor core's precision on chip: TF32 by __float_to_tf32 on the fragment elements (round to nearest,
// ties away), BF16 by __float2bfloat16 (round to nearest even) when the staged tile is converted.
//
// Tiles: 64 x 64 outputs per block of 128 threads (4 warps in 2 x 2, each 32 x 32 = 2 x 2 fragments of
// 16 x 16; at most 128 registers and 30 / 36 KB of shared memory: 4 blocks per SM), k slices of 16.
// Operand slices are copied global -> shared with cp.async in a 3-stage pipeline (slices k + 1 and
// k + 2 in flight while slice k is multiplied; one __syncthreads per slice, the BF16 kernels one more
// after converting the slice). Each operand is staged in the orientation it
// has in memory, so the copies run along its contiguous dimension in 16-byte chunks (4-byte copies
// with zero fill at the matrix edges, or everywhere when a base address or leading dimension is not a
// multiple of 16 bytes), and the fragment layout is chosen to match:
//   A with k contiguous (sac == 1): stage [64][16 + 4], matrix_a row_major; else (sar == 1): [16][64 + 4],
//   col_major. B with n contiguous (sbc == 1): [16][64 + 4], matrix_b row_major; else (sbr == 1):
//   [64][16 + 4], col_major.
// Rows are padded by 16 bytes (4 floats; 8 bf16 in the converted tiles). Entry points
// gemm_<tf32|bf16>_<a><b>: a = n when A has k contiguous, t when it has m contiguous; b = n when B has
// n contiguous, t when it has k contiguous. Operands with neither stride 1 go to the SIMT kernels.
//
// Epilogue: each warp stores one accumulator fragment at a time into its own 16 x 20 f32 scratch
// (which aliases the drained pipeline buffers), and each lane then applies the epilogue to a column
// pair run of its row (gemm_epilogue_pair) or writes the raw products to the split-K buffer.

#ifndef ORTHO_EMU
#include <cuda_bf16.h>
#include <cuda_pipeline.h>
#include <mma.h>
#endif

using namespace nvcuda;

#define TC_BM 64
#define TC_BN 64
#define TC_BK 16
#define TC_THREADS 128
#define TC_STAGES 3
#define TC_STAGE_FLOATS 2560  // A at 0 (at most 64 x 20 floats), B at 1280 (at most 64 x 20)
#define TC_B_OFFSET 1280
#define TC_TILE16 1536        // bf16 elements of one converted operand tile (at most 64 x 24)

// A 16 x 16-wide copy of one operand slice (OUTER rows of INNER contiguous elements) into a stage
// buffer with rows of LD floats. `g` points at the slice's element (0, 0); rows are `so` apart in
// memory; `outer_n` / `inner_n` rows / elements lie inside the matrix; `vec`: 16-byte copies allowed.
template <int OUTER, int INNER, int LD>
__device__ __forceinline__ void tc_copy_slice(float* s, const float* g, long long so, int outer_n, int inner_n,
                                              bool vec, const float* any) {
    constexpr int CHUNKS = OUTER * INNER / 4;
    static_assert(CHUNKS % TC_THREADS == 0, "slice shape");
#pragma unroll
    for (int q = 0; q < CHUNKS / TC_THREADS; ++q) {
        const int c = threadIdx.x + q * TC_THREADS;
        const int o = c / (INNER / 4), i = (c % (INNER / 4)) * 4;
        float* dst = s + o * LD + i;
        const float* src = g + o * so + i;
        if (vec && o < outer_n && i + 4 <= inner_n) {
            __pipeline_memcpy_async(dst, src, 16);
        } else {
            for (int e = 0; e < 4; ++e) {
                if (o < outer_n && i + e < inner_n) {
                    __pipeline_memcpy_async(dst + e, src + e, 4);
                } else {
                    __pipeline_memcpy_async(dst + e, any, 4, 4);  // zero fill, nothing read
                }
            }
        }
    }
}

// f32 stage -> bf16 tile of the same orientation (OUTER rows of INNER, leading dimensions LD32, LD16).
template <int OUTER, int INNER, int LD32, int LD16>
__device__ __forceinline__ void tc_to_bf16(const float* s, __nv_bfloat16* d) {
#pragma unroll
    for (int q = 0; q < OUTER * INNER / TC_THREADS; ++q) {
        const int e = threadIdx.x + q * TC_THREADS, o = e / INNER, i = e % INNER;
        d[o * LD16 + i] = __float2bfloat16(s[o * LD32 + i]);
    }
}

// Compile-time helpers (NVRTC has no <type_traits>).
template <bool C, class T, class F>
struct tc_if {
    typedef T type;
};
template <class T, class F>
struct tc_if<false, T, F> {
    typedef F type;
};
template <class P>
struct tc_is_bf16 {
    static constexpr bool value = false;
};
template <>
struct tc_is_bf16<__nv_bfloat16> {
    static constexpr bool value = true;
};

__device__ __forceinline__ float tc_round(float x) { return wmma::__float_to_tf32(x); }
__device__ __forceinline__ __nv_bfloat16 tc_round(__nv_bfloat16 x) { return x; }

// P: wmma::precision::tf32 or __nv_bfloat16; A_K: A has k contiguous; B_N: B has n contiguous.
template <class P, bool A_K, bool B_N>
__device__ __forceinline__ void gemm_tc(GEMM_KERNEL_ARGS) {
    constexpr bool BF16 = tc_is_bf16<P>::value;
    constexpr int KS = BF16 ? 16 : 8;  // the fragment's k
    typedef typename tc_if<A_K, wmma::row_major, wmma::col_major>::type LA;
    typedef typename tc_if<B_N, wmma::row_major, wmma::col_major>::type LB;
    // Stage geometry (floats) and converted-tile geometry (bf16).
    constexpr int A_OUT = A_K ? TC_BM : TC_BK, A_IN = A_K ? TC_BK : TC_BM, A_LD = A_IN + 4, A_LD16 = A_IN + 8;
    constexpr int B_OUT = B_N ? TC_BK : TC_BN, B_IN = B_N ? TC_BN : TC_BK, B_LD = B_IN + 4, B_LD16 = B_IN + 8;
    constexpr int SMEM = TC_STAGES * TC_STAGE_FLOATS + (BF16 ? TC_TILE16 : 0);
    __shared__ __align__(128) float smem[SMEM];

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int wm = warp / 2, wn = warp % 2;
    const int row0 = blockIdx.y * TC_BM, col0 = blockIdx.x * TC_BN;
    const int z = blockIdx.z, b = z % batch, split = z / batch;
    const int kbeg = split * kchunk, kend = min(K, kbeg + kchunk);
    const int nk = kend > kbeg ? (kend - kbeg + TC_BK - 1) / TC_BK : 0;
    A += (long long)b * sab;
    B += (long long)b * sbb;
    // Outer stride (between staged rows) of each operand; the inner one is 1.
    const long long a_so = A_K ? sar : sac, b_so = B_N ? sbr : sbc;
    const bool a_vec = ((unsigned long long)A & 15) == 0 && (a_so & 3) == 0;
    const bool b_vec = ((unsigned long long)B & 15) == 0 && (b_so & 3) == 0;

    auto load_stage = [&](int s, int k0) {
        float* sa = smem + s * TC_STAGE_FLOATS;
        float* sb = sa + TC_B_OFFSET;
        if (A_K) {
            tc_copy_slice<A_OUT, A_IN, A_LD>(sa, A + (long long)row0 * sar + k0, sar, M - row0, kend - k0, a_vec, A);
        } else {
            tc_copy_slice<A_OUT, A_IN, A_LD>(sa, A + (long long)k0 * sac + row0, sac, kend - k0, M - row0, a_vec, A);
        }
        if (B_N) {
            tc_copy_slice<B_OUT, B_IN, B_LD>(sb, B + (long long)k0 * sbr + col0, sbr, kend - k0, N - col0, b_vec, B);
        } else {
            tc_copy_slice<B_OUT, B_IN, B_LD>(sb, B + (long long)col0 * sbc + k0, sbc, N - col0, kend - k0, b_vec, B);
        }
    };

    wmma::fragment<wmma::accumulator, 16, 16, KS, float> acc[2][2];
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.f);

#pragma unroll
    for (int s = 0; s < TC_STAGES - 1; ++s) {
        if (s < nk) load_stage(s, kbeg + s * TC_BK);
        __pipeline_commit();
    }
    for (int kt = 0; kt < nk; ++kt) {
        __pipeline_wait_prior(TC_STAGES - 2);  // this thread's copies of slice kt have landed
        __syncthreads();  // everyone's have, and everyone is done with slice kt - 1's buffer
        const int next = kt + TC_STAGES - 1;
        if (next < nk) load_stage(next % TC_STAGES, kbeg + next * TC_BK);
        __pipeline_commit();

        const float* sa = smem + (kt % TC_STAGES) * TC_STAGE_FLOATS;
        const float* sb = sa + TC_B_OFFSET;
        typedef typename tc_if<BF16, __nv_bfloat16, float>::type E;
        const E* ta;
        const E* tb;
        int lda, ldb;
        if constexpr (BF16) {
            __nv_bfloat16* t16 = reinterpret_cast<__nv_bfloat16*>(smem + TC_STAGES * TC_STAGE_FLOATS);
            tc_to_bf16<A_OUT, A_IN, A_LD, A_LD16>(sa, t16);
            tc_to_bf16<B_OUT, B_IN, B_LD, B_LD16>(sb, t16 + TC_TILE16);
            __syncthreads();  // the converted tiles are complete
            ta = t16;
            tb = t16 + TC_TILE16;
            lda = A_LD16;
            ldb = B_LD16;
        } else {
            ta = sa;
            tb = sb;
            lda = A_LD;
            ldb = B_LD;
        }
#pragma unroll
        for (int ks = 0; ks < TC_BK; ks += KS) {
            wmma::fragment<wmma::matrix_a, 16, 16, KS, P, LA> fa[2];
            wmma::fragment<wmma::matrix_b, 16, 16, KS, P, LB> fb[2];
#pragma unroll
            for (int i = 0; i < 2; ++i) {
                const int m = wm * 32 + 16 * i;
                wmma::load_matrix_sync(fa[i], A_K ? ta + m * lda + ks : ta + ks * lda + m, lda);
#pragma unroll
                for (int e = 0; e < (int)fa[i].num_elements; ++e) fa[i].x[e] = tc_round(fa[i].x[e]);
            }
#pragma unroll
            for (int j = 0; j < 2; ++j) {
                const int n = wn * 32 + 16 * j;
                wmma::load_matrix_sync(fb[j], B_N ? tb + ks * ldb + n : tb + n * ldb + ks, ldb);
#pragma unroll
                for (int e = 0; e < (int)fb[j].num_elements; ++e) fb[j].x[e] = tc_round(fb[j].x[e]);
            }
#pragma unroll
            for (int i = 0; i < 2; ++i)
#pragma unroll
                for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
        }
    }
    __pipeline_wait_prior(0);
    __syncthreads();  // every warp is done with the pipeline buffers, which the scratch below reuses

    float* scratch = smem + warp * 16 * 20;
    const int r = lane / 2, c8 = (lane % 2) * 8;
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) {
            wmma::store_matrix_sync(scratch, acc[i][j], 20, wmma::mem_row_major);
            __syncwarp();
            const int gr = row0 + wm * 32 + 16 * i + r, gc = col0 + wn * 32 + 16 * j + c8;
            if (gr < M) {
#pragma unroll
                for (int p = 0; p < 8; p += 2) {
                    const int c = gc + p;
                    if (c >= N) break;
                    const float v0 = scratch[r * 20 + c8 + p], v1 = scratch[r * 20 + c8 + p + 1];
                    if (part) {
                        float* o = part + ((long long)z * M + gr) * N + c;
                        o[0] = v0;
                        if (c + 1 < N) o[1] = v1;
                    } else {
                        gemm_epilogue_pair((long long)b * scb + (long long)gr * ldc + c, c, N, v0, v1, alpha, beta, C,
                                           bias, act, act_param, act_out, pre, hval);
                    }
                }
            }
            __syncwarp();  // the next fragment overwrites the scratch
        }
}

// Entry points (spelled out: kernels.rs finds entry points in the text, not through macros).
extern "C" __global__ void __launch_bounds__(TC_THREADS, 4) gemm_tf32_nn(GEMM_KERNEL_ARGS) {
    gemm_tc<wmma::precision::tf32, true, true>(GEMM_KERNEL_PASS);
}
extern "C" __global__ void __launch_bounds__(TC_THREADS, 4) gemm_tf32_nt(GEMM_KERNEL_ARGS) {
    gemm_tc<wmma::precision::tf32, true, false>(GEMM_KERNEL_PASS);
}
extern "C" __global__ void __launch_bounds__(TC_THREADS, 4) gemm_tf32_tn(GEMM_KERNEL_ARGS) {
    gemm_tc<wmma::precision::tf32, false, true>(GEMM_KERNEL_PASS);
}
extern "C" __global__ void __launch_bounds__(TC_THREADS, 4) gemm_tf32_tt(GEMM_KERNEL_ARGS) {
    gemm_tc<wmma::precision::tf32, false, false>(GEMM_KERNEL_PASS);
}
extern "C" __global__ void __launch_bounds__(TC_THREADS, 4) gemm_bf16_nn(GEMM_KERNEL_ARGS) {
    gemm_tc<__nv_bfloat16, true, true>(GEMM_KERNEL_PASS);
}
extern "C" __global__ void __launch_bounds__(TC_THREADS, 4) gemm_bf16_nt(GEMM_KERNEL_ARGS) {
    gemm_tc<__nv_bfloat16, true, false>(GEMM_KERNEL_PASS);
}
extern "C" __global__ void __launch_bounds__(TC_THREADS, 4) gemm_bf16_tn(GEMM_KERNEL_ARGS) {
    gemm_tc<__nv_bfloat16, false, true>(GEMM_KERNEL_PASS);
}
extern "C" __global__ void __launch_bounds__(TC_THREADS, 4) gemm_bf16_tt(GEMM_KERNEL_ARGS) {
    gemm_tc<__nv_bfloat16, false, false>(GEMM_KERNEL_PASS);
}
