//! `train --resume CK`: the checkpoint's stored run is continued as it was. Flags that may change
//! on resume ([`MAY_CHANGE`]: the length, evaluation and checkpoint cadence, output files, a moved
//! data directory, device and threads) apply; any other flag given on the command line must agree
//! with the stored run, and those that do not are refused together, each with its stored value.

use super::TrainArgs;
use super::args::parse_regs;
use ortho_rnn::backend::{Activation, OptimRule};
use ortho_rnn::error::{Error, Result};
use ortho_rnn::param::factorized::Spectrum;
use ortho_rnn::train::RunSpec;
use std::path::Path;

/// Flags (clap ids) that may differ from the stored run.
pub const MAY_CHANGE: &[&str] = &[
    "iters",
    "epochs",
    "iters_per_epoch",
    "eval_every",
    "checkpoint",
    "checkpoint_every",
    "metrics",
    "data",
    "device",
    "threads",
    "json",
    "quiet",
    "record_grad_norms",
    "no_diagnostics",
    "resume",
    "allow_divergence",
];

/// The command-line spelling of a clap id.
fn flag(id: &str) -> String {
    match id {
        "regs" => "--reg".into(),
        _ => format!("--{}", id.replace('_', "-")),
    }
}

fn rule_name(r: &OptimRule) -> &'static str {
    match r {
        OptimRule::Sgd { .. } => "sgd",
        OptimRule::RmsProp { .. } => "rmsprop",
        OptimRule::Adam { .. } => "adam",
    }
}

/// `(given, stored)` for flag `id`, as text; `None` for an id this table does not know.
fn given_and_stored(id: &str, a: &TrainArgs, st: &RunSpec) -> Option<(String, String)> {
    let s = |v: &dyn std::fmt::Debug| format!("{v:?}").to_lowercase();
    let (m, o) = (&a.model, &a.optim);
    let rule = st.optim.rule;
    let na = || format!("n/a (stored optimizer {})", rule_name(&rule));
    Some(match id {
        "task" => (a.task.as_str().into(), st.task.kind.as_str().into()),
        "seq_len" => {
            let stored = st.task.seq_len.unwrap_or(st.task.kind.default_seq_len());
            (s(&a.seq_len.unwrap_or(0)), s(&stored))
        }
        "max_train" => (s(&a.max_train), s(&st.task.max_train)),
        "eval_test" => (s(&a.eval_test), s(&st.task.eval_test)),
        "seed" => (s(&a.seed), s(&st.seed)),
        "batch" => (s(&a.batch), s(&st.batch)),
        "model" => (m.model.as_str().into(), st.model.model.as_str().into()),
        "hidden" => (s(&m.hidden), s(&st.model.hidden)),
        "activation" => (s(&m.activation.map(Activation::from)), s(&Some(st.model.activation))),
        "prelu_slope" => (s(&m.prelu_slope), s(&st.model.prelu_slope)),
        "prelu_fixed" => (s(&m.prelu_fixed), s(&!st.model.prelu_trainable)),
        "init" => (s(&m.init), s(&Some(st.model.init))),
        "margin" => {
            let given = match m.margin.as_deref().map(str::trim) {
                Some("none") | None => Ok(Spectrum::Free),
                Some(v) => {
                    v.parse::<f64>().map_err(|_| ()).and_then(|x| Spectrum::from_margin(Some(x)).map_err(|_| ()))
                }
            };
            (given.map_or_else(|_| format!("{:?}", m.margin), |g| s(&g)), s(&st.model.spectrum))
        }
        "neg" => (s(&m.neg), s(&st.model.neg)),
        "k" => {
            let given = match m.k.as_deref().map(str::trim) {
                Some("inf") | None => None,
                Some(v) => Some(v.parse::<usize>().map_err(|_| v.to_string())),
            };
            (
                given.map_or("inf".into(), |g| g.map_or_else(|e| e, |k| k.to_string())),
                st.model.k.map_or("inf".into(), |k| k.to_string()),
            )
        }
        "gain" => (s(&m.gain), s(&st.model.gain)),
        "regs" => {
            let given = parse_regs(&m.regs, st.model.regs.weight_decay).map_or_else(|e| e.to_string(), |r| s(&r));
            (given, s(&st.model.regs))
        }
        "weight_decay" => (s(&m.weight_decay), s(&st.model.regs.weight_decay)),
        "optimizer" => (s(&o.optimizer), rule_name(&rule).into()),
        "lr" => (s(&o.lr), s(&st.optim.lr)),
        "clip" => (s(&o.clip), s(&st.optim.clip)),
        "geo_lr" => (s(&o.geo_lr.unwrap_or(-1.0)), s(&st.optim.geo_lr)),
        "momentum" => (s(&o.momentum), if let OptimRule::Sgd { momentum, .. } = rule { s(&momentum) } else { na() }),
        "nesterov" => (s(&o.nesterov), if let OptimRule::Sgd { nesterov, .. } = rule { s(&nesterov) } else { na() }),
        "rho" => (s(&o.rho), if let OptimRule::RmsProp { rho, .. } = rule { s(&rho) } else { na() }),
        "eps" => (
            s(&o.eps),
            match rule {
                OptimRule::RmsProp { eps, .. } | OptimRule::Adam { eps, .. } => s(&eps),
                OptimRule::Sgd { .. } => na(),
            },
        ),
        "beta1" => (s(&o.beta1), if let OptimRule::Adam { beta1, .. } = rule { s(&beta1) } else { na() }),
        "beta2" => (s(&o.beta2), if let OptimRule::Adam { beta2, .. } = rule { s(&beta2) } else { na() }),
        _ => return None,
    })
}

/// Refuses the explicit flags of `a` that would change the run stored in checkpoint `path`.
pub fn refuse_conflicts(a: &TrainArgs, stored: &RunSpec, path: &Path) -> Result<()> {
    let mut bad = Vec::new();
    for id in a.explicit.iter().filter(|id| !MAY_CHANGE.contains(&id.as_str())) {
        match given_and_stored(id, a, stored) {
            Some((given, st)) if given == st => {}
            Some((given, st)) => bad.push(format!("{} {given} (the checkpoint has {st})", flag(id))),
            None => bad.push(format!("{} (fixed by the checkpoint)", flag(id))),
        }
    }
    if bad.is_empty() {
        return Ok(());
    }
    Err(Error::invalid(
        "--resume",
        path.display(),
        format!(
            "the checkpoint's run continues unchanged, but these flags would change it: {}. Drop them to continue \
             the run, or start a new run without --resume. Flags that may change on resume: {}",
            bad.join("; "),
            MAY_CHANGE.iter().filter(|f| **f != "resume").map(|f| flag(f)).collect::<Vec<_>>().join(", ")
        ),
    ))
}
