//! The matrix exponential by scaling and squaring with diagonal Pade approximants.
//!
//! # Maths
//! `exp(A) = r_m(2^{-s} A)^{2^s}` with `r_m(X) = (V - U)^{-1} (V + U)` (see [`super::pade`] for
//! `U`, `V`, the coefficients and the `theta_m` thresholds that pick `m` and `s` from `‖A‖_1`;
//! Higham 2005, "The scaling and squaring method for the matrix exponential revisited",
//! Algorithm 2.3). Cost in `n x n` products: `m = 3, 5, 7, 9, 13` take 2, 3, 4, 5, 6 products
//! (the last is `U = X W`), plus one LU factorization and one solve with `n` right-hand sides,
//! plus `s` squarings.
//!
//! # Assumptions
//! Entries are finite (a NaN or infinity is an [`Error::InvalidArg`](crate::Error)). The backward
//! error is at the unit roundoff of the element type; forward error grows with the condition of
//! `exp` at `A` (benign for skew `A`, where `exp(A)` is orthogonal: `‖exp(A)^T exp(A) - I‖`
//! is a free check).

use super::pade::{PadeChoice, PadeWork, choose_expm};
use crate::backend::{Backend, Slice, SliceMut};
use crate::error::Result;

/// Workspace for `exp(A)` of one size `n`: eight `n x n` buffers in single precision, eleven in
/// double (degrees 9 and 13), allocated once.
pub struct Expm<B: Backend> {
    work: PadeWork<B>,
}

impl<B: Backend> Expm<B> {
    /// Allocates the workspace for `n x n` matrices.
    pub fn new(b: &B, n: usize) -> Result<Self> {
        Ok(Expm { work: PadeWork::new(b, n)? })
    }

    /// The matrix size this workspace serves.
    pub fn n(&self) -> usize {
        self.work.n
    }

    /// Writes `exp(A)` to `out` (`A`, `out`: `n x n`) and returns the degree and scaling used.
    pub fn compute(&mut self, b: &B, a: Slice<B>, out: SliceMut<B>) -> Result<PadeChoice> {
        self.compute_op(b, a, false, out)
    }

    /// Writes `exp(A^T)` to `out` (used for the adjoint: `exp(A)^T = exp(A^T)`).
    pub fn compute_transposed(&mut self, b: &B, a: Slice<B>, out: SliceMut<B>) -> Result<PadeChoice> {
        self.compute_op(b, a, true, out)
    }

    fn compute_op(&mut self, b: &B, a: Slice<B>, transpose: bool, out: SliceMut<B>) -> Result<PadeChoice> {
        let n = self.work.n;
        out.check("expm(out)", n * n)?;
        let w = &mut self.work;
        let choice = w.load(b, a, transpose, "expm", choose_expm::<B::Elem>)?;
        if n == 0 {
            return Ok(choice);
        }
        w.powers(b, choice.degree)?;
        w.eval_uv(b, choice.degree)?;
        w.solve_r(b)?;
        for _ in 0..choice.squarings {
            w.square_r(b)?;
        }
        b.copy(Slice::all(&w.v), out)?;
        Ok(choice)
    }
}

/// `exp(A)` for an `n x n` matrix `A` (allocates a workspace; keep an [`Expm`] to reuse one).
///
/// ```
/// use ortho_rnn::backend::{Backend, Slice, cpu::Cpu};
/// // exp of the skew [[0, -t], [t, 0]] is the rotation by t.
/// let (b, t) = (Cpu::<f64>::new(1), 0.5f64);
/// let e = ortho_rnn::linalg::expm(&b, Slice::all(&b.upload(&[0.0, -t, t, 0.0])?), 2)?;
/// let want = [t.cos(), -t.sin(), t.sin(), t.cos()];
/// assert!(b.download(Slice::all(&e))?.iter().zip(want).all(|(x, y)| (x - y).abs() < 1e-15));
/// # Ok::<(), ortho_rnn::Error>(())
/// ```
pub fn expm<B: Backend>(b: &B, a: Slice<B>, n: usize) -> Result<B::Buf> {
    let mut out = b.zeros(n * n)?;
    Expm::new(b, n)?.compute(b, a, SliceMut::all(&mut out))?;
    Ok(out)
}
