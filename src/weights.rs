//! What the network layers, the parametrizations and the optimizer all share: a named parameter
//! with its gradient ([`Param`]), how the optimizer moves it ([`Update`]), and the diagnostics
//! record of the recurrent matrix ([`Diagnostics`]). It sits below [`crate::nn`],
//! [`crate::param`] and [`crate::optim`] so that none of them reaches up into another.

use crate::backend::{Backend, Slice};
use crate::error::Result;

/// How the optimizer moves a parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Update {
    /// The base optimizer (SGD, RMSprop, Adam) at the parameter's learning rate.
    Euclidean,
    /// A geodesic (Cayley) step on the orthogonal group at `--geo-lr`; the parameter is square.
    Geodesic,
    /// Not trained (a fixed PReLU slope, the DTRIV base, scoRNN's diagonal `D`).
    Frozen,
}

/// A named parameter with its gradient.
pub struct Param<B: Backend> {
    /// Name, also the tensor name in checkpoints (`W`, `V`, `b`, `W_o`, `b_o`, `U`, ...).
    pub name: String,
    /// Shape (row-major).
    pub shape: Vec<usize>,
    /// Current value.
    pub value: B::Buf,
    /// Gradient of the loss (zeroed or overwritten by every backward pass).
    pub grad: B::Buf,
    /// How it is updated.
    pub update: Update,
    /// Multiplier on the base learning rate (its group's rate; e.g. `1 / 2m` for the margin parameters).
    pub lr_mult: f64,
    /// Whether `--weight-decay` applies to it through the optimizer.
    pub decay: bool,
}

impl<B: Backend> Param<B> {
    /// A parameter initialized from host values, with a zero gradient.
    ///
    /// ```
    /// use ortho_rnn::prelude::*;
    /// let b = Cpu::<f32>::new(1);
    /// let p = Param::new(&b, "W", &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], Update::Euclidean)?;
    /// assert_eq!(p.len(), 6);
    /// assert_eq!(b.download(p.v())?, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    /// # Ok::<(), ortho_rnn::Error>(())
    /// ```
    pub fn new(b: &B, name: &str, shape: &[usize], host: &[f64], update: Update) -> Result<Self> {
        let data: Vec<B::Elem> = host.iter().map(|&v| crate::Scalar::of(v)).collect();
        debug_assert_eq!(data.len(), shape.iter().product::<usize>());
        Ok(Param {
            name: name.to_string(),
            shape: shape.to_vec(),
            value: b.upload(&data)?,
            grad: b.zeros(data.len())?,
            update,
            lr_mult: 1.0,
            decay: false,
        })
    }
    /// Element count.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    /// True for an empty parameter.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Sets the learning-rate multiplier.
    pub fn with_lr_mult(mut self, m: f64) -> Self {
        self.lr_mult = m;
        self
    }
    /// Marks the parameter for optimizer weight decay.
    pub fn with_decay(mut self) -> Self {
        self.decay = true;
        self
    }
    /// Read-only view of the value.
    pub fn v(&self) -> Slice<'_, B> {
        Slice::all(&self.value)
    }
}

/// Diagnostics of the recurrent matrix and its parametrization.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Diagnostics {
    /// Singular values of the composite recurrent matrix, descending.
    pub singular_values: Vec<f64>,
    /// `||U^T U - I||_max`.
    pub drift_u: Option<f64>,
    /// `||V^T V - I||_max`.
    pub drift_v: Option<f64>,
    /// Re-orthogonalizations so far.
    pub reorth: Option<usize>,
    /// Trainable PReLU slope.
    pub prelu_slope: Option<f64>,
}
