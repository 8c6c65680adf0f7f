//! Running a plan into its output directory: one subdirectory per run, resumable.
//!
//! A run is *done* when its directory holds `summary.json` (written atomically, last) or
//! `diverged.json` (training stopped on a non-finite loss, which would happen again): both are
//! skipped by a later invocation. A run that failed for another reason (`failed.json`) or was
//! interrupted is run again: from its last checkpoint when `checkpoint.safetensors` holds the same
//! run specification (continuing bit-identically on the CPU, metrics records after the checkpoint
//! dropped), from scratch otherwise.
//!
//! Locks (lock files `.ortho-rnn.lock`): an unsharded invocation locks the output directory for its
//! whole length ([`prepare_output`]): a second `experiment` process on the same `--out` fails at
//! once, naming the first one's pid and host, and a lock left by a killed process is taken over.
//! Shards (`--shard K/N`) hold it only while checking the directory and while writing the results,
//! and every run, sharded or not, is locked in its own directory while it trains (a leased lock,
//! see [`crate::lock`]), so shards, requeued Slurm tasks and repeated invocations never run one run
//! twice at once.
//!
//! Several runs go at once with `--jobs`/`--devices` ([`Options::slots`]): one worker thread per
//! slot, each with its own backend, takes the next pending run in plan order; a failed run does not
//! stop the others.
//!
//! A training run whose loss diverged ([`crate::train::divergence`]) counts as diverged, like one
//! that stopped on a non-finite loss.
//!
//! Before anything runs, every existing run directory's `config.json` is compared with the plan: a
//! directory made by another size or version of the experiment is an error (naming it), never
//! silently skipped or overwritten. Data sets are loaded once per distinct task, before the device
//! is started; all runs share one backend ([`crate::device::dispatch`]).

use super::Plan;
use super::cluster::Shard;
use super::spec::{Job, RunConfig, TrainSpec};
use crate::backend::Backend;
use crate::device::{BackendJob, DeviceKind, dispatch};
use crate::error::{Error, Result};
use crate::lock::{Lock, RUN_LEASE};
use crate::tasks::Task;
use crate::train::bench::{BenchResult, bench};
use crate::train::checkpoint::{self, write_atomic};
use crate::train::divergence::{self, DivergenceWatch};
use crate::train::memory::{self, TaskDims};
use crate::train::metrics::{MetricsWriter, truncate_after};
use crate::train::progress::{JobLine, Mode, job_style};
use crate::train::{Checkpointing, RunSpec, Summary, TrainConfig, Trainer};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Options {
    pub device: DeviceKind,
    /// CPU threads (0: every core); split between the concurrent runs on `cpu` and `emu` slots.
    pub threads: usize,
    /// No progress display.
    pub quiet: bool,
    /// `--devices`: one concurrent run per entry (empty: one on `device`).
    pub devices: Vec<DeviceKind>,
    /// `--jobs`: concurrent runs (0 or 1: one; with one device, that device repeated).
    pub jobs: usize,
    /// Which runs of the plan this process runs.
    pub shard: Shard,
}

/// One place a run can go: a device and the CPU threads its backend gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    pub device: DeviceKind,
    pub threads: usize,
}

impl Options {
    /// The concurrent slots: `--devices` (or `--device` repeated `--jobs` times), with the CPU
    /// threads divided evenly between the `cpu` and `emu` slots.
    pub fn slots(&self) -> Result<Vec<Slot>> {
        let jobs = self.jobs.max(1);
        let devices: Vec<DeviceKind> = match self.devices.len() {
            0 => vec![self.device; jobs],
            1 => vec![self.devices[0]; jobs],
            n if self.jobs <= 1 || self.jobs == n => self.devices.clone(),
            n => {
                return Err(Error::invalid(
                    "--jobs",
                    self.jobs,
                    format!("--devices lists {n} devices (one run each at a time); drop --jobs or make it {n}"),
                ));
            }
        };
        let host = devices.iter().filter(|d| !d.is_cuda()).count();
        let threads = if host > 1 {
            let total = if self.threads == 0 {
                std::thread::available_parallelism().map_or(1, |n| n.get())
            } else {
                self.threads
            };
            (total / host).max(1)
        } else {
            self.threads
        };
        Ok(devices.into_iter().map(|device| Slot { device, threads }).collect())
    }
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
    /// Another process holds the run's lock (it is running it); not run here.
    Busy(String),
    /// Belongs to another shard (`--shard`).
    OtherShard,
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
/// returned [`Lock`] is dropped. Hold it while checking ([`check`]) and writing the results.
pub fn prepare_output(out: &Path) -> Result<Lock> {
    prepare_output_waiting(out, Duration::ZERO)
}

/// Like [`prepare_output`], but a lock held by another process is waited for up to `patience`
/// (shards hold it only for seconds).
pub fn prepare_output_waiting(out: &Path, patience: Duration) -> Result<Lock> {
    if out.exists() && !out.is_dir() {
        return Err(Error::invalid("--out", out.display(), "is a file; --out names a directory to hold the runs"));
    }
    std::fs::create_dir_all(out)
        .map_err(|e| Error::invalid("--out", out.display(), format!("cannot create the directory: {e}")))?;
    Lock::directory_waiting(out, "--out", patience)
}

/// Checks that `out` (locked by the caller) holds this experiment and size, and that no run
/// directory holds a different run; records the experiment in `experiment.json`.
pub fn check(plan: &Plan, out: &Path) -> Result<()> {
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
    Ok(())
}

/// Checks `out` ([`check`]; lock it first with [`prepare_output`]) and runs every run of `plan`
/// that is not done ([`run_pending`]).
pub fn execute(plan: &Plan, out: &Path, opts: &Options, log: &mut dyn FnMut(&str)) -> Result<Vec<Outcome>> {
    check(plan, out)?;
    run_pending(plan, out, opts, log)
}

/// Runs every run of `opts.shard` that is not done into `out` (checked with [`check`]), one per
/// slot ([`Options::slots`]) at a time, each under a lock of its own directory (so that shards and
/// requeued tasks never run one twice); `log` receives one line per event. Returns one outcome per
/// run of the plan. A failed run does not stop the others. Errors only for what stops the whole
/// sweep: missing data, an unavailable device (every device, with several), an unwritable
/// directory.
pub fn run_pending(plan: &Plan, out: &Path, opts: &Options, log: &mut dyn FnMut(&str)) -> Result<Vec<Outcome>> {
    let slots = opts.slots()?;
    let n = plan.runs.len();
    let mut outcomes: Vec<Option<Outcome>> = vec![None; n];
    let mut pending = std::collections::VecDeque::new();
    for (i, run) in plan.runs.iter().enumerate() {
        if !opts.shard.selects(i) {
            outcomes[i] = Some(Outcome::OtherShard);
            continue;
        }
        let dir = out.join(&run.config.name);
        match skip_reason(&dir, &run.config.job) {
            Some(why) => {
                log(&format!("[{}/{n}] {}: {why}", i + 1, run.config.name));
                outcomes[i] = Some(Outcome::Skipped);
            }
            None => pending.push_back(i),
        }
    }
    if !pending.is_empty() {
        if let Some(data) = &plan.data {
            data.ensure()?;
        }
        // Every task is built once here (errors in the data stop the sweep before any device starts);
        // the first slot gets these, the others build their own as they need them.
        let mut tasks: HashMap<String, Box<dyn Task>> = HashMap::new();
        for &i in &pending {
            if let Job::Train(t) = &plan.runs[i].config.job
                && let std::collections::hash_map::Entry::Vacant(slot) = tasks.entry(task_key(t))
            {
                slot.insert(t.task.build()?);
            }
        }
        let queue = std::sync::Mutex::new(pending);
        let multi =
            (slots.len() > 1 && !opts.quiet && std::io::stderr().is_terminal()).then(indicatif::MultiProgress::new);
        let (tx, rx) = std::sync::mpsc::channel::<Msg>();
        let mut errors = Vec::new();
        std::thread::scope(|s| {
            let mut handles = Vec::new();
            let mut first_tasks = Some(tasks);
            for (j, slot) in slots.iter().enumerate() {
                let progress = if opts.quiet {
                    Progress::Quiet
                } else if slots.len() == 1 {
                    Progress::Auto
                } else {
                    Progress::Job {
                        name: format!("[{} {}]", j + 1, slot.device),
                        bar: multi.as_ref().map(|m| {
                            let bar = m.add(indicatif::ProgressBar::new(0));
                            bar.set_style(job_style());
                            bar
                        }),
                    }
                };
                let worker = Worker {
                    plan,
                    out,
                    slot: *slot,
                    queue: &queue,
                    tasks: first_tasks.take().unwrap_or_default(),
                    progress,
                    tx: tx.clone(),
                };
                let device = slot.device;
                let threads = slot.threads;
                handles.push((*slot, s.spawn(move || dispatch(device, threads, worker))));
            }
            drop(tx);
            for msg in rx {
                match msg {
                    Msg::Log(line) => match &multi {
                        Some(m) if m.println(&line).is_ok() => {}
                        _ => log(&line),
                    },
                    Msg::Done(i, o) => outcomes[i] = Some(o),
                }
            }
            for (slot, h) in handles {
                match h.join() {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => errors.push((slot, e)),
                    Err(_) => errors.push((slot, Error::Device("a worker thread panicked".into()))),
                }
            }
        });
        if let Some(m) = &multi {
            let _ = m.clear();
        }
        // One device: its error stops the sweep, as before. Several: the others took its runs.
        if slots.len() == 1 || errors.len() == slots.len() {
            if let Some((_, e)) = errors.into_iter().next() {
                return Err(e);
            }
        } else {
            for (slot, e) in &errors {
                log(&format!("{}: stopped: {e}", slot.device));
            }
        }
    }
    Ok(outcomes.into_iter().map(|o| o.unwrap_or(Outcome::Failed("not run (its device stopped)".into()))).collect())
}

/// Why the run in `dir` is skipped, when it is done.
fn skip_reason(dir: &Path, job: &Job) -> Option<String> {
    match state(dir, job) {
        RunState::Finished(_) => Some(format!("skipped (finished earlier: {SUMMARY_FILE} exists)")),
        RunState::Diverged(_) => {
            Some(format!("skipped (diverged earlier; delete {} to retry)", dir.join(DIVERGED_FILE).display()))
        }
        _ => None,
    }
}

/// A message from a worker to the thread that logs.
enum Msg {
    Log(String),
    Done(usize, Outcome),
}

/// How a worker shows training progress.
enum Progress {
    Quiet,
    Auto,
    /// One of several concurrent workers: its own bar (terminal) or prefixed lines.
    Job {
        name: String,
        bar: Option<indicatif::ProgressBar>,
    },
}

impl Progress {
    fn mode(&self, run: &str) -> Mode {
        match self {
            Progress::Quiet => Mode::Quiet,
            Progress::Auto => Mode::Auto,
            Progress::Job { name, bar } => Mode::Job(JobLine { prefix: format!("{name} {run}"), bar: bar.clone() }),
        }
    }
}

/// One slot's worker: takes runs from the queue until it is empty, on one backend.
struct Worker<'a> {
    plan: &'a Plan,
    out: &'a Path,
    slot: Slot,
    queue: &'a std::sync::Mutex<std::collections::VecDeque<usize>>,
    tasks: HashMap<String, Box<dyn Task>>,
    progress: Progress,
    tx: std::sync::mpsc::Sender<Msg>,
}

impl BackendJob for Worker<'_> {
    type Out = ();

    fn run<B: Backend>(self, b: &B) -> Result<()> {
        let Worker { plan, out, slot, queue, mut tasks, progress, tx } = self;
        let n = plan.runs.len();
        let mut log = |line: &str| {
            let _ = tx.send(Msg::Log(line.to_string()));
        };
        loop {
            let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
            let Some(i) = next else { return Ok(()) };
            let cfg = &plan.runs[i].config;
            let dir = out.join(&cfg.name);
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            // The run's own lock, held while it trains: another shard, a requeued task or a second
            // invocation leaves it alone.
            let _lock = match Lock::directory_leased(&dir, "run directory", RUN_LEASE) {
                Ok(l) => l,
                Err(e @ Error::Locked { .. }) => {
                    let msg = e.to_string();
                    log(&format!("[{}/{n}] {}: not run here: {msg}", i + 1, cfg.name));
                    let _ = tx.send(Msg::Done(i, Outcome::Busy(msg)));
                    continue;
                }
                Err(e) => return Err(e),
            };
            // Another process may have finished it since the scan.
            if let Some(why) = skip_reason(&dir, &cfg.job) {
                log(&format!("[{}/{n}] {}: {why}", i + 1, cfg.name));
                let _ = tx.send(Msg::Done(i, Outcome::Skipped));
                continue;
            }
            let _ = std::fs::remove_file(dir.join(FAILED_FILE));
            log(&format!("[{}/{n}] {}: running on {}", i + 1, cfg.name, slot.device));
            let t0 = Instant::now();
            let result = match &cfg.job {
                Job::Train(t) => {
                    let key = task_key(t);
                    let task = match tasks.entry(key) {
                        std::collections::hash_map::Entry::Occupied(e) => Ok(e.into_mut()),
                        std::collections::hash_map::Entry::Vacant(v) => t.task.build().map(|task| v.insert(task)),
                    };
                    match task {
                        Ok(task) => train_run(b, cfg, t, task.as_ref(), &dir, slot, progress.mode(&cfg.name), &mut log)
                            .map(|(s, r)| (Finished::Train(Box::new(s)), r)),
                        Err(e) => Err(e),
                    }
                }
                Job::Bench(s) => {
                    write_config(&dir, cfg, None, b, slot)?;
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
            let _ = tx.send(Msg::Done(i, outcome));
        }
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

fn write_config<B: Backend>(dir: &Path, cfg: &RunConfig, resolved: Option<RunSpec>, b: &B, slot: Slot) -> Result<()> {
    let file = ConfigFile {
        config: cfg.clone(),
        resolved,
        device: slot.device,
        backend: b.name(),
        threads: slot.threads,
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
    slot: Slot,
    progress: Mode,
    log: &mut dyn FnMut(&str),
) -> Result<(Summary, Option<usize>)> {
    let run = t.resolve(task)?;
    let dims = TaskDims::of(&run.task)?;
    crate::limits::check_memory(slot.device, &memory::estimate(&run.model, &dims, run.batch, true)?)?;
    let run_json = serde_json::to_string(&run).map_err(|e| Error::invalid("run", &cfg.name, e.to_string()))?;
    write_config(dir, cfg, Some(run.clone()), b, slot)?;
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
        progress,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_repeat_one_device_and_split_the_cpu_threads() {
        let o = Options { threads: 8, jobs: 4, ..Default::default() };
        assert_eq!(o.slots().unwrap(), vec![Slot { device: DeviceKind::Cpu, threads: 2 }; 4]);
        let o = Options { threads: 3, jobs: 2, ..Default::default() };
        assert_eq!(o.slots().unwrap(), vec![Slot { device: DeviceKind::Cpu, threads: 1 }; 2]);
        let o = Options { threads: 0, ..Default::default() };
        assert_eq!(o.slots().unwrap(), vec![Slot { device: DeviceKind::Cpu, threads: 0 }]);
        let gpus = vec![DeviceKind::Cuda(0), DeviceKind::Cuda(1), DeviceKind::Emu];
        let o = Options { threads: 4, devices: gpus.clone(), ..Default::default() };
        let slots = o.slots().unwrap();
        assert_eq!(slots.iter().map(|s| s.device).collect::<Vec<_>>(), gpus);
        assert!(slots.iter().all(|s| s.threads == 4), "one host slot keeps every thread: {slots:?}");
        let o = Options { devices: gpus, jobs: 2, ..Default::default() };
        assert!(o.slots().unwrap_err().to_string().contains("--jobs"));
        let o = Options { devices: vec![DeviceKind::Emu], jobs: 2, threads: 6, ..Default::default() };
        assert_eq!(o.slots().unwrap(), vec![Slot { device: DeviceKind::Emu, threads: 3 }; 2]);
    }
}
