//! A plain orthogonal `W`, moved by geodesic (Cayley) steps at `--geo-lr`.

use super::Transition;
use crate::backend::{Backend, Slice, SliceMut};
use crate::error::Result;
use crate::linalg::orth::drift;
use crate::weights::{Diagnostics, Param, Update};

/// `W` on the orthogonal group.
pub struct Orthogonal {
    n: usize,
}

impl Orthogonal {
    /// The transition and its one parameter `W` (orthogonal `w0`).
    pub fn new<B: Backend>(b: &B, n: usize, w0: &[f64]) -> Result<(Self, Vec<Param<B>>)> {
        Ok((Orthogonal { n }, vec![Param::new(b, "W", &[n, n], w0, Update::Geodesic)?]))
    }
}

impl<B: Backend> Transition<B> for Orthogonal {
    fn name(&self) -> String {
        "orthogonal".into()
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
    fn diagnostics(&mut self, b: &B, params: &[Param<B>], d: &mut Diagnostics) -> Result<()> {
        d.drift_u = Some(drift(b, params[0].v(), self.n)?);
        Ok(())
    }
}
