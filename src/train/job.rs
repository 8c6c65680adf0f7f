//! One training run as `ortho-rnn train` runs it: build the task and model, restore a checkpoint,
//! keep the best evaluation, watch for loss spikes and divergence, record a trajectory.
//!
//! [`TrainJob::run_f32`] and [`TrainJob::run_cpu_f64`] are not generic: the trainer is compiled for
//! every backend once, in this crate, rather than again in every program that starts a run (the
//! binary's own build took 15 s of a first release build when it did this itself).

use super::checkpoint::{self, Checkpoint};
use super::divergence::{self, DivergenceWatch};
use super::progress::count;
use super::spikes::{SpikeConfig, SpikeDetector};
use super::trajectory::{DumpConfig, Recorder};
use super::{RunSpec, Summary, TrainConfig, Trainer};
use crate::backend::Backend;
use crate::backend::cpu::Cpu;
use crate::device::{BackendJob, DeviceKind, dispatch_with_precision};
use crate::error::{Error, Result};
use std::path::PathBuf;

/// A run with everything `ortho-rnn train` adds around [`Trainer::run`].
pub struct TrainJob {
    /// What to train (task, model, optimizer, batch, seed, iterations, precision).
    pub run: RunSpec,
    /// How to train it (metrics, checkpoints, progress).
    pub cfg: TrainConfig,
    /// A checkpoint to continue from, and the file it was read from.
    pub resume: Option<(Checkpoint, PathBuf)>,
    /// Where to keep the checkpoint of the best evaluation.
    pub keep_best: Option<PathBuf>,
    /// A loss above this multiple of the recent median counts as a spike (see [`SpikeConfig`]).
    pub spike_factor: f64,
    /// Record the trajectory (losses, gradients, parameters) of the first iterations.
    pub dump: Option<DumpConfig>,
}

impl TrainJob {
    /// Trains in f32 on `device` with the run's precision; `threads` as for
    /// [`crate::device::dispatch`].
    pub fn run_f32(self, device: DeviceKind, threads: usize) -> Result<Summary> {
        let precision = self.run.precision;
        dispatch_with_precision(device, threads, precision, self)
    }

    /// Trains in f64 on the CPU backend (`threads`: 0 for all cores).
    pub fn run_cpu_f64(self, threads: usize) -> Result<Summary> {
        self.run(&Cpu::<f64>::with_threads(threads))
    }
}

impl BackendJob for TrainJob {
    type Out = Summary;
    fn run<B: Backend>(self, b: &B) -> Result<Summary> {
        let task = self.run.task.build()?;
        let model = self.run.model.build(b, task.as_ref(), self.run.seed)?;
        let mut trainer = Trainer::new(b, model, self.run.optim, task.as_ref(), self.cfg)?;
        if let Some((ck, path)) = &self.resume {
            checkpoint::restore(&mut trainer, ck, path)?;
        }
        let run_json =
            || serde_json::to_string(&self.run).map_err(|e| Error::invalid("run", "specification", e.to_string()));
        if let Some(path) = self.keep_best {
            trainer.keep_best = Some((path, run_json()?));
        }
        trainer.spikes =
            SpikeDetector::new(SpikeConfig { factor: self.spike_factor, ..Default::default() }, task.baseline().loss);
        if let Some(dump) = self.dump {
            trainer.trajectory = Some(Recorder::new(b, dump, &self.run, trainer.model.params())?);
        }
        let mut watch = DivergenceWatch::new(divergence::reference(task.as_ref()));
        let mut summary = trainer.run(|_, rec| {
            watch.observe(rec.iter, rec.loss);
            Ok(())
        })?;
        if !summary.loss.is_finite() {
            watch.observe(summary.iters, summary.loss);
        }
        summary.diverged = watch.verdict();
        if let Some(rec) = &trainer.trajectory {
            println!("trajectory of {} in {}", count(rec.recorded(), "iteration"), rec.dir().display());
        }
        Ok(summary)
    }
}
