//! Floating-point element types: `f32` for training, `f64` for gradient checks.

use std::fmt::{Debug, Display};

/// A real floating-point element that every backend op is defined over.
///
/// `f32` is what training runs in on every backend; `f64` exists on the CPU backend so that
/// gradients can be checked against central finite differences at 1e-6 relative error.
pub trait Scalar:
    num_traits::Float
    + faer::traits::RealField
    + bytemuck::Pod
    + Default
    + Debug
    + Display
    + Send
    + Sync
    + std::iter::Sum
    + 'static
{
    /// `"f32"` or `"f64"`.
    const NAME: &'static str;
    /// 0.
    const ZERO: Self;
    /// 1.
    const ONE: Self;
    /// Converts from `f64`, rounding.
    fn of(x: f64) -> Self;
    /// Widens to `f64`.
    fn f64(self) -> f64;
    /// `tanh`: vectorizable approximation in f32 (a few ulp), the standard library's in f64.
    fn tanh_fast(self) -> Self;
    /// `exp`: vectorizable approximation in f32 (a few ulp), the standard library's in f64.
    fn exp_fast(self) -> Self;
    /// The logistic function `1 / (1 + exp(-x))`.
    fn sigmoid(self) -> Self;
}

impl Scalar for f32 {
    const NAME: &'static str = "f32";
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    #[inline(always)]
    fn of(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn tanh_fast(self) -> Self {
        crate::fastmath::tanh_f32(self)
    }
    #[inline(always)]
    fn exp_fast(self) -> Self {
        crate::fastmath::exp_f32(self)
    }
    #[inline(always)]
    fn sigmoid(self) -> Self {
        crate::fastmath::sigmoid_f32(self)
    }
}

impl Scalar for f64 {
    const NAME: &'static str = "f64";
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    #[inline(always)]
    fn of(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn tanh_fast(self) -> Self {
        self.tanh()
    }
    #[inline(always)]
    fn exp_fast(self) -> Self {
        self.exp()
    }
    #[inline(always)]
    fn sigmoid(self) -> Self {
        1.0 / (1.0 + (-self).exp())
    }
}
