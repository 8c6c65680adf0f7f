//! The unconstrained transition: `W` is itself the parameter (the plain Elman RNN).

use super::Transition;
use crate::backend::{Backend, Slice, SliceMut};
use crate::error::Result;
use crate::weights::{Param, Update};

/// `W` trained directly by the base optimizer.
pub struct Free;

impl Free {
    /// The parameter list: one `n x n` matrix named `W`, initialized from `w0`.
    pub fn params<B: Backend>(b: &B, n: usize, w0: &[f64]) -> Result<Vec<Param<B>>> {
        Ok(vec![Param::new(b, "W", &[n, n], w0, Update::Euclidean)?])
    }
}

impl<B: Backend> Transition<B> for Free {
    fn name(&self) -> String {
        "rnn".into()
    }
    fn build(&mut self, b: &B, params: &[Param<B>], w: SliceMut<B>) -> Result<()> {
        b.copy(params[0].v(), w)
    }
    fn graph_safe(&self) -> bool {
        true
    }
    fn backward(&mut self, b: &B, params: &mut [Param<B>], _w: Slice<B>, g: Slice<B>) -> Result<f64> {
        b.copy(g, SliceMut::all(&mut params[0].grad))?;
        Ok(0.0)
    }
}
