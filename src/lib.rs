//! ortho-rnn: training recurrent networks whose hidden-to-hidden matrix is kept orthogonal,
//! near-orthogonal or spectrally bounded.
//!
//! Layers, top to bottom: [`train`] (the trainer), [`nn`] (cells, activations, losses, BPTT),
//! [`param`] (parametrizations of the recurrent matrix), [`optim`] (optimizers, clipping, geodesic
//! steps), [`weights`] (parameters and diagnostics, shared by the three above), [`tasks`] (copy,
//! adding, MNIST, PTB), [`linalg`] (Cayley, expm, QR, SVD), and [`backend`] (the device contract and
//! its CPU, CUDA and emulated-CUDA implementations).
//! `docs/ARCHITECTURE.md` in the repository draws them and says how to extend each.
//!
//! [`prelude`] brings in what a program needs. Train a factorized RNN (`W = U diag(s) V^T`, singular
//! values within `1 ± 0.5`) on the copy task and look at `W`:
//!
//! ```
//! use ortho_rnn::prelude::*;
//!
//! let b = Cpu::<f32>::new(1);
//! let task = CopyTask::new(5, 0)?; // T = 5: sequences of 25 steps
//! let spec = ModelSpec { spectrum: Spectrum::Margin(0.5), ..ModelSpec::of(ModelKind::Factorized, 16) };
//! let model = spec.build(&b, &task, 0)?;
//! let optim = OptimConfig { rule: OptimRule::RmsProp { rho: 0.9, eps: 1e-8 }, lr: 1e-3, geo_lr: 1e-3,
//!                           clip: Some(100.0), weight_decay: 0.0 };
//! let mut trainer = Trainer::new(&b, model, optim, &task, TrainConfig::new(3, 8))?;
//! let summary = trainer.run(|_, _| Ok(()))?;
//! assert_eq!(summary.iters, 3);
//! let w = trainer.model.recurrent_matrix()?;
//! let s = singular_values_host(&w, 16)?;
//! assert!(s.iter().all(|&x| (0.5 - 1e-4..=1.5 + 1e-4).contains(&x)));
//! # Ok::<(), ortho_rnn::Error>(())
//! ```

pub mod backend;
pub mod device;
pub mod error;
pub mod experiments;
pub mod fastmath;
pub mod limits;
pub mod linalg;
pub mod lock;
pub mod nn;
pub mod optim;
pub mod param;
pub mod plot;
pub mod prelude;
pub mod scalar;
pub mod tasks;
pub mod train;
pub mod weights;

pub use error::{Error, Result};
pub use scalar::Scalar;
