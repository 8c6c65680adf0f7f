// emu_selftest_tc.cu: kernels that exercise the emulator's tensor-core WMMA fragments and cp.async
// (emu/cuda_emu_wmma.h, emu/cuda_emu_pipeline.h). They exist only to test the harness
// (tests/emu_harness.rs), each against a host reference under every resume order; the partial-warp and
// misaligned kernels are invalid on purpose. They compile with NVRTC too (tests/nvrtc_compile.rs).

#ifndef ORTHO_EMU
#include <cuda_bf16.h>
#include <cuda_pipeline.h>
#include <mma.h>
#endif

using namespace nvcuda;

#define SELFTEST_TC_SMEM 512  // floats of shared memory per warp for the WMMA tests (at most 4 warps)

template <class X, class Y>
struct selftest_same {
    static constexpr bool value = false;
};
template <class X>
struct selftest_same<X, X> {
    static constexpr bool value = true;
};

// __float_to_tf32 on TF32 fragments; BF16 operands are used as they are.
__device__ __forceinline__ float selftest_round(float x) { return wmma::__float_to_tf32(x); }
__device__ __forceinline__ __nv_bfloat16 selftest_round(__nv_bfloat16 x) { return x; }

// D = A_0 B_0 + ... + A_{s-1} B_{s-1} + C per warp, through `steps` chained mma_sync calls whose
// output aliases their accumulator input. Warp w of block b handles problem p = b * warps + w:
//   A: [problems, steps, 16, KS] stored row-major per step (a_col: stored transposed, [KS, 16]);
//   B: [problems, steps, KS, 16] (b_col: stored transposed, [16, KS]); C, D: [problems, 16, 16]
//   row-major (c_col / d_col: column-major). Operands are staged through shared memory with leading
//   dimensions padded by 16 bytes, to exercise ldm != width.
template <class T, int KS, class LA, class LB, class E>
__device__ void selftest_mma_chain(float* stage, int steps, int c_col, int d_col, int convert, const E* a,
                                   const E* b, const float* c, float* d) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int p = blockIdx.x * (blockDim.x / 32) + warp;
    E* sa = reinterpret_cast<E*>(stage + warp * SELFTEST_TC_SMEM);
    E* sb = reinterpret_cast<E*>(stage + warp * SELFTEST_TC_SMEM + SELFTEST_TC_SMEM / 2);
    float* sc = stage + warp * SELFTEST_TC_SMEM;
    const bool a_row = selftest_same<LA, wmma::row_major>::value;
    const bool b_row = selftest_same<LB, wmma::row_major>::value;
    const int pad = 16 / (int)sizeof(E);  // wmma wants ldm to be a multiple of 16 bytes
    const int lda = a_row ? KS + pad : 16 + pad;
    const int ldb = b_row ? 16 + pad : KS + pad;
    const int ldc = 16 + 4;

    wmma::fragment<wmma::accumulator, 16, 16, KS, float> acc;
    for (int e = lane; e < 256; e += 32) sc[(e / 16) * ldc + e % 16] = c[p * 256 + e];  // padding only
    __syncwarp();
    wmma::load_matrix_sync(acc, sc, ldc, c_col ? wmma::mem_col_major : wmma::mem_row_major);
    __syncwarp();
    for (int s = 0; s < steps; ++s) {
        const E* as = a + ((long long)p * steps + s) * 16 * KS;
        const E* bs = b + ((long long)p * steps + s) * 16 * KS;
        for (int e = lane; e < 16 * KS; e += 32) {
            // e walks the stored (unpadded) operand; the staged copy only adds the padding.
            const int outer = a_row ? e / KS : e / 16, inner = a_row ? e % KS : e % 16;
            sa[outer * lda + inner] = as[e];
            const int bo = b_row ? e / 16 : e / KS, bi = b_row ? e % 16 : e % KS;
            sb[bo * ldb + bi] = bs[e];
        }
        __syncwarp();
        wmma::fragment<wmma::matrix_a, 16, 16, KS, T, LA> fa;
        wmma::fragment<wmma::matrix_b, 16, 16, KS, T, LB> fb;
        wmma::load_matrix_sync(fa, sa, lda);
        wmma::load_matrix_sync(fb, sb, ldb);
        if (convert) {
            for (int i = 0; i < (int)fa.num_elements; ++i) fa.x[i] = selftest_round(fa.x[i]);
            for (int i = 0; i < (int)fb.num_elements; ++i) fb.x[i] = selftest_round(fb.x[i]);
        }
        wmma::mma_sync(acc, fa, fb, acc);
        __syncwarp();  // the next step overwrites the staged operands
    }
    wmma::store_matrix_sync(d + p * 256, acc, 16, d_col ? wmma::mem_col_major : wmma::mem_row_major);
}

// TF32 m16n16k8. layout bit 0: A stored column-major, bit 1: B stored column-major, bit 2: C read
// column-major, bit 3: D written column-major. convert: round the operands with __float_to_tf32
// (otherwise the tensor core truncates them).
extern "C" __global__ void selftest_wmma_tf32(int steps, int layout, int convert, const float* a, const float* b,
                                              const float* c, float* d) {
    __shared__ __align__(32) float stage[4 * SELFTEST_TC_SMEM];
    const int cc = (layout >> 2) & 1, dc = (layout >> 3) & 1;
#define SELFTEST_CHAIN(T, KS, LA, LB) \
    selftest_mma_chain<T, KS, wmma::LA, wmma::LB>(stage, steps, cc, dc, convert, a, b, c, d)
    switch (layout & 3) {
        case 0: SELFTEST_CHAIN(wmma::precision::tf32, 8, row_major, row_major); break;
        case 1: SELFTEST_CHAIN(wmma::precision::tf32, 8, col_major, row_major); break;
        case 2: SELFTEST_CHAIN(wmma::precision::tf32, 8, row_major, col_major); break;
        default: SELFTEST_CHAIN(wmma::precision::tf32, 8, col_major, col_major); break;
    }
}

// BF16 m16n16k16 with f32 accumulation; the same layout bits. a, b: bf16 values.
extern "C" __global__ void selftest_wmma_bf16(int steps, int layout, const __nv_bfloat16* a, const __nv_bfloat16* b,
                                              const float* c, float* d) {
    __shared__ __align__(32) float stage[4 * SELFTEST_TC_SMEM];
    const int cc = (layout >> 2) & 1, dc = (layout >> 3) & 1;
    const int convert = 0;
    switch (layout & 3) {
        case 0: SELFTEST_CHAIN(__nv_bfloat16, 16, row_major, row_major); break;
        case 1: SELFTEST_CHAIN(__nv_bfloat16, 16, col_major, row_major); break;
        case 2: SELFTEST_CHAIN(__nv_bfloat16, 16, row_major, col_major); break;
        default: SELFTEST_CHAIN(__nv_bfloat16, 16, col_major, col_major); break;
    }
}

// fill_fragment and element-wise ops: D = 2 * (fill(v) + A B) with one warp; A = B = 0 except A = I.
// d: [16, 16]. Exercises fill_fragment on operand and accumulator fragments and a uniform x[i] update.
extern "C" __global__ void selftest_wmma_fill(float v, float* d) {
    wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa;
    wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fb;
    wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc;
    wmma::fill_fragment(fa, 0.5f);
    wmma::fill_fragment(fb, 0.25f);
    wmma::fill_fragment(acc, v);
    wmma::mma_sync(acc, fa, fb, acc);  // every entry: v + 8 * 0.5 * 0.25 = v + 1
    for (int i = 0; i < (int)acc.num_elements; ++i) acc.x[i] *= 2.f;
    wmma::store_matrix_sync(d, acc, 16, wmma::mem_row_major);
}

// Invalid on purpose: only half of the warp reaches mma_sync (a deadlock the emulator reports).
extern "C" __global__ void selftest_wmma_partial_warp(float* d) {
    wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa;
    wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fb;
    wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc;
    wmma::fill_fragment(fa, 1.f);
    wmma::fill_fragment(fb, 1.f);
    wmma::fill_fragment(acc, 0.f);
    if (threadIdx.x % 32 < 16) wmma::mma_sync(acc, fa, fb, acc);  // selftest: partial mma
    wmma::store_matrix_sync(d, acc, 16, wmma::mem_row_major);
}

// Invalid on purpose: a fragment load from a pointer that is not 32-byte aligned. x: at least 300 floats.
extern "C" __global__ void selftest_wmma_misaligned(const float* x, float* d) {
    wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa;
    wmma::load_matrix_sync(fa, x + 1, 8);  // selftest: misaligned load
    wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fb;
    wmma::fill_fragment(fb, 1.f);
    wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc;
    wmma::fill_fragment(acc, 0.f);
    wmma::mma_sync(acc, fa, fb, acc);
    wmma::store_matrix_sync(d, acc, 16, wmma::mem_row_major);
}

// cp.async groups, one block of 64 threads. Thread t: shared memory is set to -1 with plain stores,
// then three committed groups g = 0, 1, 2 each copy 16 bytes src[256 g + 4t .. +4] into s[g], a
// fourth copy (src[768 + t]) is left uncommitted, and group 0 also holds a 4-byte copy with full zero
// fill into z[t]. After __pipeline_wait_prior(prior) the thread reads back only what it copied itself:
// out[14 t + 4 g + j] = s[g][4t + j], out[14 t + 12] = the uncommitted target, out[14 t + 13] = z[t].
// Groups below 3 - prior hold the source, the others still -1; the uncommitted copy always -1; z is 0
// once group 0 has landed. src: [832].
extern "C" __global__ void selftest_cp_async_groups(const float* src, int prior, float* out) {
    __shared__ __align__(16) float s[3][256];
    __shared__ float u[64], z[64];
    const int t = threadIdx.x;
    for (int g = 0; g < 3; ++g)
        for (int j = 0; j < 4; ++j) s[g][4 * t + j] = -1.f;
    u[t] = -1.f;
    z[t] = -1.f;
    for (int g = 0; g < 3; ++g) {
        __pipeline_memcpy_async(&s[g][4 * t], src + 256 * g + 4 * t, 16);
        if (g == 0) __pipeline_memcpy_async(&z[t], src, 4, 4);
        __pipeline_commit();
    }
    __pipeline_memcpy_async(&u[t], src + 768 + t, 4);
    __pipeline_wait_prior(prior);
    for (int g = 0; g < 3; ++g)
        for (int j = 0; j < 4; ++j) out[14 * t + 4 * g + j] = s[g][4 * t + j];
    out[14 * t + 12] = u[t];
    out[14 * t + 13] = z[t];
}

// Thread t copies x[t] into s[t] asynchronously, waits, then reads its neighbour's element:
// out[t] = x[(t + 1) % blockDim.x]. Correct only with the barrier between the wait and the read
// (`barrier` != 0); without it some resume order reads the neighbour's slot before its copy landed.
extern "C" __global__ void selftest_cp_async_shift(const float* x, int barrier, float* out) {
    __shared__ float s[256];
    const int t = threadIdx.x, n = blockDim.x;
    s[t] = -1.f;
    __syncthreads();
    __pipeline_memcpy_async(&s[t], x + blockIdx.x * n + t, 4);
    __pipeline_commit();
    __pipeline_wait_prior(0);
    if (barrier) __syncthreads();
    out[blockIdx.x * n + t] = s[(t + 1) % n];
}

// Invalid on purpose: a 16-byte async copy from an address that is only 4-byte aligned.
extern "C" __global__ void selftest_cp_async_misaligned(const float* x, float* out) {
    __shared__ __align__(16) float s[4];
    __pipeline_memcpy_async(s, x + 1, 16);  // selftest: misaligned copy
    __pipeline_commit();
    __pipeline_wait_prior(0);
    out[threadIdx.x] = s[threadIdx.x % 4];
}
