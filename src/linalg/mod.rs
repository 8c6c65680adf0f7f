//! Linear algebra: Cayley transform via LU, Pade expm and its adjoint, skew helpers, QR, SVD.
//!
//! Everything except the host-side QR and SVD is generic over [`Backend`] and composed from its
//! primitives (`gemm`, `axpby`, `add_diag`, `skew`, `transpose`, `norm1`, `max_abs`, `lu_factor`,
//! `lu_solve`, `copy`). Matrices are row-major, contiguous `n x n` views ([`Slice`], [`SliceMut`]).
//!
//! | stage | file | what |
//! |---|---|---|
//! | Pade tables | [`pade`] | coefficients, `theta_m` / `ell_m` thresholds, choice of degree and scaling |
//! | `exp(A)` | [`expm`](mod@expm) | scaling and squaring with a diagonal Pade approximant (Higham 2005) |
//! | `L_exp(A^T, G)` | [`frechet`] | adjoint Frechet derivative (Al-Mohy & Higham 2009, Algorithm 6.4) |
//! | Cayley | [`cayley`] | geodesic step on O(n), Cayley transform and the scoRNN backward |
//! | skew | [`skew`] | `(X - X^T)/2`, skewness checks |
//! | orthogonality | [`orth`] | drift `‖MᵀM - I‖_max`, QR re-orthogonalization, orthogonal init |
//! | SVD | [`svd`] | singular values on the host (diagnostics) |
//! | host matrices | [`host`] | singular values and drift of a `&[f64]`, no backend |
//!
//! Workspace structs ([`Expm`], [`ExpmFrechet`], [`CayleyStep`], [`Scornn`]) own every `n x n`
//! buffer an evaluation needs, so a training loop that keeps one calls them each step without
//! allocating device memory (the backend's LU object is the one allocation left; see
//! [`CayleyStep`]). The free functions ([`expm()`], [`expm_frechet_adjoint`], [`cayley_step`], ...)
//! build a workspace per call, for one-off use and tests.

pub mod cayley;
pub mod expm;
pub mod frechet;
pub mod host;
pub mod orth;
pub mod pade;
pub mod skew;
pub mod svd;

pub use cayley::{CayleyForm, CayleyStep, DriftGuard, Scornn, cayley_step, cayley_transform, scornn_grad};
pub use expm::{Expm, expm};
pub use frechet::{ExpmFrechet, FrechetPair, expm_frechet, expm_frechet_adjoint, expm_frechet_adjoint_block};
pub use host::{drift_host, singular_values_host};
pub use orth::{drift, orthogonal_from_gaussian, reorthogonalize};
pub use pade::{PadeChoice, choose_expm, choose_frechet};
pub use skew::{is_skew, skew_defect, skew_part};
pub use svd::singular_values;

use crate::backend::{Backend, Epilogue, Gemm, Slice, SliceMut};
use crate::error::{Error, Result};
use crate::scalar::Scalar;

/// `C = alpha op(X) op(Y) + beta C` for whole `n x n` buffers.
#[allow(clippy::too_many_arguments)]
fn mm<B: Backend>(
    b: &B,
    n: usize,
    alpha: f64,
    x: &B::Buf,
    tx: bool,
    y: &B::Buf,
    ty: bool,
    beta: f64,
    c: &mut B::Buf,
) -> Result<()> {
    let mut g = Gemm::new(n, n, n).alpha(B::Elem::of(alpha)).beta(B::Elem::of(beta));
    g.trans_a = tx;
    g.trans_b = ty;
    b.gemm(&g, Slice::all(x), Slice::all(y), SliceMut::all(c), Epilogue::none())
}

/// `out = sum_i c_i X_i + d I` for whole `n x n` buffers ([`Backend::lincomb`]).
fn lincomb<B: Backend>(b: &B, n: usize, out: &mut B::Buf, terms: &[(f64, &B::Buf)], d: f64) -> Result<()> {
    let terms: Vec<(B::Elem, Slice<B>)> = terms.iter().map(|&(c, x)| (B::Elem::of(c), Slice::all(x))).collect();
    b.lincomb(n, &terms, B::Elem::of(d), SliceMut::all(out))
}

/// `n x n` zero buffers.
fn square_zeros<B: Backend, const K: usize>(b: &B, n: usize) -> Result<[B::Buf; K]> {
    let mut v = Vec::with_capacity(K);
    for _ in 0..K {
        v.push(b.zeros(n * n)?);
    }
    v.try_into().map_err(|_| Error::shape("square_zeros", K, "another count"))
}

/// An error for a matrix with a NaN or an infinity.
fn non_finite(op: &'static str) -> Error {
    Error::invalid("matrix", "a NaN or an infinity", format!("{op} needs finite entries"))
}
