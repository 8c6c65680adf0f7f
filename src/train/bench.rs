//! Timing of whole training iterations: what `ortho-rnn bench` and the `runtime` experiment report.
//!
//! An iteration is everything the trainer does per step on the copy task: forward through all
//! `T + 20` steps, BPTT, the parametrization's backward map, clipping, the optimizer (and geodesic
//! steps). `flops_per_iter` counts the recurrent network's matrix products only
//! (see [`rnn_flops`]; four gate blocks for the LSTM); parametrization work is in the time but not
//! in the count.

use super::build::{ModelKind, ModelSpec};
use crate::backend::Backend;
use crate::error::Result;
use crate::nn::{Model, Pass};
use crate::optim::{OptimConfig, Optimizer};
use crate::tasks::copy::CopyTask;
use crate::tasks::{Batch, Task};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// The result of a benchmark run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchResult {
    pub model: String,
    pub device: String,
    pub hidden: usize,
    /// The copy task's delay `T`; sequences have `T + 20` steps.
    pub seq_len: usize,
    pub batch: usize,
    pub iters: usize,
    pub median_ms: f64,
    pub min_ms: f64,
    pub flops_per_iter: f64,
    /// `flops_per_iter / median`.
    pub gflops: f64,
}

/// Multiply-add work of one training iteration of an Elman RNN, in flops: the recurrence forward
/// and backward and `dW` (3 x `2 L B n^2`), the input projection and `dV` (2 x `2 L B n m`), the
/// readout, `dW_o` and `dH` (3 x `2 L B n k`).
pub fn rnn_flops(steps: usize, batch: usize, n: usize, inputs: usize, outputs: usize) -> f64 {
    let (l, b, n, m, k) = (steps as f64, batch as f64, n as f64, inputs as f64, outputs as f64);
    2.0 * l * b * (3.0 * n * n + 2.0 * n * m + 3.0 * n * k)
}

/// [`rnn_flops`] for an LSTM: the recurrent and input products have four gate blocks (`4n` outputs).
pub fn lstm_flops(steps: usize, batch: usize, n: usize, inputs: usize, outputs: usize) -> f64 {
    let (l, b, n, m, k) = (steps as f64, batch as f64, n as f64, inputs as f64, outputs as f64);
    2.0 * l * b * (4.0 * (3.0 * n * n + 2.0 * n * m) + 3.0 * n * k)
}

/// A model and its optimizer, stepped one whole training iteration at a time: the unit that
/// [`bench()`] and the Criterion benchmarks time.
pub struct Iteration<B: Backend> {
    model: Box<dyn Model<B>>,
    optim: Optimizer<B>,
    done: usize,
}

impl<B: Backend> Iteration<B> {
    /// Builds `spec` for `task` (seed 1) and its optimizer.
    pub fn new(b: &B, spec: &ModelSpec, opt: OptimConfig, task: &dyn Task) -> Result<Self> {
        let model = spec.build(b, task, 1)?;
        let optim = Optimizer::new(b, opt, model.params())?;
        Ok(Iteration { model, optim, done: 0 })
    }

    /// Forward and BPTT on `batch`, the optimizer step, and the parametrization's update (queued:
    /// call [`Backend::synchronize`] to wait for a device).
    pub fn run(&mut self, b: &B, batch: &Batch) -> Result<()> {
        self.model.run(batch, Pass::Train)?;
        self.optim.step(b, self.model.params_mut())?;
        self.done += 1;
        self.model.after_update(self.done)
    }

    /// The model.
    pub fn model(&self) -> &dyn Model<B> {
        self.model.as_ref()
    }
}

/// Times `iters` training iterations (after two warm-up iterations) of `spec` on the copy task.
pub fn bench<B: Backend>(
    b: &B,
    spec: &ModelSpec,
    opt: OptimConfig,
    seq_len: usize,
    batch: usize,
    iters: usize,
) -> Result<BenchResult> {
    let task = CopyTask::new(seq_len, 1)?;
    let mut it = Iteration::new(b, spec, opt, &task)?;
    let mut times = Vec::with_capacity(iters);
    for i in 0..iters + 2 {
        let data = task.train_batch(i, batch)?;
        b.synchronize()?;
        let t0 = Instant::now();
        it.run(b, &data)?;
        b.synchronize()?;
        if i >= 2 {
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let median_ms = if times.is_empty() { 0.0 } else { times[times.len() / 2] };
    let count = if spec.model == ModelKind::Lstm { lstm_flops } else { rnn_flops };
    let flops = count(task.seq_len(), batch, spec.hidden, task.input_dim(), task.loss().outputs());
    Ok(BenchResult {
        model: it.model().name(),
        device: b.name(),
        hidden: spec.hidden,
        seq_len,
        batch,
        iters,
        median_ms,
        min_ms: times.first().copied().unwrap_or(0.0),
        flops_per_iter: flops,
        gflops: if median_ms > 0.0 { flops / (median_ms * 1e6) } else { 0.0 },
    })
}
