//! The adding task (Hochreiter and Schmidhuber 1997, as in Vorontsov et al. 2017).
//!
//! `T` steps of `(value, marker)`: values uniform in `[0, 1)`, exactly two markers, one at an index
//! in `[0, T/2)` and one in `[T/2, T)`. The target is the sum of the two marked values, scored by
//! mean squared error at the last step. Always predicting 1 scores `1/6`.

use super::{Baseline, Batch, LossKind, Task, batch_rng, check_seq_len};
use crate::error::Result;
use rand::RngExt;

/// Sequences in the held-out evaluation set.
pub const EVAL_SIZE: usize = 500;

/// The adding task of length `T`.
#[derive(Clone, Debug)]
pub struct AddingTask {
    t: usize,
    seed: u64,
}

impl AddingTask {
    /// An adding task with `t >= 2` steps.
    ///
    /// ```
    /// use ortho_rnn::prelude::*;
    /// let batch = AddingTask::new(10, 0)?.train_batch(0, 3)?;
    /// // Each step is (value, marker); the target is the sum of the two marked values.
    /// for row in 0..3 {
    ///     let step = |t: usize| &batch.x[(t * 3 + row) * 2..][..2];
    ///     let sum: f32 = (0..10).filter(|&t| step(t)[1] == 1.0).map(|t| step(t)[0]).sum();
    ///     assert_eq!(sum, batch.y[row]);
    /// }
    /// assert!(AddingTask::new(1, 0).is_err()); // needs two steps to mark
    /// # Ok::<(), ortho_rnn::Error>(())
    /// ```
    pub fn new(t: usize, seed: u64) -> Result<Self> {
        check_seq_len(t, 2)?;
        Ok(AddingTask { t, seed })
    }

    fn make(&self, stream: u64, iter: usize, batch: usize) -> Batch {
        let t = self.t;
        let mut rng = batch_rng(self.seed, stream, iter as u64);
        let mut x = vec![0.0f32; t * batch * 2];
        let mut y = vec![0.0f32; batch];
        let half = t / 2;
        for b in 0..batch {
            for step in 0..t {
                x[(step * batch + b) * 2] = rng.random::<f32>();
            }
            let i = rng.random_range(0..half);
            let j = rng.random_range(half..t);
            for k in [i, j] {
                x[(k * batch + b) * 2 + 1] = 1.0;
                y[b] += x[(k * batch + b) * 2];
            }
        }
        Batch { t, batch, input_dim: 2, x, y }
    }
}

impl Task for AddingTask {
    fn name(&self) -> String {
        "adding".into()
    }
    fn input_dim(&self) -> usize {
        2
    }
    fn loss(&self) -> LossKind {
        LossKind::MseLastStep { dim: 1 }
    }
    fn seq_len(&self) -> usize {
        self.t
    }
    fn train_batch(&self, iter: usize, batch: usize) -> Result<Batch> {
        Ok(self.make(0, iter, batch))
    }
    fn eval_batches(&self, batch: usize) -> usize {
        EVAL_SIZE.div_ceil(batch.max(1))
    }
    fn eval_batch(&self, i: usize, batch: usize) -> Result<Batch> {
        Ok(self.make(1, i, batch))
    }
    fn baseline(&self) -> Baseline {
        Baseline { loss: 1.0 / 6.0, accuracy: None, what: "always predicting 1" }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_markers_one_per_half_and_target_is_their_sum() {
        let task = AddingTask::new(9, 3).unwrap();
        let b = task.train_batch(0, 16).unwrap();
        for row in 0..16 {
            let marks: Vec<usize> = (0..9).filter(|&s| b.x[(s * 16 + row) * 2 + 1] == 1.0).collect();
            assert_eq!(marks.len(), 2);
            assert!(marks[0] < 4 && marks[1] >= 4);
            let sum: f32 = marks.iter().map(|&s| b.x[(s * 16 + row) * 2]).sum();
            assert_eq!(sum, b.y[row]);
        }
    }

    #[test]
    fn predicting_one_scores_a_sixth() {
        let task = AddingTask::new(50, 1).unwrap();
        let b = task.train_batch(0, 20000).unwrap();
        let mse: f64 = b.y.iter().map(|&v| (v as f64 - 1.0).powi(2)).sum::<f64>() / b.y.len() as f64;
        assert!((mse - task.baseline().loss).abs() < 0.01, "{mse}");
    }
}
