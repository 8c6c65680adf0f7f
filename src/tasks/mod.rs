//! Tasks: synthetic (copy, adding) and file-backed (sequential/permuted/row-wise MNIST, PTB characters).
//!
//! A task hands the trainer host-side [`Batch`]es. Synthetic batches are a pure function of
//! `(seed, iteration)`, so a resumed run sees exactly the data it would have seen.

pub mod adding;
pub mod copy;
pub mod data_dir;
pub mod idx;
pub mod mnist;
pub mod ptb;

use crate::error::{Error, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// How outputs are scored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossKind {
    /// Softmax cross-entropy at every step where the target is not negative.
    XentEveryStep { classes: usize },
    /// Softmax cross-entropy at the last step only.
    XentLastStep { classes: usize },
    /// Mean squared error at the last step only, `dim` outputs.
    MseLastStep { dim: usize },
}

impl LossKind {
    /// Output width of the readout layer.
    pub fn outputs(&self) -> usize {
        match *self {
            LossKind::XentEveryStep { classes } | LossKind::XentLastStep { classes } => classes,
            LossKind::MseLastStep { dim } => dim,
        }
    }
    /// True when only the last step is scored.
    pub fn last_step_only(&self) -> bool {
        !matches!(self, LossKind::XentEveryStep { .. })
    }
}

/// One minibatch, time-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// Steps.
    pub t: usize,
    /// Rows.
    pub batch: usize,
    /// Input width per step.
    pub input_dim: usize,
    /// `[t, batch, input_dim]`.
    pub x: Vec<f32>,
    /// Cross-entropy every step: `[t, batch]` class ids (negative = not scored).
    /// Last step only: `[batch]` class ids, or `[batch, dim]` regression targets.
    pub y: Vec<f32>,
}

/// What a trivial predictor scores: the number a model must beat to have learned anything.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Baseline {
    /// Loss of the trivial predictor (same units as the task's loss).
    pub loss: f64,
    /// Its accuracy, where accuracy applies.
    pub accuracy: Option<f64>,
    /// A sentence saying what the trivial predictor is.
    pub what: &'static str,
}

/// A source of training and evaluation batches. Implement it to train on your own data;
/// `examples/custom_task.rs` trains a model on a task defined this way.
///
/// ```
/// use ortho_rnn::prelude::*;
///
/// /// Predict the last input (1 input, 1 output, scored at the last step).
/// struct Echo;
/// impl Task for Echo {
///     fn name(&self) -> String { "echo".into() }
///     fn input_dim(&self) -> usize { 1 }
///     fn loss(&self) -> LossKind { LossKind::MseLastStep { dim: 1 } }
///     fn seq_len(&self) -> usize { 4 }
///     fn train_batch(&self, iter: usize, batch: usize) -> Result<Batch> {
///         let x: Vec<f32> = (0..4 * batch).map(|i| ((i + iter) % 7) as f32 / 7.0).collect();
///         let y = x[3 * batch..].to_vec(); // step 3 of every row
///         Ok(Batch { t: 4, batch, input_dim: 1, x, y })
///     }
///     fn eval_batches(&self, _batch: usize) -> usize { 1 }
///     fn eval_batch(&self, i: usize, batch: usize) -> Result<Batch> { self.train_batch(1000 + i, batch) }
///     fn baseline(&self) -> Baseline {
///         Baseline { loss: 4.0 / 49.0, accuracy: None, what: "the mean, 3/7 (the variance of k/7, k uniform in 0..7)" }
///     }
/// }
///
/// let b = Cpu::<f32>::new(1);
/// let mut model = ModelSpec::of(ModelKind::Orthogonal, 8).build(&b, &Echo, 0)?;
/// let stats = evaluate(model.as_mut(), &Echo, 16)?;
/// assert!(stats.loss.is_finite() && stats.count == 16);
/// # Ok::<(), ortho_rnn::Error>(())
/// ```
pub trait Task: Send {
    /// Short name (`copy`, `adding`, `mnist`, ...).
    fn name(&self) -> String;
    /// Input width per step.
    fn input_dim(&self) -> usize;
    /// Loss and output width.
    fn loss(&self) -> LossKind;
    /// Nominal sequence length (the longest, for variable-length tasks).
    fn seq_len(&self) -> usize;
    /// Training batch number `iter` (deterministic in the task's seed and `iter`).
    fn train_batch(&self, iter: usize, batch: usize) -> Result<Batch>;
    /// Number of evaluation batches of size `batch`.
    fn eval_batches(&self, batch: usize) -> usize;
    /// Evaluation batch `i` (validation data, or a fixed held-out synthetic set).
    fn eval_batch(&self, i: usize, batch: usize) -> Result<Batch>;
    /// The trivial predictor's score.
    fn baseline(&self) -> Baseline;
    /// Accuracy is reported on the last this-many steps only (the copy task: 10), when not every
    /// scored step counts. `None`: every scored step.
    fn accuracy_last_steps(&self) -> Option<usize> {
        None
    }
    /// Whether evaluation reports bits per character (`loss / ln 2`).
    fn reports_bpc(&self) -> bool {
        false
    }
    /// Training examples per epoch, when the task has a fixed training set.
    fn train_size(&self) -> Option<usize> {
        None
    }
}

/// A generator for batch `iter` of stream `stream` under `seed`: independent of every other batch.
pub fn batch_rng(seed: u64, stream: u64, iter: u64) -> ChaCha8Rng {
    // SplitMix64-style mixing so that nearby (seed, stream, iter) triples give unrelated streams.
    let mut z = seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ iter.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ChaCha8Rng::seed_from_u64(z ^ (z >> 31))
}

/// Validates a sequence length flag.
pub fn check_seq_len(t: usize, min: usize) -> Result<()> {
    if t < min {
        return Err(Error::invalid("--seq-len", t, format!("must be at least {min}")));
    }
    Ok(())
}

/// Which task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum TaskKind {
    /// Copy 10 symbols after a delay of T steps.
    Copy,
    /// Add the two marked numbers of a sequence of T.
    Adding,
    /// Sequential MNIST: 784 pixels, one per step.
    Mnist,
    /// Permuted sequential MNIST: one fixed permutation of the 784 positions.
    Pmnist,
    /// Row-wise MNIST: 28 steps of 28 pixels.
    MnistRows,
    /// Penn Treebank characters: next-character prediction, one sentence per sequence.
    Ptb,
}

impl TaskKind {
    /// The CLI name.
    pub fn as_str(&self) -> &'static str {
        match self {
            TaskKind::Copy => "copy",
            TaskKind::Adding => "adding",
            TaskKind::Mnist => "mnist",
            TaskKind::Pmnist => "pmnist",
            TaskKind::MnistRows => "mnist-rows",
            TaskKind::Ptb => "ptb",
        }
    }
    /// Default sequence length.
    pub fn default_seq_len(&self) -> usize {
        match self {
            TaskKind::Copy => 100,
            TaskKind::Adding => 100,
            TaskKind::Mnist | TaskKind::Pmnist => mnist::PIXELS,
            TaskKind::MnistRows => mnist::ROWS,
            TaskKind::Ptb => 75,
        }
    }
}

/// A task as the command line describes it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TaskSpec {
    pub kind: TaskKind,
    /// Sequence length (task default when `None`).
    pub seq_len: Option<usize>,
    /// Data directory for file-backed tasks.
    pub data: Option<std::path::PathBuf>,
    /// Data seed.
    pub seed: u64,
    /// File-backed tasks: keep only this many training examples (quick experiments).
    #[serde(default)]
    pub max_train: Option<usize>,
    /// File-backed tasks: evaluate on the test split instead of the validation split.
    #[serde(default)]
    pub eval_test: bool,
}

impl TaskSpec {
    /// A synthetic task of length `seq_len`.
    pub fn synthetic(kind: TaskKind, seq_len: usize, seed: u64) -> Self {
        TaskSpec { kind, seq_len: Some(seq_len), data: None, seed, max_train: None, eval_test: false }
    }
}

impl TaskSpec {
    /// Builds the task.
    pub fn build(&self) -> Result<Box<dyn Task>> {
        let t = self.seq_len.unwrap_or(self.kind.default_seq_len());
        let synthetic = matches!(self.kind, TaskKind::Copy | TaskKind::Adding);
        let context = || format!("--task {}", self.kind.as_str());
        if synthetic && self.data.is_some() {
            return Err(Error::Inapplicable {
                flag: "--data",
                context: context(),
                hint: "synthetic tasks generate their data; --data is for mnist, pmnist, mnist-rows and ptb".into(),
            });
        }
        if synthetic && (self.max_train.is_some() || self.eval_test) {
            return Err(Error::Inapplicable {
                flag: "--max-train/--eval-test",
                context: context(),
                hint: "synthetic tasks have no fixed training or test set".into(),
            });
        }
        let dir = || {
            self.data.clone().ok_or_else(|| {
                Error::invalid(
                    "--data",
                    "(missing)",
                    format!("--task {} reads files: pass --data DIR", self.kind.as_str()),
                )
            })
        };
        let mnist = |variant: mnist::MnistVariant| -> Result<Box<dyn Task>> {
            if self.seq_len.is_some_and(|s| s != variant.steps()) {
                return Err(Error::Inapplicable {
                    flag: "--seq-len",
                    context: context(),
                    hint: format!("MNIST sequences have a fixed length ({} steps)", variant.steps()),
                });
            }
            let mut cfg = mnist::MnistConfig::new(dir()?, variant);
            cfg.seed = self.seed;
            cfg.max_train = self.max_train;
            cfg.use_test_for_eval = self.eval_test;
            Ok(Box::new(mnist::MnistTask::new(&cfg)?))
        };
        Ok(match self.kind {
            TaskKind::Copy => Box::new(copy::CopyTask::new(t, self.seed)?),
            TaskKind::Adding => Box::new(adding::AddingTask::new(t, self.seed)?),
            TaskKind::Mnist => mnist(mnist::MnistVariant::Sequential)?,
            TaskKind::Pmnist => mnist(mnist::MnistVariant::Permuted)?,
            TaskKind::MnistRows => mnist(mnist::MnistVariant::RowWise)?,
            TaskKind::Ptb => {
                let mut cfg = ptb::PtbConfig::new(dir()?, t);
                cfg.seed = self.seed;
                cfg.max_train = self.max_train;
                cfg.use_test_for_eval = self.eval_test;
                Box::new(ptb::PtbTask::new(&cfg)?)
            }
        })
    }
}
