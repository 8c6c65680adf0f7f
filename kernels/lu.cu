// lu.cu: LU factorization with partial pivoting (P A = L U, in place, row-major n x n) and
// triangular solves, blocked so that the O(n^3) work is the GEMM kernel's and nothing waits for the host.
//
// Factorization, per panel of kb <= NB columns at k0 (the host loops over panels): the panel
// kernel, the row kernel, then the GEMM A22 -= L21 U12 on the trailing matrix:
//   lu_panel_<NB>x<R>_f32  one block of T threads (a multiple of 32, at most 512) holding the panel's
//       rows = n - k0 rows in registers, R rows per thread (row i in thread i % T, slot i / T), so
//       rows <= T R. For each panel column j: every warp finds its best pivot candidate with a warp
//       arg-max (largest |a|, NaN ranked as +inf, smallest row on ties: LAPACK's isamax) and its owner
//       lane copies that row to shared memory; after ONE barrier every warp reduces the per-warp
//       candidates the same way and reads the pivot row, the owners of rows j and p swap, and every
//       thread scales and updates its own rows. Shared buffers alternate between columns, so one
//       barrier per column suffices. Then the panel is written back, and L11^-1 and where each
//       moved row came from are exported (info) for lu_rows_f32. perm (the composed row
//       permutation, perm[i] = original row at position i) is updated; the first panel initializes it.
//   lu_rows_f32  many blocks, 32 columns each: the panel's row interchanges applied to every other
//       column (a row gather through shared memory; left of the panel only if a row moved) and
//       U12 = L11^-1 (P A12) for the columns right of it.
//       status: first column whose pivot is zero or not finite, plus one (0: none); the first panel
//       resets it. It stays on the device: the solves read it (and return NaN when it is set).
//   lu_inv_diag_f32  after the last panel, one block per 32-row diagonal block: inverts its unit
//       lower part (invL) and its upper part (invU) into 32 x 32 blocks (zero outside the triangle
//       and beyond the matrix), which the solves multiply with instead of substituting.
// Solves (B is [n, nrhs]; the host splits the triangle into leaves of up to 256 rows, GEMM updates
// between them):
//   lu_gather_f32 / lu_scatter_f32   Y = P B and B = P^T Y (perm applied out of place).
//   trsm_leaf_f32  X = T^-1 B for one leaf of a triangular matrix T (strided, so T may be L, U, or
//       their transposes), 8 right-hand-side columns per block: for each 32-row sub-block in order,
//       subtract the products with the leaf's solved rows, then multiply by the inverted diagonal
//       block. Reads `src`, writes `dst` (may be the same). All NaN when status != 0.

#define LU_MAX_THREADS 512
#define LU_MAX_WARPS (LU_MAX_THREADS / 32)
#define LU_CHUNK 32  // columns per block of lu_rows_f32
// The panel's export to lu_rows_f32 (ints): displaced-row count, "some row moved", the panel rows'
// origins, the displaced rows and their origins (all relative to k0); then L11^-1 as 32 x 32 floats.
#define LU_INFO_SRC 2
#define LU_INFO_DROW (LU_INFO_SRC + 32)
#define LU_INFO_DSRC (LU_INFO_DROW + 32)
#define LU_INFO_INTS (LU_INFO_DSRC + 32)
#define LU_SC 8  // right-hand-side columns per trsm_leaf block (256 threads = 32 rows x 8 columns)

// |x| as an order-preserving unsigned key (non-negative floats compare like their bit patterns);
// NaN ranks as +inf, so a NaN column still picks a (non-finite, hence reported) pivot.
__device__ __forceinline__ unsigned lu_abs_key(float x) {
    unsigned b = __float_as_uint(x) & 0x7fffffffu;
    return b > 0x7f800000u ? 0x7f800000u : b;
}

// Warp arg-max over (key, idx): the largest key, the smallest idx among equal keys; every lane gets it.
__device__ __forceinline__ void lu_warp_argmax(unsigned& key, unsigned& idx) {
#if !defined(ORTHO_EMU) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    unsigned m = __reduce_max_sync(0xffffffffu, key);
    idx = __reduce_min_sync(0xffffffffu, key == m ? idx : 0xffffffffu);
    key = m;
#else
    for (int o = 16; o > 0; o >>= 1) {
        unsigned ok = __shfl_xor_sync(0xffffffffu, key, o);
        unsigned oi = __shfl_xor_sync(0xffffffffu, idx, o);
        if (ok > key || (ok == key && oi < idx)) {
            key = ok;
            idx = oi;
        }
    }
#endif
}

template <int NB, int R>
__device__ __forceinline__ void lu_panel(int n, int k0, int kb, float* __restrict__ A, int* __restrict__ perm,
                                         int* __restrict__ status, int* __restrict__ info,
                                         float* __restrict__ info_li) {
    __shared__ float cand[2][LU_MAX_WARPS][NB];
    __shared__ int cand_org[2][LU_MAX_WARPS];
    __shared__ unsigned cand_key[2][LU_MAX_WARPS];
    __shared__ unsigned cand_idx[2][LU_MAX_WARPS];
    __shared__ float rowj[2][NB];
    __shared__ int rowj_org[2];
    __shared__ float l11[NB][NB + 1];
    __shared__ int srcp[NB];
    __shared__ int disp_row[NB];
    __shared__ int disp_src[NB];
    __shared__ int ndisp;
    __shared__ int perm_new[2 * NB];

    const int T = blockDim.x, t = threadIdx.x, lane = t & 31, warp = t >> 5, nw = T >> 5;
    const int rows = n - k0;
    float a[R][NB];
    int org[R];
    // Whole rows as float4 when every row segment is 16-byte aligned and full.
    const bool vec = NB % 4 == 0 && kb == NB && (n & 3) == 0 && (k0 & 3) == 0;
#pragma unroll
    for (int r = 0; r < R; ++r) {
        const int i = t + r * T;
        org[r] = i;
        const float* src = A + (long long)(k0 + i) * n + k0;
        bool done = false;
        if constexpr (NB % 4 == 0) {
            if (vec && i < rows) {
#pragma unroll
                for (int c = 0; c < NB; c += 4) {
                    const float4 v = *reinterpret_cast<const float4*>(src + c);
                    a[r][c] = v.x;
                    a[r][c + 1] = v.y;
                    a[r][c + 2] = v.z;
                    a[r][c + 3] = v.w;
                }
                done = true;
            }
        }
        if (!done) {
#pragma unroll
            for (int c = 0; c < NB; ++c) a[r][c] = (i < rows && c < kb) ? src[c] : 0.f;
        }
    }
    int bad = k0 == 0 ? 0 : *status;
    if (k0 == 0)
        for (int i = t; i < n; i += T) perm[i] = i;

    // Candidates for column 0.
    unsigned ck = 0, ci = 0xffffffffu;
#pragma unroll
    for (int r = 0; r < R; ++r) {
        const int i = t + r * T;
        const unsigned k = lu_abs_key(a[r][0]);
        if (i < rows && (k > ck || ci == 0xffffffffu)) {
            ck = k;
            ci = i;
        }
    }

#pragma unroll
    for (int j = 0; j < NB; ++j) {
        if (j < kb) {  // kb is the same in every thread: no divergent barrier
            const int buf = j & 1;
            lu_warp_argmax(ck, ci);
#pragma unroll
            for (int r = 0; r < R; ++r)
                if (t + r * T == (int)ci) {
#pragma unroll
                    for (int c = 0; c < NB; ++c) cand[buf][warp][c] = a[r][c];
                    cand_org[buf][warp] = org[r];
                }
            if (lane == 0) {
                cand_key[buf][warp] = ck;
                cand_idx[buf][warp] = ci;
            }
            if (t == j) {  // row j lives in slot 0 of thread j (j < NB <= 32 <= T)
#pragma unroll
                for (int c = 0; c < NB; ++c) rowj[buf][c] = a[0][c];
                rowj_org[buf] = org[0];
            }
            __syncthreads();
            unsigned pk = lane < nw ? cand_key[buf][lane] : 0u;
            unsigned p = lane < nw ? cand_idx[buf][lane] : 0xffffffffu;
            lu_warp_argmax(pk, p);
            const int pw = (int)(p % (unsigned)T) >> 5;
            const float* prow = cand[buf][pw];
            const float pv = prow[j];
            if (bad == 0 && !(pv != 0.f && isfinite(pv))) bad = k0 + j + 1;
            const float inv = pv != 0.f ? 1.f / pv : 0.f;
            if ((int)p != j) {
#pragma unroll
                for (int r = 0; r < R; ++r) {
                    const int i = t + r * T;
                    if (i == (int)p) {
#pragma unroll
                        for (int c = 0; c < NB; ++c) a[r][c] = rowj[buf][c];
                        org[r] = rowj_org[buf];
                    } else if (i == j) {
#pragma unroll
                        for (int c = 0; c < NB; ++c) a[r][c] = prow[c];
                        org[r] = cand_org[buf][pw];
                    }
                }
            }
            ck = 0;
            ci = 0xffffffffu;
#pragma unroll
            for (int r = 0; r < R; ++r) {
                const int i = t + r * T;
                if (i > j && i < rows) {
                    const float l = a[r][j] * inv;
                    a[r][j] = l;
#pragma unroll
                    for (int c = j + 1; c < NB; ++c) a[r][c] = fmaf(-l, prow[c], a[r][c]);
                    // The next column's candidates (unused after the panel's last column).
                    const unsigned k = lu_abs_key(a[r][j + 1 < NB ? j + 1 : j]);
                    if (k > ck || ci == 0xffffffffu) {
                        ck = k;
                        ci = i;
                    }
                }
            }
        }
    }

    // Write the panel back; L11 and the origins of the panel rows to shared memory.
    if (t == 0) {
        *status = bad;
        ndisp = 0;
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
        const int i = t + r * T;
        float* dst = A + (long long)(k0 + i) * n + k0;
        bool done = false;
        if constexpr (NB % 4 == 0) {
            if (vec && i < rows) {
#pragma unroll
                for (int c = 0; c < NB; c += 4)
                    *reinterpret_cast<float4*>(dst + c) = make_float4(a[r][c], a[r][c + 1], a[r][c + 2], a[r][c + 3]);
                done = true;
            }
        }
        if (!done && i < rows) {
#pragma unroll
            for (int c = 0; c < NB; ++c)
                if (c < kb) dst[c] = a[r][c];
        }
        if (i < kb) {
#pragma unroll
            for (int c = 0; c < NB; ++c) l11[i][c] = a[r][c];
            srcp[i] = org[r];
        }
    }
    __syncthreads();
    // Rows below the panel that received a panel row; L11^-1 (unit lower), one column per thread,
    // exported with the panel rows' origins for lu_rows_f32.
#pragma unroll
    for (int r = 0; r < R; ++r) {
        const int i = t + r * T;
        if (i >= kb && i < rows && org[r] != i) {
            const int e = atomicAdd(&ndisp, 1);
            disp_row[e] = i;
            disp_src[e] = org[r];
        }
    }
    if (t < kb) {
        // Column t in registers (every index a constant after unrolling): the chain from one row
        // to the next is a few FMAs, not a shared-memory round trip. Rows >= kb are not exported.
        float col[NB];
#pragma unroll
        for (int i = 0; i < NB; ++i) {
            float v = i == t ? 1.f : 0.f;
#pragma unroll
            for (int l = 0; l < i; ++l)
                if (l >= t) v = fmaf(-l11[i][l], col[l], v);
            col[i] = i < t ? 0.f : v;
            if (i < kb) info_li[i * 32 + t] = col[i];
        }
        info[LU_INFO_SRC + t] = srcp[t];
    }
    __syncthreads();
    const int nd = ndisp;
    for (int e = t; e < nd; e += T) {
        info[LU_INFO_DROW + e] = disp_row[e];
        info[LU_INFO_DSRC + e] = disp_src[e];
    }
    if (t == 0) {
        bool moved = nd > 0;
        for (int s = 0; s < kb; ++s) moved |= srcp[s] != s;
        info[0] = nd;
        info[1] = moved;
    }
    // perm: gather the new entries, then write them.
    for (int e = t; e < kb + nd; e += T) {
        const int src = e < kb ? srcp[e] : disp_src[e - kb];
        perm_new[e] = perm[k0 + src];
    }
    __syncthreads();
    for (int e = t; e < kb + nd; e += T) {
        const int dst = e < kb ? e : disp_row[e - kb];
        perm[k0 + dst] = perm_new[e];
    }
}

// One entry point per (panel width NB, rows per thread R), written out so that every name appears
// in the source (kernels.rs finds entry points by scanning it). R NB = 32 or 64 floats per thread.
#define LU_PANEL_ARGS int n, int k0, int kb, float *A, int *perm, int *status, int *info, float *info_li
extern "C" __global__ void __launch_bounds__(LU_MAX_THREADS) lu_panel_32x1_f32(LU_PANEL_ARGS) {
    lu_panel<32, 1>(n, k0, kb, A, perm, status, info, info_li);
}
extern "C" __global__ void __launch_bounds__(LU_MAX_THREADS) lu_panel_32x2_f32(LU_PANEL_ARGS) {
    lu_panel<32, 2>(n, k0, kb, A, perm, status, info, info_li);
}
extern "C" __global__ void __launch_bounds__(LU_MAX_THREADS) lu_panel_16x4_f32(LU_PANEL_ARGS) {
    lu_panel<16, 4>(n, k0, kb, A, perm, status, info, info_li);
}
extern "C" __global__ void __launch_bounds__(LU_MAX_THREADS) lu_panel_8x8_f32(LU_PANEL_ARGS) {
    lu_panel<8, 8>(n, k0, kb, A, perm, status, info, info_li);
}
extern "C" __global__ void __launch_bounds__(LU_MAX_THREADS) lu_panel_4x16_f32(LU_PANEL_ARGS) {
    lu_panel<4, 16>(n, k0, kb, A, perm, status, info, info_li);
}
extern "C" __global__ void __launch_bounds__(LU_MAX_THREADS) lu_panel_2x32_f32(LU_PANEL_ARGS) {
    lu_panel<2, 32>(n, k0, kb, A, perm, status, info, info_li);
}

// The panel's row interchanges and U12 for the columns outside it, 32 columns per block: blocks
// [0, right) take the columns right of the panel (gather, then U12 = L11^-1 rows), the rest the
// columns left of it (gather only; they return at once when no row moved). 256 threads.
extern "C" __global__ void __launch_bounds__(256) lu_rows_f32(int n, int k0, int kb, int right, float* A,
                                                              const int* info, const float* info_li) {
    __shared__ float stage[32][LU_CHUNK + 1];
    __shared__ float xs[32][LU_CHUNK + 1];
    __shared__ float li[32][33];
    __shared__ int srcp[32], drow[32], dsrc[32];
    const int t = threadIdx.x, b = blockIdx.x;
    const bool is_right = b < right;
    const int nd = info[0];
    if (!is_right && !info[1]) return;  // the whole block: no barrier is pending
    const int c0 = is_right ? k0 + kb + LU_CHUNK * b : LU_CHUNK * (b - right);
    const int w = min(LU_CHUNK, (is_right ? n : k0) - c0);
    if (t < 32) {
        srcp[t] = t < kb ? info[LU_INFO_SRC + t] : t;
        drow[t] = t < nd ? info[LU_INFO_DROW + t] : 0;
        dsrc[t] = t < nd ? info[LU_INFO_DSRC + t] : 0;
    }
    for (int e = t; e < 1024; e += 256) li[e >> 5][e & 31] = info_li[e];
    __syncthreads();
    // Old panel rows, and the new panel rows that come from below the panel.
    for (int e = t; e < kb * LU_CHUNK; e += 256) {
        const int s = e / LU_CHUNK, c = e % LU_CHUNK;
        if (c < w) {
            stage[s][c] = A[(long long)(k0 + s) * n + c0 + c];
            const int src = srcp[s];
            if (src >= kb) xs[s][c] = A[(long long)(k0 + src) * n + c0 + c];
        }
    }
    __syncthreads();
    // New panel rows that come from inside it; rows below that receive a panel row.
    for (int e = t; e < kb * LU_CHUNK; e += 256) {
        const int s = e / LU_CHUNK, c = e % LU_CHUNK;
        const int src = srcp[s];
        if (c < w && src < kb) xs[s][c] = stage[src][c];
    }
    for (int e = t; e < nd * LU_CHUNK; e += 256) {
        const int d = e / LU_CHUNK, c = e % LU_CHUNK;
        if (c < w) A[(long long)(k0 + drow[d]) * n + c0 + c] = stage[dsrc[d]][c];
    }
    __syncthreads();
    // Thread (c, g) writes rows g, g + 8, g + 16, g + 24 of column c.
    const int c = t % LU_CHUNK, g = t / LU_CHUNK;
    if (c < w) {
        float acc[4] = {0.f, 0.f, 0.f, 0.f};
        if (is_right) {
            const int top = min(kb - 1, g + 24);
            for (int l = 0; l <= top; ++l) {
                const float x = xs[l][c];
#pragma unroll
                for (int q = 0; q < 4; ++q) {
                    const int s = g + 8 * q;
                    if (l <= s) acc[q] = fmaf(li[s][l], x, acc[q]);
                }
            }
        }
#pragma unroll
        for (int q = 0; q < 4; ++q) {
            const int s = g + 8 * q;
            if (s < kb) A[(long long)(k0 + s) * n + c0 + c] = is_right ? acc[q] : xs[s][c];
        }
    }
}

// invL[b], invU[b]: 32 x 32 blocks (row-major), b = blockIdx.x; 64 threads: 0..31 invert L's unit
// lower diagonal block by columns, 32..63 U's upper one.
extern "C" __global__ void lu_inv_diag_f32(int n, const float* A, float* invL, float* invU) {
    __shared__ float blk[32][33];
    __shared__ float il[32][33];
    __shared__ float iu[32][33];
    const int b = blockIdx.x, t = threadIdx.x, r0 = 32 * b;
    const int kb = min(32, n - r0);
    for (int e = t; e < 1024; e += blockDim.x) {
        const int i = e >> 5, c = e & 31;
        blk[i][c] = (i < kb && c < kb) ? A[(long long)(r0 + i) * n + r0 + c] : 0.f;
    }
    __syncthreads();
    const int c = t & 31;
    if (t < 32) {
        for (int i = 0; i < 32; ++i) {
            float v = i == c ? 1.f : 0.f;
            for (int l = c; l < i; ++l) v = fmaf(-blk[i][l], il[l][c], v);
            il[i][c] = (i < c || i >= kb || c >= kb) ? 0.f : v;
        }
        for (int i = 0; i < 32; ++i) invL[(long long)b * 1024 + i * 32 + c] = il[i][c];
    } else if (t < 64) {
        for (int i = 31; i >= 0; --i) {
            float v = i == c ? 1.f : 0.f;
            for (int l = i + 1; l <= c; ++l) v = fmaf(-blk[i][l], iu[l][c], v);
            iu[i][c] = (i > c || i >= kb || c >= kb) ? 0.f : v / blk[i][i];
        }
        for (int i = 0; i < 32; ++i) invU[(long long)b * 1024 + i * 32 + c] = iu[i][c];
    }
}

extern "C" __global__ void lu_gather_f32(int n, int nrhs, const float* B, const int* perm, float* Y) {
    GRID_STRIDE(e, (long long)n * nrhs) {
        const long long i = e / nrhs, c = e % nrhs;
        Y[e] = B[(long long)perm[i] * nrhs + c];
    }
}

extern "C" __global__ void lu_scatter_f32(int n, int nrhs, const float* Y, const int* perm, float* B) {
    GRID_STRIDE(e, (long long)n * nrhs) {
        const long long i = e / nrhs, c = e % nrhs;
        B[(long long)perm[i] * nrhs + c] = Y[e];
    }
}

// One leaf of m rows of a triangular solve. T points at the leaf's (0, 0) element, T(i, l) =
// T[i t_row + l t_col]; inv at the inverse of its first 32-row diagonal block, D(i, l) =
// inv[i d_row + l d_col], the next block 1024 floats further. src and dst are [m, nrhs] row-major.
// Grid: ceil(nrhs / 8) blocks of 256 threads.
extern "C" __global__ void __launch_bounds__(256) trsm_leaf_f32(int m, int nrhs, const float* T, int t_row, int t_col,
                                                                const float* inv, int d_row, int d_col,
                                                                const float* src, float* dst, int lower,
                                                                const int* status) {
    __shared__ float x[256][LU_SC];
    __shared__ float bs[32][LU_SC + 1];
    __shared__ float ds[32][33];
    const int t = threadIdx.x, i = t / LU_SC, tx = t % LU_SC;
    const int col = blockIdx.x * LU_SC + tx;
    const bool valid = col < nrhs;
    const bool bad = *status != 0;
    const int nsub = (m + 31) / 32;
    for (int s = 0; s < nsub; ++s) {
        const int k = lower ? s : nsub - 1 - s;
        const int r0 = 32 * k, kb = min(32, m - r0), row = r0 + i;
        for (int e = t; e < 1024; e += 256) {
            const int di = e >> 5, dl = e & 31;
            ds[di][dl] = inv[(long long)k * 1024 + (long long)di * d_row + (long long)dl * d_col];
        }
        float v = 0.f;
        if (i < kb && valid) {
            v = src[(long long)row * nrhs + col];
            const int l0 = lower ? 0 : r0 + kb, l1 = lower ? r0 : m;
            const float* trow = T + (long long)row * t_row;
            for (int l = l0; l < l1; ++l) v = fmaf(-trow[(long long)l * t_col], x[l][tx], v);
        }
        bs[i][tx] = v;
        __syncthreads();
        float y = 0.f;
        for (int l = 0; l < kb; ++l) y = fmaf(ds[i][l], bs[l][tx], y);
        if (bad) y = __uint_as_float(0x7fc00000u);
        if (i < kb) {
            x[row][tx] = y;
            if (valid) dst[(long long)row * nrhs + col] = y;
        }
        __syncthreads();
    }
}
