//! Parametrizations of the recurrent matrix `W` and their backward maps.
//!
//! A [`Transition`] owns the recipe `W = f(theta)`: it builds `W` once per training step (its
//! `O(n^3)` cost is shared by all `T * B` recurrent products) and maps `G = dL/dW` back to
//! `dL/dtheta`. Its parameters live in the model's parameter list so that the optimizer, clipping
//! and checkpoints treat every model alike.

pub mod exprnn;
pub mod factorized;
pub mod free;
pub mod orthogonal;
pub mod scornn;

use crate::backend::{Backend, Slice, SliceMut};
use crate::error::Result;
use crate::weights::{Diagnostics, Param};

/// A parametrization of the `n x n` recurrent matrix.
pub trait Transition<B: Backend>: Send {
    /// Name (`rnn`, `factorized`, `orthogonal`, `scornn`, `exprnn`, `dtriv`).
    fn name(&self) -> String;
    /// Writes `W = f(theta)`.
    fn build(&mut self, b: &B, params: &[Param<B>], w: SliceMut<B>) -> Result<()>;
    /// Writes `dL/dtheta` into the parameters' gradients from `G = dL/dW` (and the current `W`).
    /// Returns the loss of regularizers the parametrization owns (the spectrum prior on `s`).
    fn backward(&mut self, b: &B, params: &mut [Param<B>], w: Slice<B>, g: Slice<B>) -> Result<f64>;
    /// Whether `build` and `backward` queue the same device work with the same arguments on every call
    /// (no host readbacks, no host-side choices): then a captured graph can replay them.
    fn graph_safe(&self) -> bool {
        false
    }
    /// Housekeeping after the optimizer moved the parameters (`step` is 1-based).
    fn after_update(&mut self, _b: &B, _params: &mut [Param<B>], _step: usize) -> Result<()> {
        Ok(())
    }
    /// Adds parametrization-specific diagnostics (drift, re-orthogonalization count).
    fn diagnostics(&mut self, _b: &B, _params: &[Param<B>], _d: &mut Diagnostics) -> Result<()> {
        Ok(())
    }
    /// Counters to checkpoint.
    fn counters(&self) -> Vec<(String, f64)> {
        Vec::new()
    }
    /// Restores checkpointed counters.
    fn set_counters(&mut self, _c: &[(String, f64)]) {}
}
