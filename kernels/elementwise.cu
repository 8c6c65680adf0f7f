// elementwise.cu: fills, scaled sums, diagonal and skew updates, transposes, column scaling, and the
// polynomial combination used by the Pade matrix exponential.
//
//   fill_f32:       x = v                      scale_f32:    x *= s
//   axpby_f32:      y = alpha x + beta y (beta == 0 never reads y)
//   add_diag_f32:   X += v I                   (n x n)
//   skew_f32:       out = alpha (X - X^T)      (n x n; out must not alias X)
//   transpose_f32:  out = X^T                  (X [rows, cols]; 32x32 tiles through shared memory, block (32, 8))
//   scale_cols_f32: out_ij = x_ij s_j          ([rows, cols])
//   lincomb_f32:    out = c0 X0 + c1 X1 + c2 X2 + c3 X3 + d I over n x n matrices (unused terms have null
//                   pointers), the building block of the Pade numerator and denominator polynomials.

extern "C" __global__ void fill_f32(long long n, float v, float* x) {
    GRID_STRIDE(i, n) x[i] = v;
}

extern "C" __global__ void scale_f32(long long n, float s, float* x) {
    GRID_STRIDE(i, n) x[i] *= s;
}

extern "C" __global__ void axpby_f32(long long n, float alpha, const float* x, float beta, float* y) {
    if (beta == 0.f) {
        GRID_STRIDE(i, n) y[i] = alpha * x[i];
    } else {
        GRID_STRIDE(i, n) y[i] = alpha * x[i] + beta * y[i];
    }
}

extern "C" __global__ void add_diag_f32(int n, float v, float* x) {
    GRID_STRIDE(i, n) x[i * (long long)n + i] += v;
}

extern "C" __global__ void skew_f32(int n, float alpha, const float* x, float* out) {
    GRID_STRIDE(e, (long long)n * n) {
        long long i = e / n, j = e % n;
        out[e] = alpha * (x[e] - x[j * n + i]);
    }
}

extern "C" __global__ void transpose_f32(int rows, int cols, const float* x, float* out) {
    __shared__ float tile[32][33];
    int c = blockIdx.x * 32 + threadIdx.x;
    for (int dy = threadIdx.y; dy < 32; dy += 8) {
        int r = blockIdx.y * 32 + dy;
        if (r < rows && c < cols) tile[dy][threadIdx.x] = x[(long long)r * cols + c];
    }
    __syncthreads();
    int r2 = blockIdx.y * 32 + threadIdx.x;
    for (int dy = threadIdx.y; dy < 32; dy += 8) {
        int c2 = blockIdx.x * 32 + dy;
        if (c2 < cols && r2 < rows) out[(long long)c2 * rows + r2] = tile[threadIdx.x][dy];
    }
}

extern "C" __global__ void scale_cols_f32(int rows, int cols, const float* x, const float* s, float* out) {
    GRID_STRIDE(i, (long long)rows * cols) out[i] = x[i] * s[i % cols];
}

extern "C" __global__ void lincomb_f32(int n, float c0, const float* x0, float c1, const float* x1, float c2,
                                       const float* x2, float c3, const float* x3, float d, float* out) {
    GRID_STRIDE(e, (long long)n * n) {
        float v = (e / n == e % n) ? d : 0.f;
        if (x0) v += c0 * x0[e];
        if (x1) v += c1 * x1[e];
        if (x2) v += c2 * x2[e];
        if (x3) v += c3 * x3[e];
        out[e] = v;
    }
}
