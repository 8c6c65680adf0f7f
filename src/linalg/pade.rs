//! Diagonal Pade approximants to `exp`: coefficients, thresholds, and the choice of degree and
//! scaling, plus the shared evaluation of the numerator/denominator pieces `U`, `V`.
//!
//! # Maths
//! The `[m/m]` Pade approximant is `r_m(x) = p_m(x) / p_m(-x)` with
//! `p_m(x) = sum_{j=0}^m b_j x^j`, `b_j ∝ (2m - j)! m! / ((2m)! j! (m - j)!)`, scaled here so that
//! `b_m = 1` (the integers of Higham 2005, Table 2.2 / [`PADE_COEFFS`]). Splitting `p_m` into odd
//! and even parts, `p_m(A) = V + U` and `p_m(-A) = V - U` with
//! `U = A sum_{j odd} b_j A^{j-1}`, `V = sum_{j even} b_j A^j`, so `r_m(A) = (V - U)^{-1} (V + U)`:
//! one LU factorization and one solve with `n` right-hand sides, never an inverse.
//!
//! Scaling and squaring: `exp(A) = r_m(2^{-s} A)^{2^s}`. Degree `m` and squarings `s` come from the
//! 1-norm: the smallest `m` with `‖A‖_1 <= theta_m`, else the largest degree and
//! `s = ceil(log2(‖A‖_1 / theta_max))`. `theta_m` is the largest `θ` for which the backward-error
//! bound `sum_{k>=2m+1} |c_k| θ^{k-1} <= u` holds, where `log(e^{-x} r_m(x)) = sum_{k>=2m+1} c_k x^k`
//! (Higham 2005, eq. (2.3)-(2.5)); `u` is the unit roundoff of the element type.
//!
//! For the Frechet derivative, the thresholds are `ell_m`: the largest `θ` with
//! `sum_{k>=2m+1} k |c_k| θ^{k-1} <= u` (the backward error of `L_exp`, Al-Mohy & Higham 2009,
//! "Computing the Frechet derivative of the matrix exponential", Section 6, Table 6.1).
//!
//! | `m` | `theta_m` (f64, `u = 2^-53`) | `ell_m` (f64) | `theta_m` (f32, `u = 2^-24`) | `ell_m` (f32) |
//! |---|---|---|---|---|
//! | 3  | 1.495585217958292e-2 | 1.081338577784837e-2 | 4.258730016922831e-1 | 3.080330418453301e-1 |
//! | 5  | 2.539398330063230e-1 | 1.998063206978949e-1 | 1.880152677804762e0  | 1.482532614793145e0  |
//! | 7  | 9.504178996162932e-1 | 7.834608472962045e-1 | 3.925724783138660e0  | 3.248671755200478e0  |
//! | 9  | 2.097847961257068e0  | 1.782448623969279e0  | — | — |
//! | 13 | 5.371920351148152e0  | 4.740307543766807e0  | — | — |
//!
//! `theta_m` are Higham's published values (f64: Table 2.3; f32: the single-precision values from
//! the same analysis, as in MATLAB's `expm`; in single precision `m = 7` is the most efficient
//! degree, so 9 and 13 are not used). The `ell_m` were computed from the definition above with exact
//! rational series (`c_k` up to `k = 2m + 91`) and mpmath root finding. The same computation
//! reproduces Higham's f64 `theta_m` to all 16 printed digits, his f32 `theta_m` to 2e-8 relative,
//! and the paper's Table 6.1 `ell_m` (1.08e-2, 2.00e-1, 7.83e-1, 1.78, 4.74); that is how the f32
//! `ell_m`, which are not published, were obtained. The table is picked by the element type's
//! machine epsilon: above `1e-10` means single precision.

use super::{lincomb, mm, square_zeros};
use crate::backend::{Backend, Slice, SliceMut};
use crate::error::Result;
use crate::scalar::Scalar;

/// Coefficients `b_0..=b_m` of `p_m` for `m = 3, 5, 7, 9, 13` (Higham 2005, with `b_m = 1`).
pub const PADE_COEFFS: [(usize, &[f64]); 5] = [
    (3, &[120.0, 60.0, 12.0, 1.0]),
    (5, &[30240.0, 15120.0, 3360.0, 420.0, 30.0, 1.0]),
    (7, &[17297280.0, 8648640.0, 1995840.0, 277200.0, 25200.0, 1512.0, 56.0, 1.0]),
    (9, &[17643225600.0, 8821612800.0, 2075673600.0, 302702400.0, 30270240.0, 2162160.0, 110880.0, 3960.0, 90.0, 1.0]),
    (
        13,
        &[
            64764752532480000.0,
            32382376266240000.0,
            7771770303897600.0,
            1187353796428800.0,
            129060195264000.0,
            10559470521600.0,
            670442572800.0,
            33522128640.0,
            1323241920.0,
            40840800.0,
            960960.0,
            16380.0,
            182.0,
            1.0,
        ],
    ),
];

/// `(m, theta_m)` for f64 (Higham 2005, Table 2.3).
pub const THETA_F64: [(usize, f64); 5] = [
    (3, 1.495585217958292e-2),
    (5, 2.53939833006323e-1),
    (7, 9.504178996162932e-1),
    (9, 2.097847961257068e0),
    (13, 5.371920351148152e0),
];
/// `(m, theta_m)` for f32 (Higham 2005, single precision; degrees above 7 do not pay).
pub const THETA_F32: [(usize, f64); 3] = [(3, 4.258730016922831e-1), (5, 1.880152677804762e0), (7, 3.92572478313866e0)];
/// `(m, ell_m)` for the Frechet derivative in f64 (Al-Mohy & Higham 2009, Table 6.1, full digits).
pub const ELL_F64: [(usize, f64); 5] = [
    (3, 1.081338577784837e-2),
    (5, 1.998063206978949e-1),
    (7, 7.834608472962045e-1),
    (9, 1.782448623969279e0),
    (13, 4.740307543766807e0),
];
/// `(m, ell_m)` for the Frechet derivative in f32 (same definition, `u = 2^-24`; see module docs).
pub const ELL_F32: [(usize, f64); 3] = [(3, 3.080330418453301e-1), (5, 1.482532614793145e0), (7, 3.248671755200478e0)];

/// The Pade degree `m` and the number of squarings `s` used for one evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PadeChoice {
    /// Degree `m` of the diagonal Pade approximant (3, 5, 7, 9 or 13).
    pub degree: usize,
    /// Number of squarings `s` (`A` is scaled by `2^-s`).
    pub squarings: u32,
}

/// True when `T` is a single-precision (or narrower) type: picks the f32 tables.
pub(super) fn single<T: Scalar>() -> bool {
    <T as num_traits::Float>::epsilon().f64() > 1e-10
}

fn choose(norm1: f64, table: &[(usize, f64)]) -> PadeChoice {
    for &(degree, theta) in table {
        if norm1 <= theta {
            return PadeChoice { degree, squarings: 0 };
        }
    }
    let (degree, theta) = table[table.len() - 1];
    // norm1 > theta here, so the ratio is > 1 and the logarithm positive.
    let mut squarings = (norm1 / theta).log2().ceil().max(0.0) as u32;
    // Guard against log2 rounding: the scaled norm must not exceed theta.
    while norm1 * 0.5f64.powi(squarings as i32) > theta {
        squarings += 1;
    }
    PadeChoice { degree, squarings }
}

/// Degree and scaling for `exp(A)` in element type `T`, from `‖A‖_1` (see the module docs).
pub fn choose_expm<T: Scalar>(norm1: f64) -> PadeChoice {
    choose(norm1, if single::<T>() { &THETA_F32 } else { &THETA_F64 })
}

/// Degree and scaling for `exp(A)` together with `L_exp(A, E)` in element type `T`.
pub fn choose_frechet<T: Scalar>(norm1: f64) -> PadeChoice {
    choose(norm1, if single::<T>() { &ELL_F32 } else { &ELL_F64 })
}

/// `b_0..=b_m` for degree `m`.
pub(super) fn coeffs(m: usize) -> &'static [f64] {
    PADE_COEFFS.iter().find(|(d, _)| *d == m).map(|(_, c)| *c).unwrap_or(&[])
}

/// Workspace for the Pade pieces of one `n x n` evaluation.
///
/// After [`PadeWork::eval_uv`]: `x` holds the scaled matrix `X`, `a2, a4, a6, a8` its even powers
/// (as many as the degree needs), `u` and `v` the odd and even parts `U`, `V`. `w` holds the odd
/// polynomial `W` with `U = X W`; for `m = 13` also `w1`, `z1` (`W = A6 W1 + W2`,
/// `V = A6 Z1 + Z2`), which the Frechet derivative reuses.
pub(super) struct PadeWork<B: Backend> {
    pub n: usize,
    pub x: B::Buf,
    pub a2: B::Buf,
    pub a4: B::Buf,
    pub a6: B::Buf,
    pub a8: B::Buf,
    pub w1: B::Buf,
    pub z1: B::Buf,
    pub w: B::Buf,
    pub u: B::Buf,
    pub v: B::Buf,
    /// Scratch: the input copy, then `V - U` before its factorization, then squaring scratch.
    pub t: B::Buf,
    /// The factorization of `V - U` (after [`PadeWork::solve_r`]).
    pub lu: B::Lu,
}

impl<B: Backend> PadeWork<B> {
    /// Eight `n x n` buffers, plus `a8` (degree 9) and `w1`, `z1` (degree 13) in double precision;
    /// single precision never uses those degrees and gets empty placeholders.
    pub fn new(b: &B, n: usize) -> Result<Self> {
        let [x, a2, a4, a6, w, u, v, t] = square_zeros::<B, 8>(b, n)?;
        let high = if single::<B::Elem>() { 0 } else { n * n };
        let (a8, w1, z1) = (b.zeros(high)?, b.zeros(high)?, b.zeros(high)?);
        Ok(PadeWork { n, x, a2, a4, a6, a8, w1, z1, w, u, v, t, lu: b.lu_new(n)? })
    }

    /// Loads `X = 2^-s op(A)` (`op` = transpose when `transpose`), with degree `m` and `s` given by
    /// `pick` from `‖op(A)‖_1`, and returns that choice.
    pub fn load(
        &mut self,
        b: &B,
        a: Slice<B>,
        transpose: bool,
        op: &'static str,
        pick: impl Fn(f64) -> PadeChoice,
    ) -> Result<PadeChoice> {
        let n = self.n;
        a.check(op, n * n)?;
        if transpose {
            b.transpose(a, n, n, SliceMut::all(&mut self.t))?;
        } else {
            b.copy(a, SliceMut::all(&mut self.t))?;
        }
        if n == 0 {
            return Ok(pick(0.0));
        }
        let norm = b.norm1(Slice::all(&self.t), n)?;
        // A max over floats may skip NaNs; the sum of squares propagates them (and overflows only
        // for entries beyond 1e154, which the norm test lets through).
        if !norm.is_finite() || b.sum_sq(Slice::all(&self.t))?.is_nan() {
            return Err(super::non_finite(op));
        }
        let choice = pick(norm);
        let scale = 0.5f64.powi(choice.squarings as i32);
        b.axpby(B::Elem::of(scale), Slice::all(&self.t), B::Elem::of(0.0), SliceMut::all(&mut self.x))?;
        Ok(choice)
    }

    /// Even powers `A2, A4, ...` of `X` that degree `m` needs.
    pub fn powers(&mut self, b: &B, m: usize) -> Result<()> {
        let n = self.n;
        mm(b, n, 1.0, &self.x, false, &self.x, false, 0.0, &mut self.a2)?;
        if m >= 5 {
            mm(b, n, 1.0, &self.a2, false, &self.a2, false, 0.0, &mut self.a4)?;
        }
        if m >= 7 {
            mm(b, n, 1.0, &self.a4, false, &self.a2, false, 0.0, &mut self.a6)?;
        }
        if m == 9 {
            mm(b, n, 1.0, &self.a4, false, &self.a4, false, 0.0, &mut self.a8)?;
        }
        Ok(())
    }

    /// `U` and `V` of degree `m` from the powers (call [`PadeWork::powers`] first).
    pub fn eval_uv(&mut self, b: &B, m: usize) -> Result<()> {
        let n = self.n;
        let c = coeffs(m);
        if m == 13 {
            let (a2, a4, a6) = (&self.a2, &self.a4, &self.a6);
            lincomb(b, n, &mut self.w1, &[(c[13], a6), (c[11], a4), (c[9], a2)], 0.0)?;
            lincomb(b, n, &mut self.w, &[(c[7], a6), (c[5], a4), (c[3], a2)], c[1])?;
            mm(b, n, 1.0, a6, false, &self.w1, false, 1.0, &mut self.w)?;
            lincomb(b, n, &mut self.z1, &[(c[12], a6), (c[10], a4), (c[8], a2)], 0.0)?;
            lincomb(b, n, &mut self.v, &[(c[6], a6), (c[4], a4), (c[2], a2)], c[0])?;
            mm(b, n, 1.0, a6, false, &self.z1, false, 1.0, &mut self.v)?;
        } else {
            let pw = [&self.a2, &self.a4, &self.a6, &self.a8];
            let k = (m - 1) / 2;
            let odd: Vec<(f64, &B::Buf)> = (1..=k).map(|j| (c[2 * j + 1], pw[j - 1])).collect();
            let even: Vec<(f64, &B::Buf)> = (1..=k).map(|j| (c[2 * j], pw[j - 1])).collect();
            lincomb(b, n, &mut self.w, &odd, c[1])?;
            lincomb(b, n, &mut self.v, &even, c[0])?;
        }
        mm(b, n, 1.0, &self.x, false, &self.w, false, 0.0, &mut self.u)
    }

    /// Factors `V - U` into [`PadeWork::lu`] (kept for reuse) and overwrites `V` with
    /// `R = (V - U)^{-1} (V + U)`.
    pub fn solve_r(&mut self, b: &B) -> Result<()> {
        let n = self.n;
        b.copy(Slice::all(&self.v), SliceMut::all(&mut self.t))?;
        b.axpby(B::Elem::of(-1.0), Slice::all(&self.u), B::Elem::of(1.0), SliceMut::all(&mut self.t))?;
        b.lu_factor_into(Slice::all(&self.t), &mut self.lu)?;
        b.axpby(B::Elem::of(1.0), Slice::all(&self.u), B::Elem::of(1.0), SliceMut::all(&mut self.v))?;
        b.lu_solve(&self.lu, SliceMut::all(&mut self.v), n, false)
    }

    /// `R <- R^2` (in `v`, using `t` as scratch).
    pub fn square_r(&mut self, b: &B) -> Result<()> {
        mm(b, self.n, 1.0, &self.v, false, &self.v, false, 0.0, &mut self.t)?;
        std::mem::swap(&mut self.v, &mut self.t);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn factorial(k: usize) -> f64 {
        (1..=k).map(|i| i as f64).product()
    }

    #[test]
    fn coefficients_match_the_closed_form() {
        for (m, c) in PADE_COEFFS {
            assert_eq!(c.len(), m + 1);
            // b_j / b_m with b_j = (2m-j)! / (j! (m-j)!) (the common factor m!/(2m)! cancels).
            let raw = |j: usize| factorial(2 * m - j) / (factorial(j) * factorial(m - j));
            for (j, &cj) in c.iter().enumerate() {
                let want = raw(j) / raw(m);
                assert!((cj - want).abs() <= 1e-15 * want, "m={m} j={j}: {cj} vs {want}");
            }
        }
    }

    #[test]
    fn degree_and_scaling_follow_the_thresholds() {
        assert_eq!(choose_expm::<f64>(0.0), PadeChoice { degree: 3, squarings: 0 });
        assert_eq!(choose_expm::<f64>(0.2), PadeChoice { degree: 5, squarings: 0 });
        assert_eq!(choose_expm::<f64>(2.0), PadeChoice { degree: 9, squarings: 0 });
        assert_eq!(choose_expm::<f64>(5.0), PadeChoice { degree: 13, squarings: 0 });
        assert_eq!(choose_expm::<f64>(5.4), PadeChoice { degree: 13, squarings: 1 });
        assert_eq!(choose_expm::<f64>(40.0), PadeChoice { degree: 13, squarings: 3 });
        assert_eq!(choose_expm::<f32>(0.4), PadeChoice { degree: 3, squarings: 0 });
        assert_eq!(choose_expm::<f32>(3.9), PadeChoice { degree: 7, squarings: 0 });
        assert_eq!(choose_expm::<f32>(4.0), PadeChoice { degree: 7, squarings: 1 });
        assert_eq!(choose_frechet::<f64>(0.012), PadeChoice { degree: 5, squarings: 0 });
        assert_eq!(choose_frechet::<f64>(5.0), PadeChoice { degree: 13, squarings: 1 });
        assert_eq!(choose_frechet::<f32>(3.3), PadeChoice { degree: 7, squarings: 1 });
        for norm in [1e-3, 0.7, 6.0, 123.4, 1e6] {
            let c = choose_expm::<f64>(norm);
            assert!(norm * 0.5f64.powi(c.squarings as i32) <= 5.371920351148152);
        }
    }
}
