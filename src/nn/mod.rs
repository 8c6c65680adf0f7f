//! Networks: parameters, initializers, the Elman RNN over a parametrized transition, the LSTM
//! baseline, and the loss heads.

pub mod head;
pub mod init;
pub mod lstm;
pub mod rnn;

use crate::backend::{Backend, LossStats, Slice};
use crate::error::Result;
use crate::tasks::Batch;

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
    /// A parameter initialized from host values.
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

/// Whether a pass computes gradients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// Forward and backward: gradients are written.
    Train,
    /// Forward only.
    Eval,
}

/// Loss statistics of one batch, split the way tasks report them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BatchStats {
    /// Mean loss per scored step (what the optimizer minimized, before regularizers).
    pub loss: f64,
    /// Regularizer terms added to the objective.
    pub reg: f64,
    /// Sum of losses and number of scored steps (to average over batches).
    pub loss_sum: f64,
    pub count: usize,
    /// Accuracy counts over the task's accuracy steps.
    pub correct: usize,
    pub acc_count: usize,
}

impl BatchStats {
    /// Merges the loss totals of another batch.
    pub fn merge(&mut self, o: &BatchStats) {
        self.loss_sum += o.loss_sum;
        self.count += o.count;
        self.correct += o.correct;
        self.acc_count += o.acc_count;
        self.reg += o.reg;
        self.loss = if self.count > 0 { self.loss_sum / self.count as f64 } else { 0.0 };
    }
    /// Accuracy, if any step counted.
    pub fn accuracy(&self) -> Option<f64> {
        (self.acc_count > 0).then(|| self.correct as f64 / self.acc_count as f64)
    }
    pub(crate) fn from_loss(st: LossStats) -> Self {
        BatchStats {
            loss: if st.count > 0 { st.sum / st.count as f64 } else { 0.0 },
            reg: 0.0,
            loss_sum: st.sum,
            count: st.count,
            correct: st.correct,
            acc_count: st.count,
        }
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

/// What a captured graph of a pass depends on besides device memory: the batch shape and the count of
/// scored targets (which sets the loss scale, a kernel argument).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StageKey {
    pub t: usize,
    pub batch: usize,
    pub counted: usize,
}

/// A trainable network: what the trainer, the optimizer and checkpoints see.
pub trait Model<B: Backend>: Send {
    /// Model name (`rnn`, `factorized`, `lstm`, ...).
    fn name(&self) -> String;
    /// Hidden width.
    fn hidden(&self) -> usize;
    /// All parameters.
    fn params(&self) -> &[Param<B>];
    /// All parameters, mutably (the optimizer updates them in place).
    fn params_mut(&mut self) -> &mut [Param<B>];
    /// Runs a batch; with [`Pass::Train`] writes every parameter's gradient.
    fn run(&mut self, batch: &Batch, pass: Pass) -> Result<BatchStats>;
    /// Uploads the batch and queues the pass without waiting for the device: the loss totals go to the
    /// backend's tallies, and [`Model::stats`] turns them into statistics after
    /// [`crate::backend::Backend::tally_read`]. `Ok(false)` (nothing done) where the model only has
    /// [`Model::run`].
    fn queue(&mut self, _batch: &Batch, _pass: Pass) -> Result<bool> {
        Ok(false)
    }
    /// The statistics of the pass last queued, from the tallies read back.
    fn stats(&mut self, _tallies: &crate::backend::TallyValues) -> Result<BatchStats> {
        Err(crate::Error::invalid("stats", self.name(), "this model has no queued pass (use run)"))
    }
    /// Uploads a batch into the buffers a queued pass reads, without queuing anything else: what a
    /// replayed graph of [`Model::queue_launches`] needs. Returns `None` where unsupported.
    fn stage(&mut self, _batch: &Batch) -> Result<Option<StageKey>> {
        Ok(None)
    }
    /// Queues the device work of a pass on the batch last staged (no host transfers, synchronizations
    /// or allocations: capturable into a graph when [`Model::graph_safe`]).
    fn queue_launches(&mut self, _pass: Pass) -> Result<()> {
        Err(crate::Error::invalid("queue_launches", self.name(), "this model stages no batches"))
    }
    /// Whether [`Model::queue_launches`] queues the same device work with the same arguments on every
    /// call for a given [`StageKey`], so that one captured graph can replay it.
    fn graph_safe(&self) -> bool {
        false
    }
    /// Housekeeping after an optimizer update (DTRIV base changes, drift checks).
    fn after_update(&mut self, step: usize) -> Result<()>;
    /// Diagnostics of the recurrent matrix.
    fn diagnostics(&mut self) -> Result<Diagnostics>;
    /// `||dL/dh_t||` (mean over the batch) for every step of the last training pass, if recorded.
    fn grad_norms(&mut self) -> Result<Option<Vec<f64>>> {
        Ok(None)
    }
    /// Asks the next training passes to record per-step gradient norms.
    fn record_grad_norms(&mut self, _on: bool) {}
    /// Restores derived state after parameters were overwritten (checkpoint load, `set` through the API).
    fn refresh(&mut self) -> Result<()> {
        Ok(())
    }
    /// The parameter called `name`.
    fn param(&self, name: &str) -> Result<&Param<B>> {
        self.params().iter().find(|p| p.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.params().iter().map(|p| p.name.as_str()).collect();
            crate::Error::invalid("parameter", name, format!("this model has {}", names.join(", ")))
        })
    }
    /// Copies the parameter `name` to the host.
    fn read(&self, b: &B, name: &str) -> Result<Vec<B::Elem>> {
        b.download(self.param(name)?.v())
    }
    /// Overwrites the parameter `name` with host values (same length) and refreshes derived state.
    fn write(&mut self, b: &B, name: &str, values: &[B::Elem]) -> Result<()> {
        let len = self.param(name)?.len();
        if values.len() != len {
            return Err(crate::Error::shape("parameter values", len, values.len()));
        }
        let p = self
            .params_mut()
            .iter_mut()
            .find(|p| p.name == name)
            .ok_or_else(|| crate::Error::invalid("parameter", name, "not found"))?;
        b.write(crate::backend::SliceMut::all(&mut p.value), values)?;
        self.refresh()
    }
    /// Counters that belong in a checkpoint besides parameters (e.g. re-orthogonalization count).
    fn counters(&self) -> Vec<(String, f64)> {
        Vec::new()
    }
    /// Restores counters saved by [`Model::counters`].
    fn set_counters(&mut self, _c: &[(String, f64)]) {}
}
