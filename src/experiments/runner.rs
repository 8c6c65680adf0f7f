//! Running a plan into its output directory: one subdirectory per run, resumable.
//!
//! A run is *done* when its directory holds `summary.json` (written atomically, last) or
//! `diverged.json` (training stopped on a non-finite loss, which would happen again): both are
//! skipped by a later invocation. A run that failed for another reason (`failed.json`) or was
//! interrupted is run again: from its last checkpoint when `checkpoint.safetensors` holds the same
//! run specification (continuing bit-identically on the CPU, metrics records after the checkpoint
//! dropped), from scratch otherwise.
//!
//! The output directory is locked for the whole invocation ([`prepare_output`]; the lock file is
//! `.ortho-rnn.lock`): a second `experiment` process on the same `--out` fails at once, naming the
//! first one's pid and host, and a lock left by a killed process is taken over.
//!
//! A training run whose loss diverged ([`crate::train::divergence`]) counts as diverged, like one
//! that stopped on a non-finite loss.
//!
//! Before anything runs, every existing run directory's `config.json` is compared with the plan: a
//! directory made by another size or version of the experiment is an error (naming it), never
//! silently skipped or overwritten. Data sets are loaded once per distinct task, before the device
//! is started; all runs share one backend ([`crate::device::dispatch`]).

use super::Plan;
use super::spec::{Job, RunConfig, TrainSpec};
use crate::backend::Backend;
use crate::device::{BackendJob, DeviceKind, dispatch};
use crate::error::{Error, Result};
use crate::lock::Lock;
use crate::tasks::Task;
use crate::train::bench::{BenchResult, bench};
use crate::train::checkpoint::{self, write_atomic};
use crate::train::divergence::{self, DivergenceWatch};
use crate::train::memory::{self, TaskDims};
use crate::train::metrics::{MetricsWriter, truncate_after};
use crate::train::progress::Mode;
use crate::train::{Checkpointing, RunSpec, Summary, TrainConfig, Trainer};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The run's specification and where it ran.
pub const CONFIG_FILE: &str = "config.json";

/// The file in an output directory that records which experiment and size it holds.
pub const SWEEP_FILE: &str = "experiment.json";

/// Refuses an output directory made by another experiment or size (run names can differ between
/// sizes, so per-run configs alone would not catch it); records this one otherwise.
fn claim_directory(plan: &Plan, out: &Path) -> Result<()> {
    let path = out.join(SWEEP_FILE);
    let want = serde_json::json!({ "experiment": plan.name, "size": plan.size.as_str() });
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let have: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                Error::bad_file(&path, format!("does not parse as JSON ({e}); delete it to reuse the directory"))
            })?;
            if have != want {
                let field = |k: &str| have.get(k).and_then(|v| v.as_str()).unwrap_or("?").to_string();
                return Err(Error::invalid(
                    "--out",
                    out.display(),
                    format!(
                        "this directory was made with size {} of experiment `{}`, not `{} --{}`; use another \
                         --out or delete it",
                        field("size"),
                        field("experiment"),
                        plan.name,
                        plan.size.as_str()
                    ),
                ));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => write_json(&path, &want),
        Err(e) => Err(Error::io(&path, e)),
    }
}
/// The final summary; its presence marks the run done.
pub const SUMMARY_FILE: &str = "summary.json";
/// One JSON evaluation record per line.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// Written instead of the summary when training hit a non-finite loss (also marks the run done).
pub const DIVERGED_FILE: &str = "diverged.json";
/// Written when the run failed for another reason; the run is retried next time.
pub const FAILED_FILE: &str = "failed.json";
/// The latest checkpoint of a training run.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";

/// What `config.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfigFile {
    /// The planned run (compared on resume).
    pub config: RunConfig,
    /// The trainer's run specification with the length resolved (training runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved: Option<RunSpec>,
    /// The device flag it ran under and the backend's own description.
    pub device: DeviceKind,
    pub backend: String,
    pub threads: usize,
    /// `ortho-rnn` version.
    pub version: String,
}

/// Why a run stopped without a summary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// The error message.
    pub error: String,
    /// The iteration where training stopped, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iter: Option<usize>,
}

/// The result file of a finished run.
#[derive(Clone, Debug, PartialEq)]
pub enum Finished {
    Train(Box<Summary>),
    Bench(Box<BenchResult>),
}

/// Where a run stands on disk.
#[derive(Clone, Debug, PartialEq)]
pub enum RunState {
    /// `summary.json` exists (`Err`: it exists but does not parse).
    Finished(std::result::Result<Finished, String>),
    /// `diverged.json` exists.
    Diverged(Failure),
    /// `failed.json` exists (the run will be retried).
    Failed(Failure),
    /// Started (a directory with files) but neither finished nor failed.
    Unfinished,
    /// No directory.
    NotStarted,
}

impl RunState {
    /// True when a later invocation skips the run.
    pub fn is_done(&self) -> bool {
        matches!(self, RunState::Finished(_) | RunState::Diverged(_))
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::bad_file(path, e.to_string()))
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| Error::bad_file(path, e.to_string()))?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// The state of the run in `dir`.
pub fn state(dir: &Path, job: &Job) -> RunState {
    let summary = dir.join(SUMMARY_FILE);
    if summary.is_file() {
        let parsed = match job {
            Job::Train(_) => read_json::<Summary>(&summary).map(|s| Finished::Train(Box::new(s))),
            Job::Bench(_) => read_json::<BenchResult>(&summary).map(|r| Finished::Bench(Box::new(r))),
        };
        return RunState::Finished(parsed.map_err(|e| e.to_string()));
    }
    let failure = |name: &str| {
        let p = dir.join(name);
        p.is_file().then(|| {
            read_json::<Failure>(&p).unwrap_or_else(|e| Failure { error: format!("(unreadable: {e})"), iter: None })
        })
    };
    if let Some(f) = failure(DIVERGED_FILE) {
        return RunState::Diverged(f);
    }
    if let Some(f) = failure(FAILED_FILE) {
        return RunState::Failed(f);
    }
    if dir.is_dir() { RunState::Unfinished } else { RunState::NotStarted }
}

/// How to run.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    pub device: DeviceKind,
    /// CPU threads (0: every core).
    pub threads: usize,
    /// No progress display.
    pub quiet: bool,
}

/// What happened to one run in this invocation.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Done earlier (`summary.json` or `diverged.json` present).
    Skipped,
    /// Ran to the end (`resumed_from`: the checkpoint iteration it continued from).
    Finished { resumed_from: Option<usize> },
    /// Stopped on a non-finite loss.
    Diverged(String),
    /// Failed for another reason.
    Failed(String),
}

/// Every run directory that exists but was made from a different specification.
fn conflicts(plan: &Plan, out: &Path) -> Vec<String> {
    let mut bad = Vec::new();
    for run in &plan.runs {
        let dir = out.join(&run.config.name);
        let path = dir.join(CONFIG_FILE);
        let stored = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(_) => {
                if state(&dir, &run.config.job).is_done() {
                    bad.push(format!("{} (done, but has no {CONFIG_FILE})", dir.display()));
                }
                continue;
            }
        };
        let stored: Option<serde_json::Value> =
            serde_json::from_str::<serde_json::Value>(&stored).ok().and_then(|v| v.get("config").cloned());
        let planned = serde_json::to_value(&run.config).ok();
        match (stored, planned) {
            (Some(s), Some(p)) if s == p => {}
            (None, _) if !state(&dir, &run.config.job).is_done() => {} // unreadable and unfinished: rerun
            (Some(s), _) => {
                let size = s.get("size").and_then(|v| v.as_str()).unwrap_or("?");
                bad.push(format!("{} (made with size {size}, or another version of the experiment)", dir.display()));
            }
            _ => bad.push(format!("{} (its {CONFIG_FILE} does not parse)", dir.display())),
        }
    }
    bad
}

/// A stable key of a task specification (for loading each data set once).
fn task_key(t: &TrainSpec) -> String {
    serde_json::to_string(&t.task).unwrap_or_default()
}

/// Creates the output directory `out` if needed and locks it; the lock is released when the
/// returned [`Lock`] is dropped. Hold it while running ([`execute`]) and writing the results.
pub fn prepare_output(out: &Path) -> Result<Lock> {
    if out.exists() && !out.is_dir() {
        return Err(Error::invalid("--out", out.display(), "is a file; --out names a directory to hold the runs"));
    }
    std::fs::create_dir_all(out)
        .map_err(|e| Error::invalid("--out", out.display(), format!("cannot create the directory: {e}")))?;
    Lock::directory(out, "--out")
}

/// Runs every run of `plan` that is not done into `out` (locked by the caller with
/// [`prepare_output`]), in plan order; `log` receives one line per
/// event. Returns one outcome per run of the plan. Errors only for what stops the whole sweep:
/// conflicting run directories, missing data, an unavailable device, an unwritable directory.
pub fn execute(plan: &Plan, out: &Path, opts: &Options, log: &mut dyn FnMut(&str)) -> Result<Vec<Outcome>> {
    claim_directory(plan, out)?;
    let bad = conflicts(plan, out);
    if !bad.is_empty() {
        return Err(Error::invalid(
            "--out",
            out.display(),
            format!(
                "these run directories hold a different run than `{} --{}` plans: {}; use another --out or \
                 delete them",
                plan.name,
                plan.size.as_str(),
                bad.join("; ")
            ),
        ));
    }
    let n = plan.runs.len();
    let mut outcomes: Vec<Option<Outcome>> = vec![None; n];
    let mut pending = Vec::new();
    for (i, run) in plan.runs.iter().enumerate() {
        let dir = out.join(&run.config.name);
        match state(&dir, &run.config.job) {
            RunState::Finished(_) => {
                log(&format!("[{}/{n}] {}: skipped (finished earlier: {SUMMARY_FILE} exists)", i + 1, run.config.name));
                outcomes[i] = Some(Outcome::Skipped);
            }
            RunState::Diverged(_) => {
                log(&format!(
                    "[{}/{n}] {}: skipped (diverged earlier; delete {} to retry)",
                    i + 1,
                    run.config.name,
                    dir.join(DIVERGED_FILE).display()
                ));
                outcomes[i] = Some(Outcome::Skipped);
            }
            _ => pending.push(i),
        }
    }
    if !pending.is_empty() {
        if let Some(data) = &plan.data {
            data.ensure()?;
        }
        let mut tasks: HashMap<String, Box<dyn Task>> = HashMap::new();
        for &i in &pending {
            if let Job::Train(t) = &plan.runs[i].config.job
                && let std::collections::hash_map::Entry::Vacant(slot) = tasks.entry(task_key(t))
            {
                slot.insert(t.task.build()?);
            }
        }
        let job = SweepJob { plan, out, pending: &pending, tasks, opts, log };
        for (i, o) in dispatch(opts.device, opts.threads, job)? {
            outcomes[i] = Some(o);
        }
    }
    Ok(outcomes.into_iter().map(|o| o.unwrap_or(Outcome::Failed("not run".into()))).collect())
}

/// All pending runs on one backend.
struct SweepJob<'a> {
    plan: &'a Plan,
    out: &'a Path,
    pending: &'a [usize],
    tasks: HashMap<String, Box<dyn Task>>,
    opts: &'a Options,
    log: &'a mut dyn FnMut(&str),
}

impl BackendJob for SweepJob<'_> {
    type Out = Vec<(usize, Outcome)>;

    fn run<B: Backend>(self, b: &B) -> Result<Self::Out> {
        let SweepJob { plan, out, pending, tasks, opts, log } = self;
        let n = plan.runs.len();
        let mut results = Vec::with_capacity(pending.len());
        for &i in pending {
            let cfg = &plan.runs[i].config;
            let dir = out.join(&cfg.name);
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            let _ = std::fs::remove_file(dir.join(FAILED_FILE));
            log(&format!("[{}/{n}] {}: running", i + 1, cfg.name));
            let t0 = Instant::now();
            let result = match &cfg.job {
                Job::Train(t) => {
                    let task = tasks.get(&task_key(t)).map(|t| t.as_ref());
                    match task {
                        Some(task) => {
                            train_run(b, cfg, t, task, &dir, opts, log).map(|(s, r)| (Finished::Train(Box::new(s)), r))
                        }
                        None => Err(Error::invalid("experiment", &cfg.name, "its task was not loaded")),
                    }
                }
                Job::Bench(s) => {
                    write_config(&dir, cfg, None, b, opts)?;
                    bench(b, &s.model, s.optim, s.seq_len, s.batch, s.iters)
                        .map(|r| (Finished::Bench(Box::new(r)), None))
                }
            };
            let secs = t0.elapsed().as_secs_f64();
            let outcome = match result {
                Ok((Finished::Train(s), _)) if !s.loss.is_finite() || s.diverged.is_some() => {
                    let msg = s.diverged.clone().unwrap_or_else(|| format!("the final evaluation loss is {}", s.loss));
                    write_json(&dir.join(DIVERGED_FILE), &Failure { error: msg.clone(), iter: Some(s.iters) })?;
                    log(&format!("[{}/{n}] {}: diverged after {secs:.1}s: {msg}", i + 1, cfg.name));
                    Outcome::Diverged(msg)
                }
                Ok((finished, resumed_from)) => {
                    let path = dir.join(SUMMARY_FILE);
                    match &finished {
                        Finished::Train(s) => write_json(&path, s)?,
                        Finished::Bench(r) => write_json(&path, r)?,
                    }
                    log(&format!("[{}/{n}] {}: done in {secs:.1}s: {}", i + 1, cfg.name, describe(&finished)));
                    Outcome::Finished { resumed_from }
                }
                Err(e @ Error::NonFiniteLoss { .. }) => {
                    let iter = match &e {
                        Error::NonFiniteLoss { iter, .. } => Some(*iter),
                        _ => None,
                    };
                    let msg = e.to_string();
                    write_json(&dir.join(DIVERGED_FILE), &Failure { error: msg.clone(), iter })?;
                    log(&format!("[{}/{n}] {}: diverged after {secs:.1}s: {msg}", i + 1, cfg.name));
                    Outcome::Diverged(msg)
                }
                Err(e) => {
                    let msg = e.to_string();
                    write_json(&dir.join(FAILED_FILE), &Failure { error: msg.clone(), iter: None })?;
                    log(&format!("[{}/{n}] {}: FAILED after {secs:.1}s: {msg}", i + 1, cfg.name));
                    Outcome::Failed(msg)
                }
            };
            results.push((i, outcome));
        }
        Ok(results)
    }
}

/// One line about a finished run.
fn describe(f: &Finished) -> String {
    match f {
        Finished::Train(s) => {
            let mut parts = vec![format!("loss {:.4} (baseline {:.4})", s.loss, s.baseline)];
            if let Some(a) = s.accuracy {
                parts.push(format!("accuracy {:.2}%", 100.0 * a));
            }
            if let Some(b) = s.bpc {
                parts.push(format!("{b:.3} bpc"));
            }
            parts.push(format!("{:.2} ms/iter", s.ms_per_iter));
            parts.join(", ")
        }
        Finished::Bench(r) => format!("median {:.3} ms/iter (min {:.3})", r.median_ms, r.min_ms),
    }
}

fn write_config<B: Backend>(
    dir: &Path,
    cfg: &RunConfig,
    resolved: Option<RunSpec>,
    b: &B,
    opts: &Options,
) -> Result<()> {
    let file = ConfigFile {
        config: cfg.clone(),
        resolved,
        device: opts.device,
        backend: b.name(),
        threads: opts.threads,
        version: env!("CARGO_PKG_VERSION").to_string(),
    };
    write_json(&dir.join(CONFIG_FILE), &file)
}

/// Trains one run; returns the summary and the checkpoint iteration it resumed from.
fn train_run<B: Backend>(
    b: &B,
    cfg: &RunConfig,
    t: &TrainSpec,
    task: &dyn Task,
    dir: &Path,
    opts: &Options,
    log: &mut dyn FnMut(&str),
) -> Result<(Summary, Option<usize>)> {
    let run = t.resolve(task)?;
    let dims = TaskDims::of(&run.task)?;
    crate::limits::check_memory(opts.device, &memory::estimate(&run.model, &dims, run.batch, true)?)?;
    let run_json = serde_json::to_string(&run).map_err(|e| Error::invalid("run", &cfg.name, e.to_string()))?;
    write_config(dir, cfg, Some(run.clone()), b, opts)?;
    let ck_path: PathBuf = dir.join(CHECKPOINT_FILE);
    let metrics = dir.join(METRICS_FILE);
    let resume = match checkpoint::load(&ck_path) {
        Ok(ck) if ck.run == run_json && ck.iter < run.iters => Some(ck),
        Ok(_) => {
            log(&format!("    {}: the checkpoint is of another run or already complete; starting over", cfg.name));
            None
        }
        Err(_) => None,
    };
    if resume.is_none() {
        let _ = std::fs::remove_file(&ck_path);
        // A fresh run truncates metrics.jsonl when it writes its first record; create it now so an
        // interrupted start leaves no stale records either.
        MetricsWriter::create(&metrics, false)?;
    }
    let train_cfg = TrainConfig {
        iters: run.iters,
        batch: run.batch,
        eval_every: run.eval_every,
        seed: run.seed,
        metrics: Some(metrics.clone()),
        record_grad_norms: t.record_grad_norms,
        diagnostics: t.diagnostics,
        progress: if opts.quiet { Mode::Quiet } else { Mode::Auto },
        checkpoint: Some(Checkpointing { path: ck_path.clone(), every: run.eval_every, run: run_json }),
    };
    let model = run.model.build(b, task, run.seed)?;
    let mut trainer = Trainer::new(b, model, run.optim, task, train_cfg)?;
    let mut resumed_from = None;
    if let Some(ck) = resume {
        truncate_after(&metrics, ck.iter)?;
        checkpoint::restore(&mut trainer, &ck, &ck_path)?;
        log(&format!("    {}: resuming from the checkpoint at iteration {}", cfg.name, ck.iter));
        resumed_from = Some(ck.iter);
    }
    let mut watch = DivergenceWatch::new(divergence::reference(task));
    let mut summary = trainer.run(|_, rec| {
        watch.observe(rec.iter, rec.loss);
        Ok(())
    })?;
    summary.diverged = watch.verdict();
    Ok((summary, resumed_from))
}
