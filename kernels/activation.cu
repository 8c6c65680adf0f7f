// activation.cu: transition nonlinearities, forward and backward, over rows of width `cols`.
//
//   act_fwd_f32:  h = phi(a)                                   (n elements; OPLU: n/2 pairs)
//   act_bwd_f32:  da = J_phi(a)^T dh (no parameter gradient).
//   act_bwd_param_f32: da as above and the parameter gradient's partial sums, in a fixed order (no
//                 atomics): grid (ceil(cols / 32), chunks), block (32, 8); block (x, y) covers columns
//                 32x.. and rows y*rows_per_chunk..; thread (tx, ty) sums its column over the chunk's
//                 rows ty, ty + 8, ... in order, then the 8 row lanes add in order:
//                 PReLU   part[y][c] = sum_{chunk rows, a <= 0} dh * a
//                 modReLU part[y][c] = sum_{chunk rows} dh * sign(a) where |a| + b_c > 0
//                 then add_col_partials_f32 (modReLU: db_c += sum_y part[y][c]) or reduce_partials_f64
//                 (PReLU: dalpha += sum of every part) in reduce.cu.
//   margin_fwd_f32 / margin_bwd_f32: the spectral margin s = 2m (sigmoid(p) - 1/2) + 1 and its derivative.
// `param` is the PReLU slope [1] or the modReLU bias [cols]; 1-D grids, 256 threads.

extern "C" __global__ void act_fwd_f32(long long n, int cols, int kind, const float* a, const float* param, float* h) {
    if (kind == ACT_OPLU) {
        GRID_STRIDE(p, n / 2) {
            float x0 = a[2 * p], x1 = a[2 * p + 1];
            h[2 * p] = fmaxf(x0, x1);
            h[2 * p + 1] = fminf(x0, x1);
        }
        return;
    }
    GRID_STRIDE(i, n) h[i] = act_elem(kind, a[i], param, (int)(i % cols));
}

extern "C" __global__ void act_bwd_f32(long long n, int cols, int kind, const float* a, const float* h,
                                       const float* dh, const float* param, float* da) {
    if (kind == ACT_OPLU) {
        GRID_STRIDE(p, n / 2) {
            bool keep = a[2 * p] >= a[2 * p + 1];
            float g0 = dh[2 * p], g1 = dh[2 * p + 1];
            da[2 * p] = keep ? g0 : g1;
            da[2 * p + 1] = keep ? g1 : g0;
        }
        return;
    }
    GRID_STRIDE(i, n) da[i] = act_elem_bwd(kind, a[i], h[i], dh[i], param, (int)(i % cols));
}

extern "C" __global__ void __launch_bounds__(256) act_bwd_param_f32(int rows, int cols, int rows_per_chunk, int kind,
                                                                    const float* a, const float* h,
                                                                    const float* dh, const float* param, float* da,
                                                                    double* part) {
    __shared__ double lanes[8][33];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int c = blockIdx.x * 32 + tx;
    const int r0 = blockIdx.y * rows_per_chunk, r1 = min(rows, r0 + rows_per_chunk);
    double s = 0.0;
    if (c < cols)
        for (int r = r0 + ty; r < r1; r += 8) {
            const long long i = (long long)r * cols + c;
            const float x = a[i], g = dh[i];
            da[i] = act_elem_bwd(kind, x, h[i], g, param, c);
            if (kind == ACT_PRELU && !(x > 0.f)) s += (double)g * x;
            if (kind == ACT_MODRELU && fabsf(x) + param[c] > 0.f) s += (double)(g * sgnf(x));
        }
    lanes[ty][tx] = s;
    __syncthreads();
    if (ty == 0 && c < cols) {
        double t = 0.0;
        for (int y = 0; y < 8; ++y) t += lanes[y][tx];
        part[(long long)blockIdx.y * cols + c] = t;
    }
}

extern "C" __global__ void margin_fwd_f32(long long n, float m, const float* p, float* s) {
    GRID_STRIDE(i, n) s[i] = 2.f * m * (1.f / (1.f + expf(-p[i])) - 0.5f) + 1.f;
}

extern "C" __global__ void margin_bwd_f32(long long n, float m, const float* p, const float* ds, float* dp) {
    GRID_STRIDE(i, n) {
        float sg = 1.f / (1.f + expf(-p[i]));
        dp[i] = ds[i] * 2.f * m * sg * (1.f - sg);
    }
}
