// optim.cu: optimizer updates (PyTorch's formulas), one element per thread, grid-stride.
//
//   sgd_f32:     g' = g + wd p; mu == 0: p -= lr g'; else buf = mu buf + g', p -= lr (nesterov ? g' + mu buf : buf)
//   rmsprop_f32: v = rho v + (1 - rho) g'^2; p -= lr g' / (sqrt(v) + eps)
//   adam_f32:    m = b1 m + (1 - b1) g'; v = b2 v + (1 - b2) g'^2;
//                p -= lr (m / bc1) / (sqrt(v) / bc2 + eps), bc1 = 1 - b1^t, bc2 = sqrt(1 - b2^t)

extern "C" __global__ void sgd_f32(long long n, float lr, float mu, int nesterov, float wd, float* p, const float* g,
                                   float* buf) {
    GRID_STRIDE(i, n) {
        float gi = wd != 0.f ? g[i] + wd * p[i] : g[i];
        if (mu == 0.f) {
            p[i] -= lr * gi;
        } else {
            float b = mu * buf[i] + gi;
            buf[i] = b;
            p[i] -= lr * (nesterov ? gi + mu * b : b);
        }
    }
}

extern "C" __global__ void rmsprop_f32(long long n, float lr, float rho, float eps, float wd, float* p, const float* g,
                                       float* v) {
    GRID_STRIDE(i, n) {
        float gi = wd != 0.f ? g[i] + wd * p[i] : g[i];
        float vi = rho * v[i] + (1.f - rho) * gi * gi;
        v[i] = vi;
        p[i] -= lr * gi / (sqrtf(vi) + eps);
    }
}

extern "C" __global__ void adam_f32(long long n, float lr, float b1, float b2, float eps, float wd, float bc1,
                                    float bc2, float* p, const float* g, float* m, float* v) {
    GRID_STRIDE(i, n) {
        float gi = wd != 0.f ? g[i] + wd * p[i] : g[i];
        float mi = b1 * m[i] + (1.f - b1) * gi;
        float vi = b2 * v[i] + (1.f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] -= lr * (mi / bc1) / (sqrtf(vi) / bc2 + eps);
    }
}
