// gemm.cu: the exact (FP32 SIMT) GEMM kernels and the split-K reduction shared with the tensor-core
// kernels of gemm_tc.cu.
//
//   C[b] = alpha * op(A)[b] op(B)[b] + beta * C[b] + bias      (row-major, b < batch)
//   forward epilogue:  act_out = act(C)                 (act_out != 0, pre == 0)
//   backward epilogue: act_out = J_act(pre)^T C         (act_out != 0, pre != 0; hval = act(pre))
//
// Operands are addressed by strides, so transposes and sub-matrices need no copies:
//   op(A)(i, k) = A[b * sab + i * sar + k * sac],  op(B)(k, j) = B[b * sbb + k * sbr + j * sbc],
//   C(i, j) = C[b * scb + i * ldc + j]; `act_out`, `pre` and `hval` share C's indexing.
// beta == 0 never reads C. The epilogue works on column pairs (2i, 2i + 1) (OPLU): every thread owns
// pairs that start at even columns (common.cuh, gemm_epilogue_pair).
//
// Split-K (GEMM_KERNEL_ARGS in common.cuh): the grid's z is split * batch + b, split s covers
// k in [s kchunk, min(K, (s + 1) kchunk)); with part != 0 a block writes its raw products to
// part[z][M][N] and gemm_splitk_reduce_f32 sums the splits in the fixed order s = 0, 1, ... and applies
// the epilogue, so results do not depend on scheduling.
//
// SIMT kernels, 2-D register tiles of TM x TN outputs per thread, fp32 FMA:
//   gemm_f32        128 x 64 x 8 tiles, 256 threads, 8 x 4 per thread (80 registers: 3 blocks per SM)
//   gemm_small_f32   32 x 32 x 16 tiles, 128 threads, 4 x 2 per thread (skinny and small products)
// Both tiles are staged through two shared-memory buffers filled from registers: the loads of slice
// k + 1 are in flight while slice k is multiplied, one __syncthreads per slice. Global loads run along
// each operand's contiguous dimension (sac == 1: along k, else along m; sbc == 1: along n, else along
// k), so a warp reads consecutive addresses for every transpose combination. Shared tiles are k-major
// (As[k][m], Bs[k][n]) with rows padded by 32 / BK floats: a warp storing a k-contiguous operand
// writes As[k][m] for BK k and 32 / BK m, banks ((32 / BK) k + m) mod 32, all distinct. A thread's TN columns are split
// into halves BN/2 apart, so the B reads of a warp hit 32 consecutive floats.

template <int BM, int BN, int BK, int TM, int TN>
__device__ __forceinline__ void gemm_simt(GEMM_KERNEL_ARGS) {
    constexpr int NT = (BM / TM) * (BN / TN);
    constexpr int LA = BM + 32 / BK, LB = BN + 32 / BK;  // padded rows (see the header)
    constexpr int A_PER = BM * BK / NT, B_PER = BK * BN / NT;
    constexpr int HALVES = TN / 2, HALF = BN / HALVES;  // a thread's column pairs lie HALF apart
    static_assert(NT % BM == 0 && NT % BN == 0 && NT % BK == 0 && TN % 2 == 0, "tile shape");
    __shared__ float As[2][BK][LA];
    __shared__ float Bs[2][BK][LB];

    const int t = threadIdx.x;
    const int tx = t % (BN / TN), ty = t / (BN / TN);
    const int row0 = blockIdx.y * BM, col0 = blockIdx.x * BN;
    const int z = blockIdx.z, b = z % batch, split = z / batch;
    const int kbeg = split * kchunk, kend = min(K, kbeg + kchunk);
    const int nk = kend > kbeg ? (kend - kbeg + BK - 1) / BK : 0;
    A += (long long)b * sab;
    B += (long long)b * sbb;
    // Load along the contiguous dimension (for general strides: along k for A, along n for B).
    const bool a_along_k = sac == 1 || sar != 1;
    const bool b_along_n = sbc == 1 || sbr != 1;

    // This thread's share of a tile: element q of A is (ai + q adi, ak + q adk), of B (bk + q bdk, bj + q bdj).
    // NT is a multiple of BM, BN and BK, so the walk along the contiguous dimension keeps that coordinate
    // fixed and steps the other one.
    const int ai = a_along_k ? t / BK : t % BM, ak = a_along_k ? t % BK : t / BM;
    const int adi = a_along_k ? NT / BK : 0, adk = a_along_k ? 0 : NT / BM;
    const int bj = b_along_n ? t % BN : t / BK, bk = b_along_n ? t / BN : t % BK;
    const int bdj = b_along_n ? 0 : NT / BK, bdk = b_along_n ? NT / BN : 0;
    // Steps of at most NT / BK rows of a stride: int (a matrix row of 2^27 floats would overflow).
    const int a_step = adi * sar + adk * sac, b_step = bdk * sbr + bdj * sbc;
    const int ar = row0 + ai, bc = col0 + bj;
    const int as_step = adk * LA + adi, bs_step = bdk * LB + bdj;

    // Rows of A and columns of B this thread loads that lie inside the matrix (fixed for the whole loop).
    unsigned a_in = 0, b_in = 0;
#pragma unroll
    for (int q = 0; q < A_PER; ++q) a_in |= (ar + q * adi < M ? 1u : 0u) << q;
#pragma unroll
    for (int q = 0; q < B_PER; ++q) b_in |= (bc + q * bdj < N ? 1u : 0u) << q;
    // The next slice's first elements; advanced by BK along k after every load.
    const float* pa = A + (long long)ar * sar + (long long)(kbeg + ak) * sac;
    const float* pb = B + (long long)(kbeg + bk) * sbr + (long long)bc * sbc;
    const long long a_adv = (long long)BK * sac, b_adv = (long long)BK * sbr;

    float ra[A_PER], rb[B_PER];
    auto load = [&](int k0) {
#pragma unroll
        for (int q = 0; q < A_PER; ++q) {
            const bool in = ((a_in >> q) & 1u) && k0 + ak + q * adk < kend;
            ra[q] = in ? pa[q * a_step] : 0.f;
        }
#pragma unroll
        for (int q = 0; q < B_PER; ++q) {
            const bool in = ((b_in >> q) & 1u) && k0 + bk + q * bdk < kend;
            rb[q] = in ? pb[q * b_step] : 0.f;
        }
        pa += a_adv;
        pb += b_adv;
    };
    auto store = [&](int buf) {
        float* sa = &As[buf][ak][ai];
        float* sb = &Bs[buf][bk][bj];
#pragma unroll
        for (int q = 0; q < A_PER; ++q) sa[q * as_step] = ra[q];
#pragma unroll
        for (int q = 0; q < B_PER; ++q) sb[q * bs_step] = rb[q];
    };

    float acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;

    if (nk > 0) {
        load(kbeg);
        store(0);
    }
    __syncthreads();
    for (int kt = 0; kt < nk; ++kt) {
        const int cur = kt & 1;
        if (kt + 1 < nk) load(kbeg + (kt + 1) * BK);  // in flight during the products below
#pragma unroll
        for (int kk = 0; kk < BK; ++kk) {
            float bv[TN];
#pragma unroll
            for (int j = 0; j < TN; ++j) bv[j] = Bs[cur][kk][(j / 2) * HALF + tx * 2 + (j % 2)];
#pragma unroll
            for (int i = 0; i < TM; ++i) {
                const float av = As[cur][kk][ty * TM + i];  // a broadcast: the warp holds two values of ty
#pragma unroll
                for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(av, bv[j], acc[i][j]);
            }
        }
        if (kt + 1 < nk) store(cur ^ 1);  // the other buffer: nobody reads it during this slice
        __syncthreads();
    }

    // Fully unrolled so that acc[][] is indexed by constants and stays in registers.
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int r = row0 + ty * TM + i;
        if (r >= M) continue;
#pragma unroll
        for (int h = 0; h < HALVES; ++h) {
            const int c = col0 + h * HALF + tx * 2;
            if (c >= N) continue;
            if (part) {
                float* p = part + ((long long)z * M + r) * N + c;
                p[0] = acc[i][2 * h];
                if (c + 1 < N) p[1] = acc[i][2 * h + 1];
            } else {
                gemm_epilogue_pair((long long)b * scb + (long long)r * ldc + c, c, N, acc[i][2 * h],
                                   acc[i][2 * h + 1], alpha, beta, C, bias, act, act_param, act_out, pre, hval);
            }
        }
    }
}

extern "C" __global__ void __launch_bounds__(256, 3) gemm_f32(GEMM_KERNEL_ARGS) {
    gemm_simt<128, 64, 8, 8, 4>(GEMM_KERNEL_PASS);
}
extern "C" __global__ void __launch_bounds__(128) gemm_small_f32(GEMM_KERNEL_ARGS) {
    gemm_simt<32, 32, 16, 4, 2>(GEMM_KERNEL_PASS);
}

// The split-K reduction: C = alpha * (part[0] + part[1] + ... + part[splits - 1]) + beta C + bias and
// the epilogue, the sum in that fixed order. part: [splits, batch, M, N]; C, act_out, pre, hval as in
// the GEMM kernels. One thread per column pair of a row of a batch entry (grid-stride).
extern "C" __global__ void gemm_splitk_reduce_f32(int M, int N, int batch, int splits, const float* part, float* C,
                                                  long long scb, int ldc, float alpha, float beta, const float* bias,
                                                  int act, const float* act_param, float* act_out, const float* pre,
                                                  const float* hval) {
    const int pairs = (N + 1) / 2;
    const long long total = (long long)batch * M * pairs, plane = (long long)batch * M * N;
    GRID_STRIDE(e, total) {
        const int jp = (int)(e % pairs);
        const long long rb = e / pairs;
        const int r = (int)(rb % M), b = (int)(rb / M), c = 2 * jp;
        const long long p = rb * N + c;
        const bool two = c + 1 < N;
        float s0 = 0.f, s1 = 0.f;
        for (int s = 0; s < splits; ++s) {
            s0 += part[s * plane + p];
            if (two) s1 += part[s * plane + p + 1];
        }
        gemm_epilogue_pair((long long)b * scb + (long long)r * ldc + c, c, N, s0, s1, alpha, beta, C, bias, act,
                           act_param, act_out, pre, hval);
    }
}
