//! Initializers, computed on the host in f64 from a seeded generator and uploaded once.
//!
//! - Orthogonal: `Q` of the QR factorization of a standard Gaussian matrix, with the signs of `Q`'s
//!   columns fixed so that `R` has a positive diagonal (this makes `Q` Haar-distributed).
//! - Orthogonal times a gain `g` (Hlav 2019): `g Q`.
//! - Glorot normal: entries `N(0, 2 / (fan_in + fan_out))`.
//! - Identity (Le et al. 2015's IRNN).
//! - Henaff et al. 2016: block-diagonal 2x2 rotations with angles uniform in `(-pi, pi)`.
//! - Dense input and readout matrices: [`DenseInit`] (`--init-in`, `--init-out`).
//!
//! # Every parameter's starting point, per model
//!
//! | model | parameter | starts from | source |
//! |---|---|---|---|
//! | every RNN | `W_in [n, in]` | Glorot normal (`--init-in`) | our choice (the papers do not say; the expRNN/DTRIV code uses He normal: `--init-in he-normal`) |
//! | every RNN | `b [n]` | 0 | our choice (the expRNN code has no input bias; its modReLU bias plays that part) |
//! | every RNN | `W_o [out, n]` | Glorot normal (`--init-out`) | our choice (expRNN/DTRIV code: He normal, `--init-out he-normal`) |
//! | every RNN | `b_o [out]` | 0 | the expRNN code (`constant_(0)`) |
//! | PReLU | `prelu_slope` | 0.7 (`--prelu-slope`) | Vorontsov et al., appendix |
//! | modReLU | `modrelu_bias [n]` | `U[-0.01, 0.01)` | the expRNN code (`modrelu.reset_parameters`) |
//! | `rnn` | `W` | Haar orthogonal times `--gain` (or `--init glorot/identity/henaff`) | Vorontsov et al. §3; Hlav 2019 (gain) |
//! | `factorized` | `U`, `V` | two independent Haar orthogonal matrices (or identity/henaff) | Vorontsov et al. ("orthogonally initialized") |
//! | `factorized` | `p` (margin) / `s` (no margin) | `p = 0`, i.e. `s = 1`; `s = 1`; with `--init glorot`: `U, s, V` from the SVD of a Glorot-normal `W` | Vorontsov et al. (Tables 1-4's "Glorot" rows) |
//! | `orthogonal` | `W` | Haar orthogonal | Wisdom et al. 2016 / Vorontsov et al. |
//! | `scornn` | `A` | Cayley init: 2x2 blocks `[[0, a], [-a, 0]]`, `a = sqrt((1 - cos t) / (1 + cos t))`, `t ~ U[0, pi/2]`; `D`: the first `--neg` (default `n/2`) entries -1 | Helfrich et al. 2018 |
//! | `exprnn` | `A`, `B` | Cayley init (`--init henaff`: angles `U(-pi, pi)`, the expRNN copy script's default); `B = I` | Lezcano-Casado and Martinez-Rubio 2019 and their code |
//! | `dtriv` | `A`, `B` | `B = exp(A_0)` with `A_0` as for `exprnn`, then `A = 0` | Lezcano-Casado 2019 (the algorithm starts at `0` of the tangent space) and the code |
//! | `lstm` | `W_in`, `W_h`, `b`, `peep`, `W_o`, `b_o` | Glorot normal; four Haar orthogonal blocks; 0 except the forget gate's 1; 0; Glorot normal; 0 | Vorontsov et al. §3 (peepholes, orthogonal, forget bias 1) |
//!
//! The Cayley blocks' sign is the opposite of the expRNN code's `cayley_init_` (`a <= 0` there):
//! the two are the same distribution of networks up to swapping the two units of each pair.

use crate::error::{Error, Result};
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
    /// Block-diagonal 2x2 rotations (Henaff et al. 2016); for the skew-parametrized models, skew
    /// blocks with angles uniform in `(-pi, pi)` (so `exp(A)` is such a rotation).
    Henaff,
    /// Cayley initialization (scoRNN / expRNN): skew 2x2 blocks `[[0, s], [-s, 0]]` with
    /// `s = sqrt((1 - cos t) / (1 + cos t))`, `t` uniform in `[0, pi/2]`.
    Cayley,
}

/// Initialization of a dense (input or readout) matrix `[rows, cols]` = `[fan_out, fan_in]`
/// (`--init-in`, `--init-out`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DenseInit {
    /// `N(0, 2 / (fan_in + fan_out))` (Glorot and Bengio 2010): the Theano/Keras-era default of
    /// Vorontsov et al.'s code and ours.
    #[default]
    GlorotNormal,
    /// `U(-a, a)`, `a = sqrt(6 / (fan_in + fan_out))` (Keras' `glorot_uniform` default).
    GlorotUniform,
    /// `N(0, 2 / fan_in)`: PyTorch's `kaiming_normal_(w, nonlinearity="relu")`, which the
    /// expRNN / DTRIV reference code uses for the input and readout matrices.
    HeNormal,
    /// `N(0, 1 / fan_in)`.
    LecunNormal,
    /// `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`: what `torch.nn.Linear` and `torch.nn.RNN` start from.
    TorchDefault,
}

impl DenseInit {
    /// A `[rows, cols]` matrix (`fan_in = cols`, `fan_out = rows`).
    pub fn sample(self, rng: &mut ChaCha8Rng, rows: usize, cols: usize) -> Vec<f64> {
        let (fan_in, fan_out) = (cols.max(1) as f64, rows.max(1) as f64);
        let normal = |rng: &mut ChaCha8Rng, std: f64| gaussian(rng, rows * cols).into_iter().map(|v| v * std).collect();
        let uniform = |rng: &mut ChaCha8Rng, a: f64| (0..rows * cols).map(|_| rng.random_range(-a..a)).collect();
        match self {
            DenseInit::GlorotNormal => glorot_normal(rng, rows, cols),
            DenseInit::GlorotUniform => uniform(rng, (6.0 / (fan_in + fan_out)).sqrt()),
            DenseInit::HeNormal => normal(rng, (2.0 / fan_in).sqrt()),
            DenseInit::LecunNormal => normal(rng, (1.0 / fan_in).sqrt()),
            DenseInit::TorchDefault => uniform(rng, 1.0 / fan_in.sqrt()),
        }
    }
}

/// The modReLU biases: uniform in `[-0.01, 0.01)`, as the expRNN reference code initializes them
/// (`modrelu.reset_parameters`); zero biases would make modReLU the identity at the start.
pub fn modrelu_bias(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| rng.random_range(-0.01..0.01)).collect()
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

/// A Haar-random orthogonal `n x n` matrix (row-major): the sign-fixed `Q` of a Gaussian matrix.
pub fn orthogonal(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    let g = gaussian(rng, n * n);
    // The input has exactly n * n entries, the only way the factorization can fail.
    crate::linalg::orthogonal_from_gaussian(&g, n).unwrap_or_else(|_| unreachable!("n * n Gaussian entries"))
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
        RecurrentInit::Cayley => {
            return Err(Error::invalid(
                "--init",
                "cayley",
                "Cayley initialization is for the skew-parametrized models (scornn, exprnn, dtriv)",
            ));
        }
    })
}

/// A skew-symmetric `n x n` initial `A` for scoRNN, expRNN and DTRIV: block-diagonal 2x2 blocks
/// `[[0, a], [-a, 0]]` (a trailing 1x1 block is 0 for odd `n`). `Cayley`: `a = sqrt((1 - cos t) /
/// (1 + cos t))`, `t ~ U[0, pi/2]`; `Henaff`: `a ~ U(-pi, pi)`; `Identity`: `A = 0`.
pub fn skew(rng: &mut ChaCha8Rng, init: RecurrentInit, n: usize) -> Result<Vec<f64>> {
    let mut a = vec![0.0; n * n];
    for k in (0..n - n % 2).step_by(2) {
        let v = match init {
            RecurrentInit::Cayley => {
                let t: f64 = rng.random_range(0.0..std::f64::consts::FRAC_PI_2);
                ((1.0 - t.cos()) / (1.0 + t.cos())).sqrt()
            }
            RecurrentInit::Henaff => rng.random_range(-std::f64::consts::PI..std::f64::consts::PI),
            RecurrentInit::Identity => 0.0,
            RecurrentInit::Orthogonal | RecurrentInit::Glorot => {
                return Err(Error::invalid(
                    "--init",
                    format!("{init:?}").to_lowercase(),
                    "the skew-parametrized models take --init cayley, henaff or identity",
                ));
            }
        };
        a[k * n + k + 1] = v;
        a[(k + 1) * n + k] = -v;
    }
    Ok(a)
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
        // A = Q R with R = Q^T A upper triangular with a positive diagonal: for this A, Q = diag(-1, 1).
        let a = [-2.0, 1.0, 0.0, 3.0];
        let q = crate::linalg::orthogonal_from_gaussian(&a, 2).unwrap();
        let r = |i: usize, j: usize| (0..2).map(|k| q[k * 2 + i] * a[k * 2 + j]).sum::<f64>();
        assert!(r(0, 0) > 0.0 && r(1, 1) > 0.0 && r(1, 0).abs() < 1e-12, "{q:?}");
        for (got, want) in q.iter().zip([-1.0, 0.0, 0.0, 1.0]) {
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
    fn dense_inits_have_their_scales() {
        // Sample standard deviation against the closed form, within 5 % on 40,000 entries.
        let (rows, cols) = (200, 200);
        for (init, std) in [
            (DenseInit::GlorotNormal, (2.0f64 / 400.0).sqrt()),
            (DenseInit::GlorotUniform, (6.0f64 / 400.0).sqrt() / 3f64.sqrt()),
            (DenseInit::HeNormal, (2.0f64 / 200.0).sqrt()),
            (DenseInit::LecunNormal, (1.0f64 / 200.0).sqrt()),
            (DenseInit::TorchDefault, 1.0 / 200f64.sqrt() / 3f64.sqrt()),
        ] {
            let w = init.sample(&mut ChaCha8Rng::seed_from_u64(4), rows, cols);
            let got = (w.iter().map(|v| v * v).sum::<f64>() / w.len() as f64).sqrt();
            assert!((got / std - 1.0).abs() < 0.05, "{init:?}: std {got} vs {std}");
        }
        let mut a = ChaCha8Rng::seed_from_u64(5);
        let mut b = ChaCha8Rng::seed_from_u64(5);
        assert_eq!(
            DenseInit::GlorotNormal.sample(&mut a, 3, 4),
            glorot_normal(&mut b, 3, 4),
            "the default draws as before"
        );
    }

    #[test]
    fn gain_must_be_positive() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        assert!(recurrent(&mut rng, RecurrentInit::Orthogonal, 4, 0.0).is_err());
        let w = recurrent(&mut rng, RecurrentInit::Identity, 3, 1.5).unwrap();
        assert_eq!(w[4], 1.5);
    }
}
