//! What the Criterion benchmarks share.

use ortho_rnn::backend::OptimRule;
use ortho_rnn::optim::OptimConfig;

/// The optimizer of the timed training iterations: plain SGD (lr 1e-4, clipping 100), with geodesic
/// steps at `geo_lr` for the factorized model (0 for the plain RNN), as in the papers' Table 5.
pub fn timing_sgd(geo_lr: f64) -> OptimConfig {
    OptimConfig {
        rule: OptimRule::Sgd { momentum: 0.0, nesterov: false },
        lr: 1e-4,
        geo_lr,
        clip: Some(100.0),
        weight_decay: 0.0,
    }
}
