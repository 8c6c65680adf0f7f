//! The readout and loss: `y_t = W_o h_t + b_o`, scored by softmax cross-entropy (every step or the
//! last step) or mean squared error (last step).
//!
//! Backward: with `dY = dL/dY` from the loss, `dW_o = dY^T H`, `db_o = sum_rows dY`, `dH = dY W_o`.
//! Every-step readouts run as one GEMM over all `T * B` rows.

use crate::backend::{Backend, Epilogue, Gemm, LossStats, Slice, SliceMut, Tally, TallyValues};
use crate::error::{Error, Result};
use crate::nn::BatchStats;
use crate::scalar::Scalar;
use crate::tasks::{Batch, LossKind};

/// Readout configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// Hidden width feeding the readout.
    pub hidden: usize,
    /// Loss and output width.
    pub loss: LossKind,
    /// Accuracy is reported on the last this-many steps only.
    pub acc_last: Option<usize>,
}

/// Buffers for the readout of one batch shape.
pub struct HeadWs<B: Backend> {
    pub targets: B::Buf,
    pub logits: B::Buf,
    pub dlogits: B::Buf,
}

impl Head {
    /// Rows scored per batch (all steps, or the last step).
    pub fn rows(&self, t: usize, batch: usize) -> usize {
        if self.loss.last_step_only() { batch } else { t * batch }
    }

    /// Target buffer length for a batch.
    pub fn target_len(&self, t: usize, batch: usize) -> usize {
        match self.loss {
            LossKind::MseLastStep { dim } => batch * dim,
            _ => self.rows(t, batch),
        }
    }

    /// Allocates buffers for up to `rows` rows.
    pub fn workspace<B: Backend>(&self, b: &B, t: usize, batch: usize) -> Result<HeadWs<B>> {
        let rows = self.rows(t, batch);
        let out = self.loss.outputs();
        Ok(HeadWs {
            targets: b.zeros(self.target_len(t, batch))?,
            logits: b.zeros(rows * out)?,
            dlogits: b.zeros(rows * out)?,
        })
    }

    /// Checks a batch's targets against this head and uploads them.
    pub fn upload_targets<B: Backend>(&self, b: &B, batch: &Batch, ws: &mut HeadWs<B>) -> Result<usize> {
        let want = self.target_len(batch.t, batch.batch);
        if batch.y.len() != want {
            return Err(Error::shape("batch targets", want, batch.y.len()));
        }
        let y: Vec<B::Elem> = batch.y.iter().map(|&v| B::Elem::of(v as f64)).collect();
        b.write(SliceMut::all(&mut ws.targets).sub(0, want), &y)?;
        Ok(match self.loss {
            LossKind::MseLastStep { .. } => want,
            _ => batch.y.iter().filter(|&&v| v >= 0.0).count(),
        })
    }

    /// Forward (and, when `grads` is given, backward) of the readout and loss, reading the totals back
    /// (one host synchronization on a device): [`Head::queue`] then [`Head::stats`].
    #[allow(clippy::too_many_arguments)]
    pub fn run<B: Backend>(
        &self,
        b: &B,
        wo: Slice<B>,
        bo: Slice<B>,
        h: Slice<B>,
        ws: &mut HeadWs<B>,
        counted: usize,
        t: usize,
        batch: usize,
        grads: Option<(SliceMut<B>, SliceMut<B>, SliceMut<B>)>,
    ) -> Result<BatchStats> {
        self.queue(b, wo, bo, h, ws, counted, t, batch, grads)?;
        Ok(self.stats(&b.tally_read()?, t, batch))
    }

    /// Queues the forward (and, when `grads` is given, backward) of the readout and loss; the loss
    /// totals go to the backend's [`Tally::Loss`] (and [`Tally::LossTail`]) slots, which this resets.
    ///
    /// - `h`: `[T, B, n]`, the hidden states `h_1..h_T`.
    /// - `grads`: `(dW_o, db_o, dH)`, overwritten; `dH` is `[T, B, n]`.
    #[allow(clippy::too_many_arguments)]
    pub fn queue<B: Backend>(
        &self,
        b: &B,
        wo: Slice<B>,
        bo: Slice<B>,
        h: Slice<B>,
        ws: &mut HeadWs<B>,
        counted: usize,
        t: usize,
        batch: usize,
        grads: Option<(SliceMut<B>, SliceMut<B>, SliceMut<B>)>,
    ) -> Result<()> {
        let (n, out) = (self.hidden, self.loss.outputs());
        let rows = self.rows(t, batch);
        let hsel = if self.loss.last_step_only() { h.sub((t - 1) * batch * n, batch * n) } else { h };
        let mut logits = SliceMut::<B>::all(&mut ws.logits).sub(0, rows * out);
        let epi = Epilogue { bias: Some(bo), act: None };
        b.gemm(&Gemm::new(rows, out, n).tb().reduced_ok(), hsel, wo, logits.rb(), epi)?;
        let scale = B::Elem::of(1.0 / counted.max(1) as f64);
        let targets = Slice::<B>::all(&ws.targets).sub(0, self.target_len(t, batch));
        let mut dlog = SliceMut::<B>::all(&mut ws.dlogits).sub(0, rows * out);
        b.tally_reset(Tally::Loss)?;
        b.tally_reset(Tally::LossTail)?;
        match self.loss {
            LossKind::MseLastStep { .. } => b.mse_tally(logits.as_ref(), targets, dlog.rb(), scale, Tally::Loss)?,
            LossKind::XentLastStep { classes } => {
                b.softmax_xent_tally(logits.as_ref(), targets, dlog.rb(), classes, scale, Tally::Loss)?
            }
            LossKind::XentEveryStep { classes } => {
                // Score every step; count accuracy over the last `acc_last` steps only.
                let split = t - self.acc_last.unwrap_or(t).min(t);
                for (lo, hi, slot) in [(0, split, Tally::Loss), (split, t, Tally::LossTail)] {
                    if lo == hi {
                        continue;
                    }
                    let (r0, r1) = (lo * batch, hi * batch);
                    b.softmax_xent_tally(
                        logits.as_ref().sub(r0 * out, (r1 - r0) * out),
                        targets.sub(r0, r1 - r0),
                        dlog.rb().sub(r0 * out, (r1 - r0) * out),
                        classes,
                        scale,
                        slot,
                    )?;
                }
            }
        }
        if let Some((dwo, dbo, mut dh)) = grads {
            b.gemm(&Gemm::new(out, n, rows).ta().reduced_ok(), dlog.as_ref(), hsel, dwo, Epilogue::none())?;
            b.col_sum(dlog.as_ref(), rows, out, B::Elem::ZERO, dbo)?;
            if self.loss.last_step_only() {
                let bn = batch * n;
                b.fill(dh.rb().sub(0, (t - 1) * bn), B::Elem::ZERO)?;
                b.gemm(
                    &Gemm::new(rows, n, out).reduced_ok(),
                    dlog.as_ref(),
                    wo,
                    dh.sub((t - 1) * bn, bn),
                    Epilogue::none(),
                )?;
            } else {
                b.gemm(&Gemm::new(rows, n, out).reduced_ok(), dlog.as_ref(), wo, dh, Epilogue::none())?;
            }
        }
        Ok(())
    }

    /// The statistics of a batch queued by [`Head::queue`], from the tallies read back.
    pub fn stats(&self, v: &TallyValues, t: usize, batch: usize) -> BatchStats {
        let slot = |s: Tally| {
            let x = v[s as usize];
            LossStats { sum: x[0], correct: x[1].round() as usize, count: x[2].round() as usize }
        };
        match self.loss {
            LossKind::MseLastStep { dim } => {
                let mut s = BatchStats::from_loss(LossStats {
                    sum: v[Tally::Loss as usize][0],
                    correct: 0,
                    count: batch * dim,
                });
                s.acc_count = 0;
                s.correct = 0;
                s
            }
            LossKind::XentLastStep { .. } => BatchStats::from_loss(slot(Tally::Loss)),
            LossKind::XentEveryStep { .. } => {
                let (head, acc) = (slot(Tally::Loss), slot(Tally::LossTail));
                let split = t - self.acc_last.unwrap_or(t).min(t);
                // The first segment is empty when every step counts for accuracy.
                let total = if split == 0 {
                    acc
                } else {
                    LossStats {
                        sum: head.sum + acc.sum,
                        correct: head.correct + acc.correct,
                        count: head.count + acc.count,
                    }
                };
                let mut s = BatchStats::from_loss(total);
                s.correct = acc.correct;
                s.acc_count = acc.count;
                s
            }
        }
    }
}
