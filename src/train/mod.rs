//! The trainer: iterations, evaluation, metrics, checkpoints, progress.

pub mod metrics;
