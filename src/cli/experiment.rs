//! `ortho-rnn experiment NAME [--quick|--full|--smoke]`: run a named sweep that reproduces a paper's
//! table or figure, and `ortho-rnn experiment list`.

use super::args::DeviceArgs;
use ortho_rnn::error::{Error, Result};
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
    #[arg(long)]
    pub seeds: Option<usize>,
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

/// Runs `experiment`.
pub fn run(a: ExperimentArgs) -> Result<()> {
    if a.name == "list" {
        return list();
    }
    ortho_rnn::limits::check_threads(a.device.device, a.device.threads)?;
    let settings = Settings {
        size: a.size(),
        data: a.data.clone(),
        dataset_name: a.dataset_name.clone(),
        out: a.out.clone().unwrap_or_else(|| PathBuf::from("runs").join(&a.name)),
        seeds: a.seeds,
    };
    let opts = runner::Options { device: a.device.device, threads: a.device.threads, quiet: a.quiet };
    let mut log = |line: &str| println!("{line}");
    let report = experiments::run(&a.name, &settings, &opts, &command_line(), &mut log)?;
    let (ran, skipped, diverged, failed) = report.counts();
    println!(
        "{}: {} runs: {ran} ran, {skipped} skipped (done earlier), {diverged} diverged, {failed} failed; results in {} \
         and {}, {} figures in {}",
        report.plan.name,
        report.outcomes.len(),
        report.results_md.display(),
        report.results_csv.display(),
        report.plots.len(),
        settings.out.join(ortho_rnn::plot::PLOTS_SUBDIR).display()
    );
    if failed > 0 {
        return Err(Error::invalid(
            "experiment",
            &a.name,
            format!("{failed} run(s) failed (see results.md); run the same command again to retry them"),
        ));
    }
    Ok(())
}
