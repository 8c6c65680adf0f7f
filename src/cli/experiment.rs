//! `ortho-rnn experiment NAME [--quick|--full|--smoke]`: run a named sweep that reproduces a paper's
//! table or figure, and `ortho-rnn experiment list`.

use super::args::DeviceArgs;
use super::bounds;
use ortho_rnn::device::DeviceKind;
use ortho_rnn::error::{Error, Result};
use ortho_rnn::experiments::cluster::{self, Shard, SlurmJob, SlurmOptions};
use ortho_rnn::experiments::{self, EXPERIMENTS, Settings, Size, runner};
use std::path::PathBuf;

/// Arguments of `experiment`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Run `ortho-rnn experiment list` for the experiments, what they reproduce and their sizes.")]
pub struct ExperimentArgs {
    /// Experiment name (see `ortho-rnn experiment list`), or `list`.
    pub name: String,
    /// Minutes on 2 CPU cores: shorter sequences, fewer iterations, smaller models, data subsets;
    /// not the paper's protocol [the default].
    #[arg(long, group = "size")]
    pub quick: bool,
    /// The paper's protocol (hours to days; meant for a GPU).
    #[arg(long, group = "size")]
    pub full: bool,
    /// A tiny size for CI (seconds); generates a synthetic data set when --data is not given.
    #[arg(long, group = "size")]
    pub smoke: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Output directory [default: runs/NAME].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Data directory: MNIST IDX files (Fashion-MNIST works too) or PTB text files [default: none;
    /// the MNIST and PTB experiments need it, except with --smoke].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The data set's name in the results [default: inferred from the --data directory].
    #[arg(long, requires = "data")]
    pub dataset_name: Option<String>,
    /// No progress bars (one line per run is still printed).
    #[arg(long)]
    pub quiet: bool,
    /// Runs per cell, with seeds 1..=N; tables report the median and range, plots the median with
    /// a band [default: 1 with --smoke, 3 with --quick, 5 with --full].
    #[arg(long, value_parser = bounds::seeds)]
    pub seeds: Option<usize>,
    /// Run this many runs at once (on --device, or one per --devices entry); the CPU threads are
    /// split between concurrent cpu (and emu) runs [default: 1, or one per --devices entry].
    #[arg(long, value_parser = bounds::jobs, help_heading = "Parallel and cluster runs")]
    pub jobs: Option<usize>,
    /// Devices to run on concurrently, one run per entry at a time: cuda:0,cuda:1,cuda:2,cuda:3, or
    /// cpu (with --jobs N), or emu,emu [default: --device].
    #[arg(long, conflicts_with = "device", help_heading = "Parallel and cluster runs")]
    pub devices: Option<String>,
    /// Run only the K-th of N disjoint subsets of the runs (runs i with i mod N = K-1), so that N
    /// processes sharing --out cover the sweep once; the last shard to finish writes the results
    /// [default: 1/1, every run].
    #[arg(long, value_parser = bounds::shard, help_heading = "Parallel and cluster runs")]
    pub shard: Option<Shard>,
    /// Run nothing: rebuild results.md, results.csv and the plots from the complete runs in --out,
    /// and name the missing ones.
    #[arg(long, conflicts_with_all = ["shard", "slurm"], help_heading = "Parallel and cluster runs")]
    pub report: bool,
    /// A shard does not write the results even when it is the last to finish (the Slurm array's
    /// report job does).
    #[arg(long, requires = "shard", help_heading = "Parallel and cluster runs")]
    pub no_report: bool,
    /// Write Slurm batch scripts into --out (an array of --shards tasks and a report job that runs
    /// after them) and print the sbatch commands; add --submit to submit them.
    #[arg(long, conflicts_with = "shard", help_heading = "Parallel and cluster runs")]
    pub slurm: bool,
    /// With --slurm: submit the scripts with sbatch.
    #[arg(long, requires = "slurm", help_heading = "Parallel and cluster runs")]
    pub submit: bool,
    /// With --slurm: array tasks (shards) [default: one per run].
    #[arg(long, requires = "slurm", value_parser = bounds::jobs, help_heading = "Parallel and cluster runs")]
    pub shards: Option<usize>,
    /// With --slurm: sbatch --partition [default: the cluster's default partition].
    #[arg(long, requires = "slurm", help_heading = "Parallel and cluster runs")]
    pub partition: Option<String>,
    /// With --slurm: sbatch --account [default: your default account].
    #[arg(long, requires = "slurm", help_heading = "Parallel and cluster runs")]
    pub account: Option<String>,
    /// With --slurm: GPUs per array task (sbatch --gpus-per-task) [default: none requested].
    #[arg(long, requires = "slurm", value_parser = clap::value_parser!(u32).range(1..=64), help_heading = "Parallel and cluster runs")]
    pub gpus_per_task: Option<u32>,
    /// With --slurm: CPU cores per array task (sbatch --cpus-per-task) [default: Slurm's, 1].
    #[arg(long, requires = "slurm", value_parser = clap::value_parser!(u32).range(1..=4096), help_heading = "Parallel and cluster runs")]
    pub cpus_per_task: Option<u32>,
    /// With --slurm: memory per array task (sbatch --mem, e.g. 16G) [default: the partition's].
    #[arg(long, requires = "slurm", help_heading = "Parallel and cluster runs")]
    pub mem: Option<String>,
    /// With --slurm: time limit of each array task, HH:MM:SS or D-HH:MM:SS (sbatch --time)
    /// [default: the partition's].
    #[arg(long, requires = "slurm", help_heading = "Parallel and cluster runs")]
    pub time: Option<String>,
    /// With --slurm: at most this many array tasks at once (--array=0-(N-1)%M) [default: no limit].
    #[arg(long, requires = "slurm", value_parser = bounds::jobs, help_heading = "Parallel and cluster runs")]
    pub max_parallel: Option<usize>,
    /// With --slurm: a further sbatch option in long form, verbatim (repeatable; e.g. --sbatch=--qos=long)
    /// [default: none].
    #[arg(long, requires = "slurm", allow_hyphen_values = true, help_heading = "Parallel and cluster runs")]
    pub sbatch: Vec<String>,
}

impl ExperimentArgs {
    fn size(&self) -> Size {
        if self.full {
            Size::Full
        } else if self.smoke {
            Size::Smoke
        } else {
            Size::Quick
        }
    }
}

/// Prints the experiments, what they reproduce, and their sizes.
fn list() -> Result<()> {
    for e in EXPERIMENTS {
        println!("{}", e.name);
        println!("    reproduces: {}", e.reproduces);
        println!("    sweeps:     {}", e.sweeps);
        if let Some(k) = e.needs {
            println!("    data:       --data DIR with {} (--smoke generates a tiny set)", k.describe());
        }
        for line in e.size_lines()? {
            println!("    {line}");
        }
    }
    Ok(())
}

/// The command line as typed (arguments with spaces quoted), for results.md.
fn command_line() -> String {
    std::env::args()
        .enumerate()
        .map(|(i, a)| {
            let a = if i == 0 {
                std::path::Path::new(&a).file_name().map_or(a.clone(), |n| n.to_string_lossy().into_owned())
            } else {
                a
            };
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"$`\\".contains(c)) {
                format!("'{}'", a.replace('\'', "'\\''"))
            } else {
                a
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The devices of `--devices`.
fn devices(a: &ExperimentArgs) -> Result<Vec<DeviceKind>> {
    match &a.devices {
        Some(list) => DeviceKind::parse_list(list),
        None => Ok(Vec::new()),
    }
}

/// The arguments a Slurm array task repeats: size, data, devices and threads (not --out, --shard
/// or the Slurm flags).
fn forwarded_args(a: &ExperimentArgs) -> Result<Vec<String>> {
    let mut v = vec![format!("--{}", a.size().as_str())];
    if let Some(d) = &a.data {
        let abs = std::path::absolute(d).map_err(|e| Error::io(d, e))?;
        v.extend(["--data".to_string(), abs.to_string_lossy().into_owned()]);
    }
    if let Some(n) = &a.dataset_name {
        v.extend(["--dataset-name".to_string(), n.clone()]);
    }
    match &a.devices {
        Some(d) => v.extend(["--devices".to_string(), d.clone()]),
        None => v.extend(["--device".to_string(), a.device.device.to_string()]),
    }
    if a.device.threads != 0 {
        v.extend(["--threads".to_string(), a.device.threads.to_string()]);
    }
    if let Some(j) = a.jobs {
        v.extend(["--jobs".to_string(), j.to_string()]);
    }
    Ok(v)
}

/// `--slurm`: writes the scripts, prints the commands, submits with `--submit`.
fn slurm(a: &ExperimentArgs, settings: &Settings) -> Result<()> {
    let plan = experiments::find(&a.name)?.plan(settings)?;
    let runs = plan.runs.len();
    let shards = a.shards.unwrap_or(runs).min(runs).max(1);
    let out = std::path::absolute(&settings.out).map_err(|e| Error::io(&settings.out, e))?;
    std::fs::create_dir_all(&out)
        .map_err(|e| Error::invalid("--out", out.display(), format!("cannot create the directory: {e}")))?;
    let binary = std::env::current_exe().map_err(|e| Error::invalid("--slurm", "ortho-rnn", e.to_string()))?;
    let workdir = std::env::current_dir().map_err(|e| Error::invalid("--slurm", ".", e.to_string()))?;
    let job = SlurmJob {
        experiment: a.name.clone(),
        shards,
        binary,
        args: forwarded_args(a)?,
        out: out.clone(),
        workdir,
        options: SlurmOptions {
            partition: a.partition.clone(),
            account: a.account.clone(),
            gpus_per_task: a.gpus_per_task,
            cpus_per_task: a.cpus_per_task,
            mem: a.mem.clone(),
            time: a.time.clone(),
            max_parallel: a.max_parallel,
            extra: a.sbatch.clone(),
        },
    };
    let (array, report) = job.write()?;
    println!(
        "{}: {runs} runs in {shards} array tasks; scripts {} and {}",
        plan.name,
        array.display(),
        report.display()
    );
    println!("the compute nodes run {} and must see {} (a shared filesystem)", job.binary.display(), out.display());
    if a.submit {
        let (array_id, report_id) = cluster::submit(&array, &report)?;
        println!("submitted: array job {array_id} ({shards} tasks), report job {report_id} (after the array)");
        println!("watch: squeue -j {array_id},{report_id}; logs in {}", out.join(cluster::SLURM_LOG_DIR).display());
        println!("results: {} once job {report_id} has run", out.join(experiments::report::RESULTS_MD).display());
    } else {
        println!("submit with:\n  {}", cluster::submit_commands(&array, &report));
    }
    Ok(())
}

/// Runs `experiment`.
pub fn run(a: ExperimentArgs) -> Result<()> {
    if a.name == "list" {
        return list();
    }
    let devices = devices(&a)?;
    for d in devices.iter().chain(std::iter::once(&a.device.device)) {
        ortho_rnn::limits::check_threads(*d, a.device.threads)?;
    }
    let settings = Settings {
        size: a.size(),
        data: a.data.clone(),
        dataset_name: a.dataset_name.clone(),
        out: a.out.clone().unwrap_or_else(|| PathBuf::from("runs").join(&a.name)),
        seeds: a.seeds,
    };
    let mut log = |line: &str| println!("{line}");
    if a.slurm {
        return slurm(&a, &settings);
    }
    if a.report {
        let report = experiments::report_only(&a.name, &settings, &command_line(), &mut log)?;
        return finish(&report, &settings, a.shard);
    }
    let opts = runner::Options {
        device: a.device.device,
        threads: a.device.threads,
        quiet: a.quiet,
        devices,
        jobs: a.jobs.unwrap_or(1),
        shard: a.shard.unwrap_or(Shard::ALL),
    };
    opts.slots()?;
    let report = experiments::run(&a.name, &settings, &opts, !a.no_report, &command_line(), &mut log)?;
    let c = report.counts();
    let shard = a.shard.map_or(String::new(), |s| format!(" (shard {s})"));
    println!(
        "{}{shard}: {} runs: {} ran, {} skipped (done earlier), {} diverged, {} failed{}",
        report.plan.name,
        c.mine,
        c.ran,
        c.skipped,
        c.diverged,
        c.failed,
        if c.busy > 0 { format!(", {} being run by another process", c.busy) } else { String::new() }
    );
    finish(&report, &settings, a.shard)?;
    if c.failed > 0 {
        return Err(Error::invalid(
            "experiment",
            &a.name,
            format!("{} run(s) failed (see results.md); run the same command again to retry them", c.failed),
        ));
    }
    Ok(())
}

/// Prints where the results are and which runs are missing.
fn finish(report: &experiments::SweepReport, settings: &Settings, shard: Option<Shard>) -> Result<()> {
    match (&report.results_md, &report.results_csv) {
        (Some(md), Some(csv)) => println!(
            "{}: results in {} and {}, {} figures in {}",
            report.plan.name,
            md.display(),
            csv.display(),
            report.plots.len(),
            settings.out.join(ortho_rnn::plot::PLOTS_SUBDIR).display()
        ),
        _ if shard.is_some() => println!(
            "{}: results not written yet (other shards are not finished, or --no-report); `ortho-rnn experiment {} \
             --report --out {}` writes them from the complete runs",
            report.plan.name,
            report.plan.name,
            settings.out.display()
        ),
        _ => {}
    }
    if !report.missing.is_empty() {
        println!(
            "{}: {} of {} runs not complete (yet): {}",
            report.plan.name,
            report.missing.len(),
            report.plan.runs.len(),
            report.missing.join(", ")
        );
    }
    Ok(())
}
