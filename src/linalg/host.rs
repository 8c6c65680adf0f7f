//! Diagnostics of host matrices: singular values and orthogonality drift of a row-major `n x n`
//! `&[f64]`, such as the recurrent matrix from [`crate::nn::Model::recurrent_matrix`] or a tensor
//! read from a checkpoint. No backend and no upload: faer computes in f64 on the host.

use crate::error::{Error, Result};
use faer::MatRef;

/// Checks that `m` holds `n * n` finite entries.
fn check(op: &'static str, m: &[f64], n: usize) -> Result<()> {
    if m.len() != n * n {
        return Err(Error::invalid(
            "matrix",
            format!("{} entries", m.len()),
            format!("{op} takes a row-major n x n matrix: n = {n} needs {} entries", n * n),
        ));
    }
    if let Some(bad) = m.iter().find(|x| !x.is_finite()) {
        return Err(Error::invalid("matrix", bad, format!("{op} needs finite entries")));
    }
    Ok(())
}

/// The singular values of the row-major `n x n` host matrix `m`, largest first.
///
/// ```
/// use ortho_rnn::linalg::singular_values_host;
/// // diag(3, -1): singular values are the absolute values of the diagonal, sorted.
/// let s = singular_values_host(&[3.0, 0.0, 0.0, -1.0], 2)?;
/// assert!((s[0] - 3.0).abs() < 1e-12 && (s[1] - 1.0).abs() < 1e-12);
/// # Ok::<(), ortho_rnn::Error>(())
/// ```
pub fn singular_values_host(m: &[f64], n: usize) -> Result<Vec<f64>> {
    check("singular_values_host", m, n)?;
    if n == 0 {
        return Ok(Vec::new());
    }
    MatRef::from_row_major_slice(m, n, n)
        .singular_values()
        .map_err(|e| Error::invalid("matrix", format!("{n} x {n}"), format!("the SVD did not converge ({e:?})")))
}

/// `max |M^T M - I|` of the row-major `n x n` host matrix `m`: 0 for an orthogonal matrix.
///
/// ```
/// use ortho_rnn::linalg::drift_host;
/// let (c, s) = (0.3f64.cos(), 0.3f64.sin());
/// assert!(drift_host(&[c, -s, s, c], 2)? < 1e-15); // a rotation
/// assert!((drift_host(&[2.0, 0.0, 0.0, 1.0], 2)? - 3.0).abs() < 1e-15); // 2^2 - 1
/// # Ok::<(), ortho_rnn::Error>(())
/// ```
pub fn drift_host(m: &[f64], n: usize) -> Result<f64> {
    check("drift_host", m, n)?;
    let mut worst = 0.0f64;
    for i in 0..n {
        for j in 0..n {
            // (M^T M)_{ij} = sum_k M_ki M_kj
            let g: f64 = (0..n).map(|k| m[k * n + i] * m[k * n + j]).sum();
            worst = worst.max((g - if i == j { 1.0 } else { 0.0 }).abs());
        }
    }
    Ok(worst)
}
