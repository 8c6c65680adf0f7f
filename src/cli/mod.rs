//! The command-line front end: `train`, `bench`, `devices`, `experiment` and `plot`.

mod args;
mod bounds;
mod experiment;
mod resume;

use args::{DeviceArgs, ModelArgs, OptimArgs};
use clap::{Parser, Subcommand};
use ortho_rnn::backend::Precision;
use ortho_rnn::backend::cuda::baselines;
use ortho_rnn::device::DeviceKind;
use ortho_rnn::error::{Error, Result};
use ortho_rnn::limits;
use ortho_rnn::tasks::{TaskKind, TaskSpec};
use ortho_rnn::train::checkpoint::{self, Checkpoint};
use ortho_rnn::train::job::TrainJob;
use ortho_rnn::train::memory::{self, TaskDims};
use ortho_rnn::train::progress::{Mode, count};
use ortho_rnn::train::trajectory::DumpConfig;
use ortho_rnn::train::{Checkpointing, RunSpec, Summary, TrainConfig, bench, metrics, outputs};
use std::path::{Path, PathBuf};

/// Train recurrent networks whose transition matrix is kept orthogonal, near-orthogonal or spectrally bounded.
#[derive(Parser, Debug)]
#[command(name = "ortho-rnn", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a model on a task. With no flags, the main job: a factorized RNN (hidden 128, spectral
    /// margin 1) learns the copy task with T = 100 on the CPU in 2000 iterations.
    Train(Box<TrainArgs>),
    /// Time whole training iterations on the copy task and print a summary.
    Bench(Box<BenchArgs>),
    /// List what this machine offers: CPU threads, NVRTC, GPUs, the CUDA emulator.
    Devices,
    /// Run a named sweep that reproduces a paper's table or figure (`experiment list` shows them).
    Experiment(Box<experiment::ExperimentArgs>),
    /// Redraw the figures of run directories from their metrics files (into RUN_DIR/plots/): loss
    /// and accuracy curves, singular-value evolution, per-time-step gradient-norm heatmaps.
    Plot(PlotArgs),
}

#[derive(clap::Args, Debug)]
struct PlotArgs {
    /// Directories holding `*.jsonl` metrics files (`train --metrics`) or run subdirectories with
    /// `metrics.jsonl` (an experiment's output directory).
    #[arg(required = true, value_name = "RUN_DIR")]
    dirs: Vec<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct TrainArgs {
    /// Task.
    #[arg(long, value_enum, default_value = "copy")]
    task: TaskKind,
    /// Sequence length T (the copy task's delay: its sequences have T + 20 steps; PTB: the longest
    /// sentence kept, 75 or 300) [default: 100 for copy and adding, 784 for mnist and pmnist, 28 for
    /// mnist-rows, 75 for ptb].
    #[arg(long, value_parser = bounds::seq_len)]
    seq_len: Option<usize>,
    /// Directory with the task's data files (MNIST IDX, PTB text) [default: none; the file-backed
    /// tasks need it].
    #[arg(long)]
    data: Option<PathBuf>,
    /// File-backed tasks: train on the first N examples only [default: all].
    #[arg(long, value_parser = bounds::max_train)]
    max_train: Option<usize>,
    /// File-backed tasks: evaluate on the test split instead of the validation split.
    #[arg(long)]
    eval_test: bool,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    optim: OptimArgs,
    /// Batch size.
    #[arg(long, default_value_t = 50, value_parser = bounds::batch)]
    batch: usize,
    /// Training iterations [default: 2000; with --epochs: --epochs x --iters-per-epoch; with
    /// --resume: the stored run's].
    #[arg(long, conflicts_with = "epochs", value_parser = bounds::iters)]
    iters: Option<usize>,
    /// Training epochs of --iters-per-epoch iterations (the papers' convention: 100) [default: none;
    /// --iters decides].
    #[arg(long, value_parser = bounds::iters)]
    epochs: Option<usize>,
    /// Iterations per epoch with --epochs.
    #[arg(long, default_value_t = 100, value_parser = bounds::iters)]
    iters_per_epoch: usize,
    /// Evaluate every this many iterations.
    #[arg(long, default_value_t = 100, value_parser = bounds::iters)]
    eval_every: usize,
    /// Seed of data and initialization.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[command(flatten)]
    device: DeviceArgs,
    /// Arithmetic of the network's matrix products: fp32, or tf32 / bf16 on tensor cores (cuda, emu)
    /// with f32 accumulation; the parametrizations stay in f32 [default: fp32; a resumed run keeps its
    /// checkpoint's].
    #[arg(long, value_enum)]
    precision: Option<Precision>,
    /// Append one JSON line per evaluation to this file [default: none].
    #[arg(long)]
    metrics: Option<PathBuf>,
    /// Print a one-line JSON summary as the last line of stdout.
    #[arg(long)]
    json: bool,
    /// Record per-time-step gradient norms at every evaluation (Figure 2).
    #[arg(long)]
    record_grad_norms: bool,
    /// Skip singular values and drift at evaluations.
    #[arg(long)]
    no_diagnostics: bool,
    /// No progress output.
    #[arg(long)]
    quiet: bool,
    /// Write a checkpoint (safetensors, atomically replaced) to this file [default: none].
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Checkpoint every this many iterations (and at the end) [default: --eval-every].
    #[arg(long, requires = "checkpoint", value_parser = bounds::iters)]
    checkpoint_every: Option<usize>,
    /// Continue the run stored in this checkpoint: task, model, optimizer and seed come from it,
    /// and flags that would change them are refused; --iters/--epochs may extend it, and
    /// --eval-every, --checkpoint(-every), --metrics, --data (moved data), --device and --threads
    /// may change. Continues bit-identically on the CPU [default: none].
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Exit 0 even when the run diverged (its loss stayed far above the task's baseline); the
    /// summary still says so.
    #[arg(long)]
    allow_divergence: bool,
    /// The flags given on the command line (clap ids), for --resume.
    #[arg(skip)]
    explicit: Vec<String>,
    /// Also keep the checkpoint of the best evaluation, as <checkpoint>.best.safetensors (written
    /// atomically whenever an evaluation beats the best so far).
    #[arg(long, requires = "checkpoint")]
    keep_best: bool,
    /// Report a gradient-norm spike when the norm exceeds this many times its running median.
    #[arg(long, default_value_t = 10.0)]
    spike_factor: f64,
    /// Write the initial weights, the batches and, per iteration, loss, gradient norm and the
    /// parameters after the update into this directory (safetensors), for a step-by-step replay by
    /// tools/torch_replay.py [default: none].
    #[arg(long, value_name = "DIR")]
    dump_trajectory: Option<PathBuf>,
    /// With --dump-trajectory: how many iterations to record [default: min(--iters, 100)].
    #[arg(long, requires = "dump_trajectory")]
    dump_iters: Option<usize>,
    /// With --dump-trajectory: store the parameters after every this-many iterations.
    #[arg(long, default_value_t = 1, requires = "dump_trajectory")]
    dump_params_every: usize,
    /// Element type of training: f64 runs on the CPU only (slower; for comparisons with references).
    #[arg(long, value_enum, default_value = "f32")]
    dtype: DtypeArg,
}

/// `--dtype`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum DtypeArg {
    F32,
    F64,
}

#[derive(clap::Args, Debug)]
struct BenchArgs {
    /// Copy-task delay T (sequences of T + 20 steps).
    #[arg(long, default_value_t = 100, value_parser = bounds::seq_len)]
    seq_len: usize,
    /// Batch size.
    #[arg(long, default_value_t = 50, value_parser = bounds::batch)]
    batch: usize,
    /// Timed iterations (after two warm-up iterations).
    #[arg(long, default_value_t = 20, value_parser = bounds::bench_iters)]
    iters: usize,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    optim: OptimArgs,
    #[command(flatten)]
    device: DeviceArgs,
    /// Arithmetic of the network's matrix products: fp32, or tf32 / bf16 on tensor cores (cuda, emu).
    #[arg(long, value_enum, default_value = "fp32")]
    precision: Precision,
    /// Print a one-line JSON summary.
    #[arg(long)]
    json: bool,
    /// Also time cuBLAS sgemm beside our GEMM at each GEMM shape of the iteration (`--device cuda`,
    /// a build with `--features cuda-baselines`).
    #[arg(long, value_enum, default_value = "ours")]
    gemm: baselines::GemmBaseline,
    /// Also time cuSOLVER sgetrf/sgetrs beside our LU, solve and Cayley step at n = hidden
    /// (`--device cuda`, a build with `--features cuda-baselines`).
    #[arg(long, value_enum, default_value = "ours")]
    lu: baselines::LuBaseline,
    /// Count device activity per iteration: kernel launches, host synchronizations, allocations,
    /// bytes to and from the host, flops from the launch shapes, and which paths ran (cuda, emu).
    #[arg(long)]
    profile: bool,
    /// Predict the time of an iteration on this GPU from the profile (h100, h200, a100): a roofline
    /// of documented peak rates plus documented per-launch and per-sync costs (an estimate)
    /// [default: none].
    #[arg(long, value_parser = parse_gpu_model)]
    predict: Option<ortho_rnn::backend::profile::GpuModel>,
}

fn parse_gpu_model(s: &str) -> std::result::Result<ortho_rnn::backend::profile::GpuModel, String> {
    ortho_rnn::backend::profile::GpuModel::parse(s).ok_or_else(|| format!("unknown GPU `{s}`: use h100, h200 or a100"))
}

/// Parses the command line (exiting with clap's message on an error), recording which `train`
/// flags were given on it (for `--resume`).
pub fn parse() -> Cli {
    use clap::parser::ValueSource;
    use clap::{CommandFactory, FromArgMatches};
    let command = Cli::command();
    let matches = command.clone().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let (Some(Command::Train(a)), Some(("train", sub)), Some(train)) =
        (cli.command.as_mut(), matches.subcommand(), command.find_subcommand("train"))
    {
        // Only arguments: the ids of flattened argument groups are reported too.
        let args: Vec<&clap::Id> = train.get_arguments().map(|arg| arg.get_id()).collect();
        a.explicit = sub
            .ids()
            .filter(|id| args.contains(id) && sub.value_source(id.as_str()) == Some(ValueSource::CommandLine))
            .map(|id| id.to_string())
            .collect();
    }
    cli
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        None => train(TrainArgs::parse_defaults()),
        Some(Command::Train(a)) => train(*a),
        Some(Command::Bench(a)) => bench_cmd(*a),
        Some(Command::Devices) => devices(),
        Some(Command::Experiment(a)) => experiment::run(*a),
        Some(Command::Plot(a)) => plot(a),
    }
}

impl TrainArgs {
    fn parse_defaults() -> Self {
        #[derive(Parser)]
        struct Wrap {
            #[command(flatten)]
            a: TrainArgs,
        }
        Wrap::parse_from(["ortho-rnn"]).a
    }
}

/// The number of iterations `--iters` or `--epochs x --iters-per-epoch` asks for.
fn requested_iters(a: &TrainArgs) -> Result<Option<usize>> {
    Ok(match (a.iters, a.epochs) {
        (Some(i), _) => Some(i),
        (None, Some(e)) => {
            let total = e.checked_mul(a.iters_per_epoch).filter(|&t| t <= limits::MAX_ITERS);
            Some(total.ok_or_else(|| {
                Error::invalid(
                    "--epochs",
                    e,
                    format!(
                        "--epochs {e} x --iters-per-epoch {} exceeds the limit of {} iterations",
                        a.iters_per_epoch,
                        limits::MAX_ITERS
                    ),
                )
            })?)
        }
        (None, None) => None,
    })
}

/// `p` made absolute against the current directory (a stored data path must not depend on where
/// the run is resumed from).
fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// The stored run of checkpoint `ck` at `path`, with the flags that may change on resume applied.
fn resumed_run(a: &TrainArgs, ck: &Checkpoint, path: &Path, iters: Option<usize>) -> Result<RunSpec> {
    let mut run: RunSpec = serde_json::from_str(&ck.run)
        .map_err(|e| Error::bad_file(path, format!("the stored run specification does not parse: {e}")))?;
    validate_stored(&run, path)?;
    resume::refuse_conflicts(a, &run, path)?;
    if ck.iter > run.iters {
        return Err(Error::bad_file(
            path,
            format!(
                "metadata `iter` is {}, more than the {} of its stored run",
                ck.iter,
                count(run.iters, "iteration")
            ),
        ));
    }
    if let Some(i) = iters {
        if i < ck.iter {
            return Err(Error::invalid(
                "--iters",
                i,
                format!("the checkpoint has already trained {}", count(ck.iter, "iteration")),
            ));
        }
        run.iters = i;
    }
    if a.explicit.iter().any(|id| id == "eval_every") {
        run.eval_every = a.eval_every;
    }
    if let Some(d) = &a.data {
        if run.task.data.is_none() {
            return Err(Error::Inapplicable {
                flag: "--data",
                context: format!("the checkpoint's --task {}", run.task.kind.as_str()),
                hint: "synthetic tasks generate their data".into(),
            });
        }
        run.task.data = Some(absolute(d));
    }
    Ok(run)
}

/// Checks a run specification read from a checkpoint as the flags would have been checked.
fn validate_stored(run: &RunSpec, path: &Path) -> Result<()> {
    let bad = |e: Error| Error::bad_file(path, format!("the stored run is invalid: {e}"));
    let t = run.task.seq_len.unwrap_or(run.task.kind.default_seq_len());
    limits::check_range("--hidden", run.model.hidden, 1, limits::MAX_HIDDEN).map_err(bad)?;
    limits::check_range("--batch", run.batch, 1, limits::MAX_BATCH).map_err(bad)?;
    limits::check_range("--seq-len", t, 1, limits::MAX_SEQ_LEN).map_err(bad)?;
    limits::check_range("--iters", run.iters, 1, limits::MAX_ITERS).map_err(bad)?;
    limits::check_range("--eval-every", run.eval_every, 1, limits::MAX_ITERS).map_err(bad)?;
    if let Some(m) = run.task.max_train {
        limits::check_range("--max-train", m, 1, limits::MAX_TRAIN_EXAMPLES).map_err(bad)?;
    }
    run.model.validate().map_err(bad)?;
    run.optim.validate().map_err(bad)
}

fn train(a: TrainArgs) -> Result<()> {
    limits::check_threads(a.device.device, a.device.threads)?;
    let iters = requested_iters(&a)?;
    let (run, resume) = match &a.resume {
        Some(path) => {
            let ck = checkpoint::load(path)?;
            let run = resumed_run(&a, &ck, path, iters)?;
            if let Some(p) = a.precision.filter(|&p| p != run.precision) {
                return Err(Error::invalid(
                    "--precision",
                    p,
                    format!("the checkpoint was trained with --precision {}, which a resumed run keeps", run.precision),
                ));
            }
            (run, Some((ck, path.clone())))
        }
        None => {
            let model = a.model.spec()?;
            let optim = a.optim.config(&model)?;
            let task = TaskSpec {
                kind: a.task,
                seq_len: a.seq_len,
                data: a.data.as_deref().map(absolute),
                seed: a.seed,
                max_train: a.max_train,
                eval_test: a.eval_test,
            };
            let run = RunSpec {
                task,
                model,
                optim,
                batch: a.batch,
                seed: a.seed,
                eval_every: a.eval_every,
                iters: iters.unwrap_or(2000),
                precision: a.precision.unwrap_or_default(),
            };
            (run, None)
        }
    };
    let dims = TaskDims::of(&run.task)?;
    let estimate = memory::estimate(&run.model, &dims, run.batch, a.checkpoint.is_some())?;
    limits::check_memory(a.device.device, &estimate)?;
    let _locks = outputs::check_and_lock(a.checkpoint.as_deref(), a.metrics.as_deref(), a.resume.as_deref())?;
    if let (Some((ck, _)), Some(m)) = (&resume, &a.metrics) {
        // Records after the checkpoint would be written again: drop them first.
        metrics::truncate_after(m, ck.iter)?;
    }
    let checkpoint = match &a.checkpoint {
        Some(path) => Some(Checkpointing {
            path: path.clone(),
            every: a.checkpoint_every.unwrap_or(run.eval_every),
            run: serde_json::to_string(&run).map_err(|e| Error::invalid("run", "specification", e.to_string()))?,
        }),
        None => None,
    };
    let cfg = TrainConfig {
        iters: run.iters,
        batch: run.batch,
        eval_every: run.eval_every,
        seed: run.seed,
        metrics: a.metrics.clone(),
        record_grad_norms: a.record_grad_norms,
        diagnostics: !a.no_diagnostics,
        progress: if a.quiet { Mode::Quiet } else { Mode::Auto },
        checkpoint,
    };
    if !(a.spike_factor.is_finite() && a.spike_factor > 1.0) {
        return Err(Error::invalid("--spike-factor", a.spike_factor, "must be a finite number above 1 (e.g. 10)"));
    }
    let dump = match &a.dump_trajectory {
        Some(dir) => {
            if resume.is_some() {
                return Err(Error::Inapplicable {
                    flag: "--dump-trajectory",
                    context: "--resume".into(),
                    hint: "a trajectory starts from the initial weights; dump a run from its start".into(),
                });
            }
            Some(DumpConfig {
                dir: dir.clone(),
                iters: a.dump_iters.unwrap_or(run.iters.min(100)),
                params_every: a.dump_params_every,
            })
        }
        None => None,
    };
    let keep_best = match (a.keep_best, &a.checkpoint) {
        (true, Some(path)) => Some(best_path(path)),
        _ => None,
    };
    let precision = run.precision;
    let t = run.task.seq_len.unwrap_or(run.task.kind.default_seq_len());
    let job = TrainJob { run, cfg, resume, keep_best, spike_factor: a.spike_factor, dump };
    let summary = match a.dtype {
        DtypeArg::F32 => job.run_f32(a.device.device, a.device.threads)?,
        DtypeArg::F64 if precision != Precision::Fp32 => {
            return Err(Error::Inapplicable {
                flag: "--precision",
                context: "--dtype f64".into(),
                hint: "f64 training computes every product in f64; drop --precision".into(),
            });
        }
        DtypeArg::F64 if a.device.device == DeviceKind::Cpu => job.run_cpu_f64(a.device.threads)?,
        DtypeArg::F64 => {
            return Err(Error::Inapplicable {
                flag: "--dtype f64",
                context: format!("--device {:?}", a.device.device).to_lowercase(),
                hint: "f64 training runs on the CPU backend only; use --device cpu".into(),
            });
        }
    };
    print_summary(&summary, t, a.json);
    match &summary.diverged {
        Some(why) if !a.allow_divergence => Err(Error::Diverged(format!(
            "{why} (the summary above records it; pass --allow-divergence to exit 0 anyway)"
        ))),
        _ => Ok(()),
    }
}

/// `run.safetensors` -> `run.best.safetensors`.
fn best_path(checkpoint: &std::path::Path) -> PathBuf {
    let stem = checkpoint.file_stem().map_or("checkpoint".into(), |s| s.to_string_lossy().into_owned());
    let ext = checkpoint.extension().map_or("safetensors".into(), |s| s.to_string_lossy().into_owned());
    checkpoint.with_file_name(format!("{stem}.best.{ext}"))
}

/// The task's length flag `T` and, where they differ (the copy task: `T + 20`), the steps a
/// sequence has: `"T 100, 120 steps"`; `"T 100"`.
fn length(t: usize, steps: usize) -> String {
    if t == steps { format!("T {t}") } else { format!("T {t}, {steps} steps") }
}

fn print_summary(s: &Summary, t: usize, json: bool) {
    println!(
        "{} on {} (hidden {}, {}): final loss {:.5} vs baseline {:.5}{}{}; {} in {:.1}s ({:.2} ms/iter) on {}{}",
        s.model,
        s.task,
        s.hidden,
        length(t, s.seq_len),
        s.loss,
        s.baseline,
        s.accuracy.map_or(String::new(), |a| format!(", accuracy {a:.4}")),
        s.bpc.map_or(String::new(), |b| format!(", {b:.4} bits/char")),
        count(s.iters, "iteration"),
        s.seconds,
        s.ms_per_iter,
        s.device,
        precision_note(s.precision),
    );
    if let Some(why) = &s.diverged {
        println!("DIVERGED: {why}");
    }
    if let Some(b) = &s.best {
        println!(
            "best evaluation at iteration {}: loss {:.5}{}{}",
            b.iter,
            b.loss,
            b.accuracy.map_or(String::new(), |a| format!(", accuracy {a:.4}")),
            b.bpc.map_or(String::new(), |v| format!(", {v:.4} bits/char")),
        );
    }
    let spikes = ortho_rnn::train::spikes::describe(&s.spikes);
    if !spikes.is_empty() {
        println!("{spikes}");
    }
    if json {
        println!("{}", serde_json::to_string(s).unwrap_or_default());
    }
}

fn bench_cmd(a: BenchArgs) -> Result<()> {
    limits::check_threads(a.device.device, a.device.threads)?;
    let spec = a.model.spec()?;
    let optim = a.optim.config(&spec)?;
    let dims = TaskDims::of(&TaskSpec::synthetic(TaskKind::Copy, a.seq_len, 1))?;
    limits::check_memory(a.device.device, &memory::estimate(&spec, &dims, a.batch, false)?)?;
    let wants_baseline = a.gemm != baselines::GemmBaseline::Ours || a.lu != baselines::LuBaseline::Ours;
    if wants_baseline {
        let DeviceKind::Cuda(gpu) = a.device.device else {
            return Err(Error::invalid(
                "--gemm/--lu",
                "a baseline",
                "cuBLAS and cuSOLVER run on a GPU: add --device cuda",
            ));
        };
        if let Some(tables) = baselines::compare_on_gpu(gpu, &spec, a.seq_len, a.batch, a.gemm, a.lu)? {
            print!("{tables}");
        }
    }
    let opts = bench::BenchOptions { profile: a.profile, predict: a.predict };
    let r = bench::bench_on(
        a.device.device,
        a.device.threads,
        a.precision,
        &spec,
        optim,
        a.seq_len,
        a.batch,
        a.iters,
        opts,
    )?;
    if a.json {
        println!("{}", serde_json::to_string(&r).unwrap_or_default());
    } else {
        println!(
            "{} hidden {} {} batch {} on {}{}: median {:.3} ms/iter (min {:.3}), {:.2} GFLOP/iter, {:.1} GFLOP/s; \
             training loss {:.5} -> {:.5}",
            r.model,
            r.hidden,
            length(r.seq_len, r.seq_len + 2 * ortho_rnn::tasks::copy::SYMBOLS),
            r.batch,
            r.device,
            precision_note(r.precision),
            r.median_ms,
            r.min_ms,
            r.flops_per_iter / 1e9,
            r.gflops,
            r.first_loss,
            r.last_loss,
        );
        if let Some(p) = &r.profile {
            println!(
                "per iteration: {:.1} kernel launches ({:.1} in graphs), {:.1} host syncs, {:.1} allocations, \
                 {:.0} B to the device, {:.0} B to the host, {:.3} GFLOP from launch shapes, {:.0} grid barriers",
                p.launches_per_iter,
                p.graph_kernels_per_iter,
                p.host_syncs_per_iter,
                p.allocs_per_iter,
                p.htod_bytes_per_iter,
                p.dtoh_bytes_per_iter,
                p.launch_flops_per_iter / 1e9,
                p.grid_barriers_per_iter
            );
            for (k, v) in &p.paths {
                println!("{k}: {v}");
            }
            if let (Some(g), Some(ms)) = (p.predict_gpu, p.predicted_ms) {
                println!("predicted on {} (roofline estimate, not a measurement): {ms:.3} ms/iter", g.name());
            }
        }
    }
    Ok(())
}

/// ` (tf32 products)` after a device name; nothing for the default f32.
fn precision_note(p: Precision) -> String {
    if p == Precision::Fp32 { String::new() } else { format!(" ({p} products)") }
}

fn devices() -> Result<()> {
    use ortho_rnn::backend::cuda::{cudarc_driver, emu};
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let simd = if ortho_rnn::backend::cpu::fastmath::dispatch() { "AVX2+FMA" } else { "baseline SIMD" };
    println!("cpu: {threads} threads ({simd} element-wise kernels)");
    match cudarc_driver::nvrtc_version() {
        Some((major, minor)) => {
            let includes = cudarc_driver::nvrtc_include_paths();
            let headers = if includes.is_empty() {
                "cuda_fp16.h NOT found".to_string()
            } else {
                format!("headers in {}", includes.join(", "))
            };
            println!("nvrtc: {major}.{minor} ({headers})");
        }
        None => {
            println!("nvrtc: not found (pip install nvidia-cuda-nvrtc-cu12 and add its lib folder to LD_LIBRARY_PATH)")
        }
    }
    match cudarc_driver::list_gpus() {
        Ok(gpus) if gpus.is_empty() => println!("cuda: libcuda found, but no CUDA device"),
        Ok(gpus) => {
            for g in gpus {
                let (ma, mi) = g.compute_capability;
                println!(
                    "cuda:{}: {} ({:.1} GiB, compute capability {ma}.{mi})",
                    g.ordinal,
                    g.name,
                    g.memory_bytes as f64 / (1u64 << 30) as f64
                );
            }
        }
        Err(e) => println!("cuda: none ({e})"),
    }
    println!(
        "emu: the CUDA kernels compiled for the host ({} entry points), --device emu",
        emu::registered_kernels().len()
    );
    println!(
        "     (its name's \"resume order in-order\": a block's threads resume at each barrier, and a grid's \
         blocks run, in ascending index)"
    );
    Ok(())
}

/// Runs `plot`: every directory is drawn; failures are reported and make the command fail.
fn plot(a: PlotArgs) -> Result<()> {
    let mut errors = Vec::new();
    for dir in &a.dirs {
        match ortho_rnn::plot::plot_run_dir_with_warnings(dir) {
            Ok((files, warnings)) => {
                for w in &warnings {
                    eprintln!("warning: {w}");
                }
                let figures = files.iter().filter(|f| f.extension().is_some_and(|e| e == "svg")).count();
                println!(
                    "{}: {figures} figures ({} files) in {}",
                    dir.display(),
                    files.len(),
                    dir.join(ortho_rnn::plot::PLOTS_SUBDIR).display()
                );
            }
            Err(e) => errors.push((dir, e)),
        }
    }
    if a.dirs.len() == 1 && errors.len() == 1 {
        return Err(errors.pop().map(|(_, e)| e).expect("one error"));
    }
    for (_, e) in &errors {
        eprintln!("error: {e}");
    }
    match errors.first() {
        None => Ok(()),
        Some((dir, _)) => Err(Error::invalid(
            "RUN_DIR",
            dir.display(),
            format!("{} of {} directories could not be plotted (see above)", errors.len(), a.dirs.len()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every flag that takes a value says its default in `--help`: clap's `[default: ...]`, or one
    /// written into the help text where it depends on other flags (or is "none").
    #[test]
    fn every_flag_shows_its_default() {
        let cli = Cli::command();
        let mut missing = Vec::new();
        for sub in cli.get_subcommands() {
            for arg in sub.get_arguments().filter(|a| !a.is_positional() && !a.is_hide_set()) {
                if !arg.get_action().takes_values() || !arg.get_default_values().is_empty() {
                    continue;
                }
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                if !help.contains("[default: ") {
                    missing.push(format!("{} --{}", sub.get_name(), arg.get_long().unwrap_or("?")));
                }
            }
        }
        assert!(missing.is_empty(), "flags whose --help shows no default: {missing:?}");
    }

    #[test]
    fn counts_and_lengths_read_right() {
        assert_eq!(count(1, "iteration"), "1 iteration");
        assert_eq!(count(2000, "iteration"), "2000 iterations");
        assert_eq!(length(100, 120), "T 100, 120 steps");
        assert_eq!(length(784, 784), "T 784");
    }
}
