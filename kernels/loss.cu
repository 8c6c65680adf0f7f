// loss.cu: softmax cross-entropy and squared error, forward and backward in one pass.
//
//   softmax_xent_f32: one warp per row of `logits` [rows, classes]; targets[r] is the class as a float
//     (negative: row ignored, gradient zero). grad = scale (softmax - onehot). Block b writes its
//     rows' totals to part[4 b ..]: loss (natural log), correct (arg-max == target, first maximum
//     wins), counted rows, and rows whose target is not an integer in [0, classes) (skipped; the host
//     reports them). Block 256 threads = 8 rows per block.
//   mse_f32: grad = 2 scale (pred - target); part[b] = block b's sum of (pred - target)^2.
// reduce_partials_f64 (reduce.cu) then adds the blocks' totals in a fixed order.

extern "C" __global__ void softmax_xent_f32(int rows, int classes, const float* logits, const float* targets,
                                            float* grad, float scale, double* part) {
    int lane = threadIdx.x & 31;
    int r = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    double loss = 0.0, correct = 0.0, count = 0.0, bad = 0.0;
    if (r < rows) {
        const float* x = logits + (long long)r * classes;
        float* g = grad + (long long)r * classes;
        float tgt = targets[r];
        // NaN is neither negative nor a class: invalid (never converted to an index).
        bool ignored = tgt < 0.f;
        bool invalid = !ignored && !(tgt < (float)classes && tgt == floorf(tgt));
        if (ignored || invalid) {
            for (int j = lane; j < classes; j += 32) g[j] = 0.f;
            if (invalid && lane == 0) bad = 1.0;
        } else {
            int target = (int)tgt;
            // Maximum and its first index.
            float mx = neg_inf();
            int arg = classes;
            for (int j = lane; j < classes; j += 32) {
                if (x[j] > mx) { mx = x[j]; arg = j; }
            }
            for (int o = 16; o > 0; o >>= 1) {
                float om = __shfl_xor_sync(0xffffffffu, mx, o);
                int oa = __shfl_xor_sync(0xffffffffu, arg, o);
                if (om > mx || (om == mx && oa < arg)) { mx = om; arg = oa; }
            }
            float z = 0.f;
            for (int j = lane; j < classes; j += 32) z += expf(x[j] - mx);
            z = warp_sum(z);
            float inv = 1.f / z;
            for (int j = lane; j < classes; j += 32) {
                float p = expf(x[j] - mx) * inv;
                g[j] = scale * (p - (j == target ? 1.f : 0.f));
            }
            if (lane == 0) {
                loss = (double)logf(z) + mx - x[target];
                correct = arg == target ? 1.0 : 0.0;
                count = 1.0;
            }
        }
    }
    // Only lane 0 of each row's warp holds nonzero totals; the block adds them in a fixed order.
    loss = block_sum_d(loss);
    correct = block_sum_d(correct);
    count = block_sum_d(count);
    bad = block_sum_d(bad);
    if (threadIdx.x == 0) {
        double* p = part + 4 * (long long)blockIdx.x;
        p[0] = loss;
        p[1] = correct;
        p[2] = count;
        p[3] = bad;
    }
}

extern "C" __global__ void mse_f32(long long n, const float* pred, const float* target, float* grad, float scale,
                                   double* part) {
    double s = 0.0;
    GRID_STRIDE(i, n) {
        float e = pred[i] - target[i];
        grad[i] = 2.f * scale * e;
        s += (double)e * e;
    }
    s = block_sum_d(s);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}
