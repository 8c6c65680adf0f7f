// optim.cu: optimizer updates (PyTorch's formulas), one element per thread, grid-stride.
//
//   sgd_f32:     g' = g + wd p; mu == 0: p -= lr g'; else buf = mu buf + g', p -= lr (nesterov ? g' + mu buf : buf)
//   rmsprop_f32: v = rho v + (1 - rho) g'^2; p -= lr g' / (sqrt(v) + eps)
//   adam_f32:    m = b1 m + (1 - b1) g'; v = b2 v + (1 - b2) g'^2;
//                p -= lr (m / bc1) / (sqrt(v) / bc2 + eps), bc1 = 1 - b1^t, bc2 = sqrt(1 - b2^t)
//
// The multi-tensor step (one table of tensors, two launches for all parameters, no host round trip):
//   multi_sumsq_f32: per-block partial sums (double) of g^2 over the concatenation of every tensor's
//                    gradient (grid-stride, fixed grid: a fixed order); block 0 also advances the step
//                    counter *step (Adam's t) by one.
//   multi_step_f32:  every block sums the partials in block order: q = sum g^2, norm = sqrt(q); when q is
//                    not finite nothing is updated and clip-only gradients are zeroed; else with clip > 0
//                    and norm > clip, scale = (float)(clip / norm) multiplies every gradient (written
//                    back), then each tensor with update = 1 takes the rule's step at its own lr and wd.
//                    Block 0 writes tally[0] = q, tally[1] = clipped. Bias corrections come from *step.
// OptimTensor tables live in device memory (uploaded when the tensors or rates change), so a captured
// graph of the step reads the current rates and counter.

struct OptimTensor {
    float* p;
    float* g;
    float* s1;
    float* s2;
    long long n;
    long long offset;  // first index of this tensor in the concatenation
    float lr;
    float wd;
    int update;  // 1: apply the rule; 0: only clip the gradient
    int pad;
};

#define OPTIM_MAX_TENSORS 64
#define OPTIM_THREADS 256

__device__ __forceinline__ void sgd_elem(float lr, float mu, int nesterov, float wd, float* p, float g, float* buf) {
    float gi = wd != 0.f ? g + wd * *p : g;
    if (mu == 0.f) {
        *p -= lr * gi;
    } else {
        float b = mu * *buf + gi;
        *buf = b;
        *p -= lr * (nesterov ? gi + mu * b : b);
    }
}

__device__ __forceinline__ void rmsprop_elem(float lr, float rho, float eps, float wd, float* p, float g, float* v) {
    float gi = wd != 0.f ? g + wd * *p : g;
    float vi = rho * *v + (1.f - rho) * gi * gi;
    *v = vi;
    *p -= lr * gi / (sqrtf(vi) + eps);
}

__device__ __forceinline__ void adam_elem(float lr, float b1, float b2, float eps, float wd, float bc1, float bc2, float* p,
                                          float g, float* m, float* v) {
    float gi = wd != 0.f ? g + wd * *p : g;
    float mi = b1 * *m + (1.f - b1) * gi;
    float vi = b2 * *v + (1.f - b2) * gi * gi;
    *m = mi;
    *v = vi;
    *p -= lr * (mi / bc1) / (sqrtf(vi) / bc2 + eps);
}

extern "C" __global__ void sgd_f32(long long n, float lr, float mu, int nesterov, float wd, float* p, const float* g,
                                   float* buf) {
    GRID_STRIDE(i, n) sgd_elem(lr, mu, nesterov, wd, &p[i], g[i], mu == 0.f ? nullptr : &buf[i]);
}

extern "C" __global__ void rmsprop_f32(long long n, float lr, float rho, float eps, float wd, float* p, const float* g,
                                       float* v) {
    GRID_STRIDE(i, n) rmsprop_elem(lr, rho, eps, wd, &p[i], g[i], &v[i]);
}

extern "C" __global__ void adam_f32(long long n, float lr, float b1, float b2, float eps, float wd, float bc1,
                                    float bc2, float* p, const float* g, float* m, float* v) {
    GRID_STRIDE(i, n) adam_elem(lr, b1, b2, eps, wd, bc1, bc2, &p[i], g[i], &m[i], &v[i]);
}

// The tensor holding concatenated index i (tab[] in shared memory, sorted by offset).
__device__ __forceinline__ int optim_find(const OptimTensor* tab, int count, long long i) {
    int lo = 0, hi = count - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (tab[mid].offset <= i) lo = mid; else hi = mid - 1;
    }
    return lo;
}

extern "C" __global__ void multi_sumsq_f32(int count, const OptimTensor* __restrict__ table, long long total,
                                           double* partial, long long* step) {
    __shared__ OptimTensor tab[OPTIM_MAX_TENSORS];
    for (int k = threadIdx.x; k < count; k += blockDim.x) tab[k] = table[k];
    __syncthreads();
    double acc = 0.0;
    GRID_STRIDE(i, total) {
        const int k = optim_find(tab, count, i);
        const float g = tab[k].g[i - tab[k].offset];
        acc += (double)g * g;
    }
    double s = block_sum_d(acc);
    if (threadIdx.x == 0) {
        partial[blockIdx.x] = s;
        if (blockIdx.x == 0) *step += 1;
    }
}

// rule: 0 SGD (h0 = momentum, k0 = nesterov), 1 RMSprop (h0 = rho, h2 = eps), 2 Adam (h0 = b1, h1 = b2, h2 = eps).
extern "C" __global__ void multi_step_f32(int count, const OptimTensor* __restrict__ table, long long total,
                                          const double* __restrict__ partial, int nparts, const long long* step,
                                          double clip, int rule, float h0, float h1, float h2, int k0,
                                          double* tally) {
    __shared__ OptimTensor tab[OPTIM_MAX_TENSORS];
    __shared__ float scale_s;
    __shared__ int ok_s;
    for (int k = threadIdx.x; k < count; k += blockDim.x) tab[k] = table[k];
    if (threadIdx.x == 0) {
        double q = 0.0;
        for (int b = 0; b < nparts; ++b) q += partial[b];
        const double norm = sqrt(q);
        const bool ok = norm == norm && norm <= 1.7976931348623157e308;
        const bool clipped = ok && clip > 0.0 && norm > clip;
        scale_s = clipped ? (float)(clip / norm) : 1.f;
        ok_s = ok ? 1 : 0;
        if (blockIdx.x == 0) {
            tally[0] = q;
            tally[1] = clipped ? 1.0 : 0.0;
        }
    }
    __syncthreads();
    const float scale = scale_s;
    const bool ok = ok_s != 0;
    const long long t = *step;
    const float bc1 = (float)(1.0 - pow((double)h0, (double)t));
    const float bc2 = (float)sqrt(1.0 - pow((double)h1, (double)t));
    GRID_STRIDE(i, total) {
        const int k = optim_find(tab, count, i);
        const OptimTensor& d = tab[k];
        const long long e = i - d.offset;
        if (!ok) {
            if (!d.update) d.g[e] = 0.f;
            continue;
        }
        float g = d.g[e];
        if (scale != 1.f) {
            g = g * scale;
            d.g[e] = g;
        }
        if (!d.update) continue;
        if (rule == 0) {
            sgd_elem(d.lr, h0, k0, d.wd, &d.p[e], g, h0 == 0.f ? nullptr : &d.s1[e]);
        } else if (rule == 1) {
            rmsprop_elem(d.lr, h0, h2, d.wd, &d.p[e], g, &d.s1[e]);
        } else {
            adam_elem(d.lr, h0, h1, h2, d.wd, bc1, bc2, &d.p[e], g, &d.s1[e], &d.s2[e]);
        }
    }
}
