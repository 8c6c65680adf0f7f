// cuda_emu_math.h: the CUDA device math library, bit casts, __half and __nv_bfloat16 on the host.
// Included by cuda_emu.h; not meant to be included on its own.
//
// expf, logf, tanhf, sqrtf, fabsf, fmaxf, fminf, fmaf, powf, copysignf, exp, log, sqrt, fabs, fmax, fmin,
// tanh, isfinite, isnan, INFINITY come from the host <math.h>. The fast intrinsics (__expf, ...) are
// the accurate functions here: a kernel must not rely on their reduced device accuracy.
#pragma once

// ---------------------------------------------------------------------------------------------------
// Float math
// ---------------------------------------------------------------------------------------------------
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanf(float x) { return tanf(x); }
inline float __tanhf(float x) { return tanhf(x); }
inline float __fdividef(float x, float y) { return x / y; }
inline float fdividef(float x, float y) { return x / y; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __fadd_rn(float x, float y) { return x + y; }
inline float __fmul_rn(float x, float y) { return x * y; }
inline float __fmaf_rn(float x, float y, float z) { return fmaf(x, y, z); }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : (x == x ? x : 0.0f)); }
inline int __float2int_rn(float x) { return (int)nearbyintf(x); }
inline int __float2int_rz(float x) { return (int)x; }
inline float __int2float_rn(int x) { return (float)x; }

// min/max as CUDA overloads them for integers and floating point.
#define ORTHO_EMU_MINMAX(R, A, B)                              \
    inline R min(A a, B b) { return (R)a < (R)b ? (R)a : (R)b; } \
    inline R max(A a, B b) { return (R)a > (R)b ? (R)a : (R)b; }
ORTHO_EMU_MINMAX(int, int, int)
ORTHO_EMU_MINMAX(unsigned int, unsigned int, unsigned int)
ORTHO_EMU_MINMAX(unsigned int, int, unsigned int)
ORTHO_EMU_MINMAX(unsigned int, unsigned int, int)
ORTHO_EMU_MINMAX(long, long, long)
ORTHO_EMU_MINMAX(unsigned long, unsigned long, unsigned long)
ORTHO_EMU_MINMAX(long long, long long, long long)
ORTHO_EMU_MINMAX(unsigned long long, unsigned long long, unsigned long long)
#undef ORTHO_EMU_MINMAX
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }
inline double min(float a, double b) { return fmin(a, b); }
inline double max(float a, double b) { return fmax(a, b); }
inline double min(double a, float b) { return fmin(a, b); }
inline double max(double a, float b) { return fmax(a, b); }

// ---------------------------------------------------------------------------------------------------
// Bit casts and integer intrinsics
// ---------------------------------------------------------------------------------------------------
inline int __float_as_int(float x) { return emu::from_bits64<int>(emu::to_bits64(x)); }
inline unsigned int __float_as_uint(float x) { return emu::from_bits64<unsigned int>(emu::to_bits64(x)); }
inline float __int_as_float(int x) { return emu::from_bits64<float>(emu::to_bits64(x)); }
inline float __uint_as_float(unsigned int x) { return emu::from_bits64<float>(emu::to_bits64(x)); }
inline long long __double_as_longlong(double x) { return emu::from_bits64<long long>(emu::to_bits64(x)); }
inline double __longlong_as_double(long long x) { return emu::from_bits64<double>(emu::to_bits64(x)); }
inline int __popc(unsigned int x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned int)x); }
inline int __ffs(int x) { return __builtin_ffs(x); }

template <class T>
inline T __ldg(const T* p) {
    return *p;
}

// ---------------------------------------------------------------------------------------------------
// __half and __nv_bfloat16: storage types with float conversions, rounding to nearest even exactly
// as the Rust `half` crate's f16::from_f32 / bf16::from_f32 (NaNs keep their sign and top payload
// bits and become quiet).
// ---------------------------------------------------------------------------------------------------
namespace emu {
inline uint32_t f32_bits(float f) { return from_bits64<uint32_t>(to_bits64(f)); }
inline float bits_f32(uint32_t b) { return from_bits64<float>(to_bits64(b)); }

inline uint16_t f32_to_f16_bits(float value) {
    const uint32_t x = f32_bits(value);
    const uint32_t sign = x & 0x80000000u, exp = x & 0x7F800000u, man = x & 0x007FFFFFu;
    if (exp == 0x7F800000u) {  // infinity or NaN
        const uint32_t nan_bit = man == 0 ? 0 : 0x0200u;
        return (uint16_t)((sign >> 16) | 0x7C00u | nan_bit | (man >> 13));
    }
    const uint32_t half_sign = sign >> 16;
    const int half_exp = (int)(exp >> 23) - 127 + 15;
    if (half_exp >= 0x1F) return (uint16_t)(half_sign | 0x7C00u);  // overflow to infinity
    if (half_exp <= 0) {                                          // subnormal or zero
        if (14 - half_exp > 24) return (uint16_t)half_sign;
        const uint32_t m = man | 0x00800000u;
        uint32_t half_man = m >> (14 - half_exp);
        const uint32_t round_bit = 1u << (13 - half_exp);
        if ((m & round_bit) != 0 && (m & (3 * round_bit - 1)) != 0) half_man += 1;
        return (uint16_t)(half_sign | half_man);
    }
    const uint32_t r = half_sign | ((uint32_t)half_exp << 10) | (man >> 13);
    const uint32_t round_bit = 0x00001000u;
    return (uint16_t)(((man & round_bit) != 0 && (man & (3 * round_bit - 1)) != 0) ? r + 1 : r);
}

inline float f16_bits_to_f32(uint16_t i) {
    if ((i & 0x7FFFu) == 0) return bits_f32((uint32_t)i << 16);
    const uint32_t half_sign = i & 0x8000u, half_exp = i & 0x7C00u, half_man = i & 0x03FFu;
    if (half_exp == 0x7C00u) {
        return half_man == 0 ? bits_f32((half_sign << 16) | 0x7F800000u)
                             : bits_f32((half_sign << 16) | 0x7FC00000u | (half_man << 13));
    }
    const uint32_t sign = half_sign << 16;
    if (half_exp == 0) {  // subnormal: normalize
        const int e = __builtin_clz(half_man) - 16 - 6;
        const uint32_t exp = (uint32_t)(127 - 15 - e) << 23;
        const uint32_t m = (half_man << (14 + e)) & 0x7FFFFFu;
        return bits_f32(sign | exp | m);
    }
    const uint32_t exp = (uint32_t)((int)(half_exp >> 10) - 15 + 127) << 23;
    return bits_f32(sign | exp | (half_man << 13));
}

inline uint16_t f32_to_bf16_bits(float value) {
    const uint32_t x = f32_bits(value);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((x >> 16) | 0x0040u);
    const uint32_t round_bit = 0x00008000u;
    if ((x & round_bit) != 0 && (x & (3 * round_bit - 1)) != 0) return (uint16_t)((x >> 16) + 1);
    return (uint16_t)(x >> 16);
}

inline float bf16_bits_to_f32(uint16_t i) {
    if ((i & 0x7FFFu) > 0x7F80u) return bits_f32(((uint32_t)i | 0x0040u) << 16);
    return bits_f32((uint32_t)i << 16);
}
}  // namespace emu

#define ORTHO_EMU_HALF_TYPE(T, TO_BITS, FROM_BITS)                                                   \
    struct __attribute__((aligned(2))) T {                                                           \
        uint16_t __x;                                                                                \
        T() = default;                                                                               \
        T(float f) : __x(emu::TO_BITS(f)) {}                                                         \
        T(double d) : __x(emu::TO_BITS((float)d)) {}                                                 \
        operator float() const { return emu::FROM_BITS(__x); }                                       \
        static T from_bits(uint16_t b) {                                                             \
            T h;                                                                                     \
            h.__x = b;                                                                               \
            return h;                                                                                \
        }                                                                                            \
        T& operator+=(T o) { return *this = T(float(*this) + float(o)); }                            \
        T& operator-=(T o) { return *this = T(float(*this) - float(o)); }                            \
        T& operator*=(T o) { return *this = T(float(*this) * float(o)); }                            \
        T& operator/=(T o) { return *this = T(float(*this) / float(o)); }                            \
    };                                                                                               \
    inline T operator+(T a, T b) { return T(float(a) + float(b)); }                                  \
    inline T operator-(T a, T b) { return T(float(a) - float(b)); }                                  \
    inline T operator*(T a, T b) { return T(float(a) * float(b)); }                                  \
    inline T operator/(T a, T b) { return T(float(a) / float(b)); }                                  \
    inline T operator-(T a) { return T::from_bits((uint16_t)(a.__x ^ 0x8000u)); }
ORTHO_EMU_HALF_TYPE(__half, f32_to_f16_bits, f16_bits_to_f32)
ORTHO_EMU_HALF_TYPE(__nv_bfloat16, f32_to_bf16_bits, bf16_bits_to_f32)
#undef ORTHO_EMU_HALF_TYPE
typedef __half half;
typedef __nv_bfloat16 nv_bfloat16;
static_assert(sizeof(__half) == 2 && std::is_trivially_copyable<__half>::value, "__half is 2 plain bytes");
static_assert(sizeof(__nv_bfloat16) == 2 && std::is_trivially_default_constructible<__nv_bfloat16>::value,
              "__nv_bfloat16 is 2 plain bytes");

inline __half __float2half(float f) { return __half(f); }
inline __half __float2half_rn(float f) { return __half(f); }
inline float __half2float(__half h) { return float(h); }
inline unsigned short __half_as_ushort(__half h) { return h.__x; }
inline __half __ushort_as_half(unsigned short b) { return __half::from_bits(b); }
inline __half __hadd(__half a, __half b) { return a + b; }
inline __half __hsub(__half a, __half b) { return a - b; }
inline __half __hmul(__half a, __half b) { return a * b; }
inline __half __hdiv(__half a, __half b) { return a / b; }
inline __half __hneg(__half a) { return -a; }
inline __half __hfma(__half a, __half b, __half c) { return __half(fmaf(float(a), float(b), float(c))); }

inline __nv_bfloat16 __float2bfloat16(float f) { return __nv_bfloat16(f); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16(f); }
inline float __bfloat162float(__nv_bfloat16 h) { return float(h); }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.__x; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short b) { return __nv_bfloat16::from_bits(b); }
