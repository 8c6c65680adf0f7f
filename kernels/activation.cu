// activation.cu: transition nonlinearities, forward and backward, over rows of width `cols`.
//
//   act_fwd_f32:  h = phi(a)                                   (n elements; OPLU: n/2 pairs)
//   act_bwd_f32:  da = J_phi(a)^T dh; parameter gradients added to dparam:
//                 PReLU  dalpha += sum_{a <= 0} dh * a          (block reduction, one atomic per block)
//                 modReLU db_j  += sum_rows dh * sign(a) where |a| + b_j > 0   (atomics per element)
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
                                       const float* dh, const float* param, float* da, float* dparam) {
    if (kind == ACT_OPLU) {
        GRID_STRIDE(p, n / 2) {
            bool keep = a[2 * p] >= a[2 * p + 1];
            float g0 = dh[2 * p], g1 = dh[2 * p + 1];
            da[2 * p] = keep ? g0 : g1;
            da[2 * p + 1] = keep ? g1 : g0;
        }
        return;
    }
    double slope_grad = 0.0;
    GRID_STRIDE(i, n) {
        int col = (int)(i % cols);
        float x = a[i], g = dh[i];
        da[i] = act_elem_bwd(kind, x, h[i], g, param, col);
        if (dparam && kind == ACT_PRELU && !(x > 0.f)) slope_grad += (double)g * x;
        if (dparam && kind == ACT_MODRELU && fabsf(x) + param[col] > 0.f) atomicAdd(&dparam[col], g * sgnf(x));
    }
    if (kind == ACT_PRELU && dparam) {
        double s = block_sum_d(slope_grad);
        if (threadIdx.x == 0) atomicAdd(&dparam[0], (float)s);
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
