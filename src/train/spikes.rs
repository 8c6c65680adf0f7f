//! Instability detection: training-time spikes that a final evaluation would hide.
//!
//! Two kinds of spike, each reported once per excursion (consecutive iterations above the threshold
//! are one spike, recorded at its first iteration with the largest value it reached):
//!
//! - **gradient norm**: the global gradient norm `g_i` (before clipping) exceeds `factor` times the
//!   median of the previous `window` norms (after at least `warmup` of them);
//! - **loss**: the training loss exceeds the task's trivial-predictor loss `L_0` after having been
//!   below `L_0 / 2` (a model that had learned something lost it); it re-arms once the loss is below
//!   `L_0 / 2` again.
//!
//! The detector only observes: what to do about a spike (stop, keep the best checkpoint) is the
//! caller's choice. Its window is not checkpointed: after a resume it warms up again.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// What rose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpikeKind {
    /// The global gradient norm rose above `factor` times its running median.
    GradNorm,
    /// The training loss rose above the trivial predictor's after having been below half of it.
    Loss,
}

/// One spike.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Spike {
    /// First iteration (1-based) of the excursion.
    pub iter: usize,
    pub kind: SpikeKind,
    /// Largest gradient norm or loss reached during the excursion.
    pub value: f64,
    /// What it was compared with: the running median of the gradient norm, or the baseline loss.
    pub reference: f64,
}

/// Detector settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SpikeConfig {
    /// A gradient norm above `factor` times the running median is a spike (`--spike-factor`).
    pub factor: f64,
    /// Iterations in the running median.
    pub window: usize,
    /// Norms needed before any gradient-norm spike is reported.
    pub warmup: usize,
}

impl Default for SpikeConfig {
    fn default() -> Self {
        SpikeConfig { factor: 10.0, window: 100, warmup: 20 }
    }
}

/// Spike detector over a run's iterations.
#[derive(Clone, Debug)]
pub struct SpikeDetector {
    cfg: SpikeConfig,
    baseline: f64,
    norms: VecDeque<f64>,
    sorted: Vec<f64>,
    /// Index into `found` of the gradient-norm excursion in progress.
    grad_open: Option<usize>,
    loss_armed: bool,
    loss_open: Option<usize>,
    found: Vec<Spike>,
    /// Spikes not yet handed to a metrics record (indices into `found`).
    reported: usize,
}

impl SpikeDetector {
    /// A detector for a task whose trivial predictor scores `baseline`.
    pub fn new(cfg: SpikeConfig, baseline: f64) -> Self {
        SpikeDetector {
            cfg,
            baseline,
            norms: VecDeque::with_capacity(cfg.window + 1),
            sorted: Vec::with_capacity(cfg.window),
            grad_open: None,
            loss_armed: false,
            loss_open: None,
            found: Vec::new(),
            reported: 0,
        }
    }

    fn median(&mut self) -> f64 {
        self.sorted.clear();
        self.sorted.extend(self.norms.iter().copied());
        self.sorted.sort_by(f64::total_cmp);
        let n = self.sorted.len();
        if n % 2 == 1 { self.sorted[n / 2] } else { 0.5 * (self.sorted[n / 2 - 1] + self.sorted[n / 2]) }
    }

    /// Observes iteration `iter` (1-based): its training loss and global gradient norm.
    pub fn observe(&mut self, iter: usize, loss: f64, grad_norm: f64) {
        if grad_norm.is_finite() {
            if self.norms.len() >= self.cfg.warmup.max(1) {
                let median = self.median();
                if grad_norm > self.cfg.factor * median {
                    match self.grad_open {
                        Some(i) => self.found[i].value = self.found[i].value.max(grad_norm),
                        None => {
                            self.found.push(Spike {
                                iter,
                                kind: SpikeKind::GradNorm,
                                value: grad_norm,
                                reference: median,
                            });
                            self.grad_open = Some(self.found.len() - 1);
                        }
                    }
                } else {
                    self.grad_open = None;
                }
            }
            self.norms.push_back(grad_norm);
            if self.norms.len() > self.cfg.window.max(1) {
                self.norms.pop_front();
            }
        }
        if !(loss.is_finite() && self.baseline.is_finite() && self.baseline > 0.0) {
            return;
        }
        if loss < 0.5 * self.baseline {
            self.loss_armed = true;
            self.loss_open = None;
        } else if loss > self.baseline && self.loss_armed {
            match self.loss_open {
                Some(i) => self.found[i].value = self.found[i].value.max(loss),
                None => {
                    self.found.push(Spike { iter, kind: SpikeKind::Loss, value: loss, reference: self.baseline });
                    self.loss_open = Some(self.found.len() - 1);
                }
            }
        }
    }

    /// Every spike so far.
    pub fn spikes(&self) -> &[Spike] {
        &self.found
    }

    /// The spikes found since the last call (for the next metrics record). An excursion still in
    /// progress is reported with the largest value reached so far.
    pub fn take_new(&mut self) -> Vec<Spike> {
        let out = self.found[self.reported..].to_vec();
        self.reported = self.found.len();
        out
    }
}

/// One line describing spikes for people (empty when there are none).
pub fn describe(spikes: &[Spike]) -> String {
    if spikes.is_empty() {
        return String::new();
    }
    let shown: Vec<String> = spikes
        .iter()
        .take(5)
        .map(|s| match s.kind {
            SpikeKind::GradNorm => {
                format!(
                    "iteration {}: gradient norm {:.3e} ({:.0}x its median {:.3e})",
                    s.iter,
                    s.value,
                    s.value / s.reference,
                    s.reference
                )
            }
            SpikeKind::Loss => {
                format!("iteration {}: training loss {:.4} above the baseline {:.4}", s.iter, s.value, s.reference)
            }
        })
        .collect();
    let more = if spikes.len() > 5 { format!("; and {} more", spikes.len() - 5) } else { String::new() };
    format!("{} instabilit{}: {}{more}", spikes.len(), if spikes.len() == 1 { "y" } else { "ies" }, shown.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gradient_norm_excursion_is_one_spike_with_its_peak() {
        let mut d = SpikeDetector::new(SpikeConfig { factor: 10.0, window: 50, warmup: 5 }, f64::NAN);
        let norms = [1.0, 1.2, 0.8, 1.1, 0.9, 1.0, 5.0, 15.0, 400.0, 30.0, 1.0, 1.0, 20.0];
        for (i, &g) in norms.iter().enumerate() {
            d.observe(i + 1, 0.1, g);
        }
        let s = d.spikes();
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!((s[0].iter, s[0].kind, s[0].value), (8, SpikeKind::GradNorm, 400.0));
        assert!((s[0].reference - 1.0).abs() < 1e-12, "median of the first seven norms: {}", s[0].reference);
        assert_eq!((s[1].iter, s[1].value), (13, 20.0));
        assert_eq!(d.take_new().len(), 2);
        assert!(d.take_new().is_empty());
    }

    #[test]
    fn no_gradient_spike_before_the_warmup() {
        let mut d = SpikeDetector::new(SpikeConfig { factor: 10.0, window: 50, warmup: 5 }, f64::NAN);
        for (i, g) in [1.0, 100.0, 1.0, 1.0].into_iter().enumerate() {
            d.observe(i + 1, 0.1, g);
        }
        assert!(d.spikes().is_empty());
    }

    #[test]
    fn the_loss_spikes_only_after_having_learned() {
        let mut d = SpikeDetector::new(SpikeConfig::default(), 1.0);
        // Above the baseline from the start: not a spike.
        for (i, l) in [2.0, 1.5, 0.9, 0.4, 0.3, 1.2, 3.0, 0.8, 0.45, 1.1].into_iter().enumerate() {
            d.observe(i + 1, l, 1.0);
        }
        let s: Vec<(usize, f64)> = d.spikes().iter().map(|s| (s.iter, s.value)).collect();
        assert_eq!(s, vec![(6, 3.0), (10, 1.1)]);
        assert!(describe(d.spikes()).starts_with("2 instabilities: iteration 6: training loss 3.0000"));
    }
}
