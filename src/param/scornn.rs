//! scoRNN (Helfrich et al. 2018): `W = (I + S)^{-1} (I - S) D`, `S` skew, `D` a fixed diagonal of ±1.
//!
//! The parameter `A` is stored skew and used through its skew part `S = (A - A^T) / 2` (equal to `A`
//! while it stays skew, which element-wise optimizers preserve; the projection makes `W` a function
//! of every entry, so gradients are those of an unconstrained matrix). With `G = dL/dW` and
//! `V = (I + S)^{-T} G (D + W^T)`: `dL/dA = (V^T - V) / 2` ([`crate::linalg::Scornn`] gives
//! `V^T - V`, the gradient with respect to the independent upper entries of a skew `A`; the two
//! differ by the factor 2, which RMSprop and Adam cancel). The LU factorization of `I + S` from the
//! forward build is reused by the backward solve.
//!
//! `D` has its first `neg` entries equal to -1 (the number of -1 entries is the hyperparameter;
//! their position does not matter up to a permutation of the hidden units).

use super::Transition;
use crate::backend::{Backend, Slice, SliceMut};
use crate::error::{Error, Result};
use crate::linalg::Scornn as ScornnMap;
use crate::linalg::skew_part;
use crate::scalar::Scalar;
use crate::weights::{Param, Update};

/// The scoRNN transition.
pub struct Scornn<B: Backend> {
    n: usize,
    map: ScornnMap<B>,
    d: B::Buf,
    s: B::Buf,
}

impl<B: Backend> Scornn<B> {
    /// The transition and its parameter `A` (skew `a0`), with `neg` entries of `D` equal to -1.
    pub fn new(b: &B, n: usize, neg: usize, a0: &[f64]) -> Result<(Self, Vec<Param<B>>)> {
        if neg > n {
            return Err(Error::invalid(
                "--neg",
                neg,
                format!("the number of -1 entries of D must be in [0, {n}] (the hidden size)"),
            ));
        }
        let d: Vec<B::Elem> = (0..n).map(|i| if i < neg { -B::Elem::ONE } else { B::Elem::ONE }).collect();
        let t = Scornn { n, map: ScornnMap::new(b, n)?, d: b.upload(&d)?, s: b.zeros(n * n)? };
        Ok((t, vec![Param::new(b, "A", &[n, n], a0, Update::Euclidean)?]))
    }
}

impl<B: Backend> Transition<B> for Scornn<B> {
    fn name(&self) -> String {
        "scornn".into()
    }
    fn build(&mut self, b: &B, params: &[Param<B>], w: SliceMut<B>) -> Result<()> {
        skew_part(b, params[0].v(), self.n, SliceMut::all(&mut self.s))?;
        self.map.forward(b, Slice::all(&self.s), Slice::all(&self.d))?;
        b.copy(Slice::all(self.map.w()), w)
    }
    fn backward(&mut self, b: &B, params: &mut [Param<B>], _w: Slice<B>, g: Slice<B>) -> Result<f64> {
        let grad = SliceMut::all(&mut params[0].grad);
        self.map.backward(b, g, grad)?;
        b.scale(SliceMut::all(&mut params[0].grad), B::Elem::of(0.5))?;
        Ok(0.0)
    }
}
