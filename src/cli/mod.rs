//! The command-line front end: `train`, `bench`, `devices`, `experiment` and `plot`.

mod args;
mod experiment;

use args::{DeviceArgs, ModelArgs, OptimArgs};
use clap::{Parser, Subcommand};
use ortho_rnn::backend::Backend;
use ortho_rnn::device::{BackendJob, dispatch};
use ortho_rnn::error::{Error, Result};
use ortho_rnn::optim::OptimConfig;
use ortho_rnn::tasks::{TaskKind, TaskSpec};
use ortho_rnn::train::build::ModelSpec;
use ortho_rnn::train::checkpoint::{self, Checkpoint};
use ortho_rnn::train::progress::Mode;
use ortho_rnn::train::{Checkpointing, RunSpec, Summary, TrainConfig, Trainer, bench};
use std::path::PathBuf;

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
    /// Sequence length T (the copy task's delay: its sequences have T + 20 steps; PTB: the longest sentence kept, 75 or 300).
    #[arg(long)]
    seq_len: Option<usize>,
    /// Directory with the task's data files (MNIST IDX, PTB text).
    #[arg(long)]
    data: Option<PathBuf>,
    /// File-backed tasks: train on the first N examples only.
    #[arg(long)]
    max_train: Option<usize>,
    /// File-backed tasks: evaluate on the test split instead of the validation split.
    #[arg(long)]
    eval_test: bool,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    optim: OptimArgs,
    /// Batch size.
    #[arg(long, default_value_t = 50)]
    batch: usize,
    /// Training iterations.
    #[arg(long, conflicts_with = "epochs")]
    iters: Option<usize>,
    /// Training epochs of --iters-per-epoch iterations (the papers' convention: 100).
    #[arg(long)]
    epochs: Option<usize>,
    /// Iterations per epoch with --epochs.
    #[arg(long, default_value_t = 100)]
    iters_per_epoch: usize,
    /// Evaluate every this many iterations.
    #[arg(long, default_value_t = 100)]
    eval_every: usize,
    /// Seed of data and initialization.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[command(flatten)]
    device: DeviceArgs,
    /// Append one JSON line per evaluation to this file.
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
    /// Write a checkpoint (safetensors, atomically replaced) to this file.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Checkpoint every this many iterations (and at the end) [default: --eval-every].
    #[arg(long, requires = "checkpoint")]
    checkpoint_every: Option<usize>,
    /// Continue the run stored in this checkpoint: task, model, optimizer and seed come from it;
    /// --iters/--epochs may extend it. Continues bit-identically on the CPU.
    #[arg(long)]
    resume: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct BenchArgs {
    /// Copy-task delay T (sequences of T + 20 steps).
    #[arg(long, default_value_t = 100)]
    seq_len: usize,
    /// Batch size.
    #[arg(long, default_value_t = 50)]
    batch: usize,
    /// Timed iterations (after two warm-up iterations).
    #[arg(long, default_value_t = 20)]
    iters: usize,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    optim: OptimArgs,
    #[command(flatten)]
    device: DeviceArgs,
    /// Print a one-line JSON summary.
    #[arg(long)]
    json: bool,
    /// Count device activity per iteration: kernel launches, host synchronizations, allocations,
    /// bytes to and from the host, flops from the launch shapes, and which paths ran (cuda, emu).
    #[arg(long)]
    profile: bool,
    /// Predict the time of an iteration on this GPU from the profile (h100, h200, a100): a roofline
    /// of documented peak rates plus documented per-launch and per-sync costs (an estimate).
    #[arg(long, value_parser = parse_gpu_model)]
    predict: Option<ortho_rnn::backend::profile::GpuModel>,
}

fn parse_gpu_model(s: &str) -> std::result::Result<ortho_rnn::backend::profile::GpuModel, String> {
    ortho_rnn::backend::profile::GpuModel::parse(s).ok_or_else(|| format!("unknown GPU `{s}`: use h100, h200 or a100"))
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

struct TrainJob {
    run: RunSpec,
    cfg: TrainConfig,
    resume: Option<(Checkpoint, PathBuf)>,
}

impl BackendJob for TrainJob {
    type Out = Summary;
    fn run<B: Backend>(self, b: &B) -> Result<Summary> {
        let task = self.run.task.build()?;
        let model = self.run.model.build(b, task.as_ref(), self.run.seed)?;
        let mut trainer = Trainer::new(b, model, self.run.optim, task.as_ref(), self.cfg)?;
        if let Some((ck, path)) = &self.resume {
            checkpoint::restore(&mut trainer, ck, path)?;
        }
        trainer.run(|_, _| Ok(()))
    }
}

fn train(a: TrainArgs) -> Result<()> {
    let iters = match (a.iters, a.epochs) {
        (Some(i), None) => Some(i),
        (None, Some(e)) => {
            if a.iters_per_epoch == 0 {
                return Err(Error::invalid("--iters-per-epoch", 0, "must be at least 1"));
            }
            Some(e * a.iters_per_epoch)
        }
        (None, None) => None,
        (Some(_), Some(_)) => unreachable!("clap rejects --iters with --epochs"),
    };
    let (run, resume) = match &a.resume {
        Some(path) => {
            let ck = checkpoint::load(path)?;
            let mut run: RunSpec = serde_json::from_str(&ck.run)
                .map_err(|e| Error::bad_file(path, format!("the stored run specification does not parse: {e}")))?;
            if let Some(i) = iters {
                if i < ck.iter {
                    return Err(Error::invalid(
                        "--iters",
                        i,
                        format!("the checkpoint has already trained {} iterations", ck.iter),
                    ));
                }
                run.iters = i;
            }
            (run, Some((ck, path.clone())))
        }
        None => {
            let model = a.model.spec()?;
            let optim = a.optim.config(&model)?;
            let task = TaskSpec {
                kind: a.task,
                seq_len: a.seq_len,
                data: a.data.clone(),
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
            };
            (run, None)
        }
    };
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
    let summary = dispatch(a.device.device, a.device.threads, TrainJob { run, cfg, resume })?;
    print_summary(&summary, a.json);
    Ok(())
}

fn print_summary(s: &Summary, json: bool) {
    println!(
        "{} on {} (hidden {}, T {}): final loss {:.5} vs baseline {:.5}{}{}; {} iterations in {:.1}s ({:.2} ms/iter) on {}",
        s.model,
        s.task,
        s.hidden,
        s.seq_len,
        s.loss,
        s.baseline,
        s.accuracy.map_or(String::new(), |a| format!(", accuracy {a:.4}")),
        s.bpc.map_or(String::new(), |b| format!(", {b:.4} bits/char")),
        s.iters,
        s.seconds,
        s.ms_per_iter,
        s.device,
    );
    if json {
        println!("{}", serde_json::to_string(s).unwrap_or_default());
    }
}

struct BenchJob {
    spec: ModelSpec,
    optim: OptimConfig,
    seq_len: usize,
    batch: usize,
    iters: usize,
    opts: bench::BenchOptions,
}

impl BackendJob for BenchJob {
    type Out = bench::BenchResult;
    fn run<B: Backend>(self, b: &B) -> Result<bench::BenchResult> {
        bench::bench_with(b, &self.spec, self.optim, self.seq_len, self.batch, self.iters, self.opts)
    }
}

fn bench_cmd(a: BenchArgs) -> Result<()> {
    if a.iters == 0 || a.batch == 0 || a.seq_len == 0 {
        return Err(Error::invalid(
            "bench",
            format!("--iters {} --batch {} --seq-len {}", a.iters, a.batch, a.seq_len),
            "all must be at least 1",
        ));
    }
    let spec = a.model.spec()?;
    let optim = a.optim.config(&spec)?;
    let opts = bench::BenchOptions { profile: a.profile, predict: a.predict };
    let job = BenchJob { spec, optim, seq_len: a.seq_len, batch: a.batch, iters: a.iters, opts };
    let r = dispatch(a.device.device, a.device.threads, job)?;
    if a.json {
        println!("{}", serde_json::to_string(&r).unwrap_or_default());
    } else {
        println!(
            "{} hidden {} T {} batch {} on {}: median {:.3} ms/iter (min {:.3}), {:.2} GFLOP/iter, {:.1} GFLOP/s",
            r.model,
            r.hidden,
            r.seq_len,
            r.batch,
            r.device,
            r.median_ms,
            r.min_ms,
            r.flops_per_iter / 1e9,
            r.gflops
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
    Ok(())
}

/// Runs `plot`: every directory is drawn; failures are reported and make the command fail.
fn plot(a: PlotArgs) -> Result<()> {
    let mut errors = Vec::new();
    for dir in &a.dirs {
        match ortho_rnn::plot::plot_run_dir(dir) {
            Ok(files) => {
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
