//! Networks: parameters, initializers, the Elman RNN over a parametrized transition, the LSTM
//! baseline, and the loss heads.

pub mod head;
pub mod init;
pub mod lstm;
pub mod regularize;
pub mod rnn;

/// Parameters, their update kinds and the diagnostics record live in [`crate::weights`] (below
/// both `nn` and [`crate::param`]); re-exported here.
pub use crate::weights::{Diagnostics, Param, Update};

use crate::backend::{Backend, LossStats};
use crate::error::Result;
use crate::tasks::Batch;

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
    /// Merges the loss totals of another batch (the mean is over all scored steps).
    ///
    /// ```
    /// use ortho_rnn::prelude::*;
    /// let mut a = BatchStats { loss_sum: 3.0, count: 2, correct: 1, acc_count: 2, ..Default::default() };
    /// a.merge(&BatchStats { loss_sum: 1.0, count: 2, correct: 2, acc_count: 2, ..Default::default() });
    /// assert_eq!((a.loss, a.accuracy()), (1.0, Some(0.75)));
    /// ```
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
    /// The recurrent matrix `W` as the model composes it from its current parameters, row-major
    /// `n x n` (`n` = [`Model::hidden`]) in f64 on the host: `W` itself for `rnn` and `orthogonal`,
    /// `U diag(s) V^T` for `factorized`, `(I + A)^-1 (I - A) D` for `scornn`, `B exp(A)` for
    /// `exprnn` and `dtriv`. The LSTM has four recurrent blocks and no single `W`: it returns an
    /// error (read its blocks with [`Model::read`]).
    ///
    /// ```
    /// use ortho_rnn::prelude::*;
    /// let b = Cpu::<f64>::new(1);
    /// let task = CopyTask::new(10, 0)?;
    /// let mut model = ModelSpec::of(ModelKind::Orthogonal, 8).build(&b, &task, 0)?;
    /// let w = model.recurrent_matrix()?;
    /// assert!(drift_host(&w, 8)? < 1e-12); // starts orthogonal
    /// # Ok::<(), ortho_rnn::Error>(())
    /// ```
    fn recurrent_matrix(&mut self) -> Result<Vec<f64>> {
        Err(crate::Error::invalid(
            "recurrent_matrix",
            self.name(),
            "this model has no single recurrent matrix W; read its recurrent blocks with Model::read",
        ))
    }
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
