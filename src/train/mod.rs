//! The trainer: iterations, evaluation, metrics, checkpoints, progress.
//!
//! One iteration: draw training batch `i` (a pure function of the seed and `i`), forward and
//! backward, stop on a non-finite loss, clip and step the optimizer, let the model do its
//! housekeeping (base changes, drift checks). Every `eval_every` iterations and at the end: evaluate
//! on the held-out set, compute diagnostics, append a metrics record, update the progress display,
//! and write a checkpoint when one is due.

pub mod bench;
pub mod best;
pub mod build;
pub mod checkpoint;
pub mod divergence;
pub mod job;
pub mod memory;
pub mod metrics;
pub mod outputs;
pub mod progress;
pub mod spikes;
pub mod trajectory;

use crate::backend::{Backend, Precision};
use crate::error::{Error, Result};
use crate::nn::{BatchStats, Model, Pass};
use crate::optim::{OptimConfig, Optimizer, StepInfo};
use crate::tasks::{LossKind, Task};
use metrics::{EvalRecord, MetricsWriter};
use progress::Progress;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Instant;

/// Loop settings.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Total iterations.
    pub iters: usize,
    /// Batch size.
    pub batch: usize,
    /// Evaluate every this many iterations (and at the end).
    pub eval_every: usize,
    /// Seed of data and initialization.
    pub seed: u64,
    /// JSON-lines metrics file.
    pub metrics: Option<PathBuf>,
    /// Record per-step gradient norms at each evaluation.
    pub record_grad_norms: bool,
    /// Compute singular values and drift at each evaluation.
    pub diagnostics: bool,
    /// Progress display.
    pub progress: progress::Mode,
    /// Where and how often to write checkpoints.
    pub checkpoint: Option<Checkpointing>,
}

/// Checkpoint settings of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpointing {
    /// The checkpoint file (rewritten atomically each time).
    pub path: PathBuf,
    /// Write every this many iterations (and at the end).
    pub every: usize,
    /// The run specification stored in the checkpoint (JSON of a [`RunSpec`]).
    pub run: String,
}

/// Everything that defines a run: what a checkpoint stores so `--resume` can rebuild it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    pub task: crate::tasks::TaskSpec,
    pub model: build::ModelSpec,
    pub optim: OptimConfig,
    pub batch: usize,
    pub seed: u64,
    pub eval_every: usize,
    pub iters: usize,
    /// The arithmetic of the network's matrix products (`--precision`; checkpoints written before the
    /// flag existed read as `fp32`).
    #[serde(default)]
    pub precision: Precision,
}

impl TrainConfig {
    /// `iters` iterations on batches of `batch`, evaluated once at the end; seed 0, no metrics
    /// file, no diagnostics, no checkpoints, no progress display. Set the public fields for more.
    ///
    /// ```
    /// use ortho_rnn::prelude::*;
    /// let cfg = TrainConfig { eval_every: 100, diagnostics: true, ..TrainConfig::new(500, 32) };
    /// assert!(cfg.validate().is_ok());
    /// assert!(TrainConfig::new(0, 32).validate().is_err()); // at least one iteration
    /// ```
    pub fn new(iters: usize, batch: usize) -> Self {
        TrainConfig {
            iters,
            batch,
            eval_every: iters.max(1),
            seed: 0,
            metrics: None,
            record_grad_norms: false,
            diagnostics: false,
            progress: progress::Mode::Quiet,
            checkpoint: None,
        }
    }

    /// Checks the loop settings.
    pub fn validate(&self) -> Result<()> {
        if self.iters == 0 {
            return Err(Error::invalid("--iters", 0, "train for at least one iteration"));
        }
        if self.batch == 0 {
            return Err(Error::invalid("--batch", 0, "the batch size must be at least 1"));
        }
        if self.eval_every == 0 {
            return Err(Error::invalid("--eval-every", 0, "must be at least 1"));
        }
        if self.checkpoint.as_ref().is_some_and(|c| c.every == 0) {
            return Err(Error::invalid("--checkpoint-every", 0, "must be at least 1"));
        }
        Ok(())
    }
}

/// The one-line summary of a run (`--json`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub task: String,
    pub model: String,
    pub device: String,
    /// The arithmetic of the network's matrix products.
    #[serde(default)]
    pub precision: Precision,
    pub hidden: usize,
    pub seq_len: usize,
    pub batch: usize,
    pub iters: usize,
    /// Final evaluation loss.
    pub loss: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mse: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bpc: Option<f64>,
    /// The task's trivial-predictor loss.
    pub baseline: f64,
    /// Training seconds (excluding evaluation).
    pub seconds: f64,
    pub ms_per_iter: f64,
    /// Why the run counts as diverged ([`divergence`]), set by the caller that watched it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diverged: Option<String>,
    /// The best evaluation of the run ([`best`]), beside the final one above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best: Option<best::BestEval>,
    /// Instabilities seen during training ([`spikes`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spikes: Vec<spikes::Spike>,
}

/// Evaluation of a model on a task's held-out set.
pub fn evaluate<B: Backend>(model: &mut dyn Model<B>, task: &dyn Task, batch: usize) -> Result<BatchStats> {
    let mut total = BatchStats::default();
    for i in 0..task.eval_batches(batch) {
        let st = model.run(&task.eval_batch(i, batch)?, Pass::Eval)?;
        total.merge(&st);
    }
    Ok(total)
}

/// A training run in progress.
pub struct Trainer<'a, B: Backend> {
    pub b: B,
    pub model: Box<dyn Model<B>>,
    pub opt: Optimizer<B>,
    pub task: &'a dyn Task,
    pub cfg: TrainConfig,
    /// Iterations completed (non-zero after a resume).
    pub iter: usize,
    /// Training seconds accumulated before this process (after a resume).
    pub prior_seconds: f64,
    /// Training seconds in this process.
    elapsed: f64,
    last_finite: Option<f64>,
    /// The optimizer step of the last iteration (gradient norm, clipping).
    pub last_step: StepInfo,
    /// Records the first iterations for a reference replay (`--dump-trajectory`).
    pub trajectory: Option<trajectory::Recorder>,
    /// Gradient-norm and loss spikes.
    pub spikes: spikes::SpikeDetector,
    /// The best evaluation so far.
    pub best: best::BestTracker,
    /// `--keep-best`: the checkpoint file of the best evaluation and the run specification it stores.
    pub keep_best: Option<(PathBuf, String)>,
}

impl<'a, B: Backend> Trainer<'a, B> {
    /// A trainer for `model` on `task`.
    pub fn new(
        b: &B,
        model: Box<dyn Model<B>>,
        opt: OptimConfig,
        task: &'a dyn Task,
        cfg: TrainConfig,
    ) -> Result<Self> {
        cfg.validate()?;
        let opt = Optimizer::new(b, opt, model.params())?;
        Ok(Trainer {
            b: b.clone(),
            model,
            opt,
            task,
            cfg,
            iter: 0,
            prior_seconds: 0.0,
            elapsed: 0.0,
            last_finite: None,
            last_step: StepInfo::default(),
            trajectory: None,
            spikes: spikes::SpikeDetector::new(spikes::SpikeConfig::default(), task.baseline().loss),
            best: best::BestTracker::default(),
            keep_best: None,
        })
    }

    /// Training seconds spent in this process (evaluation excluded).
    pub fn train_seconds(&self) -> f64 {
        self.elapsed
    }

    /// One training iteration; returns the batch statistics.
    pub fn step(&mut self) -> Result<BatchStats> {
        let batch = self.task.train_batch(self.iter, self.cfg.batch)?;
        let (st, info) = bench::train_iteration(&self.b, self.model.as_mut(), &mut self.opt, self.iter, &batch, None)?;
        let objective = st.loss + st.reg;
        if !objective.is_finite() {
            return Err(self.non_finite(objective));
        }
        self.last_step = info.map_err(|e| match e {
            Error::InvalidArg { name: "gradient", .. } => self.non_finite(f64::NAN),
            e => e,
        })?;
        self.iter += 1;
        self.last_finite = Some(st.loss);
        self.spikes.observe(self.iter, st.loss, self.last_step.grad_norm);
        if let Some(rec) = self.trajectory.as_mut() {
            rec.record(&self.b, self.iter, &batch, &st, self.last_step, self.model.params())?;
        }
        Ok(st)
    }

    fn non_finite(&self, value: f64) -> Error {
        Error::NonFiniteLoss {
            iter: self.iter + 1,
            value,
            last_finite: match (self.last_finite, self.iter) {
                (Some(v), _) => format!("{v:.6}"),
                (None, 0) => "none (the first iteration failed)".into(),
                (None, i) => format!("none in this process, which resumed at iteration {i}"),
            },
        }
    }

    /// Evaluates and builds a metrics record.
    pub fn record(&mut self, seconds: f64, train_loss: Option<f64>) -> Result<EvalRecord> {
        let st = evaluate(self.model.as_mut(), self.task, self.cfg.batch)?;
        let mut rec = EvalRecord {
            iter: self.iter,
            seconds,
            loss: st.loss,
            train_loss,
            precision: Some(self.b.gemm_precision()),
            ..Default::default()
        };
        match self.task.loss() {
            LossKind::MseLastStep { .. } => rec.mse = Some(st.loss),
            _ => rec.accuracy = st.accuracy(),
        }
        if self.task.reports_bpc() {
            rec.bpc = Some(st.loss / std::f64::consts::LN_2);
        }
        if let Some(size) = self.task.train_size() {
            rec.epoch = Some(self.iter as f64 * self.cfg.batch as f64 / size as f64);
        }
        if self.cfg.diagnostics {
            let d = self.model.diagnostics()?;
            let sv = &d.singular_values;
            if !sv.is_empty() {
                let mean = sv.iter().sum::<f64>() / sv.len() as f64;
                let var = sv.iter().map(|s| (s - mean) * (s - mean)).sum::<f64>() / sv.len() as f64;
                rec.sv_min = sv.iter().copied().reduce(f64::min);
                rec.sv_max = sv.iter().copied().reduce(f64::max);
                rec.sv_mean = Some(mean);
                rec.sv_std = Some(var.sqrt());
            }
            rec.drift_u = d.drift_u;
            rec.drift_v = d.drift_v;
            let geodesic = self.model.params().iter().any(|p| p.update == crate::nn::Update::Geodesic);
            rec.reorth = match (d.reorth, geodesic) {
                (None, false) => None,
                (r, _) => Some(r.unwrap_or(0) + self.opt.reorthogonalizations()),
            };
            rec.prelu_slope = d.prelu_slope;
        }
        if self.cfg.record_grad_norms {
            self.model.record_grad_norms(true);
            let batch = self.task.train_batch(self.iter, self.cfg.batch)?;
            self.model.run(&batch, Pass::Train)?;
            self.model.record_grad_norms(false);
            rec.grad_norms = self.model.grad_norms()?;
        }
        Ok(rec)
    }

    /// Runs to `cfg.iters`, calling `on_eval` after every evaluation (checkpoints hook in there).
    pub fn run(&mut self, mut on_eval: impl FnMut(&mut Self, &EvalRecord) -> Result<()>) -> Result<Summary> {
        let mut writer = match &self.cfg.metrics {
            Some(p) => Some(MetricsWriter::create(p, self.iter > 0)?),
            None => None,
        };
        let mut progress = Progress::new(self.cfg.progress.clone(), self.cfg.iters, self.iter);
        let (mut loss_sum, mut loss_n) = (0.0, 0usize);
        let mut last: Option<EvalRecord> = None;
        let start_iter = self.iter;
        while self.iter < self.cfg.iters {
            let t0 = Instant::now();
            let st = self.step()?;
            self.elapsed += t0.elapsed().as_secs_f64();
            loss_sum += st.loss;
            loss_n += 1;
            progress.tick(self.iter, st.loss);
            if self.iter.is_multiple_of(self.cfg.eval_every) || self.iter == self.cfg.iters {
                let seconds = self.prior_seconds + self.elapsed;
                let mut rec = self.record(seconds, Some(loss_sum / loss_n as f64))?;
                (loss_sum, loss_n) = (0.0, 0);
                rec.spikes = self.spikes.take_new();
                if self.best.observe(&rec)
                    && let Some((path, run)) = &self.keep_best
                {
                    checkpoint::save(path, self, run)?;
                }
                if let Some(w) = writer.as_mut() {
                    w.write(&rec)?;
                }
                progress.eval(&rec, self.task.baseline().loss);
                on_eval(self, &rec)?;
                last = Some(rec);
            }
            if let Some(c) = &self.cfg.checkpoint
                && (self.iter.is_multiple_of(c.every) || self.iter == self.cfg.iters)
            {
                checkpoint::save(&c.path, self, &c.run)?;
            }
        }
        progress.finish();
        if let Some(rec) = self.trajectory.as_mut() {
            rec.finish()?;
        }
        let last = match last {
            Some(r) => r,
            None => self.record(self.prior_seconds, None)?,
        };
        let done = self.iter - start_iter;
        Ok(Summary {
            task: self.task.name(),
            model: self.model.name(),
            device: self.b.name(),
            precision: self.b.gemm_precision(),
            hidden: self.model.hidden(),
            seq_len: self.task.seq_len(),
            batch: self.cfg.batch,
            iters: self.iter,
            loss: last.loss,
            accuracy: last.accuracy,
            mse: last.mse,
            bpc: last.bpc,
            baseline: self.task.baseline().loss,
            seconds: self.prior_seconds + self.elapsed,
            ms_per_iter: if done > 0 { 1e3 * self.elapsed / done as f64 } else { 0.0 },
            diverged: None,
            best: self.best.best,
            spikes: self.spikes.spikes().to_vec(),
        })
    }
}
