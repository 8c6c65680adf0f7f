//! Branch-free, vectorizable `tanh` and `exp` for f32.
//!
//! libm's `tanhf` and `expf` cost 20-60 ns a call and do not vectorize; the recurrence applies
//! `tanh` to `T * B * n` values per pass (about 770,000 per copy-task iteration at hidden 128), which
//! made the activation, not the GEMMs, the CPU backend's bottleneck. These approximations compile to
//! straight-line SIMD code; the hot loops that use them are compiled twice, for the baseline and
//! for AVX2 (chosen at run time, see [`dispatch`]).
//!
//! - `tanh`: the odd/even rational minimax approximation of degree 13/6 on `[-7.905, 7.905]` used by
//!   Eigen's `ptanh` (outside, `tanh` rounds to ±1 in f32), and `tanh(x) = x` for `|x| < 4e-4`.
//!   Measured maximum error against f64 `tanh`: see the unit tests (a few ulp).
//! - `exp`: Cody-Waite range reduction `x = k ln 2 + r`, `|r| <= ln 2 / 2`, a degree-6 Taylor/minimax
//!   polynomial for `exp(r)`, and `2^k` built in the exponent bits; inputs are clamped to
//!   `[-87.3, 88.7]` (results within f32's normal range; `exp` of anything lower is treated as
//!   `exp(-87.3) ~ 1.2e-38`, which softmax and sigmoid absorb).
//!
//! f64 keeps the standard library's functions: gradient checks run in f64 at 1e-6 relative error.

/// `tanh(x)` for f32 (see the module docs).
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    const CLAMP: f32 = 7.905_311;
    const A1: f32 = 4.893_524_6e-3;
    const A3: f32 = 6.372_619_3e-4;
    const A5: f32 = 1.485_722_4e-5;
    const A7: f32 = 5.122_297e-8;
    const A9: f32 = -8.604_672e-11;
    const A11: f32 = 2.000_188e-13;
    const A13: f32 = -2.760_768_5e-16;
    const B0: f32 = 4.893_525e-3;
    const B2: f32 = 2.268_434_6e-3;
    const B4: f32 = 1.185_347_1e-4;
    const B6: f32 = 1.198_258_4e-6;
    let tiny = x.abs() < 4e-4;
    let xc = x.clamp(-CLAMP, CLAMP);
    let x2 = xc * xc;
    // Plain multiply-adds: `mul_add` would be a libm call on CPUs without FMA.
    let mut p = x2 * A13 + A11;
    p = x2 * p + A9;
    p = x2 * p + A7;
    p = x2 * p + A5;
    p = x2 * p + A3;
    p = x2 * p + A1;
    p *= xc;
    let mut q = x2 * B6 + B4;
    q = x2 * q + B2;
    q = x2 * q + B0;
    if tiny { x } else { p / q }
}

/// `exp(x)` for f32 (see the module docs).
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Round to nearest with the 1.5 * 2^23 trick (vectorizes without SSE4.1's round instruction).
    const SHIFT: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.7);
    let k = (x * LOG2E + SHIFT) - SHIFT;
    let r = (x - k * LN2_HI) - k * LN2_LO;
    // exp(r) on |r| <= 0.347: Cephes expf coefficients.
    let mut p = r * 1.987_569_1e-4 + 1.398_199_9e-3;
    p = r * p + 8.333_452e-3;
    p = r * p + 4.166_579_6e-2;
    p = r * p + 0.166_666_66;
    p = r * p + 0.5;
    let er = (r * r) * p + r + 1.0;
    let bits = ((k as i32 + 127) as u32) << 23;
    er * f32::from_bits(bits)
}

/// `1 / (1 + exp(-x))`, accurate in relative terms on both tails (the form `(1 + tanh(x/2)) / 2`
/// would cancel for very negative `x`).
#[inline(always)]
pub fn sigmoid_f32(x: f32) -> f32 {
    1.0 / (1.0 + exp_f32(-x))
}

/// Whether AVX2+FMA code paths may run on this CPU.
#[inline]
pub fn dispatch() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f64) -> f64 {
        let b32 = b as f32;
        let ulp = (f32::from_bits(b32.abs().to_bits() + 1) - b32.abs()) as f64;
        (a as f64 - b).abs() / ulp.max(f32::MIN_POSITIVE as f64)
    }

    #[test]
    fn tanh_is_within_a_few_ulp() {
        let mut worst: f64 = 0.0;
        let mut x = -12.0f32;
        while x <= 12.0 {
            worst = worst.max(ulps(tanh_f32(x), (x as f64).tanh()));
            x += 1.37e-4;
        }
        for x in [0.0f32, 1e-30, -1e-8, 3.9e-4, 4.1e-4, 7.9, 8.0, 100.0, -100.0] {
            worst = worst.max(ulps(tanh_f32(x), (x as f64).tanh()));
        }
        assert!(worst <= 8.0, "max error {worst} ulp");
    }

    #[test]
    fn exp_is_within_a_few_ulp() {
        let mut worst: f64 = 0.0;
        let mut x = -80.0f32;
        while x <= 80.0 {
            worst = worst.max(ulps(exp_f32(x), (x as f64).exp()));
            x += 3.1e-3;
        }
        assert!(worst <= 4.0, "max error {worst} ulp");
        assert!(exp_f32(-200.0) < 1e-37 && exp_f32(-200.0) >= 0.0);
        assert!(exp_f32(0.0) == 1.0);
    }

    #[test]
    fn sigmoid_is_accurate_in_relative_terms_on_both_tails() {
        let mut x = -40.0f32;
        while x <= 40.0 {
            let want = 1.0 / (1.0 + (-(x as f64)).exp());
            assert!(ulps(sigmoid_f32(x), want) <= 8.0, "x = {x}: {} vs {want}", sigmoid_f32(x));
            x += 1e-2;
        }
    }
}
