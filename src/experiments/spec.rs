//! What one run of a sweep is: the serializable specification written to `config.json`, and the
//! table columns an experiment reports.
//!
//! A [`RunConfig`] names the run (its directory, its panel or table `group`, its legend `label`) and
//! holds a [`Job`]: a training run ([`TrainSpec`]) or a timing run ([`BenchSpec`]). A training run's
//! length is given either in iterations or in epochs of the task's training set ([`Duration`]); an
//! epoch-based length is resolved into iterations once the task is loaded
//! ([`TrainSpec::resolve`]), giving the trainer's [`RunSpec`] (the same JSON a checkpoint stores).

use crate::backend::{Activation, OptimRule};
use crate::error::{Error, Result};
use crate::nn::init::RecurrentInit;
use crate::optim::OptimConfig;
use crate::param::factorized::Spectrum;
use crate::tasks::{Task, TaskKind, TaskSpec};
use crate::train::RunSpec;
use crate::train::build::{ModelKind, ModelSpec};
use serde::{Deserialize, Serialize};

/// How big a sweep is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Size {
    /// A tiny size for CI: every experiment in seconds.
    Smoke,
    /// Minutes on 2 CPU cores: shorter sequences, fewer iterations, smaller models, data subsets.
    #[default]
    Quick,
    /// The paper's protocol.
    Full,
}

impl Size {
    /// `smoke`, `quick` or `full`.
    pub fn as_str(self) -> &'static str {
        match self {
            Size::Smoke => "smoke",
            Size::Quick => "quick",
            Size::Full => "full",
        }
    }
    /// All sizes, smallest first.
    pub const ALL: [Size; 3] = [Size::Smoke, Size::Quick, Size::Full];
    /// The caveat printed and written into `results.md` (empty for the full protocol).
    pub fn caveat(self) -> &'static str {
        match self {
            Size::Smoke => {
                "smoke mode: a tiny size for CI, not the paper's protocol; the numbers only show that the \
                 pipeline runs"
            }
            Size::Quick => {
                "quick mode: not the paper's protocol (shorter sequences, fewer iterations, smaller models, \
                 data subsets, larger learning rates); use --full for the paper's protocol"
            }
            Size::Full => "",
        }
    }
}

/// How long a training run lasts.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Duration {
    /// A fixed number of iterations, evaluating every `eval_every`.
    Iters { iters: usize, eval_every: usize },
    /// Epochs over the task's training set (`ceil(train_size / batch)` iterations each), with
    /// `evals_per_epoch` evaluations per epoch.
    Epochs { epochs: usize, evals_per_epoch: usize },
}

/// A training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainSpec {
    pub task: TaskSpec,
    pub model: ModelSpec,
    pub optim: OptimConfig,
    pub batch: usize,
    pub seed: u64,
    pub duration: Duration,
    /// Record `||dL/dh_t||` at every evaluation (Figure 2 heatmaps).
    pub record_grad_norms: bool,
    /// Singular values and drift at every evaluation (Figure 3).
    pub diagnostics: bool,
}

impl TrainSpec {
    /// The trainer's run specification, with the length resolved against the loaded task.
    pub fn resolve(&self, task: &dyn Task) -> Result<RunSpec> {
        let (iters, eval_every) = match self.duration {
            Duration::Iters { iters, eval_every } => (iters, eval_every),
            Duration::Epochs { epochs, evals_per_epoch } => {
                let size = task.train_size().ok_or_else(|| {
                    Error::invalid("duration", "epochs", format!("task {} has no fixed training set", task.name()))
                })?;
                let per_epoch = size.div_ceil(self.batch.max(1)).max(1);
                (epochs * per_epoch, (per_epoch / evals_per_epoch.max(1)).max(1))
            }
        };
        Ok(RunSpec {
            task: self.task.clone(),
            model: self.model.clone(),
            optim: self.optim,
            batch: self.batch,
            seed: self.seed,
            eval_every,
            iters,
            precision: Default::default(),
        })
    }

    /// Checks the model, optimizer and loop settings without building anything.
    pub fn validate(&self) -> Result<()> {
        self.model.validate()?;
        self.optim.validate()?;
        let zero = match self.duration {
            Duration::Iters { iters, eval_every } => iters == 0 || eval_every == 0,
            Duration::Epochs { epochs, evals_per_epoch } => epochs == 0 || evals_per_epoch == 0,
        };
        if zero || self.batch == 0 {
            return Err(Error::invalid("duration", format!("{:?}", self.duration), "every count must be at least 1"));
        }
        Ok(())
    }
}

/// A timing run ([`crate::train::bench::bench`] on the copy task).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchSpec {
    pub model: ModelSpec,
    pub optim: OptimConfig,
    /// Copy-task delay `T` (sequences of `T + 20` steps).
    pub seq_len: usize,
    pub batch: usize,
    pub iters: usize,
}

/// What a run does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Job {
    Train(TrainSpec),
    Bench(BenchSpec),
}

impl Job {
    /// The model specification.
    pub fn model(&self) -> &ModelSpec {
        match self {
            Job::Train(t) => &t.model,
            Job::Bench(b) => &b.model,
        }
    }
    /// The optimizer configuration.
    pub fn optim(&self) -> &OptimConfig {
        match self {
            Job::Train(t) => &t.optim,
            Job::Bench(b) => &b.optim,
        }
    }
}

/// One run of a sweep: what `config.json` holds (besides the device it ran on).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// The experiment's name.
    pub experiment: String,
    /// Directory name under the sweep's output directory (unique within the experiment).
    pub name: String,
    /// Panel or table the run belongs to (e.g. `T=200`).
    pub group: String,
    /// Legend entry and table row (e.g. `m=0.01`).
    pub label: String,
    pub size: Size,
    pub job: Job,
}

/// When a run counts as having "converged", for the iterations-to-criterion column.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Criterion {
    /// Evaluation accuracy at least this fraction.
    AccuracyAtLeast(f64),
    /// Evaluation mean squared error at most this.
    MseAtMost(f64),
}

impl Criterion {
    /// Column header text.
    pub fn describe(self) -> String {
        match self {
            Criterion::AccuracyAtLeast(a) => format!("first iter with acc >= {}%", a * 100.0),
            Criterion::MseAtMost(m) => format!("first iter with MSE <= {m}"),
        }
    }
}

/// A measured column of an experiment's results table.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Measure {
    /// Loss at the last evaluation.
    FinalLoss,
    /// Accuracy at the last evaluation (%).
    FinalAccuracy,
    /// Highest evaluation accuracy over the run (%).
    BestAccuracy,
    /// MSE at the last evaluation.
    FinalMse,
    /// Lowest evaluation MSE over the run.
    MinMse,
    /// Bits per character at the last evaluation.
    FinalBpc,
    /// Bits per character at the evaluation with the highest accuracy (the papers' model selection).
    BpcAtBestAccuracy,
    /// The first evaluated iteration meeting a criterion.
    Reached(Criterion),
    /// The trainable PReLU slope at the last evaluation.
    FinalPreluSlope,
    /// `[min, max]` singular value of `W` at the last evaluation.
    FinalSvRange,
    /// Median milliseconds per training iteration (timing runs).
    MedianMs,
    /// Fastest iteration in milliseconds (timing runs).
    MinMs,
    /// Training seconds (training runs) .
    Seconds,
    /// Instabilities (gradient-norm or loss spikes, [`crate::train::spikes`]) during training.
    Spikes,
}

impl Measure {
    /// Column header.
    pub fn header(self) -> String {
        match self {
            Measure::FinalLoss => "final loss".into(),
            Measure::FinalAccuracy => "final acc %".into(),
            Measure::BestAccuracy => "best acc %".into(),
            Measure::FinalMse => "final MSE".into(),
            Measure::MinMse => "min MSE".into(),
            Measure::FinalBpc => "final bpc".into(),
            Measure::BpcAtBestAccuracy => "bpc at best acc".into(),
            Measure::Reached(c) => c.describe(),
            Measure::FinalPreluSlope => "final PReLU slope".into(),
            Measure::FinalSvRange => "final sv [min, max]".into(),
            Measure::MedianMs => "median ms/iter".into(),
            Measure::MinMs => "min ms/iter".into(),
            Measure::Seconds => "train s".into(),
            Measure::Spikes => "spikes".into(),
        }
    }
    /// CSV column name.
    pub fn csv_name(self) -> String {
        match self {
            Measure::FinalLoss => "final_loss".into(),
            Measure::FinalAccuracy => "final_accuracy_pct".into(),
            Measure::BestAccuracy => "best_accuracy_pct".into(),
            Measure::FinalMse => "final_mse".into(),
            Measure::MinMse => "min_mse".into(),
            Measure::FinalBpc => "final_bpc".into(),
            Measure::BpcAtBestAccuracy => "bpc_at_best_accuracy".into(),
            Measure::Reached(Criterion::AccuracyAtLeast(a)) => format!("iter_to_accuracy_{a}"),
            Measure::Reached(Criterion::MseAtMost(m)) => format!("iter_to_mse_{m}"),
            Measure::FinalPreluSlope => "final_prelu_slope".into(),
            Measure::FinalSvRange => "final_sv_min_max".into(),
            Measure::MedianMs => "median_ms_per_iter".into(),
            Measure::MinMs => "min_ms_per_iter".into(),
            Measure::Seconds => "train_seconds".into(),
            Measure::Spikes => "spikes".into(),
        }
    }
}

/// The optimizer settings of one protocol; [`Optim::config`] fills in the geodesic rate only for
/// models that take geodesic steps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Optim {
    pub rule: OptimRule,
    pub lr: f64,
    pub geo_lr: f64,
    pub clip: Option<f64>,
    /// Weight decay on the input/output matrices (the recurrent matrix gets it on its composite
    /// through [`ModelSpec::regs`]; see [`with_decay`]).
    pub weight_decay: f64,
}

/// RMSprop with decay rate 0.9 (Keras' and Theano-era default; Vorontsov et al. do not state it).
pub const RMSPROP: OptimRule = OptimRule::RmsProp { rho: 0.9, eps: 1e-8 };
/// RMSprop as PyTorch defaults it (decay rate 0.99), as the expRNN / DTRIV reference code uses it.
pub const RMSPROP_TORCH: OptimRule = OptimRule::RmsProp { rho: 0.99, eps: 1e-8 };
/// Plain SGD.
pub const SGD: OptimRule = OptimRule::Sgd { momentum: 0.0, nesterov: false };
/// Adam with the usual betas.
pub const ADAM: OptimRule = OptimRule::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 };

impl Optim {
    /// The optimizer configuration for `model`.
    pub fn config(&self, model: &ModelSpec) -> OptimConfig {
        OptimConfig {
            rule: self.rule,
            lr: self.lr,
            geo_lr: if model.model.geodesic() { self.geo_lr } else { 0.0 },
            clip: self.clip,
            weight_decay: self.weight_decay,
        }
    }
    /// One line for the protocol notes.
    pub fn describe(&self) -> String {
        let rule = match self.rule {
            OptimRule::Sgd { .. } => "SGD",
            OptimRule::RmsProp { .. } => "RMSprop (rho 0.9)",
            OptimRule::Adam { .. } => "Adam",
        };
        format!(
            "{rule} lr {}, geodesic lr {}, clipping {}, weight decay {}",
            self.lr,
            self.geo_lr,
            self.clip.map_or("none".into(), |c| c.to_string()),
            self.weight_decay
        )
    }
}

/// Vorontsov et al.'s optimizer (§3.1): RMSprop 1e-4 on Euclidean parameters, geodesic steps at
/// 1e-6 on the orthogonal bases, clipping at 100, weight decay 1e-4. Quick and smoke sizes raise both
/// rates to 1e-3 (a geodesic rate of 1e-3 learns 3-4x faster and as reliably), so
/// that something is learned within their few hundred iterations.
pub fn vorontsov(size: Size) -> Optim {
    match size {
        Size::Full => Optim { rule: RMSPROP, lr: 1e-4, geo_lr: 1e-6, clip: Some(100.0), weight_decay: 1e-4 },
        Size::Quick | Size::Smoke => {
            Optim { rule: RMSPROP, lr: 1e-3, geo_lr: 1e-3, clip: Some(100.0), weight_decay: 1e-4 }
        }
    }
}

/// Seed of every run's data and initialization.
pub const SEED: u64 = 1;

/// A training job: `model` with the protocol's composite weight decay, evaluated with diagnostics.
pub fn train_job(task: TaskSpec, model: ModelSpec, optim: &Optim, batch: usize, duration: Duration) -> Job {
    let model = with_decay(model, optim.weight_decay);
    Job::Train(TrainSpec {
        task,
        optim: optim.config(&model),
        model,
        batch,
        seed: SEED,
        duration,
        record_grad_norms: false,
        diagnostics: true,
    })
}

/// `model` with composite weight decay `wd` on its recurrent matrix (not on the LSTM, whose
/// recurrent blocks get the optimizer's decay).
pub fn with_decay(mut model: ModelSpec, wd: f64) -> ModelSpec {
    if model.model != ModelKind::Lstm {
        model.regs.weight_decay = wd;
    }
    model
}

/// A factorized RNN with spectral margin `margin` (`None`: no margin).
pub fn factorized(hidden: usize, margin: Option<f64>, activation: Activation) -> Result<ModelSpec> {
    Ok(ModelSpec {
        spectrum: Spectrum::from_margin(margin)?,
        activation,
        ..ModelSpec::of(ModelKind::Factorized, hidden)
    })
}

/// A plain Elman RNN with the given initialization.
pub fn plain_rnn(hidden: usize, init: RecurrentInit, activation: Activation) -> ModelSpec {
    ModelSpec { init, activation, ..ModelSpec::of(ModelKind::Rnn, hidden) }
}

/// The label of a spectral margin: `m=0.01`, or `no margin`.
pub fn margin_label(margin: Option<f64>) -> String {
    margin.map_or("no margin".into(), |m| format!("m={m}"))
}

/// A directory-safe form of a label: lower-case letters, digits, `.`, `-`; `=` is dropped and
/// everything else becomes `_` (runs of `_` squeezed).
pub fn slug(s: &str) -> String {
    let out: String = s
        .chars()
        .filter(|&c| c != '=')
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-') { c.to_ascii_lowercase() } else { '_' })
        .collect();
    let mut squeezed = String::with_capacity(out.len());
    for c in out.chars() {
        if !(c == '_' && squeezed.ends_with('_')) {
            squeezed.push(c);
        }
    }
    squeezed.trim_matches('_').to_string()
}

/// A copy-task specification.
pub fn copy_task(delay: usize, seed: u64) -> TaskSpec {
    TaskSpec::synthetic(TaskKind::Copy, delay, seed)
}

/// An adding-task specification.
pub fn adding_task(t: usize, seed: u64) -> TaskSpec {
    TaskSpec::synthetic(TaskKind::Adding, t, seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(slug("T=200 m=0.01"), "t200_m0.01");
        assert_eq!(slug("no margin, Glorot"), "no_margin_glorot");
        assert_eq!(slug("PReLU a=0.5 (fixed)"), "prelu_a0.5_fixed");
    }
}
