//! Singular values for diagnostics (spectrum plots, the spectral margin of factorized cells).
//!
//! Downloads the matrix and runs faer's SVD on the host in f64 (values only, nonincreasing). It is
//! an O(n^3) diagnostic meant for once per epoch, not for the training step.

use crate::backend::{Backend, Slice};
use crate::error::{Error, Result};
use crate::scalar::Scalar;
use faer::{Mat, MatRef};

/// The singular values of the `n x n` matrix `m` (a device buffer), largest first. For a host
/// `&[f64]`, [`crate::linalg::singular_values_host`] needs no backend.
///
/// ```
/// use ortho_rnn::backend::{Backend, Slice, cpu::Cpu};
/// let b = Cpu::<f32>::new(1);
/// let m = b.upload(&[0.0, 2.0, -3.0, 0.0])?; // a permutation times diag(2, -3)
/// let s = ortho_rnn::linalg::singular_values(&b, Slice::all(&m), 2)?;
/// assert!((s[0] - 3.0).abs() < 1e-12 && (s[1] - 2.0).abs() < 1e-12);
/// # Ok::<(), ortho_rnn::Error>(())
/// ```
pub fn singular_values<B: Backend>(b: &B, m: Slice<B>, n: usize) -> Result<Vec<f64>> {
    m.check("singular_values", n * n)?;
    let host: Vec<f64> = b.download(m)?.iter().map(|x| x.f64()).collect();
    super::host::singular_values_host(&host, n)
}

/// The full SVD `A = U diag(s) V^T` of a row-major `n x n` host matrix, in f64: `(U, s, V)` with
/// `U` and `V` row-major and `s` nonincreasing. Used to start a factorized model from a given matrix.
pub fn svd(a: &[f64], n: usize) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    if a.len() != n * n {
        return Err(Error::shape("svd", format!("{} elements", n * n), a.len()));
    }
    if let Some(bad) = a.iter().find(|x| !x.is_finite()) {
        return Err(Error::invalid("matrix", bad, "svd needs finite entries"));
    }
    if n == 0 {
        return Ok((Vec::new(), Vec::new(), Vec::new()));
    }
    let d = MatRef::from_row_major_slice(a, n, n)
        .svd()
        .map_err(|e| Error::invalid("matrix", format!("{n} x {n}"), format!("the SVD did not converge ({e:?})")))?;
    let row_major = |m: MatRef<'_, f64>| -> Vec<f64> {
        let owned: Mat<f64> = m.to_owned();
        (0..n).flat_map(|i| (0..n).map(move |j| (i, j))).map(|(i, j)| owned[(i, j)]).collect()
    };
    let s: Vec<f64> = d.S().column_vector().iter().copied().collect();
    Ok((row_major(d.U()), s, row_major(d.V())))
}
