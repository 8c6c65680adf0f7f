// recurrent.cu: the Elman recurrence over all T steps in one cooperative (persistent) launch.
//
//   rnn_fwd_persist_f32:  a_t = pre_t + H_t W^T (pre_t holds X_t V^T + b on entry, a_t on exit),
//                         H_{t+1} = phi(a_t),                                   t = 0 .. T-1
//   rnn_bwd_persist_f32:  G_t = dH_t + Delta_{t+1} W (kept in dH), Delta_t = J_phi(a_t)^T G_t,
//                         t = T-1 .. 0, and the activation's parameter gradient added to dparam:
//                         PReLU   dalpha += sum_{a <= 0} g a,   modReLU  db_j += sum_{|a| + b_j > 0} g sign(a)
//
// Layouts (row-major): W [n, n]; pre, dH, Delta [T, B, n]; H [T + 1, B, n] (H_0 on entry). Block k owns the
// r hidden units [k r, k r + r) (r a power of two dividing the 256 threads, even for OPLU so that pairs
// stay in one block) and keeps its slice of W (forward: rows, W[j, :]; backward: columns, W[:, j]) in
// shared memory for all T steps, padded to n + 1 floats per unit. One grid-wide barrier per step: step
// t + 1 reads the states of every unit written at step t. Thread `o` of a block computes the outputs
// (b, j) with o = b r + (j - k r), o += 256: each a full dot product of length n, in a fixed order (four
// interleaved partial sums), so results do not depend on scheduling. Parameter gradients are reduced in a
// fixed order without atomics: modReLU per unit inside the block that owns it; PReLU per block into
// `partial` [gridDim.x] (doubles), then summed in block order by block 0 after one more grid barrier.
// Launch: grid ceil(n / r) blocks of REC_THREADS threads, cooperatively (all blocks co-resident).

#ifndef ORTHO_EMU
#include <cooperative_groups.h>
#endif

namespace cg = cooperative_groups;

#define REC_THREADS 256
// Floats of the shared W slice: 46 KiB, which with the 2 KiB reduction buffer stays under the 48 KiB of
// static shared memory a block may have. A slice needs r (n + 1) floats.
#define REC_WS_MAX 11776

// sum_k x[k] y[k] for k < n, as four interleaved partial sums combined in a fixed order.
__device__ __forceinline__ float rec_dot(const float* x, const float* y, int n) {
    float a0 = 0.f, a1 = 0.f, a2 = 0.f, a3 = 0.f;
    int k = 0;
    for (; k + 4 <= n; k += 4) {
        a0 = fmaf(x[k], y[k], a0);
        a1 = fmaf(x[k + 1], y[k + 1], a1);
        a2 = fmaf(x[k + 2], y[k + 2], a2);
        a3 = fmaf(x[k + 3], y[k + 3], a3);
    }
    for (; k < n; ++k) a0 = fmaf(x[k], y[k], a0);
    return (a0 + a1) + (a2 + a3);
}

extern "C" __global__ void __launch_bounds__(REC_THREADS)
    rnn_fwd_persist_f32(int T, int B, int n, int r, int kind, const float* __restrict__ W,
                        const float* __restrict__ param, float* pre, float* h) {
    __shared__ float ws[REC_WS_MAX];
    const int j0 = blockIdx.x * r;
    const int rr = min(r, n - j0);
    const int ld = n + 1;
    for (int idx = threadIdx.x; idx < rr * n; idx += blockDim.x) {
        const int jj = idx / n, k = idx % n;
        ws[jj * ld + k] = W[(long long)(j0 + jj) * n + k];
    }
    __syncthreads();
    const long long bn = (long long)B * n;
    const int outs = B * r;
    for (int t = 0; t < T; ++t) {
        const float* hp = h + t * bn;
        float* pt = pre + t * bn;
        float* hn = h + (t + 1) * bn;
        for (int o = threadIdx.x; o < outs; o += blockDim.x) {
            const int jj = o % r, b = o / r;
            if (jj >= rr) continue;
            const long long idx = (long long)b * n + j0 + jj;
            pt[idx] += rec_dot(hp + (long long)b * n, ws + jj * ld, n);
        }
        if (kind == ACT_OPLU) {
            __syncthreads();  // both members of a pair are written before either is read
            const int half = r / 2;
            for (int p = threadIdx.x; p < B * half; p += blockDim.x) {
                const int jj = 2 * (p % half), b = p / half;
                if (jj >= rr) continue;
                const long long idx = (long long)b * n + j0 + jj;
                const float x0 = pt[idx], x1 = pt[idx + 1];
                hn[idx] = fmaxf(x0, x1);
                hn[idx + 1] = fminf(x0, x1);
            }
        } else {
            // The same (b, j) as above: each thread reads back what it wrote.
            for (int o = threadIdx.x; o < outs; o += blockDim.x) {
                const int jj = o % r, b = o / r;
                if (jj >= rr) continue;
                const long long idx = (long long)b * n + j0 + jj;
                hn[idx] = act_elem(kind, pt[idx], param, j0 + jj);
            }
        }
        cg::this_grid().sync();
    }
}

extern "C" __global__ void __launch_bounds__(REC_THREADS)
    rnn_bwd_persist_f32(int T, int B, int n, int r, int kind, const float* __restrict__ W,
                        const float* __restrict__ param, const float* __restrict__ pre,
                        const float* __restrict__ h, float* dh, float* delta, float* dparam, double* partial) {
    __shared__ float ws[REC_WS_MAX];
    __shared__ double red[REC_THREADS];
    const int j0 = blockIdx.x * r;
    const int rr = min(r, n - j0);
    const int ld = n + 1;
    // Columns j0 .. j0 + rr of W, read a row at a time (consecutive threads, consecutive columns).
    for (int idx = threadIdx.x; idx < rr * n; idx += blockDim.x) {
        const int k = idx / rr, jj = idx % rr;
        ws[jj * ld + k] = W[(long long)k * n + j0 + jj];
    }
    __syncthreads();
    const long long bn = (long long)B * n;
    const int outs = B * r;
    // This thread's share of the parameter gradient (its unit is fixed: o % r == threadIdx.x % r).
    double pacc = 0.0;
    for (int t = T - 1; t >= 0; --t) {
        float* gt = dh + t * bn;
        const float* dn = delta + (t + 1) * bn;
        for (int o = threadIdx.x; o < outs; o += blockDim.x) {
            const int jj = o % r, b = o / r;
            if (jj >= rr) continue;
            const long long idx = (long long)b * n + j0 + jj;
            if (t + 1 < T) gt[idx] += rec_dot(dn + (long long)b * n, ws + jj * ld, n);
        }
        const float* at = pre + t * bn;
        const float* ht = h + (t + 1) * bn;
        float* dt = delta + t * bn;
        if (kind == ACT_OPLU) {
            __syncthreads();  // both members of a pair are complete before either is read
            const int half = r / 2;
            for (int p = threadIdx.x; p < B * half; p += blockDim.x) {
                const int jj = 2 * (p % half), b = p / half;
                if (jj >= rr) continue;
                const long long idx = (long long)b * n + j0 + jj;
                const bool keep = at[idx] >= at[idx + 1];
                const float g0 = gt[idx], g1 = gt[idx + 1];
                dt[idx] = keep ? g0 : g1;
                dt[idx + 1] = keep ? g1 : g0;
            }
        } else {
            for (int o = threadIdx.x; o < outs; o += blockDim.x) {
                const int jj = o % r, b = o / r;
                if (jj >= rr) continue;
                const int j = j0 + jj;
                const long long idx = (long long)b * n + j;
                const float x = at[idx], g = gt[idx];
                dt[idx] = act_elem_bwd(kind, x, ht[idx], g, param, j);
                if (dparam != nullptr && kind == ACT_PRELU && !(x > 0.f)) pacc += (double)g * x;
                if (dparam != nullptr && kind == ACT_MODRELU && fabsf(x) + param[j] > 0.f) pacc += (double)(g * sgnf(x));
            }
        }
        cg::this_grid().sync();
    }
    if (dparam == nullptr || (kind != ACT_PRELU && kind != ACT_MODRELU)) return;
    red[threadIdx.x] = pacc;
    __syncthreads();
    if (kind == ACT_MODRELU) {
        if ((int)threadIdx.x < rr) {
            double s = 0.0;
            for (int q = threadIdx.x; q < (int)blockDim.x; q += r) s += red[q];
            dparam[j0 + threadIdx.x] += (float)s;
        }
        return;
    }
    if (threadIdx.x == 0) {
        double s = 0.0;
        for (int q = 0; q < (int)blockDim.x; ++q) s += red[q];
        partial[blockIdx.x] = s;
    }
    cg::this_grid().sync();
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        double s = 0.0;
        for (unsigned q = 0; q < gridDim.x; ++q) s += partial[q];
        dparam[0] += (float)s;
    }
}
