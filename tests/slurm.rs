//! Sweeps spread over processes: `--shard K/N` (+ the last shard's report, + `--report`), `--jobs`,
//! per-run locks, and a real Slurm job array (when `sbatch` reaches a cluster: start the local one
//! with `scripts/slurm-local start` and `. /tmp/ortho-slurm/env`). The reference of every check is
//! one unsharded, single-job run of the same sweep: `results.csv` must agree on every column but the
//! two timing ones (the CPU backend is deterministic, whatever the thread count).
//! Set `ORTHO_RNN_KEEP_RUNS=1` to keep the output directories.

use ortho_rnn::experiments::{self, Settings, Size};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const SWEEP: &str = "copy-margins";

#[path = "common/run_dirs.rs"]
mod run_dirs;
use run_dirs::{cleanup, ortho_rnn};

fn scratch(name: &str) -> PathBuf {
    run_dirs::scratch("slurm", name)
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Runs `experiment copy-margins --smoke --out OUT EXTRA...`; panics with the output unless it succeeded.
fn sweep(out: &Path, extra: &[&str]) -> String {
    let o = run_sweep(out, extra);
    let t = text(&o);
    assert!(o.status.success(), "{extra:?}: {t}");
    t
}

fn run_sweep(out: &Path, extra: &[&str]) -> Output {
    let out = out.to_str().unwrap();
    let mut args = vec!["experiment", SWEEP, "--smoke", "--quiet", "--out", out];
    args.extend_from_slice(extra);
    ortho_rnn(&args)
}

/// The run names of the smoke sweep, in plan order.
fn run_names() -> Vec<String> {
    let plan = experiments::find(SWEEP).unwrap().plan(&Settings { size: Size::Smoke, ..Default::default() }).unwrap();
    plan.runs.iter().map(|r| r.config.name.clone()).collect()
}

/// Splits one CSV line (RFC 4180 quoting).
fn csv_fields(line: &str) -> Vec<String> {
    let (mut fields, mut cur, mut quoted, mut chars) = (Vec::new(), String::new(), false, line.chars().peekable());
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    fields.push(cur);
    fields
}

/// `results.csv` of `out` as rows of `column=value`, without the timing columns.
fn results(out: &Path) -> Vec<Vec<String>> {
    let path = out.join("results.csv");
    let csv = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = csv.lines();
    let header = csv_fields(lines.next().unwrap());
    assert!(header.contains(&"train_seconds".to_string()) && header.contains(&"status".to_string()), "{header:?}");
    lines
        .map(|l| {
            let f = csv_fields(l);
            assert_eq!(f.len(), header.len(), "{l}");
            header
                .iter()
                .zip(f)
                .filter(|(h, _)| !matches!(h.as_str(), "train_seconds" | "ms_per_iter"))
                .map(|(h, v)| format!("{h}={v}"))
                .collect()
        })
        .collect()
}

/// One unsharded, single-job run: the reference. Checks that every run finished with a loss.
fn reference(name: &str) -> (PathBuf, Vec<Vec<String>>) {
    let dir = scratch(name);
    sweep(&dir, &["--jobs", "1", "--threads", "1"]);
    let rows = results(&dir);
    assert_eq!(rows.len(), run_names().len());
    for row in &rows {
        assert!(row.contains(&"status=finished".to_string()), "{row:?}");
        let loss = row.iter().find(|c| c.starts_with("final_loss=") || c.contains("loss=")).expect("a loss column");
        assert!(loss.split('=').nth(1).unwrap().parse::<f64>().is_ok(), "{row:?}");
    }
    (dir, rows)
}

#[test]
fn two_shards_and_the_report_equal_one_run() {
    let (refdir, want) = reference("ref-shards");
    let names = run_names();
    assert!(names.len() >= 2, "the smoke sweep needs two runs to shard");
    let out = scratch("shards");

    // Shard 1/2 alone: only its runs, no results yet; --report then names the missing runs.
    let t = sweep(&out, &["--shard", "1/2"]);
    assert!(t.contains("results not written yet"), "{t}");
    assert!(!out.join("results.csv").exists());
    for (i, n) in names.iter().enumerate() {
        assert_eq!(out.join(n).join("summary.json").is_file(), i % 2 == 0, "{n}: {t}");
    }
    let t = sweep(&out, &["--report"]);
    let missing: Vec<&String> = names.iter().skip(1).step_by(2).collect();
    for n in &missing {
        assert!(t.contains(n.as_str()), "--report does not name the missing run {n}: {t}");
    }
    assert!(t.contains(&format!("{} of {} runs not complete (yet)", missing.len(), names.len())), "{t}");
    assert_ne!(results(&out), want);

    // Shard 2/2 is the last to finish: it writes the results, equal to the unsharded run's.
    let t = sweep(&out, &["--shard", "2/2"]);
    assert!(t.contains("results in"), "{t}");
    assert_eq!(results(&out), want);

    // --report rebuilds the same from the run directories.
    std::fs::remove_file(out.join("results.csv")).unwrap();
    std::fs::remove_file(out.join("results.md")).unwrap();
    let t = sweep(&out, &["--report"]);
    assert!(!t.contains("not complete"), "{t}");
    assert_eq!(results(&out), want);
    assert!(out.join("results.md").is_file());

    // A shard of a directory that is done runs nothing.
    let t = sweep(&out, &["--shard", "1/2", "--no-report"]);
    assert!(t.contains("0 ran"), "{t}");
    cleanup(&out);
    cleanup(&refdir);
}

#[test]
fn two_jobs_equal_one_and_a_failed_or_locked_run_stops_no_other() {
    let (refdir, want) = reference("ref-jobs");
    let out = scratch("jobs");
    let t = sweep(&out, &["--jobs", "2", "--threads", "2"]);
    assert!(t.contains("[1 cpu]") || t.contains("running on cpu"), "{t}");
    assert_eq!(results(&out), want);
    // Each of the two concurrent runs had one of the two threads.
    let cfg = std::fs::read_to_string(out.join(&run_names()[0]).join("config.json")).unwrap();
    assert!(cfg.contains("\"threads\": 1"), "{cfg}");

    // A run that fails (its metrics file cannot be created) and one locked by a live process: the
    // other runs still finish; the locked one is left alone and named as missing.
    let names = run_names();
    assert!(names.len() >= 3);
    let out2 = scratch("jobs-fail");
    std::fs::create_dir_all(out2.join(&names[0]).join("metrics.jsonl")).unwrap();
    std::fs::create_dir_all(out2.join(&names[1])).unwrap();
    let held = ortho_rnn::lock::Lock::directory(&out2.join(&names[1]), "test").unwrap();
    let o = run_sweep(&out2, &["--jobs", "2"]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("1 failed") && t.contains("1 being run by another process"), "{t}");
    assert!(t.contains(&format!("pid {}", std::process::id())) || t.contains("locked"), "{t}");
    assert!(out2.join(&names[0]).join("failed.json").is_file());
    assert!(!out2.join(&names[1]).join("summary.json").exists());
    let got = results(&out2);
    for (i, row) in got.iter().enumerate().skip(2) {
        assert_eq!(row, &want[i], "{}", names[i]);
    }
    drop(held);
    cleanup(&out2);
    cleanup(&out);
    cleanup(&refdir);
}

#[test]
fn bad_parallel_flags_are_clear_errors() {
    let out = scratch("flags");
    for (args, want) in [
        (&["--shard", "3/2"][..], "--shard"),
        (&["--shard", "1"][..], "K/N"),
        (&["--jobs", "0"][..], "--jobs"),
        (&["--seeds", "0"][..], "--seeds"),
        (&["--seeds", "1000000"][..], "between 1 and 1000"),
        (&["--devices", "cpu,tpu"][..], "--devices"),
        (&["--devices", "cpu,emu", "--jobs", "3"][..], "--jobs"),
        (&["--slurm", "--time", "4h"][..], "--time"),
        (&["--slurm", "--partition", "a\nb"][..], "one line"),
        (&["--submit"][..], "--slurm"),
    ] {
        let o = run_sweep(&out, args);
        let t = text(&o);
        assert!(!o.status.success() && t.contains(want), "{args:?}: {t}");
        assert!(!t.contains("panicked"), "{args:?}: {t}");
    }
    let o = ortho_rnn(&["train", "--device", "cuda:x", "--iters", "1"]);
    assert!(!o.status.success() && text(&o).contains("cuda:K"), "{}", text(&o));
    cleanup(&out);
}

#[test]
fn slurm_scripts_are_written_and_print_the_sbatch_command() {
    let out = scratch("scripts");
    let t =
        sweep(&out, &["--slurm", "--shards", "2", "--partition", "gpu", "--gpus-per-task", "1", "--time", "01:00:00"]);
    assert!(t.contains("sbatch --parsable") && t.contains("--dependency=afterany:"), "{t}");
    let array = std::fs::read_to_string(out.join("slurm-array.sbatch")).unwrap();
    assert!(array.contains("#SBATCH --array=0-1\n") && array.contains("#SBATCH --partition=gpu\n"), "{array}");
    assert!(array.contains("--smoke") && array.contains("/2\" --no-report"), "{array}");
    let report = std::fs::read_to_string(out.join("slurm-report.sbatch")).unwrap();
    assert!(report.contains("--report"), "{report}");
    assert!(!out.join("results.csv").exists());
    cleanup(&out);
}

/// Whether `sbatch` reaches a cluster (`sinfo` answers).
fn slurm_available() -> Result<(), String> {
    match Command::new("sinfo").args(["-h", "-o", "%T"]).output() {
        Err(e) => Err(format!("sinfo not found ({e}); install and start one with `scripts/slurm-local start`")),
        Ok(o) if !o.status.success() => Err(format!(
            "sinfo failed ({}); start the local cluster with `scripts/slurm-local start` and `. /tmp/ortho-slurm/env`",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Ok(_) if Command::new("sbatch").arg("--version").output().is_err() => Err("sbatch not found".into()),
        Ok(_) => Ok(()),
    }
}

#[test]
fn a_slurm_job_array_gives_the_single_process_results() {
    if let Err(why) = slurm_available() {
        eprintln!("SKIPPED a_slurm_job_array_gives_the_single_process_results: {why}");
        return;
    }
    let (refdir, want) = reference("ref-slurm");
    let out = scratch("slurm");
    let t0 = Instant::now();
    let t = sweep(&out, &["--slurm", "--shards", "2", "--threads", "1", "--time", "00:10:00", "--submit"]);
    let ids: Vec<String> = t
        .lines()
        .find(|l| l.starts_with("submitted:"))
        .unwrap_or_else(|| panic!("no job ids: {t}"))
        .split_whitespace()
        .filter(|w| w.chars().all(|c| c.is_ascii_digit()) && !w.is_empty())
        .map(String::from)
        .collect();
    // "submitted: array job A (2 tasks), report job R (after the array)"
    assert_eq!(ids.len(), 2, "array and report job ids: {t}");
    let (array, report) = (&ids[0], &ids[1]);
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let q = Command::new("squeue").args(["-h", "-j", &format!("{array},{report}")]).output().unwrap();
        if String::from_utf8_lossy(&q.stdout).trim().is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the jobs did not finish in 300 s: {}", String::from_utf8_lossy(&q.stdout));
        std::thread::sleep(Duration::from_millis(500));
    }
    let logs: Vec<String> = std::fs::read_dir(out.join("slurm-logs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut log_text = String::new();
    for l in &logs {
        log_text.push_str(&std::fs::read_to_string(out.join("slurm-logs").join(l)).unwrap_or_default());
    }
    for k in 0..2 {
        assert!(logs.contains(&format!("{array}_{k}.out")), "array task {k} left no log: {logs:?}");
    }
    assert!(logs.contains(&format!("report_{report}.out")), "{logs:?}");
    assert!(out.join("shards/1-of-2.done").is_file() && out.join("shards/2-of-2.done").is_file(), "{log_text}");
    assert_eq!(results(&out), want, "{log_text}");
    eprintln!(
        "slurm: array job {array} (2 tasks) and report job {report} finished in {:.1} s; merged results.csv \
         equals the single-process run's ({} runs)",
        t0.elapsed().as_secs_f64(),
        want.len()
    );
    cleanup(&out);
    cleanup(&refdir);
}

/// `scancel` and preemption send SIGTERM: the process releases the locks of `--out` and of the
/// run it was training, exits with 128 + 15, and the next invocation resumes.
#[test]
fn sigterm_releases_every_lock() {
    let out = scratch("sigterm");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ortho-rnn"))
        .args(["experiment", SWEEP, "--quick", "--quiet", "--threads", "1", "--out", out.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let locks = |out: &Path| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(out)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path().join(".ortho-rnn.lock")).collect())
            .unwrap_or_default();
        v.push(out.join(".ortho-rnn.lock"));
        v.into_iter().filter(|p| p.is_file()).collect()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while locks(&out).len() < 2 {
        assert!(Instant::now() < deadline, "no run lock appeared in 60 s");
        assert!(child.try_wait().unwrap().is_none(), "the sweep ended before it could be stopped");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(128 + 15), "{err}");
    assert!(err.contains("locks released"), "{err}");
    assert_eq!(locks(&out), Vec::<PathBuf>::new());
    cleanup(&out);
}
