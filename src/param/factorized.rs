//! The factorized transition of Vorontsov et al. 2017: `W = U diag(s) V^T`, `U` and `V` orthogonal.
//!
//! `U` and `V` are moved by geodesic (Cayley) steps at `--geo-lr` ([`crate::optim`]); the spectrum:
//! - margin `m > 0`: `s = 2m (sigmoid(p) - 1/2) + 1`, so `s_i` lies in `[1 - m, 1 + m]`, with
//!   `dL/dp = 2m sigmoid'(p) dL/ds` and the learning rate on `p` divided by `2m` (so the step does
//!   not shrink with the margin); `p` starts at 0 (`s = 1`);
//! - margin `0`: `s = 1`, a purely orthogonal `W = U V^T`;
//! - no margin: `s` is trained directly (starting at 1).
//!
//! Backward, with `G = dL/dW`: `dL/dU = G V diag(s)`, `dL/dV = G^T U diag(s)`,
//! `dL/ds_i = (U^T G V)_ii = sum_j U_ji (G V)_ji`. The mean-one Gaussian prior
//! `lambda sum_i (s_i - 1)^2` adds `2 lambda (s - 1)` to `dL/ds`.
//!
//! Parameters: `U [n, n]`, `V [n, n]`, then `p [n]` (margin) or `s [n]` (no margin).

use super::Transition;
use crate::backend::{Backend, Epilogue, Gemm, MapOp, Slice, SliceMut};
use crate::error::{Error, Result};
use crate::linalg::orth::drift;
use crate::scalar::Scalar;
use crate::weights::{Diagnostics, Param, Update};

/// How the singular values are parametrized.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Spectrum {
    /// `s = 2m (sigmoid(p) - 1/2) + 1` with margin `m > 0`.
    Margin(f64),
    /// `s = 1` (margin 0).
    Orthogonal,
    /// `s` trained directly ("no margin").
    Free,
}

impl Spectrum {
    /// From a margin flag: `None` is "no margin", `Some(0)` orthogonal.
    ///
    /// ```
    /// use ortho_rnn::prelude::*;
    /// assert_eq!(Spectrum::from_margin(Some(0.1))?, Spectrum::Margin(0.1));
    /// assert_eq!(Spectrum::from_margin(Some(0.0))?, Spectrum::Orthogonal);
    /// assert!(Spectrum::from_margin(Some(-1.0)).is_err());
    /// # Ok::<(), ortho_rnn::Error>(())
    /// ```
    pub fn from_margin(m: Option<f64>) -> Result<Self> {
        match m {
            None => Ok(Spectrum::Free),
            Some(m) if !(m.is_finite() && m >= 0.0) => Err(Error::invalid(
                "--margin",
                m,
                "the spectral margin must be >= 0 (or `none` for an unbounded spectrum)",
            )),
            Some(0.0) => Ok(Spectrum::Orthogonal),
            Some(m) => Ok(Spectrum::Margin(m)),
        }
    }
}

/// `W = U diag(s) V^T`.
pub struct Factorized<B: Backend> {
    n: usize,
    spectrum: Spectrum,
    prior: f64,
    s: B::Buf,
    ones: B::Buf,
    us: B::Buf,
    gv: B::Buf,
    ds: B::Buf,
}

const U: usize = 0;
const V: usize = 1;
const SPEC: usize = 2;

impl<B: Backend> Factorized<B> {
    /// The transition and its parameters: `u0`, `v0` are orthogonal `n x n` (row-major); `s0` is
    /// the initial spectrum of a [`Spectrum::Free`] model (`None`: all ones, `W = U V^T`).
    pub fn new(
        b: &B,
        n: usize,
        spectrum: Spectrum,
        prior: f64,
        u0: &[f64],
        v0: &[f64],
        s0: Option<&[f64]>,
    ) -> Result<(Self, Vec<Param<B>>)> {
        if s0.is_some() && spectrum != Spectrum::Free {
            return Err(Error::Inapplicable {
                flag: "an initial spectrum",
                context: "a spectral margin".into(),
                hint: "with a margin the spectrum starts at 1; use --margin none".into(),
            });
        }
        if prior > 0.0 && spectrum == Spectrum::Orthogonal {
            return Err(Error::Inapplicable {
                flag: "--reg spectrum-prior",
                context: "--margin 0".into(),
                hint: "with margin 0 the spectrum is fixed at 1; use a positive margin or --margin none".into(),
            });
        }
        let mut params = vec![
            Param::new(b, "U", &[n, n], u0, Update::Geodesic)?,
            Param::new(b, "V", &[n, n], v0, Update::Geodesic)?,
        ];
        match spectrum {
            Spectrum::Margin(m) => {
                params.push(Param::new(b, "p", &[n], &vec![0.0; n], Update::Euclidean)?.with_lr_mult(1.0 / (2.0 * m)))
            }
            Spectrum::Free => {
                let ones = vec![1.0; n];
                params.push(Param::new(b, "s", &[n], s0.unwrap_or(&ones), Update::Euclidean)?)
            }
            Spectrum::Orthogonal => {}
        }
        let ones = b.upload(&vec![B::Elem::ONE; n])?;
        let t = Factorized {
            n,
            spectrum,
            prior,
            s: b.upload(&vec![B::Elem::ONE; n])?,
            ones,
            us: b.zeros(n * n)?,
            gv: b.zeros(n * n)?,
            ds: b.zeros(n)?,
        };
        Ok((t, params))
    }

    /// The current singular-value vector `s` (after the last build).
    pub fn spectrum(&self, b: &B) -> Result<Vec<B::Elem>> {
        b.download(Slice::all(&self.s))
    }
}

impl<B: Backend> Transition<B> for Factorized<B> {
    fn name(&self) -> String {
        "factorized".into()
    }

    fn build(&mut self, b: &B, params: &[Param<B>], w: SliceMut<B>) -> Result<()> {
        let n = self.n;
        match self.spectrum {
            Spectrum::Margin(m) => b.map(MapOp::Margin { m }, params[SPEC].v(), SliceMut::all(&mut self.s))?,
            Spectrum::Free => b.copy(params[SPEC].v(), SliceMut::all(&mut self.s))?,
            Spectrum::Orthogonal => {}
        }
        b.scale_cols(params[U].v(), Slice::all(&self.s), n, n, SliceMut::all(&mut self.us))?;
        b.gemm(&Gemm::new(n, n, n).tb(), Slice::all(&self.us), params[V].v(), w, Epilogue::none())
    }

    fn graph_safe(&self) -> bool {
        self.prior == 0.0 // the spectrum prior reads its loss back
    }

    fn backward(&mut self, b: &B, params: &mut [Param<B>], _w: Slice<B>, g: Slice<B>) -> Result<f64> {
        let n = self.n;
        let s = Slice::<B>::all(&self.s);
        // dU = (G V) diag(s); ds = diag(U^T G V).
        b.gemm(&Gemm::new(n, n, n), g, params[V].v(), SliceMut::all(&mut self.gv), Epilogue::none())?;
        b.scale_cols(Slice::all(&self.gv), s, n, n, SliceMut::all(&mut params[U].grad))?;
        b.col_dot(params[U].v(), Slice::all(&self.gv), n, n, SliceMut::all(&mut self.ds))?;
        // dV = (G^T U) diag(s), through gv as scratch.
        b.gemm(&Gemm::new(n, n, n).ta(), g, params[U].v(), SliceMut::all(&mut self.gv), Epilogue::none())?;
        b.scale_cols(Slice::all(&self.gv), s, n, n, SliceMut::all(&mut params[V].grad))?;
        let mut loss = 0.0;
        if self.prior > 0.0 {
            // ds += 2 lambda (s - 1), with s - 1 formed in `us` (free until the next build).
            let mut dev = SliceMut::<B>::all(&mut self.us).sub(0, n);
            b.copy(s, dev.rb())?;
            b.axpby(-B::Elem::ONE, Slice::all(&self.ones), B::Elem::ONE, dev.rb())?;
            loss = self.prior * b.sum_sq(dev.as_ref())?;
            b.axpby(B::Elem::of(2.0 * self.prior), dev.as_ref(), B::Elem::ONE, SliceMut::all(&mut self.ds))?;
        }
        match self.spectrum {
            Spectrum::Margin(m) => {
                let (head, tail) = params.split_at_mut(SPEC);
                let _ = head;
                let p = &mut tail[0];
                b.map_bwd(MapOp::Margin { m }, Slice::all(&p.value), Slice::all(&self.ds), SliceMut::all(&mut p.grad))?;
            }
            Spectrum::Free => b.copy(Slice::all(&self.ds), SliceMut::all(&mut params[SPEC].grad))?,
            Spectrum::Orthogonal => {}
        }
        Ok(loss)
    }

    fn diagnostics(&mut self, b: &B, params: &[Param<B>], d: &mut Diagnostics) -> Result<()> {
        d.drift_u = Some(drift(b, params[U].v(), self.n)?);
        d.drift_v = Some(drift(b, params[V].v(), self.n)?);
        Ok(())
    }
}
