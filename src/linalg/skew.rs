//! Skew-symmetric helpers.
//!
//! The skew part of `X` is `(X - X^T) / 2`: the orthogonal projection, under the trace inner
//! product, onto the skew-symmetric matrices (the Lie algebra so(n), tangent space of O(n) at `I`).
//! A gradient `Z` with respect to an unconstrained `A` becomes a gradient on the skew matrices by
//! this projection; with the upper-triangle convention (independent entries `a_ij`, `i < j`) it is
//! twice the projection, `Z - Z^T`. The skew defect `‖X + X^T‖_max` is `0` exactly for skew `X`.

use crate::backend::{Backend, Slice, SliceMut};
use crate::error::Result;
use crate::scalar::Scalar;

/// `out = (X - X^T) / 2` (`out` must not alias `X`).
pub fn skew_part<B: Backend>(b: &B, x: Slice<B>, n: usize, out: SliceMut<B>) -> Result<()> {
    b.skew(x, n, B::Elem::of(0.5), out)
}

/// `‖X + X^T‖_max`: `0` for an exactly skew-symmetric `X` (allocates one `n x n` buffer).
pub fn skew_defect<B: Backend>(b: &B, x: Slice<B>, n: usize) -> Result<f64> {
    x.check("skew_defect", n * n)?;
    let mut t = b.zeros(n * n)?;
    b.transpose(x, n, n, SliceMut::all(&mut t))?;
    b.axpby(B::Elem::of(1.0), x, B::Elem::of(1.0), SliceMut::all(&mut t))?;
    b.max_abs(Slice::all(&t))
}

/// True when `‖X + X^T‖_max <= tol`.
pub fn is_skew<B: Backend>(b: &B, x: Slice<B>, n: usize, tol: f64) -> Result<bool> {
    Ok(skew_defect(b, x, n)? <= tol)
}
