//! What a program needs to build, train, evaluate, checkpoint and inspect a model, in one `use`:
//!
//! ```
//! use ortho_rnn::prelude::*;
//! ```
//!
//! | to | use |
//! |---|---|
//! | pick a backend | [`Cpu`], [`Cuda`] with [`CudarcDriver`] (a GPU) or [`EmuDriver`] (kernels emulated on the host); [`DeviceKind`] and [`dispatch`] to choose at run time |
//! | describe a model | [`ModelSpec`] ([`ModelSpec::of`]), [`ModelKind`], [`Spectrum`] (the spectral margin), [`Activation`], [`RecurrentInit`], [`DenseInit`], [`Regularizers`] |
//! | bring data | the [`Task`] trait with [`Batch`], [`LossKind`], [`Baseline`]; the built-in [`CopyTask`] and [`AddingTask`]; [`TaskSpec`] for the others |
//! | train | [`Trainer`] with [`TrainConfig`] and [`OptimConfig`] ([`OptimRule`]), or by hand: [`Model::run`], [`Optimizer::step`], [`Model::after_update`] |
//! | evaluate | [`evaluate`], [`Pass`], [`BatchStats`], [`Summary`], [`EvalRecord`] |
//! | checkpoint | [`checkpoint::save`], [`checkpoint::load`], [`checkpoint::restore`], [`RunSpec`] |
//! | inspect | [`Model::recurrent_matrix`], [`Model::diagnostics`], [`Model::read`] / [`Model::write`], [`singular_values_host`], [`drift_host`] |
//!
//! A complete program, a custom task trained with a factorized RNN, is `examples/custom_task.rs`.

pub use crate::backend::cpu::Cpu;
pub use crate::backend::cuda::Cuda;
pub use crate::backend::cuda::cudarc_driver::CudarcDriver;
pub use crate::backend::cuda::emu::EmuDriver;
pub use crate::backend::{Activation, Backend, OptimRule};
pub use crate::device::{BackendJob, DeviceKind, dispatch};
pub use crate::error::{Error, Result};
pub use crate::linalg::{drift_host, singular_values_host};
pub use crate::nn::init::{DenseInit, RecurrentInit};
pub use crate::nn::regularize::Regularizers;
pub use crate::nn::{BatchStats, Diagnostics, Model, Param, Pass, Update};
pub use crate::optim::{OptimConfig, Optimizer};
pub use crate::param::factorized::Spectrum;
pub use crate::scalar::Scalar;
pub use crate::tasks::adding::AddingTask;
pub use crate::tasks::copy::CopyTask;
pub use crate::tasks::{Baseline, Batch, LossKind, Task, TaskKind, TaskSpec};
pub use crate::train::build::{ModelKind, ModelSpec};
pub use crate::train::checkpoint;
pub use crate::train::metrics::EvalRecord;
pub use crate::train::progress::Mode as ProgressMode;
pub use crate::train::{RunSpec, Summary, TrainConfig, Trainer, evaluate};
