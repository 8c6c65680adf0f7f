//! The copy (memory) task, as in Vorontsov et al. 2017.
//!
//! A sequence has `T + 20` steps: 10 symbols drawn uniformly from `{1..8}`, then `T - 1` blanks (0),
//! the delimiter 9 at step `T + 10` (1-based), then 10 blanks. The target is blank everywhere except
//! the last 10 steps, which repeat the 10 symbols. Inputs are one-hot over 10 symbols; outputs are 9
//! classes (blank and the 8 symbols); cross-entropy is scored at every step.
//!
//! Baseline: predicting blank everywhere and then a uniform symbol on the last 10 steps scores
//! `10 ln 8 / (T + 20)` per step; accuracy is reported on the last 10 steps only.

use super::{Baseline, Batch, LossKind, Task, batch_rng, check_seq_len};
use crate::error::Result;
use rand::RngExt;

/// Number of symbols to remember.
pub const SYMBOLS: usize = 10;
/// Input alphabet: blank, 8 symbols, delimiter.
pub const INPUTS: usize = 10;
/// Output classes: blank and the 8 symbols.
pub const CLASSES: usize = 9;
/// Sequences in the held-out evaluation set.
pub const EVAL_SIZE: usize = 500;

/// The copy task with delay `t`.
#[derive(Clone, Debug)]
pub struct CopyTask {
    delay: usize,
    seed: u64,
}

impl CopyTask {
    /// A copy task with `T = delay` (sequence length `delay + 20`).
    ///
    /// ```
    /// use ortho_rnn::prelude::*;
    /// let task = CopyTask::new(100, 0)?;
    /// assert_eq!(task.seq_len(), 120);
    /// // The baseline: blanks, then a uniform guess among 8 symbols on the last 10 steps.
    /// assert!((task.baseline().loss - 10.0 * 8f64.ln() / 120.0).abs() < 1e-12);
    /// let batch = task.train_batch(0, 4)?;
    /// assert_eq!((batch.t, batch.batch, batch.x.len()), (120, 4, 120 * 4 * 10));
    /// # Ok::<(), ortho_rnn::Error>(())
    /// ```
    pub fn new(delay: usize, seed: u64) -> Result<Self> {
        check_seq_len(delay, 1)?;
        Ok(CopyTask { delay, seed })
    }

    fn make(&self, stream: u64, iter: usize, batch: usize) -> Batch {
        let t = self.delay + 2 * SYMBOLS;
        let mut rng = batch_rng(self.seed, stream, iter as u64);
        let mut x = vec![0.0f32; t * batch * INPUTS];
        let mut y = vec![0.0f32; t * batch];
        for b in 0..batch {
            let mut input = vec![0usize; t];
            for (i, slot) in input.iter_mut().take(SYMBOLS).enumerate() {
                let s = rng.random_range(1..=8usize);
                *slot = s;
                y[(t - SYMBOLS + i) * batch + b] = s as f32;
            }
            input[self.delay + SYMBOLS - 1] = 9;
            for (step, &sym) in input.iter().enumerate() {
                x[(step * batch + b) * INPUTS + sym] = 1.0;
            }
        }
        Batch { t, batch, input_dim: INPUTS, x, y }
    }
}

impl Task for CopyTask {
    fn name(&self) -> String {
        "copy".into()
    }
    fn input_dim(&self) -> usize {
        INPUTS
    }
    fn loss(&self) -> LossKind {
        LossKind::XentEveryStep { classes: CLASSES }
    }
    fn seq_len(&self) -> usize {
        self.delay + 2 * SYMBOLS
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
        Baseline {
            loss: SYMBOLS as f64 * 8f64.ln() / self.seq_len() as f64,
            accuracy: Some(1.0 / 8.0),
            what: "blank everywhere, then a uniform guess over the 8 symbols",
        }
    }
    fn accuracy_last_steps(&self) -> Option<usize> {
        Some(SYMBOLS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_definition() {
        let task = CopyTask::new(5, 7).unwrap();
        let b = task.train_batch(3, 4).unwrap();
        assert_eq!(b.t, 25);
        for row in 0..4 {
            let sym = |step: usize| (0..INPUTS).find(|&k| b.x[(step * 4 + row) * INPUTS + k] == 1.0).unwrap();
            let target = |step: usize| b.y[step * 4 + row] as usize;
            for step in 0..10 {
                assert!((1..=8).contains(&sym(step)));
                assert_eq!(target(25 - 10 + step), sym(step));
                assert_eq!(target(step), 0);
            }
            for step in 10..14 {
                assert_eq!(sym(step), 0, "blank during the delay");
            }
            assert_eq!(sym(14), 9, "delimiter at step T + 10 (1-based)");
            for step in 15..25 {
                assert_eq!(sym(step), 0);
            }
        }
        assert_eq!(b, task.train_batch(3, 4).unwrap(), "deterministic in (seed, iter)");
        assert_ne!(b, task.train_batch(4, 4).unwrap());
        assert!((task.baseline().loss - 10.0 * 8f64.ln() / 25.0).abs() < 1e-12);
    }
}
