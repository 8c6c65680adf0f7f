//! Named sweeps that reproduce the papers' tables and figures: `ortho-rnn experiment NAME`.
//!
//! An [`Experiment`] turns [`Settings`] (size, data, output directory) into a [`Plan`]: the list of
//! runs ([`spec::RunConfig`]), the table columns to report, the papers' numbers for each row
//! ([`paper`]), and notes on the protocol. [`runner::execute`] runs the plan into the output
//! directory, skipping finished runs, and [`report::write`] and [`plots::draw`] turn the run
//! directories into `results.md`, `results.csv` and `plots/`.
//!
//! Layout of an output directory (`runs/<NAME>` by default):
//!
//! ```text
//! <out>/results.md, results.csv     our table beside the paper's numbers
//! <out>/plots/*.svg, *.png           curves per panel (dashed: the task's baseline), spectra, heatmaps
//! <out>/<run>/config.json            the run's full specification and the device it ran on
//! <out>/<run>/metrics.jsonl          one evaluation per line (the trainer's --metrics output)
//! <out>/<run>/checkpoint.safetensors the latest checkpoint (a killed run resumes from it)
//! <out>/<run>/summary.json           written atomically when the run finished: marks it done
//! <out>/<run>/diverged.json          instead, when training stopped on a non-finite loss
//! <out>/smoke-data/                  --smoke without --data: a tiny generated data set
//! <out>/.ortho-rnn.lock, <run>/.ortho-rnn.lock  locks of the directory and of a run while it trains
//! <out>/shards/K-of-N.done           --shard K/N finished (the last of N writes the results)
//! <out>/slurm-*.sbatch, slurm-logs/  --slurm: the array and report job scripts and their output
//! ```
//!
//! Sizes ([`Size`]): `smoke` (seconds, for CI), `quick` (minutes on 2 CPU cores; not the papers'
//! protocol, and every output says so), `full` (the papers' protocol, as each plan's notes record,
//! with the choices made where a paper is silent).

pub mod cluster;
pub mod data;
pub mod paper;
pub mod plots;
pub mod report;
pub mod runner;
pub mod seeds;
pub mod spec;

mod manifold;
mod real;
mod synthetic;

use crate::error::{Error, Result};
use data::{DataKind, DataSource};
pub use spec::Size;
use spec::{Duration, Job, Measure, RunConfig};
use std::collections::BTreeSet;
use std::path::PathBuf;

/// What the user asked for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Settings {
    pub size: Size,
    /// `--data`: the data directory of file-backed experiments.
    pub data: Option<PathBuf>,
    /// `--dataset-name`: how results name the data set (inferred from the directory otherwise).
    pub dataset_name: Option<String>,
    /// Output directory.
    pub out: PathBuf,
    /// `--seeds`: runs per cell ([`seeds`]; `None`: [`Size::default_seeds`]).
    pub seeds: Option<usize>,
}

/// One run of a plan: its specification and the paper's values for its row.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    pub config: RunConfig,
    /// One cell per [`Plan::paper_columns`] (empty when the paper has nothing for this row).
    pub paper: Vec<String>,
}

/// Everything an experiment runs and reports.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub name: &'static str,
    pub reproduces: &'static str,
    pub size: Size,
    pub runs: Vec<Run>,
    /// Measured columns of the results table.
    pub measures: Vec<Measure>,
    /// Headers of the paper's columns (each naming its table or figure).
    pub paper_columns: Vec<String>,
    /// The protocol at this size, one markdown bullet per line: what the paper says and what we chose.
    pub protocol: Vec<String>,
    /// What the paper reports for a whole group (panel), shown under its table.
    pub group_notes: Vec<(String, String)>,
    /// The data set of file-backed experiments.
    pub data: Option<DataSource>,
    /// Draw singular-value evolution plots for every run that records them.
    pub spectrum_plots: bool,
    /// Add the geoSGD / SGD ratio table (the `runtime` experiment).
    pub ratio_table: bool,
}

impl Plan {
    fn new(e: &Experiment, size: Size, data: Option<DataSource>) -> Self {
        Plan {
            name: e.name,
            reproduces: e.reproduces,
            size,
            runs: Vec::new(),
            measures: Vec::new(),
            paper_columns: Vec::new(),
            protocol: Vec::new(),
            group_notes: Vec::new(),
            data,
            spectrum_plots: false,
            ratio_table: false,
        }
    }

    /// Adds a run named after its group and label.
    fn push(&mut self, group: &str, label: &str, job: Job, paper: Vec<String>) {
        let name =
            if group.is_empty() { spec::slug(label) } else { format!("{}_{}", spec::slug(group), spec::slug(label)) };
        let config = RunConfig {
            experiment: self.name.to_string(),
            name,
            group: group.to_string(),
            label: label.to_string(),
            size: self.size,
            job,
        };
        self.runs.push(Run { config, paper });
    }

    /// Group names in first-appearance order.
    pub fn groups(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in &self.runs {
            if !out.contains(&r.config.group) {
                out.push(r.config.group.clone());
            }
        }
        out
    }

    /// Checks every run's specification and that run names are unique.
    pub fn validate(&self) -> Result<()> {
        let mut names = BTreeSet::new();
        for r in &self.runs {
            if !names.insert(r.config.name.as_str()) {
                return Err(Error::invalid("experiment plan", &r.config.name, "two runs share this name"));
            }
            if r.paper.len() != self.paper_columns.len() {
                return Err(Error::invalid("experiment plan", &r.config.name, "paper cells do not match the columns"));
            }
            match &r.config.job {
                Job::Train(t) => t.validate()?,
                Job::Bench(b) => {
                    b.model.validate()?;
                    b.optim.validate()?;
                }
            }
        }
        Ok(())
    }

    /// One line describing the sizes of the runs (for `experiment list` and `results.md`).
    pub fn size_summary(&self) -> String {
        let mut lens = BTreeSet::new();
        let mut hidden = BTreeSet::new();
        let mut batch = BTreeSet::new();
        let mut lengths = BTreeSet::new();
        let mut tasks = BTreeSet::new();
        for r in &self.runs {
            match &r.config.job {
                Job::Train(t) => {
                    tasks.insert(t.task.kind.as_str().to_string());
                    if let Some(s) = t.task.seq_len {
                        lens.insert(s);
                    }
                    hidden.insert(t.model.hidden);
                    batch.insert(t.batch);
                    let mut d = match t.duration {
                        Duration::Iters { iters, .. } => format!("{iters} iterations"),
                        Duration::Epochs { epochs, .. } => format!("{epochs} epochs"),
                    };
                    if let Some(m) = t.task.max_train {
                        d.push_str(&format!(" of {m} examples"));
                    }
                    lengths.insert(d);
                }
                Job::Bench(b) => {
                    tasks.insert("copy (timing)".to_string());
                    lens.insert(b.seq_len);
                    hidden.insert(b.model.hidden);
                    batch.insert(b.batch);
                    lengths.insert(format!("{} timed iterations", b.iters));
                }
            }
        }
        let join = |s: &BTreeSet<usize>| s.iter().map(usize::to_string).collect::<Vec<_>>().join("/");
        let mut parts = vec![format!("{} runs", self.runs.len()), tasks.into_iter().collect::<Vec<_>>().join("+")];
        if !lens.is_empty() {
            parts.push(format!("T {}", join(&lens)));
        }
        parts.push(format!("hidden {}", join(&hidden)));
        parts.push(format!("batch {}", join(&batch)));
        parts.push(lengths.into_iter().collect::<Vec<_>>().join(" / "));
        parts.join(", ")
    }
}

/// The context a plan is built in.
pub(crate) struct Context {
    pub size: Size,
    pub data: Option<DataSource>,
}

impl Context {
    /// The data source (present whenever the experiment declares a data kind).
    fn data(&self) -> Result<&DataSource> {
        self.data.as_ref().ok_or_else(|| Error::invalid("--data", "(missing)", "this experiment reads a data set"))
    }
}

/// A named experiment.
pub struct Experiment {
    pub name: &'static str,
    /// Which paper's table or figure it reproduces.
    pub reproduces: &'static str,
    /// What it sweeps.
    pub sweeps: &'static str,
    /// The data set it reads, if any.
    pub needs: Option<DataKind>,
    build: fn(&Context, &Experiment) -> Result<Plan>,
}

/// Every experiment, in the order `experiment list` shows them.
pub const EXPERIMENTS: &[Experiment] = &[
    synthetic::COPY_MARGINS,
    synthetic::ADDING_MARGINS,
    real::MNIST_MARGINS,
    real::PMNIST_MARGINS,
    real::PTB_MARGINS,
    synthetic::SOFT_ORTH,
    synthetic::COPY_ACTIVATIONS,
    real::GAIN_REG,
    manifold::DTRIV,
    manifold::RUNTIME,
];

/// The names of every experiment.
pub fn names() -> Vec<&'static str> {
    EXPERIMENTS.iter().map(|e| e.name).collect()
}

/// The experiment called `name`; the error lists the valid names.
pub fn find(name: &str) -> Result<&'static Experiment> {
    EXPERIMENTS.iter().find(|e| e.name == name).ok_or_else(|| {
        Error::invalid(
            "experiment",
            name,
            format!("unknown experiment; valid names: {} (or `list`)", names().join(", ")),
        )
    })
}

impl Experiment {
    /// The plan for `settings`: resolves the data set (a clear error when it is missing), builds and
    /// validates the runs. Touches no file.
    pub fn plan(&self, settings: &Settings) -> Result<Plan> {
        let data = data::resolve(self, settings)?;
        self.plan_with_seeds(settings.size, data, settings.seeds.unwrap_or(settings.size.default_seeds()))
    }

    /// The plan with each cell run with `seeds` seeds ([`seeds::replicate`]).
    pub fn plan_with_seeds(&self, size: Size, data: Option<DataSource>, seeds: usize) -> Result<Plan> {
        let mut plan = (self.build)(&Context { size, data }, self)?;
        seeds::replicate(&mut plan, seeds)?;
        plan.validate()?;
        Ok(plan)
    }

    /// The plan with a given data source (`experiment list` uses a placeholder).
    pub fn plan_with(&self, size: Size, data: Option<DataSource>) -> Result<Plan> {
        let plan = (self.build)(&Context { size, data }, self)?;
        plan.validate()?;
        Ok(plan)
    }

    /// One line per size for `experiment list`.
    pub fn size_lines(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for size in Size::ALL {
            let data = self.needs.map(|k| DataSource::placeholder(k, size));
            let seeds = size.default_seeds();
            let plan = self.plan_with_seeds(size, data, seeds)?;
            out.push(format!(
                "{:<5} {} ({seeds} seed{} per cell)",
                size.as_str(),
                plan.size_summary(),
                if seeds == 1 { "" } else { "s" }
            ));
        }
        Ok(out)
    }
}

/// What one invocation of a sweep did.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepReport {
    pub plan: Plan,
    /// One outcome per run of the plan ([`runner::Outcome::OtherShard`] for other shards' runs).
    pub outcomes: Vec<runner::Outcome>,
    /// `results.md`, `results.csv` and the figures, when this invocation wrote them (a shard
    /// writes them when it is the last of its sweep to finish, or never with `--no-report`).
    pub results_md: Option<PathBuf>,
    pub results_csv: Option<PathBuf>,
    pub plots: Vec<String>,
    /// Runs of the plan that were not done (finished or diverged) when this invocation ended.
    pub missing: Vec<String>,
}

/// How many runs of one invocation ended how.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Ran to the end here.
    pub ran: usize,
    /// Done earlier.
    pub skipped: usize,
    pub diverged: usize,
    pub failed: usize,
    /// Being run by another process.
    pub busy: usize,
    /// This invocation's runs (its shard's).
    pub mine: usize,
}

impl SweepReport {
    /// Counts of what happened to this invocation's runs.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for o in &self.outcomes {
            match o {
                runner::Outcome::Finished { .. } => c.ran += 1,
                runner::Outcome::Skipped => c.skipped += 1,
                runner::Outcome::Diverged(_) => c.diverged += 1,
                runner::Outcome::Failed(_) => c.failed += 1,
                runner::Outcome::Busy(_) => c.busy += 1,
                runner::Outcome::OtherShard => continue,
            }
            c.mine += 1;
        }
        c
    }
}

/// How long a shard waits for another one's brief lock of the output directory.
pub const OUT_LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(120);

/// Where shards record that they finished: `<out>/shards/K-of-N.done`.
pub const SHARDS_SUBDIR: &str = "shards";

fn shard_marker(out: &std::path::Path, shard: cluster::Shard) -> PathBuf {
    out.join(SHARDS_SUBDIR).join(format!("{}-of-{}.done", shard.k, shard.n))
}

/// Records that `shard` finished (whatever its runs' outcomes); true when every shard of its
/// sweep has.
fn mark_shard_done(out: &std::path::Path, shard: cluster::Shard) -> Result<bool> {
    let dir = out.join(SHARDS_SUBDIR);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    crate::train::checkpoint::write_atomic(&shard_marker(out, shard), b"done\n")?;
    Ok((1..=shard.n).all(|k| shard_marker(out, cluster::Shard { k, n: shard.n }).is_file()))
}

/// Plans experiment `name`, runs what is not done yet of `opts.shard` into `settings.out`, and
/// writes the results and figures (unsharded: always; a shard: when it is the last of the sweep to
/// finish, unless `report` is false). `command` is recorded in `results.md`; `log` receives
/// progress lines.
pub fn run(
    name: &str,
    settings: &Settings,
    opts: &runner::Options,
    report: bool,
    command: &str,
    log: &mut dyn FnMut(&str),
) -> Result<SweepReport> {
    let e = find(name)?;
    let plan = e.plan(settings)?;
    let caveat = plan.size.caveat();
    if !caveat.is_empty() {
        log(caveat);
    }
    let out = &settings.out;
    let sharded = opts.shard != cluster::Shard::ALL;
    let shard_note = if sharded {
        format!(", shard {} ({} of its runs)", opts.shard, opts.shard.indices(plan.runs.len()).len())
    } else {
        String::new()
    };
    log(&format!("{}: {} -> {} ({}{shard_note})", plan.name, plan.reproduces, out.display(), plan.size_summary()));
    if let Some(d) = &plan.data {
        log(&format!("data: {}", d.describe()));
    }
    // Unsharded: the output directory stays locked for the whole invocation. A shard holds that
    // lock only to check the directory and to write the results; its runs are locked one by one.
    let lock =
        if sharded { runner::prepare_output_waiting(out, OUT_LOCK_PATIENCE)? } else { runner::prepare_output(out)? };
    runner::check(&plan, out)?;
    let lock = if sharded {
        drop(lock);
        None
    } else {
        Some(lock)
    };
    let outcomes = runner::run_pending(&plan, out, opts, log)?;
    let write = if sharded {
        let last = mark_shard_done(out, opts.shard)?;
        if report && !last {
            log(&format!("shard {}: done; the last shard to finish (or --report) writes the results", opts.shard));
        }
        report && last
    } else {
        report
    };
    let mut sweep =
        SweepReport { plan, outcomes, results_md: None, results_csv: None, plots: Vec::new(), missing: Vec::new() };
    if write {
        let _lock = match lock {
            Some(l) => l,
            None => runner::prepare_output_waiting(out, OUT_LOCK_PATIENCE)?,
        };
        write_results(&mut sweep, out, command, log)?;
    } else {
        sweep.missing = missing(&sweep.plan, out);
    }
    Ok(sweep)
}

/// The runs of `plan` that are not done in `out`.
fn missing(plan: &Plan, out: &std::path::Path) -> Vec<String> {
    plan.runs
        .iter()
        .filter(|r| !runner::state(&out.join(&r.config.name), &r.config.job).is_done())
        .map(|r| r.config.name.clone())
        .collect()
}

/// Writes results.md, results.csv and the plots of `sweep.plan` from the runs in `out` (locked).
fn write_results(
    sweep: &mut SweepReport,
    out: &std::path::Path,
    command: &str,
    log: &mut dyn FnMut(&str),
) -> Result<()> {
    let plan = &sweep.plan;
    let results = report::collect(plan, out);
    let (plots, plot_warnings) = plots::draw(plan, out, &results);
    for w in &plot_warnings {
        log(&format!("plot not drawn: {w}"));
    }
    let ctx = report::Context { command: command.to_string(), plots: plots.clone(), plot_warnings };
    report::write(plan, out, &results, &ctx)?;
    sweep.missing = results.iter().filter(|r| !r.state.is_done()).map(|r| r.run.config.name.clone()).collect();
    sweep.results_md = Some(out.join(report::RESULTS_MD));
    sweep.results_csv = Some(out.join(report::RESULTS_CSV));
    sweep.plots = plots;
    Ok(())
}

/// `experiment NAME --report`: rebuilds results.md, results.csv and the plots from whatever runs
/// in `settings.out` are complete (runs nothing); [`SweepReport::missing`] names the others.
pub fn report_only(name: &str, settings: &Settings, command: &str, log: &mut dyn FnMut(&str)) -> Result<SweepReport> {
    let e = find(name)?;
    let plan = e.plan(settings)?;
    let out = &settings.out;
    if !out.join(runner::SWEEP_FILE).is_file() {
        return Err(Error::invalid(
            "--out",
            out.display(),
            format!(
                "holds no sweep ({} is missing); run the experiment (or its shards) into it first",
                runner::SWEEP_FILE
            ),
        ));
    }
    let _lock = runner::prepare_output_waiting(out, OUT_LOCK_PATIENCE)?;
    runner::check(&plan, out)?;
    let outcomes = vec![runner::Outcome::OtherShard; plan.runs.len()];
    let mut sweep =
        SweepReport { plan, outcomes, results_md: None, results_csv: None, plots: Vec::new(), missing: Vec::new() };
    write_results(&mut sweep, out, command, log)?;
    Ok(sweep)
}
