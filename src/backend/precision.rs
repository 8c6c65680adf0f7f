//! The arithmetic of a backend's matrix products: exact f32, or tensor-core TF32 / BF16 operands with f32
//! accumulation (`--precision`).
//!
//! A product `C = op(A) op(B)` with `k` terms computed from operands rounded to a format of unit roundoff
//! `u_op` and accumulated in f32 (`u = 2^-24`) satisfies, element-wise,
//! `|C - C_exact| <= (2 u_op + u_op^2 + k u) (|A| |B|)`:
//!
//! | precision | operand format | `u_op` | bound for `k = 1000` | where |
//! |---|---|---|---|---|
//! | `fp32` | f32 (SIMT FMA) | `2^-24` = 6.0e-8 | 6.0e-5 | every backend (default) |
//! | `tf32` | TF32: 10 mantissa bits, round to nearest (ties away) | `2^-11` = 4.9e-4 | 1.04e-3 | CUDA and emu tensor-core kernels |
//! | `bf16` | BF16: 7 mantissa bits, round to nearest even | `2^-8` = 3.9e-3 | 7.9e-3 | CUDA and emu tensor-core kernels |
//!
//! (The typical error is far smaller, about `sqrt(k)` times the unit roundoff of the terms, since
//! rounding errors of independent operands cancel; the parity tests check the rigorous bound and, with
//! operands exactly representable in the format, the f32 bound.)
//!
//! # Which products use it
//! Only products marked [`Gemm::allow_reduced`](super::Gemm) (and the recurrent step products of the
//! sequence ops): the network's own products, i.e. the input projection, the recurrent steps forward and
//! backward, the readout and the gradients `dW`, `dW_in`, `dW_o`, `dH`. These are recomputed from fresh
//! operands at every iteration, and their rounding errors act like gradient noise well below the
//! minibatch noise. Everything that builds or maintains the recurrent matrix stays in f32: the
//! parametrizations (`U diag(s) V^T`, `B exp(A)`, the Cayley transform and its LU), the Padé `expm` and
//! its Fréchet derivative, orthogonality checks and regularizers. Their errors compound across steps: a
//! Cayley step computed with TF32 products leaves `||M^T M - I||` near `1e-3` after one step instead of
//! `1e-7`, and the geodesic update would re-orthogonalize at every step. The CPU backend computes in f32
//! only and refuses the reduced precisions.

use serde::{Deserialize, Serialize};

/// The arithmetic of the reduced-precision-tolerant matrix products.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 operands and f32 FMA accumulation (the exact path; every backend).
    #[default]
    Fp32,
    /// Tensor cores with TF32 operands (10 mantissa bits), f32 accumulation (CUDA and emu).
    Tf32,
    /// Tensor cores with BF16 operands (7 mantissa bits), f32 accumulation (CUDA and emu).
    Bf16,
}

impl Precision {
    /// Every precision, for tests and sweeps.
    pub const ALL: [Precision; 3] = [Precision::Fp32, Precision::Tf32, Precision::Bf16];

    /// The flag value (`fp32`, `tf32`, `bf16`).
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Tf32 => "tf32",
            Precision::Bf16 => "bf16",
        }
    }

    /// Unit roundoff of the operand format.
    pub fn unit_roundoff(self) -> f64 {
        match self {
            Precision::Fp32 => 2f64.powi(-24),
            Precision::Tf32 => 2f64.powi(-11),
            Precision::Bf16 => 2f64.powi(-8),
        }
    }

    /// The element-wise error bound of a `k`-term product relative to `(|A| |B|)_ij` (module docs).
    pub fn product_error_bound(self, k: usize) -> f64 {
        let u = self.unit_roundoff();
        let acc = if self == Precision::Fp32 { 0.0 } else { 2.0 * u + u * u };
        acc + k as f64 * 2f64.powi(-24)
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_bounds() {
        let names: Vec<&str> = Precision::ALL.iter().map(|p| p.as_str()).collect();
        assert_eq!(names, ["fp32", "tf32", "bf16"]);
        assert_eq!(serde_json::to_string(&Precision::Tf32).unwrap(), "\"tf32\"");
        assert_eq!(serde_json::from_str::<Precision>("\"bf16\"").unwrap(), Precision::Bf16);
        assert_eq!(Precision::default(), Precision::Fp32);
        // The table in the module docs.
        assert!((Precision::Fp32.product_error_bound(1000) - 6.0e-5).abs() < 1e-6);
        assert!((Precision::Tf32.product_error_bound(1000) - 1.037e-3).abs() < 1e-6);
        assert!((Precision::Bf16.product_error_bound(1000) - 7.9e-3).abs() < 1e-4);
    }
}
