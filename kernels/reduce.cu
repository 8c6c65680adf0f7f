// reduce.cu: reductions over buffers and matrices.
//
//   sum_sq_f32:   acc[0] += sum x_i^2 (f64 accumulation; 1-D grid, 256 threads)
//   max_abs_f32:  out[0] = max(out[0], max |x_i|) on the bit pattern of non-negative floats
//   norm1_f32:    out[0] = max over columns of sum_i |x_ij| for an n x n matrix (thread per column)
//   col_sum_f32:  out_j = beta out_j + sum_i x_ij        ([rows, cols]; block (32, 8) per 32 columns)
//   col_dot_f32:  out_j = sum_i a_ij b_ij                (same layout)

extern "C" __global__ void sum_sq_f32(long long n, const float* x, double* acc) {
    double s = 0.0;
    GRID_STRIDE(i, n) s += (double)x[i] * x[i];
    s = block_sum_d(s);
    if (threadIdx.x == 0) atomicAdd(&acc[0], s);
}

extern "C" __global__ void max_abs_f32(long long n, const float* x, unsigned int* out) {
    float m = 0.f;
    GRID_STRIDE(i, n) m = fmaxf(m, fabsf(x[i]));
    m = warp_max(m);
    if ((threadIdx.x & 31) == 0) atomicMax(out, __float_as_uint(m));
}

extern "C" __global__ void norm1_f32(int n, const float* x, unsigned int* out) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    float s = 0.f;
    if (c < n)
        for (int r = 0; r < n; ++r) s += fabsf(x[(long long)r * n + c]);
    s = warp_max(s);
    if ((threadIdx.x & 31) == 0) atomicMax(out, __float_as_uint(s));
}

template <bool DOT>
__device__ __forceinline__ void col_reduce(int rows, int cols, const float* a, const float* b, float beta, float* out) {
    __shared__ float part[8][33];
    int c = blockIdx.x * 32 + threadIdx.x;
    float s = 0.f;
    if (c < cols)
        for (int r = threadIdx.y; r < rows; r += 8) {
            long long i = (long long)r * cols + c;
            s += DOT ? a[i] * b[i] : a[i];
        }
    part[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && c < cols) {
        float t = 0.f;
        for (int y = 0; y < 8; ++y) t += part[y][threadIdx.x];
        out[c] = (DOT || beta == 0.f) ? t : beta * out[c] + t;
    }
}

extern "C" __global__ void col_sum_f32(int rows, int cols, const float* x, float beta, float* out) {
    col_reduce<false>(rows, cols, x, x, beta, out);
}

extern "C" __global__ void col_dot_f32(int rows, int cols, const float* a, const float* b, float* out) {
    col_reduce<true>(rows, cols, a, b, 0.f, out);
}
