// reduce.cu: reductions over buffers and matrices. Sums add in a fixed order (no float atomics), so
// a result depends on the data and the grid, never on which block finishes first: two runs on one
// device give the same bits.
//
//   sum_sq_f32:   part[b] = sum over block b's grid-stride elements of x_i^2 (f64; 1-D grid, 256 threads);
//                 then reduce_partials_f64 adds the blocks' partials.
//   reduce_partials_f64: one block: out_d[j] += sum_b part[b * width + j] (b ascending, fixed tree),
//                 and/or out_f[j] += that sum as f32; width <= 4 (losses: sum, correct, count, invalid).
//                 out_d is a zeroed readback slot or a device tally that several ops add into.
//   add_col_partials_f32: out[c] += sum_k part[k * cols + c] (k ascending), thread per column.
//   max_abs_f32:  out[0] = max(out[0], max |x_i|) on the bit pattern of non-negative floats (order-free)
//   norm1_f32:    out[0] = max over columns of sum_i |x_ij| for an n x n matrix (thread per column)
//   col_sum_f32:  out_j = beta out_j + sum_i x_ij        ([rows, cols]; block (32, 8) per 32 columns)
//   col_dot_f32:  out_j = sum_i a_ij b_ij                (same layout)

extern "C" __global__ void sum_sq_f32(long long n, const float* x, double* part) {
    double s = 0.0;
    GRID_STRIDE(i, n) s += (double)x[i] * x[i];
    s = block_sum_d(s);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

extern "C" __global__ void reduce_partials_f64(int nparts, int width, const double* part, double* out_d,
                                               float* out_f) {
    for (int j = 0; j < width; ++j) {
        double s = 0.0;
        for (int b = threadIdx.x; b < nparts; b += blockDim.x) s += part[(long long)b * width + j];
        s = block_sum_d(s);
        if (threadIdx.x == 0) {
            if (out_d) out_d[j] += s;
            if (out_f) out_f[j] += (float)s;
        }
    }
}

extern "C" __global__ void add_col_partials_f32(int parts, int cols, const double* part, float* out) {
    GRID_STRIDE(c, cols) {
        double s = 0.0;
        for (int k = 0; k < parts; ++k) s += part[(long long)k * cols + c];
        out[c] += (float)s;
    }
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
