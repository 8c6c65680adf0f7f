//! The Frechet derivative of `exp` and its adjoint, by the Pade method of Al-Mohy & Higham.
//!
//! # Maths
//! The Frechet derivative `L_exp(A, E)` is the linear term of `exp(A + E) - exp(A)`. Under the trace
//! inner product `<X, Y> = tr(X^T Y)` its adjoint in `E` is `L_exp(A^T, ·)`:
//! `<G, L_exp(A, E)> = <L_exp(A^T, G), E>`. So the gradient of a loss through `W = exp(A)`, given
//! `G = dL/dW`, is `dL/dA = L_exp(A^T, G)`; for skew `A`, `A^T = -A`, and a skew parametrization
//! takes the skew part of it (expRNN / DTRIV).
//!
//! Al-Mohy & Higham 2009, "Computing the Frechet derivative of the matrix exponential, with an
//! application to condition number estimation", Algorithm 6.4: differentiate the scaled Pade
//! evaluation term by term. With `X = 2^{-s} A`, `E_s = 2^{-s} E` and `M_k = L_{x^k}(X, E_s)`:
//!
//! - `M_2 = X E_s + E_s X`, `M_4 = A_2 M_2 + M_2 A_2`, `M_6 = A_4 M_2 + M_4 A_2`, `M_8 = A_4 M_4 + M_4 A_4`;
//! - `m <= 9`: `L_U = X (sum_{j>=1} b_{2j+1} M_{2j}) + E_s W`, `L_V = sum_{j>=1} b_{2j} M_{2j}`;
//! - `m = 13`: `L_W = A_6 L_{W1} + M_6 W_1 + L_{W2}`, `L_U = X L_W + E_s W`,
//!   `L_V = A_6 L_{Z1} + M_6 Z_1 + L_{Z2}` (each `L_•` is `•` with `A_k` replaced by `M_k`);
//! - with `R = (V - U)^{-1}(V + U)` (the same LU serves both solves),
//!   `L = (V - U)^{-1} (L_U + L_V + (L_U - L_V) R)`;
//! - `s` times: `L <- R L + L R`, `R <- R^2`. Then `R = exp(A)`, `L = L_exp(A, E)`.
//!
//! Degree and scaling use the `ell_m` thresholds of [`super::pade`] (smaller than `theta_m`: the
//! derivative's backward error bound is the derivative of the exponential's).
//!
//! Cost in products of `n x n` matrices: for `m = 13`, 6 for `exp` + 13 for the derivative; for
//! `m = 7` (the largest f32 degree), 4 + 9; plus one LU, two solves, and 3 products per squaring,
//! against 6 (or 4) + one solve + 1 per squaring for [`super::Expm`]: about 3 `expm`s (measured
//! on `Cpu<f32>`: 1.8x at `n = 128`, 2.7-3x at 500 and 1000).
//! The block form `exp([[A^T, G], [0, A^T]])` (upper-right block; [`expm_frechet_adjoint_block`])
//! gives the same result at about 8 times an `n x n` `expm`, and is kept as a test reference.

use super::pade::{PadeChoice, PadeWork, choose_frechet, coeffs, single};
use super::{expm, lincomb, mm, square_zeros};
use crate::backend::{Backend, Slice, SliceMut};
use crate::error::Result;
use crate::scalar::Scalar;

/// `exp` and its Frechet derivative, with the degree and scaling used.
pub struct FrechetPair<B: Backend> {
    /// `exp(A)`, or `exp(A^T)` from the adjoint functions.
    pub exp: B::Buf,
    /// `L_exp(A, E)`, or `L_exp(A^T, G)` from the adjoint functions.
    pub deriv: B::Buf,
    /// Pade degree and squarings.
    pub choice: PadeChoice,
}

/// Workspace for `exp(A)` together with `L_exp(A, E)` at one size `n`: sixteen `n x n` buffers
/// (twenty in double precision, where degrees 9 and 13 need four more).
pub struct ExpmFrechet<B: Backend> {
    pade: PadeWork<B>,
    e: B::Buf,
    m2: B::Buf,
    m4: B::Buf,
    m6: B::Buf,
    m8: B::Buf,
    l_w: B::Buf,
    l_u: B::Buf,
    l_v: B::Buf,
    t: B::Buf,
}

impl<B: Backend> ExpmFrechet<B> {
    /// Allocates the workspace for `n x n` matrices.
    pub fn new(b: &B, n: usize) -> Result<Self> {
        let [e, m2, m4, m6, l_w, l_u, l_v, t] = square_zeros::<B, 8>(b, n)?;
        let m8 = b.zeros(if single::<B::Elem>() { 0 } else { n * n })?; // degree 9 only
        Ok(ExpmFrechet { pade: PadeWork::new(b, n)?, e, m2, m4, m6, m8, l_w, l_u, l_v, t })
    }

    /// The matrix size this workspace serves.
    pub fn n(&self) -> usize {
        self.pade.n
    }

    /// `deriv = L_exp(A, E)` and, when `exp` is given, `exp = exp(A)`.
    pub fn compute(
        &mut self,
        b: &B,
        a: Slice<B>,
        e: Slice<B>,
        exp: Option<SliceMut<B>>,
        deriv: SliceMut<B>,
    ) -> Result<PadeChoice> {
        self.run(b, a, false, e, exp, deriv)
    }

    /// The adjoint: `grad = L_exp(A^T, G)` (the gradient through `W = exp(A)` given `G = dL/dW`)
    /// and, when `exp_at` is given, `exp_at = exp(A^T)`.
    pub fn adjoint(
        &mut self,
        b: &B,
        a: Slice<B>,
        g: Slice<B>,
        exp_at: Option<SliceMut<B>>,
        grad: SliceMut<B>,
    ) -> Result<PadeChoice> {
        self.run(b, a, true, g, exp_at, grad)
    }

    fn run(
        &mut self,
        b: &B,
        a: Slice<B>,
        transpose: bool,
        e: Slice<B>,
        exp: Option<SliceMut<B>>,
        deriv: SliceMut<B>,
    ) -> Result<PadeChoice> {
        let n = self.pade.n;
        e.check("expm_frechet(E)", n * n)?;
        deriv.check("expm_frechet(deriv)", n * n)?;
        if let Some(o) = &exp {
            o.check("expm_frechet(exp)", n * n)?;
        }
        let choice = self.pade.load(b, a, transpose, "expm_frechet", choose_frechet::<B::Elem>)?;
        if n == 0 {
            return Ok(choice);
        }
        let scale = 0.5f64.powi(choice.squarings as i32);
        b.axpby(B::Elem::of(scale), e, B::Elem::of(0.0), SliceMut::all(&mut self.e))?;
        let m = choice.degree;
        self.pade.powers(b, m)?;
        self.derivative_powers(b, m)?;
        self.pade.eval_uv(b, m)?;
        self.derivative_uv(b, m)?;

        self.pade.solve_r(b)?; // R = exp(X) in pade.v
        let (r, l_u, l_v, t) = (&self.pade.v, &mut self.l_u, &self.l_v, &mut self.t);
        // t = L_U - L_V; L_U <- L_U + L_V + t R; L = (V - U)^{-1} L_U.
        b.copy(Slice::all(l_u), SliceMut::all(t))?;
        b.axpby(B::Elem::of(-1.0), Slice::all(l_v), B::Elem::of(1.0), SliceMut::all(t))?;
        b.axpby(B::Elem::of(1.0), Slice::all(l_v), B::Elem::of(1.0), SliceMut::all(l_u))?;
        mm(b, n, 1.0, t, false, r, false, 1.0, l_u)?;
        b.lu_solve(&self.pade.lu, SliceMut::all(l_u), n, false)?;

        for _ in 0..choice.squarings {
            // L <- R L + L R, then R <- R^2.
            mm(b, n, 1.0, &self.pade.v, false, &self.l_u, false, 0.0, &mut self.t)?;
            mm(b, n, 1.0, &self.l_u, false, &self.pade.v, false, 1.0, &mut self.t)?;
            std::mem::swap(&mut self.l_u, &mut self.t);
            self.pade.square_r(b)?;
        }
        b.copy(Slice::all(&self.l_u), deriv)?;
        if let Some(o) = exp {
            b.copy(Slice::all(&self.pade.v), o)?;
        }
        Ok(choice)
    }

    /// `M_2, M_4, M_6, M_8` as degree `m` needs them.
    fn derivative_powers(&mut self, b: &B, m: usize) -> Result<()> {
        let n = self.pade.n;
        let (x, a2, a4, e) = (&self.pade.x, &self.pade.a2, &self.pade.a4, &self.e);
        mm(b, n, 1.0, x, false, e, false, 0.0, &mut self.m2)?;
        mm(b, n, 1.0, e, false, x, false, 1.0, &mut self.m2)?;
        if m >= 5 {
            mm(b, n, 1.0, a2, false, &self.m2, false, 0.0, &mut self.m4)?;
            mm(b, n, 1.0, &self.m2, false, a2, false, 1.0, &mut self.m4)?;
        }
        if m >= 7 {
            mm(b, n, 1.0, a4, false, &self.m2, false, 0.0, &mut self.m6)?;
            mm(b, n, 1.0, &self.m4, false, a2, false, 1.0, &mut self.m6)?;
        }
        if m == 9 {
            mm(b, n, 1.0, a4, false, &self.m4, false, 0.0, &mut self.m8)?;
            mm(b, n, 1.0, &self.m4, false, a4, false, 1.0, &mut self.m8)?;
        }
        Ok(())
    }

    /// `L_U` and `L_V` (call after [`PadeWork::eval_uv`], whose `W`, `W_1`, `Z_1` they reuse).
    fn derivative_uv(&mut self, b: &B, m: usize) -> Result<()> {
        let n = self.pade.n;
        let c = coeffs(m);
        let p = &self.pade;
        let (m2, m4, m6) = (&self.m2, &self.m4, &self.m6);
        if m == 13 {
            lincomb(b, n, &mut self.t, &[(c[13], m6), (c[11], m4), (c[9], m2)], 0.0)?;
            lincomb(b, n, &mut self.l_w, &[(c[7], m6), (c[5], m4), (c[3], m2)], 0.0)?;
            mm(b, n, 1.0, &p.a6, false, &self.t, false, 1.0, &mut self.l_w)?;
            mm(b, n, 1.0, m6, false, &p.w1, false, 1.0, &mut self.l_w)?;
            lincomb(b, n, &mut self.t, &[(c[12], m6), (c[10], m4), (c[8], m2)], 0.0)?;
            lincomb(b, n, &mut self.l_v, &[(c[6], m6), (c[4], m4), (c[2], m2)], 0.0)?;
            mm(b, n, 1.0, &p.a6, false, &self.t, false, 1.0, &mut self.l_v)?;
            mm(b, n, 1.0, m6, false, &p.z1, false, 1.0, &mut self.l_v)?;
        } else {
            let mp = [m2, m4, m6, &self.m8];
            let k = (m - 1) / 2;
            let odd: Vec<(f64, &B::Buf)> = (1..=k).map(|j| (c[2 * j + 1], mp[j - 1])).collect();
            let even: Vec<(f64, &B::Buf)> = (1..=k).map(|j| (c[2 * j], mp[j - 1])).collect();
            lincomb(b, n, &mut self.l_w, &odd, 0.0)?;
            lincomb(b, n, &mut self.l_v, &even, 0.0)?;
        }
        mm(b, n, 1.0, &p.x, false, &self.l_w, false, 0.0, &mut self.l_u)?;
        mm(b, n, 1.0, &self.e, false, &p.w, false, 1.0, &mut self.l_u)
    }
}

/// `exp(A)` and `L_exp(A, E)` (allocates a workspace; keep an [`ExpmFrechet`] to reuse one).
pub fn expm_frechet<B: Backend>(b: &B, a: Slice<B>, e: Slice<B>, n: usize) -> Result<FrechetPair<B>> {
    let (mut exp, mut deriv) = (b.zeros(n * n)?, b.zeros(n * n)?);
    let choice = ExpmFrechet::new(b, n)?.compute(b, a, e, Some(SliceMut::all(&mut exp)), SliceMut::all(&mut deriv))?;
    Ok(FrechetPair { exp, deriv, choice })
}

/// The adjoint Frechet derivative `L_exp(A^T, G)` (in `deriv`) and `exp(A^T)` (in `exp`), which
/// comes for free. `deriv` is `dL/dA` for `W = exp(A)` and `G = dL/dW`.
pub fn expm_frechet_adjoint<B: Backend>(b: &B, a: Slice<B>, g: Slice<B>, n: usize) -> Result<FrechetPair<B>> {
    let (mut exp, mut deriv) = (b.zeros(n * n)?, b.zeros(n * n)?);
    let choice = ExpmFrechet::new(b, n)?.adjoint(b, a, g, Some(SliceMut::all(&mut exp)), SliceMut::all(&mut deriv))?;
    Ok(FrechetPair { exp, deriv, choice })
}

/// Reference for [`expm_frechet_adjoint`]: the upper-right `n x n` block of
/// `exp([[A^T, G], [0, A^T]])`, a `2n x 2n` exponential (slow: test use).
pub fn expm_frechet_adjoint_block<B: Backend>(b: &B, a: Slice<B>, g: Slice<B>, n: usize) -> Result<B::Buf> {
    a.check("expm_frechet_adjoint_block(A)", n * n)?;
    g.check("expm_frechet_adjoint_block(G)", n * n)?;
    let mut at = b.zeros(n * n)?;
    b.transpose(a, n, n, SliceMut::all(&mut at))?;
    let n2 = 2 * n;
    let mut big = b.zeros(n2 * n2)?;
    for i in 0..n {
        let at_row = Slice::all(&at).sub(i * n, n);
        b.copy(at_row, SliceMut::all(&mut big).sub(i * n2, n))?;
        b.copy(g.sub(i * n, n), SliceMut::all(&mut big).sub(i * n2 + n, n))?;
        b.copy(at_row, SliceMut::all(&mut big).sub((n + i) * n2 + n, n))?;
    }
    let e = expm(b, Slice::all(&big), n2)?;
    let mut out = b.zeros(n * n)?;
    for i in 0..n {
        b.copy(Slice::all(&e).sub(i * n2 + n, n), SliceMut::all(&mut out).sub(i * n, n))?;
    }
    Ok(out)
}
