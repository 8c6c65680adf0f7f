//! The figures of a sweep, into `<out>/plots/`.
//!
//! - Per group (a panel such as `T=200`): one figure per metric the runs record (accuracy, loss, MSE,
//!   bits per character), one line per run, the task's trivial predictor as a dashed line: the form
//!   of Figures 1 and 4-6. Diverged runs are drawn up to where they stopped, labelled so.
//! - With [`Plan::spectrum_plots`]: each run's singular-value evolution (Figure 3).
//! - Each run that recorded per-step gradient norms: a heatmap (Figure 2).
//!
//! Timing runs (`runtime`) have no figures. A figure that cannot be drawn is reported, not fatal.

use super::Plan;
use super::report::RunResult;
use super::runner::RunState;
use super::spec::{Job, slug};
use crate::plot::{
    Baseline, CurveOptions, HeatmapOptions, Metric, PLOTS_SUBDIR, SpectrumOptions, plot_curve_bands, plot_curves,
    plot_grad_norm_heatmap, plot_singular_values,
};
use crate::tasks::TaskKind;
use crate::train::metrics::EvalRecord;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The trivial predictor's value of `metric` for a group, from a finished run's summary or, for the
/// tasks where it is a constant, from the task.
fn baseline(metric: Metric, rows: &[&RunResult]) -> Option<f64> {
    let summary_loss = rows.iter().find_map(|r| r.summary()).map(|s| s.baseline);
    let task = rows.iter().find_map(|r| match &r.run.config.job {
        Job::Train(t) => Some(&t.task),
        Job::Bench(_) => None,
    })?;
    let kind = task.kind;
    let t = task.seq_len.unwrap_or(kind.default_seq_len());
    let constant_loss = match kind {
        TaskKind::Copy => Some(10.0 * 8f64.ln() / (t + 20) as f64),
        TaskKind::Adding => Some(1.0 / 6.0),
        TaskKind::Mnist | TaskKind::Pmnist | TaskKind::MnistRows => Some(10f64.ln()),
        TaskKind::Ptb => None,
    };
    let loss = summary_loss.or(constant_loss);
    match metric {
        Metric::Loss | Metric::TrainLoss => loss,
        Metric::Mse => (kind == TaskKind::Adding).then_some(1.0 / 6.0),
        Metric::Accuracy => match kind {
            TaskKind::Copy => Some(1.0 / 8.0),
            TaskKind::Mnist | TaskKind::Pmnist | TaskKind::MnistRows => Some(0.1),
            _ => None,
        },
        Metric::Bpc => (kind == TaskKind::Ptb).then(|| loss.map(|l| l / std::f64::consts::LN_2)).flatten(),
    }
}

/// The legend label of a run.
fn legend(r: &RunResult) -> String {
    match r.state {
        RunState::Diverged(_) => format!("{} (diverged)", r.run.config.label),
        _ => r.run.config.label.clone(),
    }
}

fn relative(out: &Path, paths: Vec<PathBuf>) -> Vec<String> {
    paths
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .map(|p| p.strip_prefix(out).map(Path::to_path_buf).unwrap_or(p).to_string_lossy().into_owned())
        .collect()
}

/// Draws every figure; returns the PNG paths written (relative to `out`) and the figures that could
/// not be drawn, with the reason.
pub fn draw(plan: &Plan, out: &Path, results: &[RunResult]) -> (Vec<String>, Vec<String>) {
    let dir = out.join(PLOTS_SUBDIR);
    let mut written = Vec::new();
    let mut warnings = Vec::new();
    for group in plan.groups() {
        let rows: Vec<&RunResult> = results
            .iter()
            .filter(|r| r.run.config.group == group && !r.records.is_empty())
            .filter(|r| matches!(r.run.config.job, Job::Train(_)))
            .collect();
        // One chart per sequence length: runs of different T do not share axes.
        let lengths: BTreeSet<usize> = rows.iter().filter_map(|r| seq_len(r)).collect();
        for t in &lengths {
            let part: Vec<&RunResult> = rows.iter().copied().filter(|r| seq_len(r) == Some(*t)).collect();
            let (stem, title) = match (group.is_empty(), lengths.len() > 1) {
                (true, false) => (String::new(), plan.name.to_string()),
                (true, true) => (format!("T{t}"), format!("{}, T = {t}", plan.name)),
                (false, false) => (slug(&group), format!("{}, {group}", plan.name)),
                (false, true) => (format!("{}_T{t}", slug(&group)), format!("{}, {group}, T = {t}", plan.name)),
            };
            draw_group(&part, &stem, &title, &dir, out, &mut written, &mut warnings);
        }
    }
    for r in results.iter().filter(|r| !r.records.is_empty()) {
        let name = &r.run.config.name;
        let has_sv = r.records.iter().any(|x| [x.sv_min, x.sv_mean, x.sv_max].iter().flatten().any(|v| v.is_finite()));
        if plan.spectrum_plots && has_sv {
            let title = format!("{}: singular values of W", r.run.config.label);
            match plot_singular_values(
                &r.records,
                &dir,
                &format!("{name}_singular_values"),
                &title,
                &SpectrumOptions::default(),
            ) {
                Ok(p) => written.extend(relative(out, p)),
                Err(e) => warnings.push(format!("{name}_singular_values: {e}")),
            }
        }
        let has_grads =
            r.records.iter().filter_map(|x| x.grad_norms.as_ref()).flatten().any(|v| v.is_finite() && *v > 0.0);
        if has_grads {
            let title = format!("{}, {}: ||dL/dh_t|| per time step", r.run.config.group, r.run.config.label);
            match plot_grad_norm_heatmap(
                &r.records,
                &dir,
                &format!("{name}_grad_norms"),
                &title,
                &HeatmapOptions::default(),
            ) {
                Ok(p) => written.extend(relative(out, p)),
                Err(e) => warnings.push(format!("{name}_grad_norms: {e}")),
            }
        }
    }
    (written, warnings)
}

/// The sequence length `T` of a run (`None` for timing runs).
fn seq_len(r: &RunResult) -> Option<usize> {
    match &r.run.config.job {
        Job::Train(t) => Some(t.task.seq_len.unwrap_or(t.task.kind.default_seq_len())),
        Job::Bench(_) => None,
    }
}

/// The curves of one chart's runs (one group, one sequence length): one figure per metric, files
/// `<prefix>_<metric>` (or `<metric>` for an empty prefix), titled `<title>: <metric>`.
fn draw_group(
    rows: &[&RunResult],
    prefix: &str,
    title: &str,
    dir: &Path,
    out: &Path,
    written: &mut Vec<String>,
    warnings: &mut Vec<String>,
) {
    let runs: Vec<(String, Vec<EvalRecord>)> = rows.iter().map(|r| (legend(r), r.records.clone())).collect();
    // Several seeds per cell: the median with a band from the minimum to the maximum.
    let cells = super::seeds::cells(rows, |r| r.run.config.label.as_str());
    let seeded = cells.iter().any(|c| c.len() > 1);
    let cell_runs: Vec<(String, Vec<Vec<EvalRecord>>)> = cells
        .iter()
        .map(|c| {
            let diverged = c.iter().filter(|r| matches!(r.state, RunState::Diverged(_))).count();
            let mut label = c[0].run.config.label.clone();
            if diverged > 0 {
                label.push_str(&format!(" ({diverged} diverged)"));
            }
            (label, c.iter().map(|r| r.records.clone()).collect())
        })
        .collect();
    for metric in [Metric::Accuracy, Metric::Loss, Metric::Mse, Metric::Bpc] {
        let has = runs.iter().any(|(_, recs)| recs.iter().any(|r| metric.value(r).is_some_and(f64::is_finite)));
        if !has {
            continue;
        }
        let opts = CurveOptions {
            baseline: baseline(metric, rows).map(|value| Baseline { value, label: "trivial predictor".into() }),
            ..CurveOptions::default()
        };
        let stem = if prefix.is_empty() { metric.name().to_string() } else { format!("{prefix}_{}", metric.name()) };
        let title = format!("{title}: {}", metric.axis_label());
        let drawn = if seeded {
            plot_curve_bands(&cell_runs, metric, dir, &stem, &title, &opts)
        } else {
            plot_curves(&runs, metric, dir, &stem, &title, &opts)
        };
        match drawn {
            Ok(p) => written.extend(relative(out, p)),
            Err(e) => warnings.push(format!("{stem}: {e}")),
        }
    }
}
