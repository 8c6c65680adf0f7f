//! Regularizers on the composite recurrent matrix `W`, added to the loss and to `dL/dW`.
//!
//! - Soft orthogonality: `lambda ||W^T W - I||_F^2`, gradient `4 lambda W (W^T W - I)`.
//! - Gain-adjusted orthogonality (Hlav 2019): `lambda ||W W^T / g^2 - I||_F^2`, gradient
//!   `(4 lambda / g^2) (W W^T / g^2 - I) W`. (The paper prints `4 lambda / g^4 W (W W^T - I)`, which
//!   drops a `g^2`, and its Keras snippet subtracts 1 from every entry instead of the identity; this is
//!   the formula, differentiated correctly.)
//! - Weight decay on the composite: `dW += wd W` (the paper's 1e-4).
//!
//! The mean-one Gaussian prior on the spectrum lives with the factorized parametrization, which owns
//! the spectrum `s`.

use crate::backend::{Backend, Epilogue, Gemm, Slice, SliceMut};
use crate::error::{Error, Result};
use crate::scalar::Scalar;

/// Regularization strengths (zero disables a term).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Regularizers {
    /// Soft orthogonality strength `lambda`.
    pub soft_orth: f64,
    /// Gain-adjusted orthogonality `(lambda, g)`.
    pub gain_orth: Option<(f64, f64)>,
    /// Mean-one Gaussian prior on the singular values (factorized model).
    pub spectrum_prior: f64,
    /// Weight decay on the composite `W`.
    pub weight_decay: f64,
}

impl Regularizers {
    /// Checks strengths are finite and non-negative and the gain positive.
    pub fn validate(&self) -> Result<()> {
        let check = |name: &'static str, v: f64| {
            if v.is_finite() && v >= 0.0 { Ok(()) } else { Err(Error::invalid(name, v, "must be finite and >= 0")) }
        };
        check("--reg soft-orth", self.soft_orth)?;
        check("--reg spectrum-prior", self.spectrum_prior)?;
        check("--weight-decay", self.weight_decay)?;
        if let Some((l, g)) = self.gain_orth {
            check("--reg gain-orth", l)?;
            if !(g > 0.0 && g.is_finite()) {
                return Err(Error::invalid("--reg gain-orth g", g, "the gain must be positive"));
            }
        }
        Ok(())
    }

    /// Whether `apply` reads nothing back (only weight decay, or nothing, is on): a captured graph can
    /// replay it.
    pub fn graph_safe(&self) -> bool {
        self.soft_orth <= 0.0 && self.gain_orth.is_none_or(|(l, _)| l <= 0.0)
    }

    /// Adds the composite-`W` terms to `dw`; returns the loss they add. `scratch` holds `n * n`.
    pub fn apply<B: Backend>(
        &self,
        b: &B,
        w: Slice<B>,
        mut dw: SliceMut<B>,
        n: usize,
        scratch: &mut B::Buf,
    ) -> Result<f64> {
        let one = B::Elem::ONE;
        let mut loss = 0.0;
        if self.soft_orth > 0.0 {
            // M = W^T W - I; loss = lambda ||M||_F^2; dW += 4 lambda W M.
            let mut m = SliceMut::<B>::all(scratch).sub(0, n * n);
            b.gemm(&Gemm::new(n, n, n).ta(), w, w, m.rb(), Epilogue::none())?;
            b.add_diag(m.rb(), n, -one)?;
            loss += self.soft_orth * b.sum_sq(m.as_ref())?;
            let g = Gemm::new(n, n, n).alpha(B::Elem::of(4.0 * self.soft_orth)).beta(one);
            b.gemm(&g, w, m.as_ref(), dw.rb(), Epilogue::none())?;
        }
        if let Some((lambda, gain)) = self.gain_orth.filter(|&(l, _)| l > 0.0) {
            // M = W W^T / g^2 - I; loss = lambda ||M||_F^2; dW += (4 lambda / g^2) M W.
            let g2 = gain * gain;
            let mut m = SliceMut::<B>::all(scratch).sub(0, n * n);
            b.gemm(&Gemm::new(n, n, n).tb().alpha(B::Elem::of(1.0 / g2)), w, w, m.rb(), Epilogue::none())?;
            b.add_diag(m.rb(), n, -one)?;
            loss += lambda * b.sum_sq(m.as_ref())?;
            let g = Gemm::new(n, n, n).alpha(B::Elem::of(4.0 * lambda / g2)).beta(one);
            b.gemm(&g, m.as_ref(), w, dw.rb(), Epilogue::none())?;
        }
        if self.weight_decay > 0.0 {
            b.axpby(B::Elem::of(self.weight_decay), w, one, dw.rb())?;
        }
        Ok(loss)
    }
}
