//! Initializers, computed on the host in f64 from a seeded generator and uploaded once.
//!
//! - Orthogonal: `Q` of the QR factorization of a standard Gaussian matrix, with the signs of `Q`'s
//!   columns fixed so that `R` has a positive diagonal (this makes `Q` Haar-distributed).
//! - Orthogonal times a gain `g` (Hlav 2019): `g Q`.
//! - Glorot normal: entries `N(0, 2 / (fan_in + fan_out))`.
//! - Identity (Le et al. 2015's IRNN).
//! - Henaff et al. 2016: block-diagonal 2x2 rotations with angles uniform in `(-pi, pi)`.

use crate::error::{Error, Result};
use faer::Mat;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

/// Initialization of the recurrent matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RecurrentInit {
    /// Random orthogonal (Haar), times `--gain`.
    Orthogonal,
    /// Glorot normal.
    Glorot,
    /// The identity, times `--gain`.
    Identity,
    /// Block-diagonal 2x2 rotations (Henaff et al. 2016).
    Henaff,
}

/// `rows * cols` standard normal samples.
pub fn gaussian(rng: &mut ChaCha8Rng, len: usize) -> Vec<f64> {
    (0..len).map(|_| StandardNormal.sample(rng)).collect()
}

/// Glorot-normal `[rows, cols]` matrix.
pub fn glorot_normal(rng: &mut ChaCha8Rng, rows: usize, cols: usize) -> Vec<f64> {
    let std = (2.0 / (rows + cols) as f64).sqrt();
    gaussian(rng, rows * cols).into_iter().map(|v| v * std).collect()
}

/// A Haar-random orthogonal `n x n` matrix (row-major).
pub fn orthogonal(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    let g = gaussian(rng, n * n);
    orthogonal_from(&g, n)
}

/// The sign-fixed `Q` factor of the QR factorization of a square matrix (row-major in and out).
pub fn orthogonal_from(a: &[f64], n: usize) -> Vec<f64> {
    let m = Mat::<f64>::from_fn(n, n, |i, j| a[i * n + j]);
    let qr = m.qr();
    let q = qr.compute_Q();
    let r = qr.R();
    let mut out = vec![0.0; n * n];
    for j in 0..n {
        let s = if r[(j, j)] < 0.0 { -1.0 } else { 1.0 };
        for i in 0..n {
            out[i * n + j] = s * q[(i, j)];
        }
    }
    out
}

/// Block-diagonal rotations; a trailing 1x1 block is 1 when `n` is odd.
pub fn henaff(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    let mut w = vec![0.0; n * n];
    for k in (0..n - n % 2).step_by(2) {
        let th: f64 = rng.random_range(-std::f64::consts::PI..std::f64::consts::PI);
        let (s, c) = th.sin_cos();
        w[k * n + k] = c;
        w[k * n + k + 1] = -s;
        w[(k + 1) * n + k] = s;
        w[(k + 1) * n + k + 1] = c;
    }
    if n % 2 == 1 {
        w[(n - 1) * n + n - 1] = 1.0;
    }
    w
}

/// The recurrent matrix for `init`, scaled by `gain` (orthogonal and identity).
pub fn recurrent(rng: &mut ChaCha8Rng, init: RecurrentInit, n: usize, gain: f64) -> Result<Vec<f64>> {
    if !(gain > 0.0 && gain.is_finite()) {
        return Err(Error::invalid("--gain", gain, "must be a positive finite number"));
    }
    Ok(match init {
        RecurrentInit::Orthogonal => orthogonal(rng, n).into_iter().map(|v| v * gain).collect(),
        RecurrentInit::Identity => {
            let mut w = vec![0.0; n * n];
            (0..n).for_each(|i| w[i * n + i] = gain);
            w
        }
        RecurrentInit::Glorot => glorot_normal(rng, n, n),
        RecurrentInit::Henaff => henaff(rng, n),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn max_dev_from_identity(q: &[f64], n: usize) -> f64 {
        let mut worst: f64 = 0.0;
        for i in 0..n {
            for j in 0..n {
                let d: f64 = (0..n).map(|k| q[k * n + i] * q[k * n + j]).sum();
                worst = worst.max((d - if i == j { 1.0 } else { 0.0 }).abs());
            }
        }
        worst
    }

    #[test]
    fn orthogonal_init_is_orthogonal_in_f32() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for n in [1, 7, 64, 129] {
            let q: Vec<f64> = orthogonal(&mut rng, n).into_iter().map(|v| v as f32 as f64).collect();
            let dev = max_dev_from_identity(&q, n);
            assert!(dev <= 1e-5, "n={n}: ||Q^T Q - I||_max = {dev}");
        }
    }

    #[test]
    fn sign_fix_makes_r_diagonal_positive() {
        // For an upper-triangular input with a negative diagonal entry, the sign-fixed Q is the identity.
        let a = [-2.0, 1.0, 0.0, 3.0];
        let q = orthogonal_from(&a, 2);
        for (got, want) in q.iter().zip([1.0, 0.0, 0.0, 1.0]) {
            assert!((got - want).abs() < 1e-12, "{q:?}");
        }
    }

    #[test]
    fn henaff_is_orthogonal_with_unit_eigenvalue_modulus() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let w = henaff(&mut rng, 9);
        assert!(max_dev_from_identity(&w, 9) < 1e-12);
        assert_eq!(w[8 * 9 + 8], 1.0);
    }

    #[test]
    fn gain_must_be_positive() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        assert!(recurrent(&mut rng, RecurrentInit::Orthogonal, 4, 0.0).is_err());
        let w = recurrent(&mut rng, RecurrentInit::Identity, 3, 1.5).unwrap();
        assert_eq!(w[4], 1.5);
    }
}
