//! Divergence: a run whose loss ended far above what a model that learned nothing scores.
//!
//! The reference is `r = max(baseline, chance)`: the task's trivial-predictor loss and what a model
//! that ignores its input scores: for classification a uniform guess over the `c` classes, `ln c`
//! (the copy task's baseline is far below `ln 9` because most of its steps are blanks, so an
//! untrained model starts near `ln 9`, not near the baseline); for regression the zero predictor,
//! the mean squared target of the first evaluation batch (`7/6` for the adding task, whose
//! baseline of always predicting 1 is `1/6`). A run is *diverged* when each of its last [`WINDOW`]
//! evaluations (or all of them, when it has fewer) has a loss above [`FACTOR`]` x r` or a
//! non-finite one: it either rose there and stayed, or never came below it. A run that learned
//! slowly stays near `r` and is not flagged; a blown-up run (SGD at `--lr 1e3` reaches thousands of
//! times the baseline) is.

use crate::tasks::{LossKind, Task};
use std::collections::VecDeque;

/// How many times the reference loss counts as diverged.
pub const FACTOR: f64 = 10.0;
/// How many of the last evaluations must all be above the threshold.
pub const WINDOW: usize = 3;

/// The reference loss `max(baseline, chance)` of `task` (see the module documentation).
pub fn reference(task: &dyn Task) -> f64 {
    let chance = match task.loss() {
        LossKind::XentEveryStep { classes } | LossKind::XentLastStep { classes } => (classes.max(1) as f64).ln(),
        LossKind::MseLastStep { .. } => task
            .eval_batch(0, 500)
            .map_or(0.0, |b| b.y.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / b.y.len().max(1) as f64),
    };
    task.baseline().loss.max(chance)
}

/// Watches the evaluation losses of a run.
#[derive(Clone, Debug)]
pub struct DivergenceWatch {
    reference: f64,
    last: VecDeque<(usize, f64)>,
}

impl DivergenceWatch {
    /// A watch against the reference loss `reference` (see [`reference()`]).
    pub fn new(reference: f64) -> Self {
        DivergenceWatch { reference, last: VecDeque::with_capacity(WINDOW) }
    }

    /// Records the evaluation loss at iteration `iter`.
    pub fn observe(&mut self, iter: usize, loss: f64) {
        if self.last.len() == WINDOW {
            self.last.pop_front();
        }
        self.last.push_back((iter, loss));
    }

    /// `Some(reason)` when the run counts as diverged.
    pub fn verdict(&self) -> Option<String> {
        let limit = FACTOR * self.reference;
        if self.last.is_empty() || !self.last.iter().all(|&(_, l)| !l.is_finite() || l > limit) {
            return None;
        }
        let losses: Vec<String> = self.last.iter().map(|(i, l)| format!("{l:.4} at iteration {i}")).collect();
        Some(format!(
            "the evaluation loss stayed above {FACTOR} x {:.4} = {limit:.4} (the larger of the task's baseline and \
             the loss of a model that ignores its input) over the last {} evaluation(s): {}; lower --lr (or --geo-lr) or set --clip",
            self.reference,
            self.last.len(),
            losses.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::{adding::AddingTask, copy::CopyTask};

    #[test]
    fn references_are_what_an_untrained_model_scores() {
        let copy = CopyTask::new(100, 1).unwrap();
        assert!((reference(&copy) - 9f64.ln()).abs() < 1e-12, "uniform over 9 classes");
        // E[(u1 + u2)^2] for two uniforms on [0, 1): 1/3 + 2 * 1/4 + 1/3 = 7/6 (500 samples).
        let r = reference(&AddingTask::new(50, 1).unwrap());
        assert!((r - 7.0 / 6.0).abs() < 0.1, "{r}");
    }

    #[test]
    fn flags_only_losses_that_stay_above_the_threshold() {
        let mut w = DivergenceWatch::new(1.0);
        assert!(w.verdict().is_none());
        w.observe(10, 50.0);
        assert!(w.verdict().is_some(), "one evaluation, above: never below");
        w.observe(20, 5.0);
        assert!(w.verdict().is_none(), "came back below");
        for (i, l) in [(30, 11.0), (40, f64::NAN), (50, 1e4)] {
            w.observe(i, l);
        }
        let v = w.verdict().unwrap();
        assert!(v.contains("iteration 50") && v.contains("--lr"), "{v}");
        w.observe(60, 9.99);
        assert!(w.verdict().is_none());
    }
}
