//! The Cayley transform: geodesic steps on the orthogonal group, and the scoRNN parametrization.
//!
//! # Geodesic (Cayley) step
//! With `G = dL/dM` at an orthogonal `M`, `A = G M^T - M G^T` is skew and
//! `M <- (I + (eta/2) A)^{-1} (I - (eta/2) A) M` stays orthogonal (Wisdom et al. 2016; Vorontsov et
//! al. 2017, with the sign of `A` corrected: to first order the step is `-eta (G - M G^T M)`, a
//! descent direction because `<G, M G^T M> <= ‖G‖_F^2`). With `B = (eta/2) A` and `P = I + B`
//! (one LU factorization, never an inverse), two algebraically equal forms ([`CayleyForm`]):
//!
//! - **Fast**: `(I - B) = 2I - P`, so `M <- 2 P^{-1} M - M`. One product `G M^T`, the LU, one solve
//!   with `n` right-hand sides: about `4.7 n^3` flops (the textbook form's product `(I - B) M` is
//!   saved). The solve's `O(u)` relative error lands on `M` itself, so the drift `‖M^T M - I‖_max`
//!   grows *linearly*, measured at about `4.6e-8` per step in f32 at `n = 128` (`eta = 1e-3`;
//!   the textbook form: `2.3e-8` per step, the PyTorch reference run: `~5e-5` after a few thousand).
//! - **Accurate**: `M <- M - 2 P^{-1} (B M)`: the solve computes only the small increment, so its
//!   error is `O(u eta ‖A‖)` and only the rounding of the stored `M` is left; the drift grows like a
//!   random walk, measured at `1.3e-6` after 4000 f32 steps (the fast form: `1.9e-4`). Cost: one more
//!   product, about `6.7 n^3` flops.
//!
//! [`CayleyStep`] uses the fast form with a [`DriftGuard`]: every `every` steps it measures the
//! drift (one product `M^T M`) and, above `tol`, replaces `M` by its sign-fixed QR factor
//! ([`super::reorthogonalize`]), counting the repairs. A repair moves `M` by `O(drift)`. With the
//! default guard (f32, `n = 128`) that is one QR per ~100 steps plus one product per 50, far less
//! than the accurate form's extra product at every step.
//!
//! # scoRNN
//! `W = (I + A)^{-1} (I - A) D`, `A` skew, `D = diag(d)` with `d_i = ±1` (Helfrich et al. 2018;
//! the formulas below hold for any diagonal `D`).
//! With `G = dL/dW`: `V = (I + A)^{-T} G (D + W^T)` and `dL/dA = V^T - V`. That is the gradient with
//! respect to the independent entries `a_ij = A_ij`, `i < j` (with `A_ji = -a_ij`), written as a skew
//! matrix: its `(i, j)` entry, `i < j`, is `dL/da_ij`. (Derivation: `W = (2 P^{-1} - I) D` with
//! `P = I + A`, so `dW = -2 P^{-1} dA P^{-1} D`, the unconstrained gradient is
//! `Z = -2 P^{-T} G D P^{-T}`, and `D + W^T = 2 D P^{-T}` gives `V = -Z`; then
//! `dL/da_ij = Z_ij - Z_ji`.) A directional derivative along a skew `S` is `<V^T - V, S> / 2`.

use super::orth::reorthogonalize;
use super::square_zeros;
use crate::backend::{Backend, Epilogue, Gemm, Slice, SliceMut};
use crate::error::{Error, Result};
use crate::scalar::Scalar;

/// Which algebraically equal form of the Cayley update to evaluate (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CayleyForm {
    /// `M <- 2 P^{-1} M - M`: one product, LU, one solve; drift grows linearly.
    #[default]
    Fast,
    /// `M <- M - 2 P^{-1} (B M)`: one more product; drift grows like a random walk.
    Accurate,
}

/// When to measure the drift `‖M^T M - I‖_max` and the tolerance above which to re-orthogonalize.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DriftGuard {
    /// Re-orthogonalize (QR) when the measured drift exceeds this.
    pub tol: f64,
    /// Measure after every `every` steps (`0` never measures).
    pub every: usize,
}

impl DriftGuard {
    /// `tol = 32 eps` of the element type (`3.8e-6` in f32, `7.1e-15` in f64), checked every 50
    /// steps. Measured in f32 with `eta = 1e-3`, `‖G‖_F ≈ 2.2`: the fast form's drift grows by
    /// `4.7e-8` per step at `n = 128`, `1.1e-8` at 500, `7e-9` at 1000, so it stays below `1e-5`
    /// between checks, and at `n = 128` a repair is due about every 100 steps (100 repairs in
    /// 10,000 steps). The floor, the measured drift of a freshly rounded orthogonal matrix, is 3 to
    /// 8 eps for `n` from 128 to 2000, well under the tolerance.
    pub fn default_for<T: Scalar>() -> Self {
        DriftGuard { tol: 32.0 * <T as num_traits::Float>::epsilon().f64(), every: 50 }
    }
}

/// Workspace for geodesic Cayley steps of one `n x n` orthogonal matrix (three `n x n` buffers and
/// an LU workspace, so a step allocates nothing), with an optional [`DriftGuard`] and a count of the
/// QR repairs it made.
pub struct CayleyStep<B: Backend> {
    n: usize,
    form: CayleyForm,
    guard: Option<DriftGuard>,
    /// `G M^T`, then scratch for the drift check.
    gm: B::Buf,
    /// `B = (eta/2) A`, then `P = I + B`.
    p: B::Buf,
    /// `P^{-1} M` (fast) or `P^{-1} B M` (accurate).
    y: B::Buf,
    /// The factorization of `P`.
    lu: B::Lu,
    steps: usize,
    reorthogonalizations: usize,
    last_drift: Option<f64>,
}

impl<B: Backend> CayleyStep<B> {
    /// Allocates the workspace for `n x n` matrices: fast form, [`DriftGuard::default_for`].
    pub fn new(b: &B, n: usize) -> Result<Self> {
        let [gm, p, y] = square_zeros::<B, 3>(b, n)?;
        Ok(CayleyStep {
            n,
            form: CayleyForm::Fast,
            guard: Some(DriftGuard::default_for::<B::Elem>()),
            gm,
            p,
            y,
            lu: b.lu_new(n)?,
            steps: 0,
            reorthogonalizations: 0,
            last_drift: None,
        })
    }

    /// Sets the form of the update.
    pub fn with_form(mut self, form: CayleyForm) -> Self {
        self.form = form;
        self
    }

    /// Sets (or, with `None`, removes) the drift guard.
    pub fn with_guard(mut self, guard: Option<DriftGuard>) -> Self {
        self.guard = guard;
        self
    }

    /// The matrix size this workspace serves.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Restores the step and repair counters (from a checkpoint), so the guard's schedule resumes.
    pub fn restore_counters(&mut self, steps: usize, reorthogonalizations: usize) {
        self.steps = steps;
        self.reorthogonalizations = reorthogonalizations;
    }

    /// One step `M <- (I + (eta/2) A)^{-1} (I - (eta/2) A) M` with `A = G M^T - M G^T`, then the
    /// drift guard's check when one is due.
    pub fn step(&mut self, b: &B, mut m: SliceMut<B>, g: Slice<B>, eta: f64) -> Result<()> {
        let n = self.n;
        m.check("cayley_step(M)", n * n)?;
        g.check("cayley_step(G)", n * n)?;
        if !eta.is_finite() {
            return Err(Error::invalid("eta", eta, "the Cayley step size must be finite"));
        }
        if n == 0 {
            return Ok(());
        }
        let elem = B::Elem::of;
        // gm = G M^T; p = (eta/2)(gm - gm^T) = B.
        b.gemm(&Gemm::new(n, n, n).tb(), g, m.as_ref(), SliceMut::all(&mut self.gm), Epilogue::none())?;
        b.skew(Slice::all(&self.gm), n, elem(0.5 * eta), SliceMut::all(&mut self.p))?;
        match self.form {
            CayleyForm::Fast => {
                // P = I + B; y = P^{-1} M; M <- 2 y - M.
                b.add_diag(SliceMut::all(&mut self.p), n, elem(1.0))?;
                b.lu_factor_into(Slice::all(&self.p), &mut self.lu)?;
                b.copy(m.as_ref(), SliceMut::all(&mut self.y))?;
                b.lu_solve(&self.lu, SliceMut::all(&mut self.y), n, false)?;
                b.axpby(elem(2.0), Slice::all(&self.y), elem(-1.0), m.rb())?;
            }
            CayleyForm::Accurate => {
                // y = B M; P = I + B; y <- P^{-1} y; M <- M - 2 y.
                b.gemm(
                    &Gemm::new(n, n, n),
                    Slice::all(&self.p),
                    m.as_ref(),
                    SliceMut::all(&mut self.y),
                    Epilogue::none(),
                )?;
                b.add_diag(SliceMut::all(&mut self.p), n, elem(1.0))?;
                b.lu_factor_into(Slice::all(&self.p), &mut self.lu)?;
                b.lu_solve(&self.lu, SliceMut::all(&mut self.y), n, false)?;
                b.axpby(elem(-2.0), Slice::all(&self.y), elem(1.0), m.rb())?;
            }
        }
        self.steps += 1;
        if let Some(guard) = self.guard
            && guard.every > 0
            && self.steps.is_multiple_of(guard.every)
        {
            self.reorthogonalize_if(b, m, guard.tol)?;
        }
        Ok(())
    }

    /// `‖M^T M - I‖_max`, using the workspace.
    pub fn drift(&mut self, b: &B, m: Slice<B>) -> Result<f64> {
        super::orth::drift_into(b, m, self.n, &mut self.gm)
    }

    /// Measures the drift and, when it exceeds `tol`, re-orthogonalizes `M` by QR (counted in
    /// [`CayleyStep::reorthogonalizations`]). Returns the drift measured before any repair; a
    /// non-finite `M` is an error.
    pub fn reorthogonalize_if(&mut self, b: &B, m: SliceMut<B>, tol: f64) -> Result<f64> {
        let d = self.drift(b, m.as_ref())?;
        self.last_drift = Some(d);
        if !d.is_finite() {
            // A singular P (only from non-finite gradients: I + B with B skew is regular) made the
            // solve NaN; say so when that is what happened.
            if self.steps > 0 {
                b.lu_status(&self.lu)?;
            }
            return Err(Error::invalid(
                "orthogonal matrix",
                format!("drift {d}"),
                "it has non-finite entries; lower the Cayley step size (--geo-lr)",
            ));
        }
        if d > tol {
            reorthogonalize(b, m, self.n)?;
            self.reorthogonalizations += 1;
        }
        Ok(d)
    }

    /// How many QR repairs the guard (or [`CayleyStep::reorthogonalize_if`]) has made.
    pub fn reorthogonalizations(&self) -> usize {
        self.reorthogonalizations
    }

    /// The drift at the last check (before any repair), if any check ran.
    pub fn last_drift(&self) -> Option<f64> {
        self.last_drift
    }

    /// Steps taken with this workspace.
    pub fn steps(&self) -> usize {
        self.steps
    }
}

/// One geodesic Cayley step on `M`, fast form, no drift check (allocates a workspace; keep a
/// [`CayleyStep`] in a loop).
pub fn cayley_step<B: Backend>(b: &B, m: SliceMut<B>, g: Slice<B>, n: usize, eta: f64) -> Result<()> {
    CayleyStep::new(b, n)?.with_guard(None).step(b, m, g, eta)
}

/// `W = (I + A)^{-1} (I - A)` and the LU factorization of `I + A` (for [`scornn_grad`]).
///
/// Solves `(I + A) W = I - A`: one LU and one solve, no inverse. For skew `A`, `I + A` is never
/// singular (its eigenvalues are `1 + i λ`); for other `A` a singular `I + A` is an
/// [`Error::Singular`].
pub fn cayley_transform<B: Backend>(b: &B, a: Slice<B>, n: usize) -> Result<(B::Buf, B::Lu)> {
    a.check("cayley_transform(A)", n * n)?;
    let (mut p, mut w) = (b.zeros(n * n)?, b.zeros(n * n)?);
    b.copy(a, SliceMut::all(&mut p))?;
    b.add_diag(SliceMut::all(&mut p), n, B::Elem::of(1.0))?;
    let lu = b.lu_factor(Slice::all(&p), n)?;
    b.lu_status(&lu)?;
    b.axpby(B::Elem::of(-1.0), a, B::Elem::of(0.0), SliceMut::all(&mut w))?;
    b.add_diag(SliceMut::all(&mut w), n, B::Elem::of(1.0))?;
    b.lu_solve(&lu, SliceMut::all(&mut w), n, false)?;
    Ok((w, lu))
}

/// The scoRNN gradient `dL/dA = V^T - V`, `V = (I + A)^{-T} G (D + W^T)`, for
/// `W = (I + A)^{-1}(I - A) D` (`w` is this full `W`, `d` the diagonal of `D`, `lu` the LU of
/// `I + A` from [`cayley_transform`], `g = dL/dW`). See the module docs for the convention.
pub fn scornn_grad<B: Backend>(b: &B, lu: &B::Lu, w: Slice<B>, d: Slice<B>, g: Slice<B>, n: usize) -> Result<B::Buf> {
    let (mut v, mut out) = (b.zeros(n * n)?, b.zeros(n * n)?);
    scornn_grad_into(b, lu, w, d, g, n, &mut v, SliceMut::all(&mut out))?;
    Ok(out)
}

/// [`scornn_grad`] with a caller's `n x n` scratch buffer `v` and output view.
#[allow(clippy::too_many_arguments)]
fn scornn_grad_into<B: Backend>(
    b: &B,
    lu: &B::Lu,
    w: Slice<B>,
    d: Slice<B>,
    g: Slice<B>,
    n: usize,
    v: &mut B::Buf,
    out: SliceMut<B>,
) -> Result<()> {
    w.check("scornn_grad(W)", n * n)?;
    d.check("scornn_grad(D)", n)?;
    g.check("scornn_grad(G)", n * n)?;
    out.check("scornn_grad(out)", n * n)?;
    // v = G D + G W^T, then v <- (I + A)^{-T} v, out = v^T - v.
    b.scale_cols(g, d, n, n, SliceMut::all(v))?;
    let gemm = Gemm::new(n, n, n).tb().beta(B::Elem::of(1.0));
    b.gemm(&gemm, g, w, SliceMut::all(v), Epilogue::none())?;
    b.lu_solve(lu, SliceMut::all(v), n, true)?;
    b.skew(Slice::all(v), n, B::Elem::of(-1.0), out)
}

/// The scoRNN map `A -> W = (I + A)^{-1} (I - A) D` with its backward, holding its buffers and the
/// LU of `I + A` between the forward and the backward pass.
pub struct Scornn<B: Backend> {
    n: usize,
    w: B::Buf,
    p: B::Buf,
    v: B::Buf,
    d: B::Buf,
    /// The factorization of `I + A` (valid once `factored`).
    lu: B::Lu,
    factored: bool,
}

impl<B: Backend> Scornn<B> {
    /// Workspace for `n x n` matrices.
    pub fn new(b: &B, n: usize) -> Result<Self> {
        let [w, p, v] = square_zeros::<B, 3>(b, n)?;
        Ok(Scornn { n, w, p, v, d: b.zeros(n)?, lu: b.lu_new(n)?, factored: false })
    }

    /// Builds `W` from skew `A` and the diagonal `d` of `D` (entries `±1`).
    pub fn forward(&mut self, b: &B, a: Slice<B>, d: Slice<B>) -> Result<()> {
        let n = self.n;
        a.check("scornn(A)", n * n)?;
        d.check("scornn(D)", n)?;
        b.copy(a, SliceMut::all(&mut self.p))?;
        b.add_diag(SliceMut::all(&mut self.p), n, B::Elem::of(1.0))?;
        b.lu_factor_into(Slice::all(&self.p), &mut self.lu)?;
        // p <- I - A (the factorization holds its own copy), solve, scale columns by d.
        b.axpby(B::Elem::of(-1.0), a, B::Elem::of(0.0), SliceMut::all(&mut self.p))?;
        b.add_diag(SliceMut::all(&mut self.p), n, B::Elem::of(1.0))?;
        b.lu_solve(&self.lu, SliceMut::all(&mut self.p), n, false)?;
        b.scale_cols(Slice::all(&self.p), d, n, n, SliceMut::all(&mut self.w))?;
        b.copy(d, SliceMut::all(&mut self.d))?;
        self.factored = true;
        Ok(())
    }

    /// `W` from the last [`Scornn::forward`].
    pub fn w(&self) -> &B::Buf {
        &self.w
    }

    /// `dL/dA = V^T - V` into `out` from `G = dL/dW` (after [`Scornn::forward`]).
    pub fn backward(&mut self, b: &B, g: Slice<B>, out: SliceMut<B>) -> Result<()> {
        if !self.factored {
            return Err(Error::invalid(
                "scornn backward",
                "called first",
                "run Scornn::forward before Scornn::backward",
            ));
        }
        scornn_grad_into(b, &self.lu, Slice::all(&self.w), Slice::all(&self.d), g, self.n, &mut self.v, out)
    }
}
