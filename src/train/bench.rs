//! Timing of whole training iterations: what `ortho-rnn bench` and the `runtime` experiment report.
//!
//! An iteration is everything the trainer does per step on the copy task: forward through all
//! `T + 20` steps, BPTT, the parametrization's backward map, clipping, the optimizer (and geodesic
//! steps). `flops_per_iter` counts the recurrent network's matrix products only
//! (see [`rnn_flops`]; four gate blocks for the LSTM); parametrization work is in the time but not
//! in the count.

use super::build::{ModelKind, ModelSpec};
use crate::backend::profile::{GpuModel, Profile};
use crate::backend::{Backend, Precision};
use crate::device::{BackendJob, DeviceKind, dispatch_with_precision};
use crate::error::Result;
use crate::nn::{BatchStats, Model, Pass, StageKey};
use crate::optim::{OptimConfig, Optimizer, StepInfo};
use crate::tasks::copy::CopyTask;
use crate::tasks::{Batch, Task};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// The result of a benchmark run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchResult {
    pub model: String,
    pub device: String,
    /// The arithmetic of the network's matrix products.
    #[serde(default)]
    pub precision: Precision,
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
    /// Training loss of the first and of the last iteration (warm-up included): with the same seed
    /// and batches on every device, the gap between precisions shows in `last_loss`.
    #[serde(default)]
    pub first_loss: f64,
    #[serde(default)]
    pub last_loss: f64,
    /// With `--profile`: what one iteration did on the device (see [`IterProfile`]).
    #[serde(default, skip_serializing_if = "Option::is_none", flatten)]
    pub profile: Option<IterProfile>,
}

/// Per-iteration device activity of a benchmark (the mean over the timed iterations), from the
/// driver's counters ([`crate::backend::profile`]); the bench's own synchronizations around each
/// timed iteration are not counted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IterProfile {
    /// Kernels run (a graph replay counts the kernels it runs).
    pub launches_per_iter: f64,
    /// Of those, kernels run by graph replays.
    pub graph_kernels_per_iter: f64,
    /// Points where the host waited for the device.
    pub host_syncs_per_iter: f64,
    /// Device allocations.
    pub allocs_per_iter: f64,
    /// Bytes allocated.
    pub alloc_bytes_per_iter: f64,
    /// Bytes copied host to device and device to host.
    pub htod_bytes_per_iter: f64,
    pub dtoh_bytes_per_iter: f64,
    /// Floating-point operations counted from the launch shapes (all ops, parametrizations
    /// included; `flops_per_iter` above counts the network's products only).
    pub launch_flops_per_iter: f64,
    /// Grid-wide barriers of cooperative kernels.
    pub grid_barriers_per_iter: f64,
    /// Which implementation ran where there is a choice (e.g. the recurrence's path).
    pub paths: std::collections::BTreeMap<String, String>,
    /// With `--predict`: the GPU and the predicted time of one iteration on it (a roofline estimate,
    /// see [`crate::backend::profile`]), in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predict_gpu: Option<GpuModel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted_ms: Option<f64>,
}

impl IterProfile {
    /// The mean of `total` over `iters` iterations, with `notes` and an optional prediction.
    pub fn from_total(total: &Profile, iters: usize, notes: Vec<(String, String)>, gpu: Option<GpuModel>) -> Self {
        let per = |v: f64| v / iters.max(1) as f64;
        IterProfile {
            launches_per_iter: per(total.launches as f64),
            graph_kernels_per_iter: per(total.graph_kernels as f64),
            host_syncs_per_iter: per(total.host_syncs as f64),
            allocs_per_iter: per(total.allocs as f64),
            alloc_bytes_per_iter: per(total.alloc_bytes as f64),
            htod_bytes_per_iter: per(total.htod_bytes as f64),
            dtoh_bytes_per_iter: per(total.dtoh_bytes as f64),
            launch_flops_per_iter: per(total.flops),
            grid_barriers_per_iter: per(total.grid_barriers as f64),
            paths: notes.into_iter().collect(),
            predict_gpu: gpu,
            predicted_ms: gpu.map(|g| per(total.predict_seconds(g) * 1e3)),
        }
    }
}

/// What `bench` measures besides time.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BenchOptions {
    /// Count device activity per iteration (`--profile`).
    pub profile: bool,
    /// Predict the time on this GPU from the counts (`--predict`; implies `profile`).
    pub predict: Option<GpuModel>,
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

/// A captured graph of the graph-safe part of a training iteration, for one [`StageKey`].
#[derive(Debug, Default)]
pub struct GraphCache {
    graph: Option<(StageKey, u64)>,
    /// The key of the last iteration run directly: a graph is captured on the second iteration in a
    /// row with the same key, so that device-side state (the optimizer's table and step counter) is
    /// already in place and nothing has to be uploaded inside the capture.
    last_direct: Option<StageKey>,
    /// Set when graphs are unavailable (the CPU) or a capture failed; then iterations run directly.
    disabled: bool,
}

/// One training iteration of `model` with `opt` on `batch`, whose step number is `done + 1`: forward,
/// loss, BPTT, clipping and the optimizer update queued without host round trips, the parametrization's
/// housekeeping, then one read of the loss and the gradient norm (the iteration's one host
/// synchronization on a device, for models with a queued pass). With `graphs`, the graph-safe part
/// ([`Model::queue_launches`] and [`Optimizer::queue_euclidean`]) is captured once per batch shape and
/// replayed; geodesic steps and [`Model::after_update`] run directly after it. The step's result is
/// returned beside the statistics, so that a caller can judge a non-finite loss before a non-finite
/// gradient.
pub fn train_iteration<B: Backend>(
    b: &B,
    model: &mut dyn Model<B>,
    opt: &mut Optimizer<B>,
    done: usize,
    batch: &Batch,
    graphs: Option<&mut GraphCache>,
) -> Result<(BatchStats, Result<StepInfo>)> {
    let Some(key) = model.stage(batch)? else {
        let st = model.run(batch, Pass::Train)?;
        let info = opt.step(b, model.params_mut());
        model.after_update(done + 1)?;
        return Ok((st, info));
    };
    let mut replayed = false;
    if let Some(cache) = graphs.filter(|c| !c.disabled && model.graph_safe()) {
        if cache.graph.is_some_and(|(k, _)| k != key)
            && let Some((_, g)) = cache.graph.take()
        {
            b.drop_graph(g);
        }
        let mut captured_now = false;
        if cache.graph.is_none() && cache.last_direct == Some(key) {
            let step_before = opt.steps();
            let captured = b.capture(&mut || {
                model.queue_launches(Pass::Train)?;
                opt.queue_euclidean(b, model.params_mut())
            });
            match captured {
                Ok(Some(g)) => {
                    cache.graph = Some((key, g));
                    captured_now = true;
                }
                // No graphs on this backend, or the region synchronized with the host: run directly.
                Ok(None) | Err(_) => {
                    cache.disabled = true;
                    opt.set_steps(step_before);
                }
            }
        }
        if let Some((_, g)) = cache.graph {
            b.replay(g)?;
            if !captured_now {
                opt.note_replayed_step();
            }
            replayed = true;
        } else {
            cache.last_direct = Some(key);
        }
    }
    if replayed {
        opt.queue_geodesic(b, model.params_mut())?;
    } else {
        model.queue_launches(Pass::Train)?;
        opt.queue_step(b, model.params_mut())?;
    }
    model.after_update(done + 1)?;
    let v = b.tally_read()?;
    let st = model.stats(&v)?;
    Ok((st, Optimizer::<B>::info(&v)))
}

/// A model and its optimizer, stepped one whole training iteration at a time: the unit that
/// [`bench()`] and the Criterion benchmarks time.
pub struct Iteration<B: Backend> {
    model: Box<dyn Model<B>>,
    optim: Optimizer<B>,
    done: usize,
    graphs: Option<GraphCache>,
}

impl<B: Backend> Iteration<B> {
    /// Builds `spec` for `task` (seed 1) and its optimizer; iterations replay a captured graph where
    /// the backend and the model allow it.
    pub fn new(b: &B, spec: &ModelSpec, opt: OptimConfig, task: &dyn Task) -> Result<Self> {
        let model = spec.build(b, task, 1)?;
        let optim = Optimizer::new(b, opt, model.params())?;
        Ok(Iteration { model, optim, done: 0, graphs: Some(GraphCache::default()) })
    }

    /// Turns graph capture and replay on or off.
    pub fn with_graphs(mut self, on: bool) -> Self {
        self.graphs = on.then(GraphCache::default);
        self
    }

    /// Forward and BPTT on `batch`, the optimizer step, and the parametrization's update, with one
    /// host synchronization (see [`train_iteration`]).
    pub fn run(&mut self, b: &B, batch: &Batch) -> Result<(BatchStats, StepInfo)> {
        let (st, info) =
            train_iteration(b, self.model.as_mut(), &mut self.optim, self.done, batch, self.graphs.as_mut())?;
        self.done += 1;
        Ok((st, info?))
    }

    /// Whether the last iteration replayed a captured graph.
    pub fn replaying(&self) -> bool {
        self.graphs.as_ref().is_some_and(|g| g.graph.is_some())
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
    bench_with(b, spec, opt, seq_len, batch, iters, BenchOptions::default())
}

/// [`bench_with`] on the backend `device` names, with the products in `precision` (see
/// [`crate::device::dispatch_with_precision`]). Not generic, so the benchmark is compiled for every
/// backend here, once, rather than in each program that calls it.
#[allow(clippy::too_many_arguments)]
pub fn bench_on(
    device: DeviceKind,
    threads: usize,
    precision: Precision,
    spec: &ModelSpec,
    opt: OptimConfig,
    seq_len: usize,
    batch: usize,
    iters: usize,
    opts: BenchOptions,
) -> Result<BenchResult> {
    struct Job<'a> {
        spec: &'a ModelSpec,
        opt: OptimConfig,
        seq_len: usize,
        batch: usize,
        iters: usize,
        opts: BenchOptions,
    }
    impl BackendJob for Job<'_> {
        type Out = BenchResult;
        fn run<B: Backend>(self, b: &B) -> Result<BenchResult> {
            bench_with(b, self.spec, self.opt, self.seq_len, self.batch, self.iters, self.opts)
        }
    }
    dispatch_with_precision(device, threads, precision, Job { spec, opt, seq_len, batch, iters, opts })
}

/// [`fn@bench`] with a profile of the device activity per iteration and a predicted GPU time.
pub fn bench_with<B: Backend>(
    b: &B,
    spec: &ModelSpec,
    opt: OptimConfig,
    seq_len: usize,
    batch: usize,
    iters: usize,
    opts: BenchOptions,
) -> Result<BenchResult> {
    let task = CopyTask::new(seq_len, 1)?;
    let mut it = Iteration::new(b, spec, opt, &task)?;
    let mut times = Vec::with_capacity(iters);
    let (mut first_loss, mut last_loss) = (f64::NAN, f64::NAN);
    let mut total: Option<Profile> = None;
    for i in 0..iters + 2 {
        let data = task.train_batch(i, batch)?;
        b.synchronize()?;
        let p0 = b.profile();
        let t0 = Instant::now();
        last_loss = it.run(b, &data)?.0.loss;
        let p1 = b.profile();
        b.synchronize()?;
        if i == 0 {
            first_loss = last_loss;
        }
        if i >= 2 {
            times.push(t0.elapsed().as_secs_f64() * 1e3);
            if let (Some(p0), Some(p1)) = (p0, p1) {
                let d = p1.since(&p0);
                total = Some(total.unwrap_or_default().plus(&d));
            }
        }
    }
    let profile = (opts.profile || opts.predict.is_some())
        .then(|| IterProfile::from_total(&total.unwrap_or_default(), iters, b.path_notes(), opts.predict));
    times.sort_by(|a, b| a.total_cmp(b));
    let median_ms = if times.is_empty() { 0.0 } else { times[times.len() / 2] };
    let count = if spec.model == ModelKind::Lstm { lstm_flops } else { rnn_flops };
    let flops = count(task.seq_len(), batch, spec.hidden, task.input_dim(), task.loss().outputs());
    Ok(BenchResult {
        model: it.model().name(),
        device: b.name(),
        precision: b.gemm_precision(),
        hidden: spec.hidden,
        seq_len,
        batch,
        iters,
        median_ms,
        min_ms: times.first().copied().unwrap_or(0.0),
        flops_per_iter: flops,
        gflops: if median_ms > 0.0 { flops / (median_ms * 1e6) } else { 0.0 },
        first_loss,
        last_loss,
        profile,
    })
}
