//! `results.md` and `results.csv`: our measurements beside the papers' numbers.
//!
//! Every number in a measured column is read from the run directories (`summary.json`,
//! `metrics.jsonl`); the paper's columns come from [`super::paper`] and are labelled with the table
//! or figure they come from. `results.csv` has one row per run of the plan, finished or not.

use super::runner::{self, ConfigFile, Failure, Finished, RunState};
use super::spec::{Criterion, Job, Measure};
use super::{Plan, Run};
use crate::error::{Error, Result};
use crate::train::checkpoint::write_atomic;
use crate::train::metrics::EvalRecord;
use std::fmt::Write as _;
use std::path::Path;

/// Markdown results file.
pub const RESULTS_MD: &str = "results.md";
/// CSV results file.
pub const RESULTS_CSV: &str = "results.csv";

/// A run of the plan with what its directory holds.
#[derive(Clone, Debug)]
pub struct RunResult<'a> {
    pub run: &'a Run,
    pub state: RunState,
    /// Evaluation records (from `metrics.jsonl`; empty when there is none).
    pub records: Vec<EvalRecord>,
    /// Lines of `metrics.jsonl` skipped: incomplete (a killed run's last line) or malformed.
    pub unreadable_lines: usize,
    /// The backend description from `config.json`.
    pub backend: Option<String>,
}

impl RunResult<'_> {
    /// The training summary, when the run finished.
    pub fn summary(&self) -> Option<&crate::train::Summary> {
        match &self.state {
            RunState::Finished(Ok(Finished::Train(s))) => Some(s.as_ref()),
            _ => None,
        }
    }
    /// The timing result, when a timing run finished.
    pub fn bench(&self) -> Option<&crate::train::bench::BenchResult> {
        match &self.state {
            RunState::Finished(Ok(Finished::Bench(b))) => Some(b),
            _ => None,
        }
    }
    /// A short status: `finished`, `diverged at iteration 812`, `failed`, `not finished`, `not run`.
    pub fn status(&self) -> String {
        match &self.state {
            RunState::Finished(Ok(_)) => "finished".into(),
            RunState::Finished(Err(_)) => "finished (summary unreadable)".into(),
            RunState::Diverged(Failure { iter: Some(i), .. }) => format!("diverged at iteration {i}"),
            RunState::Diverged(_) => "diverged".into(),
            RunState::Failed(_) => "failed".into(),
            RunState::Unfinished => "not finished".into(),
            RunState::NotStarted => "not run".into(),
        }
    }
    /// The error message of a diverged or failed run.
    pub fn error(&self) -> Option<String> {
        match &self.state {
            RunState::Diverged(f) | RunState::Failed(f) => Some(f.error.clone()),
            RunState::Finished(Err(e)) => Some(e.clone()),
            _ => None,
        }
    }
}

/// Reads every run's directory.
pub fn collect<'a>(plan: &'a Plan, out: &Path) -> Vec<RunResult<'a>> {
    plan.runs
        .iter()
        .map(|run| {
            let dir = out.join(&run.config.name);
            let (records, unreadable_lines) = read_records(&dir.join(runner::METRICS_FILE));
            let backend = std::fs::read_to_string(dir.join(runner::CONFIG_FILE))
                .ok()
                .and_then(|t| serde_json::from_str::<ConfigFile>(&t).ok())
                .map(|c| c.backend);
            RunResult { run, state: runner::state(&dir, &run.config.job), records, unreadable_lines, backend }
        })
        .collect()
}

/// The complete records of a metrics file: lines that end with a newline and parse (non-finite
/// values, written as `null`, read back as NaN). Returns the records and the number of lines
/// skipped (an incomplete last line, left by a killed run, or a malformed one).
pub fn read_records(path: &Path) -> (Vec<EvalRecord>, usize) {
    let Ok(bytes) = std::fs::read(path) else {
        return (Vec::new(), 0);
    };
    let text = String::from_utf8_lossy(&bytes);
    let mut bad = 0;
    let mut out = Vec::new();
    for line in text.split_inclusive('\n').filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<EvalRecord>(line) {
            Ok(r) if line.ends_with('\n') => out.push(r),
            _ => bad += 1,
        }
    }
    (out, bad)
}

/// A measured value.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Value {
    Pct(f64),
    Num(f64),
    Range(f64, f64),
    Iter(usize),
    Never,
}

impl Value {
    fn markdown(self, m: Measure) -> String {
        match self {
            Value::Pct(v) => format!("{:.2}", 100.0 * v),
            Value::Num(v) => match m {
                Measure::MedianMs | Measure::MinMs => format!("{v:.3}"),
                Measure::FinalBpc | Measure::BpcAtBestAccuracy | Measure::FinalPreluSlope => format!("{v:.3}"),
                Measure::Seconds => format!("{v:.1}"),
                _ => format!("{v:.4}"),
            },
            Value::Range(a, b) => format!("[{a:.3}, {b:.3}]"),
            Value::Iter(i) => i.to_string(),
            Value::Never => "never".into(),
        }
    }
    fn csv(self) -> String {
        match self {
            Value::Pct(v) => format!("{}", 100.0 * v),
            Value::Num(v) => format!("{v}"),
            Value::Range(a, b) => format!("{a};{b}"),
            Value::Iter(i) => i.to_string(),
            Value::Never => "never".into(),
        }
    }
}

fn best_by(records: &[EvalRecord], key: fn(&EvalRecord) -> Option<f64>) -> Option<&EvalRecord> {
    records
        .iter()
        .filter(|r| key(r).is_some_and(f64::is_finite))
        .max_by(|a, b| key(a).unwrap_or(f64::NAN).total_cmp(&key(b).unwrap_or(f64::NAN)))
}

fn measure(m: Measure, r: &RunResult) -> Option<Value> {
    let last = r.records.last();
    let finite = |v: Option<f64>| v.filter(|x| x.is_finite());
    match m {
        Measure::FinalLoss => finite(last.map(|l| l.loss)).map(Value::Num),
        Measure::FinalAccuracy => finite(last.and_then(|l| l.accuracy)).map(Value::Pct),
        Measure::BestAccuracy => best_by(&r.records, |x| x.accuracy).and_then(|x| x.accuracy).map(Value::Pct),
        Measure::FinalMse => finite(last.and_then(|l| l.mse)).map(Value::Num),
        Measure::MinMse => best_by(&r.records, |x| x.mse.map(|v| -v)).and_then(|x| x.mse).map(Value::Num),
        Measure::FinalBpc => finite(last.and_then(|l| l.bpc)).map(Value::Num),
        Measure::BpcAtBestAccuracy => best_by(&r.records, |x| x.accuracy).and_then(|x| x.bpc).map(Value::Num),
        Measure::Reached(c) => {
            if r.records.is_empty() {
                return None;
            }
            let hit = r.records.iter().find(|x| match c {
                Criterion::AccuracyAtLeast(a) => x.accuracy.is_some_and(|v| v >= a),
                Criterion::MseAtMost(t) => x.mse.is_some_and(|v| v <= t),
            });
            Some(hit.map_or(Value::Never, |x| Value::Iter(x.iter)))
        }
        Measure::FinalPreluSlope => finite(last.and_then(|l| l.prelu_slope)).map(Value::Num),
        Measure::FinalSvRange => match last.map(|l| (l.sv_min, l.sv_max)) {
            Some((Some(a), Some(b))) if a.is_finite() && b.is_finite() => Some(Value::Range(a, b)),
            _ => None,
        },
        Measure::MedianMs => r.bench().map(|b| Value::Num(b.median_ms)),
        Measure::MinMs => r.bench().map(|b| Value::Num(b.min_ms)),
        Measure::Seconds => r.summary().map(|s| Value::Num(s.seconds)),
        Measure::Spikes => (!r.records.is_empty()).then(|| Value::Iter(r.records.iter().map(|x| x.spikes.len()).sum())),
    }
}

/// A measure over the runs of one cell (several seeds): `median [min, max]`, with `never` for a
/// criterion some runs did not reach and `(k of n)` when only `k` runs have a value.
fn cell_markdown(m: Measure, cell: &[&RunResult]) -> String {
    let values: Vec<Value> = cell.iter().filter_map(|r| measure(m, r)).collect();
    if values.is_empty() {
        return "—".into();
    }
    let partial =
        if values.len() < cell.len() { format!(" ({} of {})", values.len(), cell.len()) } else { String::new() };
    let ranges: Vec<(f64, f64)> =
        values.iter().filter_map(|v| if let Value::Range(a, b) = v { Some((*a, *b)) } else { None }).collect();
    if !ranges.is_empty() {
        let lo = ranges.iter().map(|r| r.0).fold(f64::INFINITY, f64::min);
        let hi = ranges.iter().map(|r| r.1).fold(f64::NEG_INFINITY, f64::max);
        return format!("{}{partial}", Value::Range(lo, hi).markdown(m));
    }
    let (nums, pct): (Vec<f64>, bool) = (
        values
            .iter()
            .map(|v| match *v {
                Value::Pct(x) | Value::Num(x) => x,
                Value::Iter(i) => i as f64,
                Value::Never => f64::INFINITY,
                Value::Range(..) => f64::NAN,
            })
            .collect(),
        matches!(values[0], Value::Pct(_)),
    );
    let show = |x: f64| match values[0] {
        _ if x.is_infinite() => "never".to_string(),
        Value::Iter(_) | Value::Never => format!("{}", x.round()),
        _ if pct => Value::Pct(x).markdown(m),
        _ => Value::Num(x).markdown(m),
    };
    match super::seeds::median_range(&nums) {
        Some((med, lo, hi)) => format!("{} [{}, {}]{partial}", show(med), show(lo), show(hi)),
        None => "—".into(),
    }
}

/// The statuses of a cell's runs, counted (`3 finished`, `2 finished, 1 diverged at iteration 812`).
fn cell_status(cell: &[&RunResult]) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for r in cell {
        let s = r.status();
        match counts.iter_mut().find(|(k, _)| *k == s) {
            Some((_, n)) => *n += 1,
            None => counts.push((s, 1)),
        }
    }
    counts.iter().map(|(s, n)| format!("{n} {s}")).collect::<Vec<_>>().join(", ")
}

/// Escapes a CSV field.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

/// Escapes a markdown table cell.
fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn run_facts(run: &Run) -> (String, String, usize, String, usize, String) {
    match &run.config.job {
        Job::Train(t) => {
            let seq = t.task.seq_len.map_or(String::new(), |s| s.to_string());
            let len = match t.duration {
                super::spec::Duration::Iters { iters, .. } => format!("{iters} iterations"),
                super::spec::Duration::Epochs { epochs, .. } => format!("{epochs} epochs"),
            };
            (t.task.kind.as_str().into(), seq, t.model.hidden, t.model.model.as_str().into(), t.batch, len)
        }
        Job::Bench(b) => (
            "copy (timing)".into(),
            b.seq_len.to_string(),
            b.model.hidden,
            b.model.model.as_str().into(),
            b.batch,
            format!("{} timed iterations", b.iters),
        ),
    }
}

/// Writes `results.csv`: one row per run.
pub fn write_csv(plan: &Plan, out: &Path, results: &[RunResult]) -> Result<()> {
    let mut header: Vec<String> = [
        "experiment",
        "size",
        "group",
        "label",
        "run",
        "status",
        "task",
        "seq_len",
        "hidden",
        "model",
        "batch",
        "length",
        "seed",
    ]
    .map(String::from)
    .to_vec();
    header.extend(plan.measures.iter().map(|m| m.csv_name()));
    header.extend(["iterations_done", "baseline_loss", "train_seconds", "ms_per_iter"].map(String::from));
    header.extend(plan.paper_columns.iter().cloned());
    header.push("error".into());
    let mut text = header.iter().map(|h| csv_field(h)).collect::<Vec<_>>().join(",");
    text.push('\n');
    for r in results {
        let c = &r.run.config;
        let (task, seq, hidden, model, batch, len) = run_facts(r.run);
        let mut row = vec![
            plan.name.to_string(),
            plan.size.as_str().to_string(),
            c.group.clone(),
            c.label.clone(),
            c.name.clone(),
            r.status(),
            task,
            seq,
            hidden.to_string(),
            model,
            batch.to_string(),
            len,
            match &c.job {
                Job::Train(t) => t.seed.to_string(),
                Job::Bench(_) => String::new(),
            },
        ];
        row.extend(plan.measures.iter().map(|&m| measure(m, r).map_or(String::new(), Value::csv)));
        let s = r.summary();
        row.push(s.map(|s| s.iters).or(r.records.last().map(|l| l.iter)).map_or(String::new(), |i| i.to_string()));
        row.push(s.map_or(String::new(), |s| s.baseline.to_string()));
        row.push(s.map_or(String::new(), |s| s.seconds.to_string()));
        row.push(s.map(|s| s.ms_per_iter).or(r.bench().map(|b| b.median_ms)).map_or(String::new(), |v| v.to_string()));
        row.extend(r.run.paper.iter().cloned());
        row.push(r.error().unwrap_or_default());
        text.push_str(&row.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
        text.push('\n');
    }
    write_atomic(&out.join(RESULTS_CSV), text.as_bytes())
}

/// What `results.md` needs besides the plan and the results.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Context {
    /// The command line that produced the directory.
    pub command: String,
    /// Plot files written (relative to the output directory).
    pub plots: Vec<String>,
    /// Plots that could not be drawn, and why.
    pub plot_warnings: Vec<String>,
}

/// Writes `results.md`.
pub fn write_markdown(plan: &Plan, out: &Path, results: &[RunResult], ctx: &Context) -> Result<()> {
    let mut md = String::new();
    let w = &mut md;
    let _ = writeln!(w, "# {}: {}\n", plan.name, plan.reproduces);
    if !plan.size.caveat().is_empty() {
        let _ = writeln!(w, "> **{}**\n", plan.size.caveat());
    }
    let _ = writeln!(w, "- Command: `{}`", ctx.command);
    let _ = writeln!(w, "- Size: {} ({})", plan.size.as_str(), plan.size_summary());
    let mut backends: Vec<String> = results.iter().filter_map(|r| r.backend.clone()).collect();
    backends.sort();
    backends.dedup();
    if !backends.is_empty() {
        let _ = writeln!(w, "- Device: {}", backends.join("; "));
    }
    if let Some(d) = &plan.data {
        let _ = writeln!(w, "- Data: {}", d.describe());
    }
    let done = results.iter().filter(|r| r.state.is_done()).count();
    let _ = writeln!(
        w,
        "- Runs: {} planned, {done} done ({} finished)",
        results.len(),
        results.iter().filter(|r| r.summary().is_some() || r.bench().is_some()).count()
    );
    let _ = writeln!(
        w,
        "\nColumns headed \"paper\" are the paper's numbers or statements, typed in from the table or figure \
         they name; every other number was measured by the runs in this directory (their `summary.json` and \
         `metrics.jsonl`).\n"
    );
    let _ = writeln!(w, "## Protocol\n");
    for p in &plan.protocol {
        let _ = writeln!(w, "- {p}");
    }
    let _ = writeln!(w, "\n## Results\n");
    if results.len()
        > results
            .iter()
            .map(|r| (&r.run.config.group, &r.run.config.label))
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    {
        let _ = writeln!(
            w,
            "Rows with several seeds show the median over the seeds and the range [min, max]; `never` counts as \
             the largest value.\n"
        );
    }
    for group in plan.groups() {
        let rows: Vec<&RunResult> = results.iter().filter(|r| r.run.config.group == group).collect();
        if !group.is_empty() {
            let _ = writeln!(w, "### {group}\n");
        }
        if let Some((_, note)) = plan.group_notes.iter().find(|(g, _)| *g == group) {
            let _ = writeln!(w, "Paper: {note}\n");
        }
        if let Some(s) = rows.iter().find_map(|r| r.summary()) {
            let _ = writeln!(w, "Trivial-predictor loss of this task (dashed in the plots): {:.4}\n", s.baseline);
        }
        let mut head = vec!["run".to_string(), "status".into()];
        head.extend(plan.measures.iter().map(|m| m.header()));
        head.extend(plan.paper_columns.iter().cloned());
        let _ = writeln!(w, "| {} |", head.iter().map(|h| md_cell(h)).collect::<Vec<_>>().join(" | "));
        let _ = writeln!(w, "|{}", "---|".repeat(head.len()));
        for cell in super::seeds::cells(&rows, |r| r.run.config.label.as_str()) {
            let r = cell[0];
            let mut cells = if cell.len() == 1 {
                let mut c = vec![r.run.config.label.clone(), r.status()];
                c.extend(plan.measures.iter().map(|&m| measure(m, r).map_or("—".into(), |v| v.markdown(m))));
                c
            } else {
                let mut c = vec![format!("{} ({} seeds)", r.run.config.label, cell.len()), cell_status(&cell)];
                c.extend(plan.measures.iter().map(|&m| cell_markdown(m, &cell)));
                c
            };
            cells.extend(r.run.paper.iter().map(|p| if p.is_empty() { "—".into() } else { p.clone() }));
            let _ = writeln!(w, "| {} |", cells.iter().map(|c| md_cell(c)).collect::<Vec<_>>().join(" | "));
        }
        let _ = writeln!(w);
    }
    if plan.ratio_table {
        ratio_table(w, plan, results);
    }
    let errors: Vec<String> = results
        .iter()
        .filter_map(|r| r.error().map(|e| format!("- `{}` ({}): {}", r.run.config.name, r.status(), md_cell(&e))))
        .collect();
    if !errors.is_empty() {
        let _ = writeln!(w, "## Diverged and failed runs\n");
        for e in errors {
            let _ = writeln!(w, "{e}");
        }
        let _ = writeln!(w);
    }
    let unreadable: Vec<String> = results
        .iter()
        .filter(|r| r.unreadable_lines > 0)
        .map(|r| format!("`{}` ({} lines)", r.run.config.name, r.unreadable_lines))
        .collect();
    if !unreadable.is_empty() {
        let _ = writeln!(w, "Metrics lines skipped as incomplete or malformed: {}\n", unreadable.join(", "));
    }
    if !ctx.plots.is_empty() || !ctx.plot_warnings.is_empty() {
        let _ = writeln!(w, "## Plots\n");
        for p in &ctx.plots {
            let _ = writeln!(w, "- [{p}]({p})");
        }
        for p in &ctx.plot_warnings {
            let _ = writeln!(w, "- not drawn: {}", md_cell(p));
        }
        let _ = writeln!(w);
    }
    let _ = writeln!(w, "## Run specifications\n");
    let _ = writeln!(w, "| run | task | T | hidden | model | activation | init | optimizer | batch | length |");
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|---|---|");
    for r in results {
        let (task, seq, hidden, model, batch, len) = run_facts(r.run);
        let spec = r.run.config.job.model();
        let o = r.run.config.job.optim();
        let rule = match o.rule {
            crate::backend::OptimRule::Sgd { .. } => "SGD",
            crate::backend::OptimRule::RmsProp { .. } => "RMSprop",
            crate::backend::OptimRule::Adam { .. } => "Adam",
        };
        let mut optim = format!("{rule} {}", o.lr);
        if o.geo_lr > 0.0 {
            optim.push_str(&format!(", geo {}", o.geo_lr));
        }
        if let Some(c) = o.clip {
            optim.push_str(&format!(", clip {c}"));
        }
        let mut model = model;
        match spec.spectrum {
            crate::param::factorized::Spectrum::Margin(m)
                if spec.model == crate::train::build::ModelKind::Factorized =>
            {
                model.push_str(&format!(" m={m}"));
            }
            crate::param::factorized::Spectrum::Orthogonal => model.push_str(" m=0"),
            _ => {}
        }
        let regs = &spec.regs;
        if regs.soft_orth > 0.0 {
            model.push_str(&format!(", soft-orth {}", regs.soft_orth));
        }
        if regs.spectrum_prior > 0.0 {
            model.push_str(&format!(", prior {}", regs.spectrum_prior));
        }
        if let Some((l, g)) = regs.gain_orth {
            model.push_str(&format!(", gain-orth {l} g={g}"));
        }
        if let Some(k) = spec.k {
            model.push_str(&format!(" K={k}"));
        }
        let mut init = format!("{:?}", spec.init).to_lowercase();
        if spec.gain != 1.0 {
            init.push_str(&format!(" x{}", spec.gain));
        }
        let act = format!("{:?}", spec.activation).to_lowercase();
        let _ = writeln!(
            w,
            "| {} | {task} | {seq} | {hidden} | {} | {act} | {init} | {optim} | {batch} | {len} |",
            r.run.config.name,
            md_cell(&model)
        );
    }
    write_atomic(&out.join(RESULTS_MD), md.as_bytes())
}

/// The runtime experiment's ratio table.
fn ratio_table(w: &mut String, plan: &Plan, results: &[RunResult]) {
    let _ = writeln!(w, "### geoSGD / SGD\n");
    let _ = writeln!(
        w,
        "| group | ours: SGD ms/iter | ours: geoSGD ms/iter | ours: ratio | paper: ratio (Table 5) |\n|---|---|---|---|---|"
    );
    for (i, group) in plan.groups().iter().enumerate() {
        let in_group: Vec<&RunResult> = results.iter().filter(|r| &r.run.config.group == group).collect();
        let ms = |idx: usize| in_group.get(idx).and_then(|r| r.bench()).map(|b| b.median_ms);
        let (sgd, geo) = (ms(0), ms(1));
        let fmt = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.3}"));
        let ratio = match (sgd, geo) {
            (Some(s), Some(g)) if s > 0.0 => format!("{:.2}", g / s),
            _ => "—".into(),
        };
        let paper = super::paper::TABLE5_RUNTIME.get(i).map_or("—".to_string(), |r| format!("{:.1}", r.ratio()));
        let _ = writeln!(w, "| {group} | {} | {} | {ratio} | {paper} |", fmt(sgd), fmt(geo));
    }
    let _ = writeln!(w);
}

/// Writes both result files.
pub fn write(plan: &Plan, out: &Path, results: &[RunResult], ctx: &Context) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    write_csv(plan, out, results)?;
    write_markdown(plan, out, results, ctx)
}
