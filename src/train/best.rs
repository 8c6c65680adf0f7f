//! The best evaluation of a run, reported beside the final one (and kept as a checkpoint with
//! `--keep-best`).
//!
//! Order: for tasks scored by accuracy (copy, MNIST variants) the higher evaluation accuracy wins,
//! ties going to the lower evaluation loss; for the others (adding: MSE; PTB: bits per character)
//! the lower evaluation loss wins. A record with a non-finite loss is never the best. On ties the
//! earlier evaluation stays.

use super::metrics::EvalRecord;
use serde::{Deserialize, Serialize};

/// The evaluation that scored best so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BestEval {
    /// Iterations completed at that evaluation.
    pub iter: usize,
    /// Evaluation loss.
    pub loss: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mse: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpc: Option<f64>,
}

impl BestEval {
    /// The scores of an evaluation record.
    pub fn of(rec: &EvalRecord) -> Self {
        BestEval { iter: rec.iter, loss: rec.loss, accuracy: rec.accuracy, mse: rec.mse, bpc: rec.bpc }
    }

    /// Whether `self` scores strictly better than `other`.
    pub fn beats(&self, other: &BestEval) -> bool {
        if !self.loss.is_finite() {
            return false;
        }
        if !other.loss.is_finite() {
            return true;
        }
        match (self.accuracy, other.accuracy, self.bpc) {
            (Some(a), Some(b), None) if a != b => a > b,
            _ => self.loss < other.loss,
        }
    }
}

/// Tracks the best evaluation of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BestTracker {
    pub best: Option<BestEval>,
}

impl BestTracker {
    /// Observes an evaluation; true when it is the new best.
    pub fn observe(&mut self, rec: &EvalRecord) -> bool {
        let cand = BestEval::of(rec);
        let better = match &self.best {
            None => cand.loss.is_finite(),
            Some(b) => cand.beats(b),
        };
        if better {
            self.best = Some(cand);
        }
        better
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(iter: usize, loss: f64, accuracy: Option<f64>) -> EvalRecord {
        EvalRecord { iter, loss, accuracy, ..Default::default() }
    }

    #[test]
    fn accuracy_decides_then_loss() {
        let mut t = BestTracker::default();
        assert!(t.observe(&rec(100, 0.5, Some(0.4))));
        assert!(t.observe(&rec(200, 0.6, Some(0.9))), "higher accuracy wins despite a higher loss");
        assert!(!t.observe(&rec(300, 0.7, Some(0.9))), "tie in accuracy: the lower loss stays");
        assert!(t.observe(&rec(400, 0.2, Some(0.9))));
        assert!(!t.observe(&rec(500, f64::NAN, Some(1.0))), "a non-finite loss is never the best");
        assert_eq!(t.best.map(|b| b.iter), Some(400));
    }

    #[test]
    fn without_accuracy_the_lower_loss_wins() {
        let mut t = BestTracker::default();
        for (i, l) in [0.3, 0.1, 0.2].into_iter().enumerate() {
            t.observe(&EvalRecord { iter: i, loss: l, mse: Some(l), ..Default::default() });
        }
        assert_eq!(t.best.map(|b| (b.iter, b.mse)), Some((1, Some(0.1))));
    }
}
