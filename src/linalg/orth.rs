//! Orthogonality: drift, QR re-orthogonalization, and orthogonal matrices from Gaussian data.
//!
//! # Maths
//! The drift of `M` is `‖M^T M - I‖_max` (largest absolute entry); an orthogonal matrix has drift
//! `0`, and a geodesic step in f32 adds `O(eps)` per step.
//!
//! Re-orthogonalization replaces `M = QR` by `Q D`, `D = diag(sign(r_ii))` (with `sign(0) = 1`):
//! the sign fix makes `R`'s diagonal positive, so for a nearly orthogonal `M`,
//! `R = I + O(drift)` and the repaired matrix is `M R^{-1} = M + O(drift)`. Without it, Householder
//! QR may flip columns and the "repair" would jump across the group. The QR runs on the host in
//! f64 (faer's blocked Householder QR) after a download: it is an occasional O(n^3) repair, not a
//! per-step operation.
//!
//! [`orthogonal_from_gaussian`] is the same sign-fixed QR applied to a square matrix of i.i.d.
//! normal entries, which gives a Haar-distributed orthogonal matrix (Mezzadri 2007): the
//! "orthogonal" initialization.

use crate::backend::{Backend, Epilogue, Gemm, Slice, SliceMut};
use crate::error::{Error, Result};
use crate::scalar::Scalar;
use faer::MatRef;

/// `‖M^T M - I‖_max` for an `n x n` matrix `M` (allocates one `n x n` buffer; a [`super::CayleyStep`]
/// measures it in its own workspace). NaN when `M` has a NaN or an infinity.
pub fn drift<B: Backend>(b: &B, m: Slice<B>, n: usize) -> Result<f64> {
    let mut t = b.zeros(n * n)?;
    drift_into(b, m, n, &mut t)
}

/// [`drift`] using a caller's `n x n` buffer `t` as scratch.
pub(super) fn drift_into<B: Backend>(b: &B, m: Slice<B>, n: usize, t: &mut B::Buf) -> Result<f64> {
    m.check("drift", n * n)?;
    if n == 0 {
        return Ok(0.0);
    }
    let g = Gemm::new(n, n, n).ta();
    b.gemm(&g, m, m, SliceMut::all(t), Epilogue::none())?;
    b.add_diag(SliceMut::all(t), n, B::Elem::of(-1.0))?;
    // `max_abs` may skip NaNs (a max over floats does); the sum of squares propagates them.
    if b.sum_sq(Slice::all(t))?.is_nan() {
        return Ok(f64::NAN);
    }
    b.max_abs(Slice::all(t))
}

/// Replaces `M` by the sign-fixed orthogonal factor of its QR decomposition (host, f64).
///
/// A nearly orthogonal `M` moves by `O(‖M^T M - I‖)`. Errors on non-finite entries.
pub fn reorthogonalize<B: Backend>(b: &B, m: SliceMut<B>, n: usize) -> Result<()> {
    m.check("reorthogonalize", n * n)?;
    let host: Vec<f64> = b.download(m.as_ref())?.iter().map(|x| x.f64()).collect();
    let q = qr_q_sign_fixed("reorthogonalize", &host, n)?;
    let back: Vec<B::Elem> = q.iter().map(|&x| B::Elem::of(x)).collect();
    b.write(m, &back)
}

/// The sign-fixed `Q` of the QR decomposition of the row-major `n x n` matrix `data`. With i.i.d.
/// standard normal `data`, `Q` is Haar-distributed on O(n). Row-major output.
pub fn orthogonal_from_gaussian(data: &[f64], n: usize) -> Result<Vec<f64>> {
    if n.checked_mul(n) != Some(data.len()) {
        return Err(Error::shape("orthogonal_from_gaussian", format!("{n} x {n} = {} values", n * n), data.len()));
    }
    qr_q_sign_fixed("orthogonal_from_gaussian", data, n)
}

/// `Q diag(sign(r_ii))` for `data = QR` (row-major, `n x n`, length already checked).
fn qr_q_sign_fixed(op: &'static str, data: &[f64], n: usize) -> Result<Vec<f64>> {
    if let Some(bad) = data.iter().find(|x| !x.is_finite()) {
        return Err(Error::invalid("matrix", bad, format!("{op} needs finite entries")));
    }
    if n == 0 {
        return Ok(Vec::new());
    }
    let qr = MatRef::from_row_major_slice(data, n, n).qr();
    let (q, r) = (qr.compute_Q(), qr.R());
    let mut out = vec![0.0; n * n];
    for j in 0..n {
        let sign = if r[(j, j)] < 0.0 { -1.0 } else { 1.0 };
        for i in 0..n {
            out[i * n + j] = sign * q[(i, j)];
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::Cpu;

    #[test]
    fn qr_of_an_orthogonal_matrix_is_itself() {
        // A rotation by 0.3 embedded in 3 x 3, with a reflected last axis.
        let (c, s) = (0.3f64.cos(), 0.3f64.sin());
        let m = [c, -s, 0.0, s, c, 0.0, 0.0, 0.0, -1.0];
        let q = orthogonal_from_gaussian(&m, 3).unwrap();
        // Column 3 has r_33 = -1 after Householder, so the sign fix returns M itself.
        for (a, b) in q.iter().zip(m) {
            assert!((a - b).abs() < 1e-15, "{q:?}");
        }
        let b = Cpu::<f64>::new(1);
        let buf = b.upload(&q).unwrap();
        assert!(drift(&b, Slice::all(&buf), 3).unwrap() < 1e-15);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(orthogonal_from_gaussian(&[1.0, 2.0, 3.0], 2).is_err());
        assert!(orthogonal_from_gaussian(&[1.0, f64::NAN, 0.0, 1.0], 2).is_err());
        assert_eq!(orthogonal_from_gaussian(&[], 0).unwrap(), Vec::<f64>::new());
    }
}
