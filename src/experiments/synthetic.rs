//! The synthetic-task sweeps of Vorontsov et al. 2017: `copy-margins` (Figure 1, with Figure 2's
//! gradient-norm heatmaps), `adding-margins` (Figure 5), `soft-orth` (Figure 4) and
//! `copy-activations` (Appendix 5.2).
//!
//! Shared protocol (§3.1): minibatches of 50, an epoch of 100 minibatches for generated data,
//! RMSprop 1e-4 (rho 0.9) on Euclidean parameters, geodesic steps 1e-6 on the bases, clipping at 100,
//! weight decay 1e-4 on the composite `W`, hidden 128; copy-task RNNs have no transition
//! nonlinearity (§3.1.1). Quick and smoke sizes shorten `T`, shrink the models and iterations and
//! raise the learning rates (see [`spec::vorontsov`]).

use super::spec::{self, Criterion, Duration, Measure, Optim, SGD, copy_task, factorized, margin_label, train_job};
use super::{Context, Experiment, Plan, Size, paper};
use crate::backend::Activation;
use crate::error::Result;
use crate::nn::init::RecurrentInit;
use crate::train::build::ModelSpec;

/// Figure 1's margins (`None`: no margin).
const FIGURE1_MARGINS: [Option<f64>; 6] = [Some(0.0), Some(0.001), Some(0.01), Some(0.1), Some(1.0), None];

/// Per-size knobs of a copy-like sweep: sequence lengths, hidden size, iterations, evaluation
/// period and batch.
struct Knobs {
    ts: Vec<usize>,
    hidden: usize,
    iters: usize,
    eval_every: usize,
    batch: usize,
}

fn iters(iters: usize, eval_every: usize) -> Duration {
    Duration::Iters { iters, eval_every }
}

fn size_note(size: Size, knobs: &Knobs, what: &str) -> String {
    let ts: Vec<String> = knobs.ts.iter().map(|t| t.to_string()).collect();
    format!(
        "{} size: {what} T = {}, hidden {}, {} iterations of batch {}, evaluation every {} iterations on the \
         task's fixed held-out set of 500 sequences.",
        size.as_str(),
        ts.join(", "),
        knobs.hidden,
        knobs.iters,
        knobs.batch,
        knobs.eval_every
    )
}

pub(super) const COPY_MARGINS: Experiment = Experiment {
    name: "copy-margins",
    reproduces: "Vorontsov et al. 2017, Figure 1 (copy-task accuracy per spectral margin; Figure 2-style \
                 gradient-norm heatmaps for the shortest T)",
    sweeps: "copy task, T = 200/500/1000/10000 x spectral margin 0/0.001/0.01/0.1/1/none (factorized RNN, \
             no transition nonlinearity)",
    needs: None,
    build: copy_margins,
};

fn copy_margins(cx: &Context, e: &Experiment) -> Result<Plan> {
    let size = cx.size;
    let (knobs, full_iters) = match size {
        Size::Full => {
            (Knobs { ts: vec![200, 500, 1000, 10000], hidden: 128, iters: 20_000, eval_every: 100, batch: 50 }, true)
        }
        Size::Quick => {
            (Knobs { ts: vec![50, 100, 200, 400], hidden: 64, iters: 600, eval_every: 50, batch: 50 }, false)
        }
        Size::Smoke => (Knobs { ts: vec![5, 10, 15, 20], hidden: 8, iters: 20, eval_every: 10, batch: 10 }, false),
    };
    let optim = spec::vorontsov(size);
    let mut plan = Plan::new(e, size, None);
    plan.measures = vec![
        Measure::FinalLoss,
        Measure::FinalAccuracy,
        Measure::BestAccuracy,
        Measure::Reached(Criterion::AccuracyAtLeast(0.99)),
        Measure::FinalSvRange,
        Measure::Spikes,
    ];
    plan.paper_columns = vec!["paper (Figure 1 / §3.1.1)".into()];
    plan.protocol = vec![
        "Paper (§3.1, §3.1.1): factorized RNN `W = U diag(s) V^T`, 128 hidden units, no transition nonlinearity, \
         minibatches of 50, an epoch = 100 minibatches, RMSprop 1e-4, geodesic steps 1e-6 on U and V, clipping \
         100, weight decay 1e-4 on the composite W."
            .into(),
        "Full size: the paper's T = 200, 500, 1000, 10000; 160 epochs (16000 iterations) at T = 200 and 200 \
         epochs (20000 iterations) otherwise, chosen from Figure 1's axes (the text gives no length); \
         evaluation every epoch."
            .into(),
        size_note(size, &knobs, "copy task"),
        format!("Optimizer at this size: {}.", optim.describe()),
        format!(
            "Gradient norms per time step (Figure 2) are recorded at every evaluation for the T = {} panel \
             (the paper used T = 200, a length-220 network) and drawn as heatmaps.",
            knobs.ts[0]
        ),
        paper::FIGURE1_TEXT.into(),
        "Accuracy is measured on the 10 output steps; the dashed line is the trivial predictor \
         (loss 10 ln 8 / (T + 20), accuracy 1/8)."
            .into(),
    ];
    if size == Size::Quick {
        plan.protocol.push(COPY_MARGINS_QUICK.into());
    }
    for (panel, &t) in knobs.ts.iter().enumerate() {
        let group = format!("T={t}");
        let standin = ["T=200", "T=500", "T=1000", "T=10000"][panel];
        let claim = if panel == 3 {
            "at T=10000, margins larger than 0.001 converge slower than m=0.001 and the model without a margin \
             failed to converge (Figure 1, right; §3.1.1)."
        } else {
            "convergence speed increases with the margin (Figure 1; §3.1.1)."
        };
        let note = if size == Size::Full || standin == group {
            claim.to_string()
        } else {
            format!("(this panel stands in for the paper's {standin} panel) {claim}")
        };
        plan.group_notes.push((group.clone(), note));
        let n_iters = if full_iters && t == 200 { 16_000 } else { knobs.iters };
        for m in FIGURE1_MARGINS {
            let model = factorized(knobs.hidden, m, Activation::Identity)?;
            let mut job =
                train_job(copy_task(t, spec::SEED), model, &optim, knobs.batch, iters(n_iters, knobs.eval_every));
            if let spec::Job::Train(ts) = &mut job {
                ts.record_grad_norms = panel == 0;
            }
            let cell = match (panel, m) {
                (3, None) => "failed to converge at T=10000",
                (3, Some(0.001)) => "faster than the larger margins at T=10000",
                (3, Some(x)) if x > 0.001 => "slower than m=0.001 at T=10000",
                _ => "",
            };
            plan.push(&group, &margin_label(m), job, vec![cell.into()]);
        }
    }
    Ok(plan)
}

/// What the quick size of `copy-margins` shows and does not (seeds 1-3, measured when the size was
/// chosen; the README's figure gallery shows the curves).
const COPY_MARGINS_QUICK: &str = "What this quick size shows (seeds 1-3, measured when it was chosen): the T = 50 \
     gradient-norm heatmaps show Figure 2's pattern (with m = 0 the norm stays nearly flat across the time \
     steps before the output; with m = 1 and without a margin it becomes far from flat as training \
     proceeds), and at T = 400 the model without a margin falls far behind the others (as in the paper's \
     T = 10000 panel). It does NOT show Figure 1's \
     ordering by margin: at T = 50 to 200 the margins end within each other's seed ranges, and at T = 400 \
     m = 0.001 is not faster than the larger margins. No size below the paper's (--full) is known to show the \
     ordering; sizes between quick and full were not tried.";

/// What the quick size of `adding-margins` shows and does not.
const ADDING_MARGINS_QUICK: &str = "What this quick size shows (seeds 1-3, measured when it was chosen): every \
     model leaves the baseline within 5000 iterations (at the former 800 none did), and m = 0 is the slowest, \
     as in the paper. It does NOT show Figure 5's claim: the model without a margin learns fastest here instead \
     of staying at the baseline, and m = 0 does get below the baseline. Single-seed trials gave the same \
     order at T = 150 (5000 iterations; m = 0, 1, 100, none), and at T = 200 (3000 iterations, learning rate \
     1e-3 or 3e-3; m = 0 and 10) every model stayed above MSE 0.15. No size below the paper's (--full: \
     T = 1000, 200000 iterations) is known to show the claim.";

pub(super) const ADDING_MARGINS: Experiment = Experiment {
    name: "adding-margins",
    reproduces: "Vorontsov et al. 2017, Figure 5 (adding-task MSE per spectral margin)",
    sweeps: "adding task, T = 1000, ReLU, spectral margin 0/1/10/100/none (factorized RNN)",
    needs: None,
    build: adding_margins,
};

fn adding_margins(cx: &Context, e: &Experiment) -> Result<Plan> {
    let size = cx.size;
    let knobs = match size {
        Size::Full => Knobs { ts: vec![1000], hidden: 128, iters: 200_000, eval_every: 100, batch: 50 },
        Size::Quick => Knobs { ts: vec![100], hidden: 64, iters: 5000, eval_every: 100, batch: 50 },
        Size::Smoke => Knobs { ts: vec![10], hidden: 8, iters: 20, eval_every: 10, batch: 10 },
    };
    let optim = spec::vorontsov(size);
    let mut plan = Plan::new(e, size, None);
    plan.measures =
        vec![Measure::FinalMse, Measure::MinMse, Measure::Reached(Criterion::MseAtMost(0.05)), Measure::Spikes];
    plan.paper_columns = vec!["paper (Figure 5 / §3.1.1)".into()];
    plan.protocol = vec![
        "Paper (§3.1.1, Figure 5): factorized RNN with 128 hidden units and ReLU on T = 1000 sequences, margins \
         0, 1, 10, 100 and none, 2000 epochs of 100 minibatches of 50; RMSprop 1e-4, geoSGD 1e-6, clipping 100, \
         weight decay 1e-4."
            .into(),
        "Full size: exactly that (200000 iterations, evaluation every epoch).".into(),
        size_note(size, &knobs, "adding task"),
        format!("Optimizer at this size: {}.", optim.describe()),
        "MSE on the last step; the dashed line is the trivial predictor's 1/6 = 0.167. The convergence column \
         uses MSE <= 0.05 (our threshold; the paper reads convergence off the curves)."
            .into(),
    ];
    if size == Size::Quick {
        plan.protocol.push(ADDING_MARGINS_QUICK.into());
    }
    let t = knobs.ts[0];
    let group = format!("T={t}");
    plan.group_notes.push((group.clone(), paper::FIGURE5_TEXT.into()));
    for m in [Some(0.0), Some(1.0), Some(10.0), Some(100.0), None] {
        let model = factorized(knobs.hidden, m, Activation::Relu)?;
        let task = spec::adding_task(t, spec::SEED);
        let job = train_job(task, model, &optim, knobs.batch, iters(knobs.iters, knobs.eval_every));
        let cell = match m {
            Some(0.0) | None => "did not get beyond the baseline within 2000 epochs",
            _ => "",
        };
        plan.push(&group, &margin_label(m), job, vec![cell.into()]);
    }
    Ok(plan)
}

/// What the quick size of `soft-orth` shows and does not.
const SOFT_ORTH_QUICK: &str = "What this quick size shows (seeds 1-3, measured when it was chosen): in panel (c) \
     the strongest priors (lambda = 10 and 100) are the slowest, as in Figure 4, and in panel (b) lambda = 100 \
     ends lowest. It does NOT show the rest of Figure 4: in panel (a) accuracy does not rise as the penalty \
     weakens (lambda = 100 ends among the best), panel (d) has every strength near 50 % with no ordering, and \
     neither (c) nor (d) becomes unstable without the prior. No size below the paper's (--full) is known to \
     show those; sizes between quick and full were not tried.";

pub(super) const SOFT_ORTH: Experiment = Experiment {
    name: "soft-orth",
    reproduces: "Vorontsov et al. 2017, Figure 4 (soft orthogonality penalty and mean-one Gaussian prior on the \
                 spectrum, copy task)",
    sweeps: "penalty strength 1e-4..100 on a plain RNN (T=200) and a factorized RNN (T=500); prior strength \
             1e-4..100 without a margin and with margin 1 (T=200)",
    needs: None,
    build: soft_orth,
};

/// Figure 4's legend.
const STRENGTHS: [f64; 7] = [1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0];

fn soft_orth(cx: &Context, e: &Experiment) -> Result<Plan> {
    let size = cx.size;
    // (T of panels a, c, d), (T of panel b), hidden, iterations per panel a..d, eval, batch.
    let (t_short, t_long, hidden, panel_iters, eval_every, batch) = match size {
        Size::Full => (200, 500, 128, [100_000, 30_000, 30_000, 30_000], 100, 50),
        Size::Quick => (50, 100, 64, [500, 500, 500, 500], 50, 50),
        Size::Smoke => (5, 10, 8, [10, 10, 10, 10], 5, 10),
    };
    let base = spec::vorontsov(size);
    let (rnn_lr, sgd_lr) = match size {
        Size::Full => (1e-5, 1e-5),
        _ => (1e-3, 5e-3),
    };
    let rnn_optim = Optim { lr: rnn_lr, ..base };
    let prior_optim = Optim { rule: SGD, lr: sgd_lr, ..base };
    let mut plan = Plan::new(e, size, None);
    plan.measures = vec![
        Measure::FinalAccuracy,
        Measure::BestAccuracy,
        Measure::Reached(Criterion::AccuracyAtLeast(0.99)),
        Measure::FinalLoss,
        Measure::Spikes,
    ];
    plan.paper_columns = vec!["paper (Figure 4 / §3.2)".into()];
    plan.protocol = vec![
        "Paper (§3.2, Figure 4): copy task, no transition nonlinearity, 128 hidden units. (a) plain RNN on \
         T = 200 with the penalty lambda ||W^T W - I||^2, learning rate lowered to 1e-5; (b) factorized RNN \
         (orthogonal bases) on T = 500 with the same penalty; (c) factorized RNN, spectrum trained directly, \
         mean-one Gaussian prior lambda sum (s_i - 1)^2 on T = 200, geoSGD 1e-6 on the bases and plain SGD \
         1e-5 on everything else; (d) as (c) with a sigmoidal margin of 1. Strengths 1e-4 ... 100 (legend)."
            .into(),
        "Full size: as the paper; panel (a) 1000 epochs (100000 iterations), panels (b)-(d) 300 epochs \
         (30000 iterations), read off Figure 4's axes; RMSprop for (a) and (b) (the paper's default), \
         clipping 100 and weight decay 1e-4 throughout; panel (d) adds lambda = 0 (the text's \"prior removed \
         completely\")."
            .into(),
        format!(
            "{} size: T = {t_short} for panels (a), (c), (d) and T = {t_long} for (b), hidden {hidden}, {} \
             iterations per run of batch {batch}, evaluation every {eval_every}; RMSprop {rnn_lr} in (a), SGD \
             {sgd_lr} in (c) and (d).",
            size.as_str(),
            panel_iters[0]
        ),
        format!("Other settings at this size: {}.", base.describe()),
    ];
    if size == Size::Quick {
        plan.protocol.push(SOFT_ORTH_QUICK.into());
    }
    let panels = [
        format!("a: RNN soft-orth T={t_short}"),
        format!("b: factorized soft-orth T={t_long}"),
        format!("c: prior, no margin T={t_short}"),
        format!("d: prior, m=1 T={t_short}"),
    ];
    for (i, group) in panels.iter().enumerate() {
        plan.group_notes.push((group.clone(), paper::FIGURE4_TEXT[i].into()));
        let strengths: Vec<f64> =
            if i == 3 { [0.0].into_iter().chain(STRENGTHS).collect() } else { STRENGTHS.to_vec() };
        for lambda in strengths {
            let (t, mut model, optim): (usize, ModelSpec, &Optim) = match i {
                0 => (t_short, spec::plain_rnn(hidden, RecurrentInit::Orthogonal, Activation::Identity), &rnn_optim),
                1 => (t_long, factorized(hidden, None, Activation::Identity)?, &base),
                2 => (t_short, factorized(hidden, None, Activation::Identity)?, &prior_optim),
                _ => (t_short, factorized(hidden, Some(1.0), Activation::Identity)?, &prior_optim),
            };
            if i < 2 {
                model.regs.soft_orth = lambda;
            } else {
                model.regs.spectrum_prior = lambda;
            }
            let job = train_job(copy_task(t, spec::SEED), model, optim, batch, iters(panel_iters[i], eval_every));
            let cell = if i == 3 && lambda == 0.0 { "unstable (prior removed completely)" } else { "" };
            plan.push(group, &format!("lambda={lambda}"), job, vec![cell.into()]);
        }
    }
    Ok(plan)
}

/// What the quick size of `copy-activations` shows and does not.
const COPY_ACTIVATIONS_QUICK: &str = "What this quick size shows (seeds 1-3, measured when it was chosen): of the \
     fixed PReLU slopes only a = 1 solves the task (a PReLU of slope 1 is the identity, so its row equals the \
     linear one), the trainable slope rises from 0.7 towards 1 (0.91 here, 0.96 in the paper), and tanh and \
     ReLU stay at the trivial predictor, as in Appendix 5.2. It does NOT show OPLU matching the linear model: \
     OPLU stays at the trivial predictor within 600 iterations. No size below the paper's (--full) is known to \
     show that.";

pub(super) const COPY_ACTIVATIONS: Experiment = Experiment {
    name: "copy-activations",
    reproduces: "Vorontsov et al. 2017, Appendix 5.2 (transition nonlinearities on the copy task)",
    sweeps: "copy task T = 1000, factorized RNN with margin 0.3: linear, tanh, ReLU, PReLU fixed at 0.5/0.7/1, \
             trainable PReLU (init 0.7), OPLU",
    needs: None,
    build: copy_activations,
};

fn copy_activations(cx: &Context, e: &Experiment) -> Result<Plan> {
    let size = cx.size;
    let knobs = match size {
        Size::Full => Knobs { ts: vec![1000], hidden: 128, iters: 20_000, eval_every: 100, batch: 50 },
        Size::Quick => Knobs { ts: vec![100], hidden: 64, iters: 600, eval_every: 50, batch: 50 },
        Size::Smoke => Knobs { ts: vec![10], hidden: 8, iters: 20, eval_every: 10, batch: 10 },
    };
    let optim = spec::vorontsov(size);
    let mut plan = Plan::new(e, size, None);
    plan.measures = vec![
        Measure::FinalAccuracy,
        Measure::BestAccuracy,
        Measure::Reached(Criterion::AccuracyAtLeast(0.99)),
        Measure::FinalPreluSlope,
        Measure::FinalLoss,
        Measure::Spikes,
    ];
    plan.paper_columns = vec!["paper (Appendix 5.2)".into()];
    plan.protocol = vec![
        "Paper (Appendix 5.2): factorized RNN with a spectral margin of 0.3 on the T = 1000 copy task; PReLU \
         f(x) = max(x, 0) + alpha min(x, 0) clamped at alpha = 0.5, 0.7, 1, or trainable from 0.7; OPLU; tanh \
         and ReLU. The appendix gives no training length or optimizer: we use §3.1's defaults."
            .into(),
        "Full size: hidden 128, 200 epochs (20000 iterations; our choice, as Figure 1's T = 1000 panel), \
         evaluation every epoch; the linear model (no nonlinearity, Figure 1's setup) is added as the reference \
         the appendix compares OPLU with."
            .into(),
        size_note(size, &knobs, "copy task"),
        format!("Optimizer at this size: {}.", optim.describe()),
    ];
    if size == Size::Quick {
        plan.protocol.push(COPY_ACTIVATIONS_QUICK.into());
    }
    let t = knobs.ts[0];
    let group = format!("T={t}");
    plan.group_notes.push((group.clone(), paper::APPENDIX52_TEXT.into()));
    let variants: [(&str, Activation, f64, bool, &str); 8] = [
        ("linear", Activation::Identity, 0.7, true, "(reference: no nonlinearity)"),
        ("tanh", Activation::Tanh, 0.7, true, "far more difficult"),
        ("ReLU", Activation::Relu, 0.7, true, "far more difficult"),
        ("PReLU a=0.5 fixed", Activation::Prelu, 0.5, false, "did not solve T=1000"),
        ("PReLU a=0.7 fixed", Activation::Prelu, 0.7, false, "did not solve T=1000"),
        ("PReLU a=1 fixed", Activation::Prelu, 1.0, false, "solved T=1000"),
        ("PReLU trainable a0=0.7", Activation::Prelu, 0.7, true, "slope converged to 0.96"),
        ("OPLU", Activation::Oplu, 0.7, true, "identical to no nonlinearity"),
    ];
    for (label, act, slope, trainable, cell) in variants {
        let mut model = factorized(knobs.hidden, Some(0.3), act)?;
        model.prelu_slope = slope;
        model.prelu_trainable = trainable;
        let job = train_job(copy_task(t, spec::SEED), model, &optim, knobs.batch, iters(knobs.iters, knobs.eval_every));
        plan.push(&group, label, job, vec![cell.into()]);
    }
    Ok(plan)
}
