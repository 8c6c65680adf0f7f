// lstm.cu: the pointwise part of an LSTM cell with peepholes, forward and backward.
//
// z [B, 4n] holds W_x x_t + W_h h_{t-1} + b with gate blocks (i, f, g, o); peep [3n] = (w_ci, w_cf, w_co).
//   i = sigmoid(z_i + w_ci c_prev), f = sigmoid(z_f + w_cf c_prev), g = tanh(z_g),
//   c = f c_prev + i g, o = sigmoid(z_o + w_co c), h = o tanh(c).
// lstm_fwd_f32 reads c_prev from c[0, B*n) and writes c_t to c[B*n, 2*B*n) (consecutive steps of a
// sequence buffer), and writes the activated gates [B, 4n] and h [B, n].
// lstm_bwd_f32 takes dh = dL/dh_t and dc = dL/dc_t from later steps (overwritten with dL/dc_{t-1}),
// writes dz [B, 4n] and adds the peephole gradients to dpeep in a fixed order (no atomics): grid
// ceil(n / 32) blocks of (32, 8) threads; thread (tx, ty) handles unit 32 blockIdx.x + tx for rows
// ty, ty + 8, ... in order, then the 8 row lanes' sums are added in order.

__device__ __forceinline__ float sigm(float x) { return 1.f / (1.f + expf(-x)); }

extern "C" __global__ void lstm_fwd_f32(int rows, int n, const float* z, const float* peep, float* cpair, float* gates,
                                        float* h) {
    const float* c_prev = cpair;
    float* c = cpair + (long long)rows * n;
    GRID_STRIDE(k, (long long)rows * n) {
        long long r = k / n;
        int j = (int)(k % n);
        const float* zr = z + r * 4 * n;
        float* gr = gates + r * 4 * n;
        float cp = c_prev[k];
        float i = sigm(zr[j] + peep[j] * cp);
        float f = sigm(zr[n + j] + peep[n + j] * cp);
        float g = tanhf(zr[2 * n + j]);
        float cc = f * cp + i * g;
        float o = sigm(zr[3 * n + j] + peep[2 * n + j] * cc);
        gr[j] = i;
        gr[n + j] = f;
        gr[2 * n + j] = g;
        gr[3 * n + j] = o;
        c[k] = cc;
        h[k] = o * tanhf(cc);
    }
}

extern "C" __global__ void __launch_bounds__(256) lstm_bwd_f32(int rows, int n, const float* gates, const float* c_prev,
                                                               const float* c, const float* peep, const float* dh,
                                                               float* dc, float* dz, float* dpeep) {
    __shared__ float lanes[3][8][33];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int j = blockIdx.x * 32 + tx;
    float si = 0.f, sf = 0.f, so = 0.f;
    if (j < n)
        for (int r = ty; r < rows; r += 8) {
            const long long k = (long long)r * n + j;
            const float* gr = gates + (long long)r * 4 * n;
            float* dzr = dz + (long long)r * 4 * n;
            float i = gr[j], f = gr[n + j], g = gr[2 * n + j], o = gr[3 * n + j];
            float cp = c_prev[k], cc = c[k];
            float tc = tanhf(cc);
            float da_o = dh[k] * tc * o * (1.f - o);
            float dct = dc[k] + dh[k] * o * (1.f - tc * tc) + da_o * peep[2 * n + j];
            float da_i = dct * g * i * (1.f - i);
            float da_f = dct * cp * f * (1.f - f);
            dzr[j] = da_i;
            dzr[n + j] = da_f;
            dzr[2 * n + j] = dct * i * (1.f - g * g);
            dzr[3 * n + j] = da_o;
            dc[k] = dct * f + da_i * peep[j] + da_f * peep[n + j];
            si += da_i * cp;
            sf += da_f * cp;
            so += da_o * cc;
        }
    lanes[0][ty][tx] = si;
    lanes[1][ty][tx] = sf;
    lanes[2][ty][tx] = so;
    __syncthreads();
    if (ty == 0 && j < n) {
        for (int q = 0; q < 3; ++q) {
            float t = 0.f;
            for (int y = 0; y < 8; ++y) t += lanes[q][y][tx];
            dpeep[q * n + j] += t;
        }
    }
}
