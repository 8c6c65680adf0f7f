// lu.cu: LU factorization with partial pivoting (P A = L U, in place, row-major n x n) and
// triangular solves, blocked so that most of the work is the GEMM kernel's.
//
// Factorization, for each panel of nb columns starting at k0 (the host loops over panels):
//   lu_panel_f32  one block: for each panel column j, pivot = argmax_{i >= j} |A(i, j)| (first wins, NaN largest),
//                 swap rows j and pivot inside the panel, scale the column below the diagonal,
//                 rank-1 update of the rest of the panel. piv[j] = pivot row; info = first j + 1
//                 whose pivot is zero or not finite (0 if none).
//   lu_swap_f32   applies the panel's swaps to every column outside the panel (thread per column).
//   lu_trsm_f32   U12 = L11^-1 A12 (L11 unit lower, thread per column of A12).
//   then gemm: A22 -= L21 U12 (launched by the host with strided operands).
// Solves (B is [n, nrhs], thread per right-hand side):
//   lu_apply_piv_f32   B = P B (reverse = 0) or P^T B (reverse = 1)
//   trsm_block_f32     X = T^-1 X for a kb x kb triangular diagonal block T (strided, so T may be a
//                      transposed view), lower (forward) or upper (backward), unit diagonal or not;
//                      the off-diagonal blocks are GEMM updates launched by the host.

#define LU_THREADS 256

extern "C" __global__ void __launch_bounds__(LU_THREADS) lu_panel_f32(int n, int k0, int nb, float* A, int* piv, int* info) {
    __shared__ float sval[LU_THREADS];
    __shared__ int sidx[LU_THREADS];
    const int t = threadIdx.x;
    const int kend = min(k0 + nb, n);
    for (int j = k0; j < kend; ++j) {
        // Pivot search over rows j..n-1 of column j.
        float best = -1.f;
        int bi = n;
        for (int i = j + t; i < n; i += LU_THREADS) {
            float v = fabsf(A[(long long)i * n + j]);
            // A NaN ranks above everything: it becomes the (non-finite, so reported) pivot. Compared as
            // NaN, no row of an all-NaN column would win and the pivot row would be n, out of bounds.
            if (isnan(v)) v = __uint_as_float(0x7f800000u);
            if (v > best || (v == best && i < bi)) { best = v; bi = i; }
        }
        sval[t] = best;
        sidx[t] = bi;
        __syncthreads();
        for (int s = LU_THREADS / 2; s > 0; s >>= 1) {
            if (t < s) {
                float ov = sval[t + s];
                int oi = sidx[t + s];
                if (ov > sval[t] || (ov == sval[t] && oi < sidx[t])) { sval[t] = ov; sidx[t] = oi; }
            }
            __syncthreads();
        }
        const int p = sidx[0];
        const float pv = A[(long long)p * n + j];
        __syncthreads();  // everyone has read sidx[0] before the next column reuses it
        if (t == 0) {
            piv[j] = p;
            if ((pv == 0.f || !isfinite(pv)) && *info == 0) *info = j + 1;
        }
        if (p != j)
            for (int c = k0 + t; c < kend; c += LU_THREADS) {
                float tmp = A[(long long)j * n + c];
                A[(long long)j * n + c] = A[(long long)p * n + c];
                A[(long long)p * n + c] = tmp;
            }
        __syncthreads();
        if (pv != 0.f) {
            float inv = 1.f / pv;
            for (int i = j + 1 + t; i < n; i += LU_THREADS) A[(long long)i * n + j] *= inv;
        }
        __syncthreads();
        const int w = kend - j - 1;  // columns right of j inside the panel
        if (w > 0)
            for (long long e = t; e < (long long)(n - j - 1) * w; e += LU_THREADS) {
                int i = j + 1 + (int)(e / w), c = j + 1 + (int)(e % w);
                A[(long long)i * n + c] -= A[(long long)i * n + j] * A[(long long)j * n + c];
            }
        __syncthreads();
    }
}

extern "C" __global__ void lu_swap_f32(int n, int k0, int nb, float* A, const int* piv) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    int kend = min(k0 + nb, n);
    if (c >= n || (c >= k0 && c < kend)) return;
    for (int j = k0; j < kend; ++j) {
        int p = piv[j];
        if (p != j) {
            float tmp = A[(long long)j * n + c];
            A[(long long)j * n + c] = A[(long long)p * n + c];
            A[(long long)p * n + c] = tmp;
        }
    }
}

extern "C" __global__ void lu_trsm_f32(int n, int k0, int nb, float* A) {
    int c = k0 + nb + blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= n) return;
    for (int i = k0 + 1; i < k0 + nb; ++i) {
        float s = A[(long long)i * n + c];
        for (int m = k0; m < i; ++m) s -= A[(long long)i * n + m] * A[(long long)m * n + c];
        A[(long long)i * n + c] = s;
    }
}

extern "C" __global__ void lu_apply_piv_f32(int n, int nrhs, float* B, const int* piv, int reverse) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= nrhs) return;
    for (int s = 0; s < n; ++s) {
        int j = reverse ? n - 1 - s : s;
        int p = piv[j];
        if (p != j) {
            float tmp = B[(long long)j * nrhs + c];
            B[(long long)j * nrhs + c] = B[(long long)p * nrhs + c];
            B[(long long)p * nrhs + c] = tmp;
        }
    }
}

extern "C" __global__ void trsm_block_f32(int kb, int nrhs, const float* T, int t_row, int t_col, float* X, int ldx,
                                          int lower, int unit) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= nrhs) return;
    for (int s = 0; s < kb; ++s) {
        int i = lower ? s : kb - 1 - s;
        float v = X[(long long)i * ldx + c];
        if (lower)
            for (int m = 0; m < i; ++m) v -= T[(long long)i * t_row + (long long)m * t_col] * X[(long long)m * ldx + c];
        else
            for (int m = i + 1; m < kb; ++m) v -= T[(long long)i * t_row + (long long)m * t_col] * X[(long long)m * ldx + c];
        if (!unit) v /= T[(long long)i * t_row + (long long)i * t_col];
        X[(long long)i * ldx + c] = v;
    }
}
