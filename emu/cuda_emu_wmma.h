// cuda_emu_wmma.h: the tensor-core WMMA API (`nvcuda::wmma`, <mma.h>) for the emulation harness.
//
// Supported: fragments of shape m16n16k8 with `precision::tf32` operands and m16n16k16 with
// `__nv_bfloat16` or `__half` operands, f32 accumulators; fill_fragment, load_matrix_sync,
// store_matrix_sync, mma_sync; __float_to_tf32. That is all a kernel may do with a fragment besides
// uniform element-wise operations on `x[i]` (the same operation on every element, e.g. a conversion),
// because the element-to-lane layout of a fragment is unspecified.
//
// Layout: element `i` of lane `l` is entry `e = 32 i + l` of the fragment's matrix in row-major order
// (`num_elements` is the per-lane count, rows * cols / 32). This differs from every hardware layout on
// purpose, so a kernel that relies on one gives wrong results here.
//
// Semantics:
// - load_matrix_sync / store_matrix_sync are performed per lane when the lane calls them (no warp
//   rendezvous). On hardware they synchronize the warp (`.sync`), so the emulator is stricter: a warp
//   that reads, with ordinary loads, what its own store_matrix_sync wrote needs a __syncwarp() between,
//   which is also what the CUDA memory model asks for. The pointer must be 32-byte aligned and `ldm`
//   a multiple of 16 bytes (as PTX wmma requires); violations abort the launch naming the line.
// - mma_sync is a warp collective: every lane publishes its four fragment addresses, the warp meets at a
//   rendezvous, lane 0 computes D = A B + C for all 32 lanes at once (into a temporary, since D usually
//   aliases C and the lanes' elements are interleaved), and the warp meets again before any lane reads
//   D. A warp that reaches mma_sync with only some of its lanes deadlocks with the line named.
// - TF32 operands are truncated to 10 mantissa bits by mma_sync, as the hardware ignores the low 13 bits
//   of an f32 operand; __float_to_tf32 rounds to nearest with ties away from zero (cvt.rna.tf32.f32).
//   Products of TF32 or BF16 values are exact in f32; they are accumulated in f32 in k order.
#pragma once

namespace nvcuda {
namespace wmma {

struct row_major {};
struct col_major {};
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
enum layout_t { mem_row_major, mem_col_major };
namespace precision {
struct tf32 {};
}  // namespace precision

namespace emu_detail {

// Element type stored in a fragment of operand type T.
template <class T>
struct storage {
    using type = T;
};
template <>
struct storage<precision::tf32> {
    using type = float;
};

// Rows and columns of the matrix a fragment holds.
template <class Use, int M, int N, int K>
struct shape;
template <int M, int N, int K>
struct shape<matrix_a, M, N, K> {
    static constexpr int rows = M, cols = K;
};
template <int M, int N, int K>
struct shape<matrix_b, M, N, K> {
    static constexpr int rows = K, cols = N;
};
template <int M, int N, int K>
struct shape<accumulator, M, N, K> {
    static constexpr int rows = M, cols = N;
};

// The shapes and operand types the emulator supports (a subset of sm_80's).
template <int M, int N, int K, class T>
struct supported : std::false_type {};
template <>
struct supported<16, 16, 8, precision::tf32> : std::true_type {};
template <>
struct supported<16, 16, 16, __nv_bfloat16> : std::true_type {};
template <>
struct supported<16, 16, 16, __half> : std::true_type {};
// Accumulator shapes.
template <int M, int N, int K>
struct supported_acc : std::false_type {};
template <>
struct supported_acc<16, 16, 8> : std::true_type {};
template <>
struct supported_acc<16, 16, 16> : std::true_type {};

inline unsigned lane_id() {
    return (threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)) % 32u;
}
inline unsigned warp_id() {
    return (threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)) / 32u;
}

inline float bits_to_float(uint32_t b) {
    float f;
    std::memcpy(&f, &b, 4);
    return f;
}
inline uint32_t float_to_bits(float f) {
    uint32_t b;
    std::memcpy(&b, &f, 4);
    return b;
}

// What the tensor core reads of an operand element.
inline float operand(float x) {  // TF32: the low 13 mantissa bits are ignored
    if (x != x) return x;
    return bits_to_float(float_to_bits(x) & 0xFFFFE000u);
}
inline float operand(__nv_bfloat16 x) { return float(x); }
inline float operand(__half x) { return float(x); }

template <class P>
inline void check_access(const char* what, const P* p, unsigned ldm, const char* file, int line) {
    const ::emu::Site site{file, line};
    if ((reinterpret_cast<uintptr_t>(p) & 31u) != 0) {
        char msg[160];
        snprintf(msg, sizeof msg, "%s: pointer %p is not 32-byte aligned", what, static_cast<const void*>(p));
        ::emu::kernel_fault(site, msg);
    }
    if ((ldm * sizeof(P)) % 16 != 0 || ldm == 0) {
        char msg[160];
        snprintf(msg, sizeof msg, "%s: ldm %u elements of %zu bytes is not a positive multiple of 16 bytes", what, ldm,
                 sizeof(P));
        ::emu::kernel_fault(site, msg);
    }
}

// The four fragment addresses each lane hands to mma_sync, per warp of the block being run (a worker
// runs one block at a time, like __shared__).
struct MmaCall {
    const void* a;
    const void* b;
    const void* c;
    void* d;
};
inline MmaCall* mma_calls() {
    static thread_local MmaCall calls[32 * 32];
    return calls;
}

}  // namespace emu_detail

template <class Use, int M, int N, int K, class T, class Layout = void>
class fragment {
    static_assert(std::is_same<Use, accumulator>::value ? (emu_detail::supported_acc<M, N, K>::value &&
                                                             std::is_same<T, float>::value)
                                                          : emu_detail::supported<M, N, K, T>::value,
                  "emu supports wmma fragments m16n16k8 (tf32) and m16n16k16 (bf16, half) with f32 accumulators");

public:
    using element_type = typename emu_detail::storage<T>::type;
    using storage_element_type = element_type;
    static constexpr int kRows = emu_detail::shape<Use, M, N, K>::rows;
    static constexpr int kCols = emu_detail::shape<Use, M, N, K>::cols;
    enum : unsigned { num_elements = unsigned(kRows * kCols / 32) };
    element_type x[num_elements];
};

inline float __float_to_tf32(float in) {
    const uint32_t b = emu_detail::float_to_bits(in);
    if ((b & 0x7F800000u) == 0x7F800000u) return in;  // Inf and NaN pass through
    // Round the magnitude to nearest at bit 13, ties away from zero.
    return emu_detail::bits_to_float((b + 0x1000u) & 0xFFFFE000u);
}

template <class Use, int M, int N, int K, class T, class L, class V>
inline void fill_fragment(fragment<Use, M, N, K, T, L>& f, const V& v) {
    using E = typename fragment<Use, M, N, K, T, L>::element_type;
    for (unsigned i = 0; i < f.num_elements; ++i) f.x[i] = E(v);
}

// Operand fragments: the layout is the fragment's template argument.
template <class Use, int M, int N, int K, class T, class L>
inline void load_matrix_sync(fragment<Use, M, N, K, T, L>& f,
                             const typename fragment<Use, M, N, K, T, L>::element_type* p, unsigned ldm,
                             const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    static_assert(std::is_same<L, row_major>::value || std::is_same<L, col_major>::value,
                  "matrix_a / matrix_b fragments have a row_major or col_major layout");
    using F = fragment<Use, M, N, K, T, L>;
    emu_detail::check_access("wmma::load_matrix_sync", p, ldm, file, line);
    const unsigned lane = emu_detail::lane_id();
    for (unsigned i = 0; i < F::num_elements; ++i) {
        const unsigned e = 32 * i + lane, r = e / F::kCols, c = e % F::kCols;
        f.x[i] = std::is_same<L, row_major>::value ? p[size_t(r) * ldm + c] : p[size_t(c) * ldm + r];
    }
}

// Accumulators: the memory layout is a run-time argument.
template <int M, int N, int K>
inline void load_matrix_sync(fragment<accumulator, M, N, K, float>& f, const float* p, unsigned ldm,
                             layout_t layout, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    using F = fragment<accumulator, M, N, K, float>;
    emu_detail::check_access("wmma::load_matrix_sync", p, ldm, file, line);
    const unsigned lane = emu_detail::lane_id();
    for (unsigned i = 0; i < F::num_elements; ++i) {
        const unsigned e = 32 * i + lane, r = e / F::kCols, c = e % F::kCols;
        f.x[i] = layout == mem_row_major ? p[size_t(r) * ldm + c] : p[size_t(c) * ldm + r];
    }
}

template <int M, int N, int K>
inline void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float>& f, unsigned ldm,
                              layout_t layout, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    using F = fragment<accumulator, M, N, K, float>;
    emu_detail::check_access("wmma::store_matrix_sync", p, ldm, file, line);
    const unsigned lane = emu_detail::lane_id();
    for (unsigned i = 0; i < F::num_elements; ++i) {
        const unsigned e = 32 * i + lane, r = e / F::kCols, c = e % F::kCols;
        (layout == mem_row_major ? p[size_t(r) * ldm + c] : p[size_t(c) * ldm + r]) = f.x[i];
    }
}

// D = A B + C for the whole warp; see the header comment.
template <int M, int N, int K, class T, class LA, class LB>
inline void mma_sync(fragment<accumulator, M, N, K, float>& d, const fragment<matrix_a, M, N, K, T, LA>& a,
                     const fragment<matrix_b, M, N, K, T, LB>& b, const fragment<accumulator, M, N, K, float>& c,
                     const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    using FA = fragment<matrix_a, M, N, K, T, LA>;
    using FB = fragment<matrix_b, M, N, K, T, LB>;
    using FC = fragment<accumulator, M, N, K, float>;
    const ::emu::Site site{file, line};
    const unsigned lane = emu_detail::lane_id();
    emu_detail::MmaCall* calls = emu_detail::mma_calls() + 32 * emu_detail::warp_id();
    calls[lane] = emu_detail::MmaCall{&a, &b, &c, &d};
    // Rendezvous 1: every lane has published its fragments.
    ::emu::warp_collective(site, ::emu::WarpOp::SyncWarp, 0xffffffffu, 0, 0, 32);
    if (lane == 0) {
        float A[M][K], B[K][N], D[M][N];
        for (unsigned l = 0; l < 32; ++l) {
            const FA& fa = *static_cast<const FA*>(calls[l].a);
            const FB& fb = *static_cast<const FB*>(calls[l].b);
            const FC& fc = *static_cast<const FC*>(calls[l].c);
            for (unsigned i = 0; i < FA::num_elements; ++i) {
                const unsigned e = 32 * i + l;
                A[e / K][e % K] = emu_detail::operand(fa.x[i]);
            }
            for (unsigned i = 0; i < FB::num_elements; ++i) {
                const unsigned e = 32 * i + l;
                B[e / N][e % N] = emu_detail::operand(fb.x[i]);
            }
            for (unsigned i = 0; i < FC::num_elements; ++i) {
                const unsigned e = 32 * i + l;
                D[e / N][e % N] = fc.x[i];
            }
        }
        for (int r = 0; r < M; ++r)
            for (int col = 0; col < N; ++col) {
                float acc = D[r][col];
                for (int k = 0; k < K; ++k) acc = fmaf(A[r][k], B[k][col], acc);
                D[r][col] = acc;
            }
        for (unsigned l = 0; l < 32; ++l) {
            FC& fd = *static_cast<FC*>(calls[l].d);
            for (unsigned i = 0; i < FC::num_elements; ++i) {
                const unsigned e = 32 * i + l;
                fd.x[i] = D[e / N][e % N];
            }
        }
    }
    // Rendezvous 2: no lane reads D before lane 0 has written every lane's.
    ::emu::warp_collective(site, ::emu::WarpOp::SyncWarp, 0xffffffffu, 0, 0, 32);
}

}  // namespace wmma
}  // namespace nvcuda
