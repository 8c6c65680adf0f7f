//! expRNN and dynamic trivializations DTRIV-K (Lezcano-Casado 2019): `W = B exp(S)`, `S` skew.
//!
//! The parameter `A` is stored skew and used through `S = (A - A^T) / 2`. Gradient, with
//! `G = dL/dW` and `G' = B^T G`: `dL/dA = skew(L_exp(S^T, G'))`, the skew part of the adjoint Frechet
//! derivative ([`crate::linalg::ExpmFrechet::adjoint`], Al-Mohy and Higham's algorithm: one Pade
//! evaluation with its derivative instead of a `2n x 2n` exponential). Any Euclidean optimizer moves
//! `A`. Every `K` optimizer steps the base moves: `B <- B exp(S)`, `A <- 0` (K = 1 is Riemannian
//! gradient descent along the exponential map; K = infinity never moves `B`, which is expRNN).
//! `B` is a product of exponentials, so its drift from orthogonality is checked at each base change
//! and repaired by QR above the element type's tolerance (counted).
//!
//! Starting point: expRNN starts at `A = A_0`, `B = I`. DTRIV (any `K`, infinity included) starts
//! where the paper's algorithm does ("optimize `f o r_{p_i}` starting at the point 0 of
//! `T_{p_i} M`", Lezcano-Casado 2019) and the reference code (`Parametrization.B`, whose first call
//! rebases): `B = exp(A_0)`, `A = 0`, so the first gradient is taken at `A = 0`, where the
//! exponential's differential is the identity.

use super::Transition;
use crate::backend::{Backend, Epilogue, Gemm, Slice, SliceMut};
use crate::error::{Error, Result};
use crate::linalg::{DriftGuard, Expm, ExpmFrechet, drift, reorthogonalize, skew_part};
use crate::scalar::Scalar;
use crate::weights::{Diagnostics, Param, Update};

/// expRNN (`k = None`) or DTRIV-K.
pub struct ExpRnn<B: Backend> {
    n: usize,
    k: Option<usize>,
    expm: Expm<B>,
    frechet: ExpmFrechet<B>,
    s: B::Buf,
    e: B::Buf,
    gp: B::Buf,
    l: B::Buf,
    tmp: B::Buf,
    reorth: usize,
}

const A: usize = 0;
const BASE: usize = 1;

impl<B: Backend> ExpRnn<B> {
    /// The transition and its parameters `A` (skew `a0`) and the base `B` (orthogonal `b0`, not
    /// trained by the optimizer). `k`: base change period, `None` for never. `dynamic`: DTRIV, which
    /// starts from the base `b0 exp(a0)` and `A = 0` (see the module docs); false for expRNN.
    pub fn new(
        b: &B,
        n: usize,
        k: Option<usize>,
        dynamic: bool,
        a0: &[f64],
        b0: &[f64],
    ) -> Result<(Self, Vec<Param<B>>)> {
        if k == Some(0) {
            return Err(Error::invalid("--k", 0, "the base changes every K steps: K must be at least 1 (or inf)"));
        }
        let mut t = ExpRnn {
            n,
            k,
            expm: Expm::new(b, n)?,
            frechet: ExpmFrechet::new(b, n)?,
            s: b.zeros(n * n)?,
            e: b.zeros(n * n)?,
            gp: b.zeros(n * n)?,
            l: b.zeros(n * n)?,
            tmp: b.zeros(n * n)?,
            reorth: 0,
        };
        let mut params =
            vec![Param::new(b, "A", &[n, n], a0, Update::Euclidean)?, Param::new(b, "B", &[n, n], b0, Update::Frozen)?];
        if dynamic {
            t.rebase(b, &mut params)?;
        }
        Ok((t, params))
    }

    /// `B <- B exp(S(A))`, `A <- 0`, with the drift check of `B`.
    fn rebase(&mut self, b: &B, params: &mut [Param<B>]) -> Result<()> {
        let n = self.n;
        skew_part(b, params[A].v(), n, SliceMut::all(&mut self.s))?;
        self.expm.compute(b, Slice::all(&self.s), SliceMut::all(&mut self.e))?;
        b.gemm(
            &Gemm::new(n, n, n),
            params[BASE].v(),
            Slice::all(&self.e),
            SliceMut::all(&mut self.tmp),
            Epilogue::none(),
        )?;
        b.copy(Slice::all(&self.tmp), SliceMut::all(&mut params[BASE].value))?;
        b.fill(SliceMut::all(&mut params[A].value), B::Elem::ZERO)?;
        let guard = DriftGuard::default_for::<B::Elem>();
        if drift(b, params[BASE].v(), n)? > guard.tol {
            reorthogonalize(b, SliceMut::all(&mut params[BASE].value), n)?;
            self.reorth += 1;
        }
        Ok(())
    }
}

impl<B: Backend> Transition<B> for ExpRnn<B> {
    fn name(&self) -> String {
        match self.k {
            None => "exprnn".into(),
            Some(k) => format!("dtriv-{k}"),
        }
    }

    fn build(&mut self, b: &B, params: &[Param<B>], w: SliceMut<B>) -> Result<()> {
        let n = self.n;
        skew_part(b, params[A].v(), n, SliceMut::all(&mut self.s))?;
        self.expm.compute(b, Slice::all(&self.s), SliceMut::all(&mut self.e))?;
        b.gemm(&Gemm::new(n, n, n), params[BASE].v(), Slice::all(&self.e), w, Epilogue::none())
    }

    fn backward(&mut self, b: &B, params: &mut [Param<B>], _w: Slice<B>, g: Slice<B>) -> Result<f64> {
        let n = self.n;
        b.gemm(&Gemm::new(n, n, n).ta(), params[BASE].v(), g, SliceMut::all(&mut self.gp), Epilogue::none())?;
        self.frechet.adjoint(b, Slice::all(&self.s), Slice::all(&self.gp), None, SliceMut::all(&mut self.l))?;
        skew_part(b, Slice::all(&self.l), n, SliceMut::all(&mut params[A].grad))?;
        Ok(0.0)
    }

    fn after_update(&mut self, b: &B, params: &mut [Param<B>], step: usize) -> Result<()> {
        let Some(k) = self.k else { return Ok(()) };
        if !step.is_multiple_of(k) {
            return Ok(());
        }
        // B <- B exp(S(A)) with the updated A, then A <- 0.
        self.rebase(b, params)
    }

    fn diagnostics(&mut self, b: &B, params: &[Param<B>], d: &mut Diagnostics) -> Result<()> {
        d.drift_u = Some(drift(b, params[BASE].v(), self.n)?);
        d.reorth = Some(self.reorth);
        Ok(())
    }

    fn counters(&self) -> Vec<(String, f64)> {
        vec![("reorth".into(), self.reorth as f64)]
    }

    fn set_counters(&mut self, c: &[(String, f64)]) {
        if let Some((_, v)) = c.iter().find(|(k, _)| k == "reorth") {
            self.reorth = *v as usize;
        }
    }
}
