//! Singular values for diagnostics (spectrum plots, the spectral margin of factorized cells).
//!
//! Downloads the matrix and runs faer's SVD on the host in f64 (values only, nonincreasing). It is
//! an O(n^3) diagnostic meant for once per epoch, not for the training step.

use crate::backend::{Backend, Slice};
use crate::error::{Error, Result};
use crate::scalar::Scalar;
use faer::MatRef;

/// The singular values of the `n x n` matrix `m`, largest first.
pub fn singular_values<B: Backend>(b: &B, m: Slice<B>, n: usize) -> Result<Vec<f64>> {
    m.check("singular_values", n * n)?;
    let host: Vec<f64> = b.download(m)?.iter().map(|x| x.f64()).collect();
    if let Some(bad) = host.iter().find(|x| !x.is_finite()) {
        return Err(Error::invalid("matrix", bad, "singular_values needs finite entries"));
    }
    if n == 0 {
        return Ok(Vec::new());
    }
    MatRef::from_row_major_slice(&host, n, n)
        .singular_values()
        .map_err(|e| Error::invalid("matrix", format!("{n} x {n}"), format!("the SVD did not converge ({e:?})")))
}
