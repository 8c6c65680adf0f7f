//! Divergence: a run whose loss ended far above what a model that learned nothing scores.
//!
//! The reference is `r = max(baseline, chance)`: the task's trivial-predictor loss and, for
//! classification, the loss of a uniform guess over the `c` classes, `ln c` (the copy task's
//! baseline is far below `ln 9` because most of its steps are blanks, so an untrained model starts
//! near `ln 9`, not near the baseline). A run is *diverged* when each of its last [`WINDOW`]
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

/// The reference loss `max(baseline, ln c)` of `task`.
pub fn reference(task: &dyn Task) -> f64 {
    let chance = match task.loss() {
        LossKind::XentEveryStep { classes } | LossKind::XentLastStep { classes } => (classes.max(1) as f64).ln(),
        LossKind::MseLastStep { .. } => 0.0,
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
    /// A watch against the reference loss `reference` (see [`reference`]).
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
             the loss of a uniform guess) over the last {} evaluation(s): {}; lower --lr (or --geo-lr) or set --clip",
            self.reference,
            self.last.len(),
            losses.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
