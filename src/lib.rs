//! ortho-rnn: training recurrent networks whose hidden-to-hidden matrix is kept orthogonal,
//! near-orthogonal or spectrally bounded.
//!
//! Layers, top to bottom: [`train`] (the trainer), [`tasks`] (copy, adding, MNIST, PTB), [`nn`]
//! (cells, activations, losses, BPTT), [`param`] (parametrizations of the recurrent matrix),
//! [`optim`] (optimizers, clipping, geodesic steps), [`linalg`] (Cayley, expm, QR), and
//! [`backend`] (the device contract and its CPU, CUDA and emulated-CUDA implementations).

pub mod backend;
pub mod device;
pub mod error;
pub mod experiments;
pub mod limits;
pub mod linalg;
pub mod lock;
pub mod nn;
pub mod optim;
pub mod param;
pub mod plot;
pub mod scalar;
pub mod tasks;
pub mod train;

pub use error::{Error, Result};
pub use scalar::Scalar;
