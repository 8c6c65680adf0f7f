//! `ortho-rnn experiment`: every experiment runs at `--smoke` size and writes its results, figures
//! and per-run files; a second invocation skips every finished run without touching it; an
//! interrupted run resumes from its checkpoint; bad names and missing data are clear errors.
//! Set `ORTHO_RNN_KEEP_RUNS=1` to keep the output directories for inspection.

use ortho_rnn::experiments::runner::{self, ConfigFile, Failure};
use ortho_rnn::experiments::spec::Job;
use ortho_rnn::experiments::{self, Settings, Size, data::DataSource};
use ortho_rnn::train::metrics::EvalRecord;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

#[path = "common/run_dirs.rs"]
mod run_dirs;
use run_dirs::{cleanup, ortho_rnn};

fn scratch(name: &str) -> PathBuf {
    run_dirs::scratch("exp", name)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `(modified time, bytes)` of every run's metrics file.
fn metrics_snapshot(out: &Path) -> HashMap<PathBuf, (SystemTime, Vec<u8>)> {
    let mut snap = HashMap::new();
    for entry in std::fs::read_dir(out).unwrap() {
        let p = entry.unwrap().path().join(runner::METRICS_FILE);
        if p.is_file() {
            let modified = std::fs::metadata(&p).unwrap().modified().unwrap();
            snap.insert(p.clone(), (modified, std::fs::read(&p).unwrap()));
        }
    }
    snap
}

/// Checks one experiment's output directory after a smoke run.
fn check_outputs(name: &str, out: &Path) {
    let plan = experiments::find(name)
        .unwrap()
        .plan(&Settings { size: Size::Smoke, out: out.to_path_buf(), ..Default::default() })
        .unwrap();
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(md.contains("smoke mode"), "{name}: results.md must say it is not the paper's protocol");
    assert!(md.contains("| paper"), "{name}: results.md must have the paper's column(s)");
    assert!(md.contains("--smoke"), "{name}: results.md must record the command");

    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let mut lines = csv.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("experiment,size,group,label,run,status"), "{name}: {header}");
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), plan.runs.len(), "{name}: one CSV row per run");
    for (row, run) in rows.iter().zip(&plan.runs) {
        assert!(row.contains(&run.config.name), "{name}: row {row} should name {}", run.config.name);
        assert!(row.contains(",finished,") || row.contains(",diverged"), "{name}: {row}");
    }

    for run in &plan.runs {
        let dir = out.join(&run.config.name);
        let config: ConfigFile =
            serde_json::from_str(&std::fs::read_to_string(dir.join(runner::CONFIG_FILE)).unwrap()).unwrap();
        assert_eq!(config.config, run.config, "{name}: config.json holds the run's specification");
        let summary = dir.join(runner::SUMMARY_FILE);
        if summary.is_file() {
            let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
            assert!(json.is_object(), "{name}: {}", summary.display());
        } else {
            let f: Failure =
                serde_json::from_str(&std::fs::read_to_string(dir.join(runner::DIVERGED_FILE)).unwrap()).unwrap();
            assert!(!f.error.is_empty());
        }
        if let Job::Train(_) = run.config.job {
            let (records, bad) = experiments::report::read_records(&dir.join(runner::METRICS_FILE));
            assert!(!records.is_empty() && bad == 0, "{name}/{}: metrics.jsonl", run.config.name);
        }
    }
    let pngs = std::fs::read_dir(out.join("plots"))
        .map(|d| d.filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "png")).count())
        .unwrap_or(0);
    if name == "runtime" {
        assert_eq!(pngs, 0, "runtime: a table only");
    } else {
        assert!(pngs > 0, "{name}: no figures in plots/");
        assert!(md.contains("plots/"), "{name}: results.md lists the figures");
    }
}

#[test]
fn every_experiment_runs_at_smoke_size_and_resumes_by_skipping() {
    let root = scratch("smoke");
    for name in experiments::names() {
        let out = root.join(name);
        let o = out.to_str().unwrap();
        let first = ortho_rnn(&["experiment", name, "--smoke", "--quiet", "--threads", "2", "--out", o]);
        assert!(first.status.success(), "{name}: {}\n{}", text(&first.stdout), text(&first.stderr));
        let stdout = text(&first.stdout);
        assert!(stdout.contains("smoke mode"), "{name}: says it is smoke mode");
        check_outputs(name, &out);

        let before = metrics_snapshot(&out);
        let second = ortho_rnn(&["experiment", name, "--smoke", "--quiet", "--threads", "2", "--out", o]);
        assert!(second.status.success(), "{name}: {}", text(&second.stderr));
        let stdout = text(&second.stdout);
        let e = experiments::find(name).unwrap();
        let runs =
            e.plan_with(Size::Smoke, e.needs.map(|k| DataSource::placeholder(k, Size::Smoke))).unwrap().runs.len();
        assert_eq!(stdout.matches(": skipped").count(), runs, "{name}: every run skipped:\n{stdout}");
        assert!(!stdout.contains(": running"), "{name}: nothing runs again:\n{stdout}");
        assert_eq!(metrics_snapshot(&out), before, "{name}: metrics files untouched");
        check_outputs(name, &out);
    }
    // The papers' numbers appear beside ours.
    let md = |name: &str| std::fs::read_to_string(root.join(name).join("results.md")).unwrap();
    assert!(md("mnist-margins").contains("94.10") && md("mnist-margins").contains("Table 1"));
    assert!(md("pmnist-margins").contains("91.44") && md("pmnist-margins").contains("Table 2"));
    assert!(md("ptb-margins").contains("2.04") && md("ptb-margins").contains("45.35"));
    assert!(md("runtime").contains("711.2") && md("runtime").contains("| 7.5 |"));
    assert!(md("dtriv").contains("4.71 (n=224)"));
    assert!(md("gain-reg").contains("synthetic"), "smoke data is named as synthetic");
    cleanup(&root);
}

#[test]
fn an_interrupted_run_resumes_from_its_checkpoint() {
    use ortho_rnn::backend::cpu::Cpu;
    use ortho_rnn::train::progress::Mode;
    use ortho_rnn::train::{Checkpointing, TrainConfig, Trainer};

    let root = scratch("resume");
    let out = root.join("adding");
    let o = out.to_str().unwrap();
    let args = ["experiment", "adding-margins", "--smoke", "--quiet", "--threads", "1", "--out", o];
    assert!(ortho_rnn(&args).status.success());
    let plan = experiments::find("adding-margins").unwrap().plan_with(Size::Smoke, None).unwrap();
    let run = &plan.runs[1];
    let dir = out.join(&run.config.name);
    let metrics = dir.join(runner::METRICS_FILE);
    let (original, _) = experiments::report::read_records(&metrics);

    // Simulate a kill at iteration 10: the checkpoint of the same run after 10 of its 20 iterations.
    let Job::Train(spec) = &run.config.job else { panic!("a training run") };
    let task = spec.task.build().unwrap();
    let full = spec.resolve(task.as_ref()).unwrap();
    let b = Cpu::<f32>::new(1);
    let model = full.model.build(&b, task.as_ref(), full.seed).unwrap();
    let cfg = TrainConfig {
        iters: 10,
        batch: full.batch,
        eval_every: full.eval_every,
        seed: full.seed,
        metrics: None,
        record_grad_norms: false,
        diagnostics: true,
        progress: Mode::Quiet,
        checkpoint: Some(Checkpointing {
            path: dir.join(runner::CHECKPOINT_FILE),
            every: 10,
            run: serde_json::to_string(&full).unwrap(),
        }),
    };
    let mut t = Trainer::new(&b, model, full.optim, task.as_ref(), cfg).unwrap();
    t.run(|_, _| Ok(())).unwrap();
    std::fs::remove_file(dir.join(runner::SUMMARY_FILE)).unwrap();

    let again = ortho_rnn(&args);
    assert!(again.status.success(), "{}", text(&again.stderr));
    let stdout = text(&again.stdout);
    assert!(stdout.contains("resuming from the checkpoint at iteration 10"), "{stdout}");
    assert_eq!(stdout.matches(": skipped").count(), plan.runs.len() - 1, "{stdout}");
    assert!(dir.join(runner::SUMMARY_FILE).is_file());
    let (resumed, _) = experiments::report::read_records(&metrics);
    let key = |r: &EvalRecord| (r.iter, r.loss.to_bits(), r.mse.map(f64::to_bits));
    assert_eq!(
        resumed.iter().map(key).collect::<Vec<_>>(),
        original.iter().map(key).collect::<Vec<_>>(),
        "the resumed run's records continue bit-identically on the CPU"
    );
    cleanup(&root);
}

#[test]
fn unknown_experiment_lists_the_valid_names() {
    let o = ortho_rnn(&["experiment", "copy-margin", "--smoke"]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    for name in experiments::names() {
        assert!(err.contains(name), "the message should list {name}: {err}");
    }
}

#[test]
fn missing_data_says_where_to_get_it() {
    let root = scratch("nodata");
    for (name, hint) in [("mnist-margins", "fashion-mnist"), ("ptb-margins", "simple-examples"), ("dtriv", "mnist")] {
        let out = root.join(name);
        let o = ortho_rnn(&["experiment", name, "--quick", "--out", out.to_str().unwrap()]);
        assert!(!o.status.success(), "{name} without --data must fail");
        let err = text(&o.stderr);
        assert!(err.contains("--data") && err.contains(hint) && err.contains("--smoke"), "{name}: {err}");
        assert!(!out.exists(), "{name}: nothing is written before the data is found");
    }
    // A --data directory without the files: the loader's error, with the hint.
    let missing = root.join("no-such-dir");
    let out = root.join("pmnist");
    let o = ortho_rnn(&[
        "experiment",
        "pmnist-margins",
        "--quick",
        "--data",
        missing.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(err.contains("does not exist") && err.contains("fashion-mnist"), "{err}");
    // --data where an experiment generates its data.
    let o = ortho_rnn(&["experiment", "copy-margins", "--smoke", "--data", missing.to_str().unwrap()]);
    assert!(!o.status.success() && text(&o.stderr).contains("--data"));
    cleanup(&root);
}

#[test]
fn list_names_every_experiment_with_its_sizes() {
    let o = ortho_rnn(&["experiment", "list"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    for name in experiments::names() {
        assert!(out.contains(name));
    }
    for size in ["smoke", "quick", "full"] {
        assert_eq!(out.matches(&format!("    {size} ")).count(), experiments::names().len(), "{out}");
    }
}

#[test]
fn quick_synthetic_plans_say_what_their_size_shows() {
    for name in ["copy-margins", "adding-margins", "soft-orth", "copy-activations"] {
        for size in Size::ALL {
            let plan = experiments::find(name).unwrap().plan_with(size, None).unwrap();
            let notes = plan.protocol.iter().filter(|l| l.starts_with("What this quick size shows")).count();
            assert_eq!(notes, usize::from(size == Size::Quick), "{name} at {}", size.as_str());
        }
    }
}

#[test]
fn plans_validate_and_their_configs_round_trip_through_json() {
    for e in experiments::EXPERIMENTS {
        for size in Size::ALL {
            let data = e.needs.map(|k| DataSource::placeholder(k, size));
            let plan = e.plan_with(size, data).unwrap();
            assert!(!plan.runs.is_empty());
            for run in &plan.runs {
                let text = serde_json::to_string(&run.config).unwrap();
                let back: serde_json::Value = serde_json::from_str(&text).unwrap();
                assert_eq!(back, serde_json::to_value(&run.config).unwrap(), "{}: resume compares these", e.name);
            }
        }
    }
}

#[test]
fn a_directory_of_another_size_is_refused() {
    let root = scratch("conflict");
    let o = root.to_str().unwrap();
    assert!(ortho_rnn(&["experiment", "adding-margins", "--smoke", "--quiet", "--out", o]).status.success());
    let again = ortho_rnn(&["experiment", "adding-margins", "--quick", "--quiet", "--out", o]);
    assert!(!again.status.success());
    let err = text(&again.stderr);
    assert!(err.contains("made with size smoke"), "{err}");
    cleanup(&root);
}

#[test]
fn plot_redraws_an_experiment_directory_from_its_metrics() {
    let root = scratch("plot");
    let o = root.to_str().unwrap();
    assert!(ortho_rnn(&["experiment", "adding-margins", "--smoke", "--quiet", "--out", o]).status.success());
    let plots = root.join("plots");
    std::fs::remove_dir_all(&plots).unwrap();
    let one_run = root.join("t10_m1");
    let out = ortho_rnn(&["plot", o, one_run.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for (dir, figure) in [(&root, "loss"), (&root, "mse"), (&one_run, "loss"), (&one_run, "t10_m1_singular_values")] {
        for ext in ["svg", "png"] {
            let f = dir.join("plots").join(format!("{figure}.{ext}"));
            let bytes = std::fs::read(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let ok = if ext == "svg" { bytes.starts_with(b"<svg") } else { bytes.starts_with(b"\x89PNG\r\n\x1a\n") };
            assert!(ok, "{} is not a valid {ext}", f.display());
        }
    }

    // A directory without metrics is an error naming where it looked; the good one is still drawn.
    let empty = scratch("plot-empty");
    let out = ortho_rnn(&["plot", empty.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("no metrics files found"), "{err}");
    cleanup(&empty);
    cleanup(&root);
}

#[test]
fn seeds_report_medians_and_ranges_and_plot_bands() {
    // Two seeds per cell: each cell's row shows `median [min, max]`, the CSV has one row per run
    // with its seed, the curves are medians with a band; a third seed later runs only the new runs.
    let out = scratch("seeds");
    let dir = out.to_str().unwrap();
    let r = ortho_rnn(&["experiment", "adding-margins", "--smoke", "--seeds", "2", "--quiet", "--out", dir]);
    assert!(r.status.success(), "{}", text(&r.stderr));
    let settings = |seeds| Settings { size: Size::Smoke, out: out.clone(), seeds: Some(seeds), ..Default::default() };
    let plan = experiments::find("adding-margins").unwrap().plan(&settings(2)).unwrap();
    let single = experiments::find("adding-margins").unwrap().plan(&settings(1)).unwrap();
    assert_eq!(plan.runs.len(), 2 * single.runs.len());
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(md.contains("(2 seeds)") && md.contains("median over the seeds"), "{md}");
    let row = md.lines().find(|l| l.contains("(2 seeds)")).unwrap();
    assert!(row.contains(" [") && row.contains("2 finished"), "{row}");
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert!(csv.lines().next().unwrap().contains(",seed,"));
    assert_eq!(csv.lines().count(), 1 + plan.runs.len());
    assert!(csv.lines().any(|l| l.contains("_seed2,") && l.contains(",2,")), "seed 2 rows name their seed");
    let svg = std::fs::read_dir(out.join("plots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("_mse.svg"))
        .expect("an MSE figure");
    let svg = std::fs::read_to_string(svg).unwrap();
    assert!(svg.contains("median of 2") && svg.contains("<polygon"), "median curves with bands");
    // Seeds 1 and 2 stay done: a third seed runs only its own runs.
    let r = ortho_rnn(&["experiment", "adding-margins", "--smoke", "--seeds", "3", "--quiet", "--out", dir]);
    assert!(r.status.success(), "{}", text(&r.stderr));
    let stdout = text(&r.stdout);
    assert!(stdout.contains(&format!("{} ran, {} skipped", single.runs.len(), 2 * single.runs.len())), "{stdout}");
    cleanup(&out);
}
