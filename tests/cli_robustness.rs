//! Issue 11 as tests: the binary against a hostile user. Each `case_N_*` test is the numbered case
//! of the issue (concurrent runs, overflowing flags, sizes beyond memory, resume semantics, metrics
//! after kill -9, output paths, emulator threads, checkpoint metadata, truncated metrics, divergence,
//! messages); `random_flags_and_files_never_panic` feeds random flag values and random bytes as
//! data and checkpoint files and checks that nothing panics or aborts and that exit code 0 comes only
//! from valid runs (`ORTHO_RNN_SHOW_CASES=1` prints each case and how it ended). Every run is tiny
//! (hidden <= 8, a few iterations). `memory_estimate_bounds_what_a_run_allocates` compares the
//! memory estimate with the heap a run really allocates, counted by this binary's allocator.

use ortho_rnn::experiments::data::{DataKind, DataSource};
use ortho_rnn::experiments::runner::{self, Outcome};
use ortho_rnn::experiments::spec::{Duration, Job};
use ortho_rnn::experiments::{self, Settings, Size};
use ortho_rnn::lock::{DIR_LOCK_NAME, Holder, Lock, lock_path_of_file};
use ortho_rnn::train::checkpoint;
use ortho_rnn::train::metrics::{EvalRecord, read_metrics_tolerant};
use proptest::prelude::*;
use safetensors::tensor::{SafeTensors, TensorView};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

#[path = "common/run_dirs.rs"]
mod run_dirs;

fn scratch(name: &str) -> PathBuf {
    run_dirs::scratch("robust", name)
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ortho-rnn"))
}

fn run_in(dir: &Path, args: &[&str]) -> Output {
    bin().args(args).current_dir(dir).stdin(Stdio::null()).output().expect("the binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Exit code (`None`: killed by a signal), stdout, stderr.
fn outcome(o: &Output) -> (Option<i32>, String, String) {
    (o.status.code(), text(&o.stdout), text(&o.stderr))
}

/// Asserts a clean failure: exit `code`, no panic, and a message holding every one of `words`.
fn fails_with(o: &Output, code: i32, words: &[&str]) {
    let (c, out, err) = outcome(o);
    assert_eq!(c, Some(code), "exit code; stdout: {out}\nstderr: {err}");
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "a panic: {err}");
    for w in words {
        assert!(err.contains(w), "the message should mention {w:?}: {err}");
    }
}

/// The tiny copy-task run most tests use.
const TINY: &[&str] = &["train", "--quiet", "--hidden", "4", "--seq-len", "3", "--batch", "5"];

fn tiny(extra: &[&str]) -> Vec<String> {
    TINY.iter().chain(extra).map(|s| s.to_string()).collect()
}

fn run_tiny(dir: &Path, extra: &[&str]) -> Output {
    let args = tiny(extra);
    run_in(dir, &args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// A change to one tensor of a checkpoint: `(name, shape, values)`.
type TensorEdit = dyn Fn(&str, &[usize], &mut Vec<f32>);

/// Rewrites a checkpoint: metadata entries replaced by `meta`, tensors transformed by `edit`.
fn rewrite_checkpoint(path: &Path, meta: &[(&str, &str)], edit: impl Fn(&str, &[usize], &mut Vec<f32>)) {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let mut md: HashMap<String, String> = header.metadata().clone().unwrap();
    for (k, v) in meta {
        md.insert(k.to_string(), v.to_string());
    }
    let owned: Vec<(String, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(name, v)| {
            let mut data: Vec<f32> = bytemuck::pod_collect_to_vec(v.data());
            edit(&name, v.shape(), &mut data);
            (name, v.shape().to_vec(), bytemuck::cast_slice(&data).to_vec())
        })
        .collect();
    let views: Vec<(String, TensorView)> = owned
        .iter()
        .map(|(n, s, d)| (n.clone(), TensorView::new(safetensors::Dtype::F32, s.clone(), d).unwrap()))
        .collect();
    std::fs::write(path, safetensors::serialize(views, Some(md)).unwrap()).unwrap();
}

fn run_field(path: &Path) -> serde_json::Value {
    serde_json::from_str(&checkpoint::load(path).unwrap().run).unwrap()
}

/// Every metrics file under `out` parses completely.
fn all_metrics_valid(out: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(out).unwrap() {
        let p = e.unwrap().path().join(runner::METRICS_FILE);
        if p.is_file() {
            let read = read_metrics_tolerant(&p).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(read.truncated_last_line, None, "{}", p.display());
            let iters: Vec<usize> = read.records.iter().map(|r| r.iter).collect();
            assert!(iters.windows(2).all(|w| w[0] < w[1]), "{}: {iters:?}", p.display());
            n += 1;
        }
    }
    n
}

#[test]
fn case_1_concurrent_experiments_on_one_output_directory() {
    let root = scratch("concurrent");
    let out = root.join("out");
    std::fs::create_dir_all(&out).unwrap();
    // Held by this process: the binary must refuse, naming this pid and host.
    let held = Lock::directory(&out, "--out").unwrap();
    let o = run_in(&root, &["experiment", "soft-orth", "--smoke", "--quiet", "--out", "out"]);
    fails_with(&o, 1, &["in use by ortho-rnn pid", &std::process::id().to_string(), &held.holder().host]);
    drop(held);
    // A stale lock (a killed process on this host) is taken over.
    let dead = Holder { pid: 4_194_304 + 99, start: Some(7), ..Holder::this_process() };
    std::fs::write(out.join(DIR_LOCK_NAME), serde_json::to_string(&dead).unwrap()).unwrap();
    // Two processes started together: one runs, the other is refused (or, had the first finished
    // already, skips everything); every metrics file and results.csv stay complete.
    let spawn = || {
        bin()
            .args(["experiment", "soft-orth", "--smoke", "--quiet", "--threads", "1", "--out", "out"])
            .current_dir(&root)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let ok = [&a, &b].iter().filter(|o| o.status.success()).count();
    assert!(ok >= 1, "{}\n{}", text(&a.stderr), text(&b.stderr));
    for o in [&a, &b] {
        if !o.status.success() {
            fails_with(o, 1, &["is in use by ortho-rnn pid", "--out"]);
        }
    }
    assert!(!out.join(DIR_LOCK_NAME).exists(), "the lock is released at exit");
    let plan = experiments::find("soft-orth")
        .unwrap()
        .plan(&Settings { size: Size::Smoke, out: out.clone(), ..Default::default() })
        .unwrap();
    assert_eq!(all_metrics_valid(&out), plan.runs.len());
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert!(csv.lines().skip(1).all(|l| l.contains(",finished,") || l.contains(",diverged")), "{csv}");
    // --out naming a file.
    std::fs::write(root.join("f"), "x").unwrap();
    fails_with(&run_in(&root, &["experiment", "soft-orth", "--smoke", "--out", "f"]), 1, &["--out", "is a file"]);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn case_2_overflowing_flags_are_refused_where_parsed() {
    let root = scratch("overflow");
    let max = "18446744073709551615";
    for (args, flag) in [
        (vec!["train", "--seq-len", "18446744073709551600"], "--seq-len"),
        (vec!["train", "--batch", max], "--batch"),
        (vec!["train", "--task", "adding", "--seq-len", max], "--seq-len"),
        (vec!["train", "--seq-len", max], "--seq-len"),
        (vec!["train", "--epochs", "9223372036854775809", "--iters-per-epoch", "2"], "--epochs"),
        (vec!["bench", "--seq-len", max], "--seq-len"),
        (vec!["bench", "--iters", max], "--iters"),
        (vec!["train", "--hidden", "0"], "--hidden"),
        (vec!["train", "--iters=-1"], "--iters"),
    ] {
        fails_with(&run_in(&root, &args), 2, &[flag, "invalid value"]);
    }
    // Within each flag's range, the product is checked.
    let o = run_in(&root, &["train", "--epochs", "1099511627776", "--iters-per-epoch", "2"]);
    fails_with(&o, 1, &["--epochs", "--iters-per-epoch", "limit"]);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn case_3_sizes_beyond_memory_and_gzip_bombs_are_refused_before_allocating() {
    let root = scratch("memory");
    // 65536^2 floats per matrix: hundreds of GiB.
    let o = run_in(&root, &["train", "--quiet", "--hidden", "65536", "--iters", "1"]);
    fails_with(&o, 1, &["GiB", "--hidden", "available"]);
    // A checkpoint whose stored run says hidden 100000 (beyond the flag's range) or 60000 (within it).
    assert!(run_tiny(&root, &["--iters", "2", "--checkpoint", "ck"]).status.success());
    for (hidden, words) in [("100000", vec!["--hidden", "between"]), ("60000", vec!["GiB", "--hidden"])] {
        let mut run = run_field(&root.join("ck"));
        run["model"]["hidden"] = serde_json::json!(hidden.parse::<u64>().unwrap());
        let path = root.join(format!("ck{hidden}"));
        std::fs::copy(root.join("ck"), &path).unwrap();
        rewrite_checkpoint(&path, &[("run", &run.to_string())], |_, _, _| {});
        let o = run_in(&root, &["train", "--quiet", "--resume", path.to_str().unwrap()]);
        fails_with(&o, 1, &words);
    }
    // A gzip bomb of 2 GiB of zeros (2 MiB on disk) as the MNIST images, under a 1.5 GiB address
    // space limit: the header (magic 0) is refused after 16 bytes instead of inflating the file.
    let data = root.join("data");
    DataSource { kind: DataKind::Mnist, dir: data.clone(), name: "smoke".into(), synthetic: true }.ensure().unwrap();
    let member = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&vec![0u8; 1 << 20]).unwrap();
        e.finish().unwrap()
    };
    let images = data.join("train-images-idx3-ubyte");
    let _ = std::fs::remove_file(&images);
    let _ = std::fs::remove_file(data.join("train-images-idx3-ubyte.gz"));
    std::fs::write(data.join("train-images-idx3-ubyte.gz"), member.repeat(2048)).unwrap();
    let cmd = format!(
        "ulimit -v 1572864 && exec '{}' train --quiet --task mnist-rows --hidden 4 --iters 1 --data '{}'",
        env!("CARGO_BIN_EXE_ortho-rnn"),
        data.display()
    );
    let o = Command::new("sh").args(["-c", &cmd]).output().unwrap();
    fails_with(&o, 1, &["train-images-idx3-ubyte.gz", "bad magic number 0x00000000"]);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn case_4_resume_refuses_conflicting_flags_and_finds_moved_data() {
    let root = scratch("resume");
    assert!(run_tiny(&root, &["--iters", "2", "--checkpoint", "ck"]).status.success());
    let o = run_in(
        &root,
        &[
            "train", "--resume", "ck", "--model", "rnn", "--hidden", "16", "--lr", "0.1", "--batch", "7", "--task",
            "adding", "--iters", "4",
        ],
    );
    fails_with(
        &o,
        1,
        &[
            "--model rnn (the checkpoint has factorized)",
            "--hidden 16 (the checkpoint has 4)",
            "--lr 0.1 (the checkpoint has 0.001)",
            "--batch 7 (the checkpoint has 5)",
            "--task adding (the checkpoint has copy)",
            "may change on resume: --iters",
        ],
    );
    // The same values as stored, and the flags that may change, are accepted.
    let o = run_in(
        &root,
        &["train", "--quiet", "--resume", "ck", "--hidden", "4", "--batch", "5", "--iters", "4", "--eval-every", "1"],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    // --data: stored absolute, so a resume from another directory finds it; moved, --data points
    // at the new place.
    let (a, b) = (root.join("a"), root.join("b"));
    std::fs::create_dir_all(&b).unwrap();
    DataSource { kind: DataKind::Mnist, dir: a.join("mnist"), name: "smoke".into(), synthetic: true }.ensure().unwrap();
    let o = run_in(
        &a,
        &[
            "train",
            "--quiet",
            "--task",
            "mnist-rows",
            "--data",
            "mnist",
            "--hidden",
            "4",
            "--batch",
            "4",
            "--iters",
            "2",
            "--checkpoint",
            "ck",
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let stored = run_field(&a.join("ck"))["task"]["data"].as_str().unwrap().to_string();
    assert!(Path::new(&stored).is_absolute(), "{stored}");
    let ck = a.join("ck");
    let o = run_in(&b, &["train", "--quiet", "--resume", ck.to_str().unwrap(), "--iters", "3"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    std::fs::rename(a.join("mnist"), b.join("moved")).unwrap();
    let o = run_in(&b, &["train", "--quiet", "--resume", ck.to_str().unwrap(), "--iters", "4"]);
    fails_with(&o, 1, &["--data", "does not exist"]);
    let o = run_in(&b, &["train", "--quiet", "--resume", ck.to_str().unwrap(), "--iters", "4", "--data", "moved"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn case_5_metrics_after_kill_9_and_resume_hold_each_evaluation_once() {
    let root = scratch("kill");
    let mut child = bin()
        .args(tiny(&["--iters", "1000000", "--eval-every", "1", "--checkpoint", "ck", "--checkpoint-every", "7"]))
        .args(["--metrics", "m.jsonl"])
        .current_dir(&root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let m = root.join("m.jsonl");
    let t0 = std::time::Instant::now();
    while std::fs::read_to_string(&m).map_or(0, |t| t.lines().count()) < 30 && t0.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let done = checkpoint::load(&root.join("ck")).unwrap().iter;
    let written = read_metrics_tolerant(&m).unwrap().records.last().unwrap().iter;
    assert!(written >= done && done >= 7, "records {written}, checkpoint {done}");
    assert!(lock_path_of_file(&root.join("ck")).exists(), "kill -9 leaves the lock behind");
    // The records a run writes past its checkpoint before it dies (two more, marked by their loss,
    // in case the kill came right after a checkpoint), and a half-written last line, as a full
    // disk leaves.
    let mut bytes = std::fs::read(&m).unwrap();
    for i in 1..=2 {
        let r = EvalRecord { iter: written + i, loss: 123.0, ..Default::default() };
        bytes.extend_from_slice(format!("{}\n", serde_json::to_string(&r).unwrap()).as_bytes());
    }
    bytes.extend_from_slice(b"{\"iter\":99999,\"seco");
    std::fs::write(&m, bytes).unwrap();
    let end = (written + 5).to_string();
    let o = run_in(&root, &["train", "--quiet", "--resume", "ck", "--iters", &end, "--metrics", "m.jsonl"]);
    assert!(o.status.success(), "the stale locks are taken over: {}", text(&o.stderr));
    let records = read_metrics_tolerant(&m).unwrap().records;
    let iters: Vec<usize> = records.iter().map(|r| r.iter).collect();
    let want: Vec<usize> = (1..=written + 5).collect();
    assert_eq!(iters, want, "each evaluation once, in order");
    assert!(records.iter().all(|r| r.loss != 123.0), "the records after the checkpoint were replaced");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn case_6_output_paths_are_checked_before_training() {
    let root = scratch("paths");
    std::fs::create_dir_all(root.join("D")).unwrap();
    let o = run_tiny(&root, &["--iters", "2", "--checkpoint", "D", "--metrics", "m.jsonl"]);
    fails_with(&o, 1, &["--checkpoint", "is a directory"]);
    assert!(!root.join("m.jsonl").exists(), "refused before training started");
    assert!(!root.join("D.tmp").exists(), "no temporary file is left");
    let o = run_tiny(&root, &["--iters", "2", "--checkpoint", "X", "--metrics", "./X"]);
    fails_with(&o, 1, &["--checkpoint and --metrics would both write"]);
    let o = run_tiny(&root, &["--iters", "2", "--checkpoint", "X", "--metrics", "X.tmp"]);
    fails_with(&o, 1, &["--checkpoint and --metrics would both write"]);
    assert!(run_tiny(&root, &["--iters", "2", "--checkpoint", "ck"]).status.success());
    let o = run_in(&root, &["train", "--resume", "ck", "--iters", "3", "--metrics", "ck"]);
    fails_with(&o, 1, &["--metrics", "--resume"]);
    // A failed save removes its temporary file.
    let e = checkpoint::write_atomic(&root.join("D"), b"x").unwrap_err().to_string();
    assert!(e.contains("is a directory"), "{e}");
    assert!(!root.join("D.tmp").exists());
    // A second process writing the same metrics file is refused while the first runs.
    let held = Lock::file(&root.join("busy.jsonl"), "--metrics").unwrap();
    let o = run_tiny(&root, &["--iters", "2", "--metrics", "busy.jsonl"]);
    fails_with(&o, 1, &["busy.jsonl", "--metrics", "in use by ortho-rnn pid"]);
    drop(held);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn case_7_emulator_threads_beyond_the_machine_are_a_clean_error() {
    let root = scratch("threads");
    let max = ortho_rnn::limits::max_threads(ortho_rnn::device::DeviceKind::Emu);
    for n in [400, 200, max + 1].into_iter().filter(|&n| n > max) {
        let o = run_tiny(&root, &["--iters", "1", "--device", "emu", "--threads", &n.to_string()]);
        fails_with(&o, 1, &["--threads", "max_map_count", &format!("--threads {max} or fewer")]);
    }
    fails_with(&run_tiny(&root, &["--iters", "1", "--threads", "5000"]), 2, &["--threads", "between 0 and 1024"]);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn case_8_checkpoint_metadata_and_eps_are_validated() {
    let root = scratch("metadata");
    assert!(run_tiny(&root, &["--iters", "2", "--checkpoint", "ck"]).status.success());
    let variant = |name: &str, meta: &[(&str, &str)], edit: &TensorEdit| {
        let p = root.join(name);
        std::fs::copy(root.join("ck"), &p).unwrap();
        rewrite_checkpoint(&p, meta, edit);
        run_in(&root, &["train", "--quiet", "--resume", name, "--iters", "2"])
    };
    let keep = |_: &str, _: &[usize], _: &mut Vec<f32>| {};
    for bad in ["-5", "NaN", "7.9", "1e3", ""] {
        fails_with(&variant("ck_iter", &[("iter", bad)], &keep), 1, &["metadata `iter`", "not a non-negative integer"]);
    }
    fails_with(&variant("ck_step", &[("optim_step", "5")], &keep), 1, &["metadata `optim_step` is 5"]);
    fails_with(&variant("ck_iter", &[("iter", "3"), ("optim_step", "3")], &keep), 1, &["`iter` is 3, more than the 2"]);
    fails_with(&variant("ck_secs", &[("seconds", "inf")], &keep), 1, &["metadata `seconds`"]);
    fails_with(&variant("ck_counters", &[("geodesic_counters", "[]")], &keep), 1, &["geodesic_counters"]);
    let nan_w = |n: &str, _: &[usize], d: &mut Vec<f32>| {
        if n == "W_o" {
            d[0] = f32::NAN;
        }
    };
    fails_with(&variant("ck_nan", &[], &nan_w), 1, &["tensor W_o", "non-finite"]);
    let skew_u = |n: &str, _: &[usize], d: &mut Vec<f32>| {
        if n == "U" {
            d[1] += 0.5;
        }
    };
    fails_with(&variant("ck_u", &[], &skew_u), 1, &["tensor U must be orthogonal"]);
    for eps in ["nan", "inf", "0", "-1e-8"] {
        let flag = format!("--eps={eps}");
        fails_with(&run_tiny(&root, &["--iters", "1", &flag]), 2, &["--eps", "> 0 and finite"]);
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn case_9_plot_skips_a_truncated_last_line_and_says_so() {
    let root = scratch("plot");
    assert!(run_tiny(&root, &["--iters", "4", "--eval-every", "1", "--metrics", "run.jsonl"]).status.success());
    let m = root.join("run.jsonl");
    let full = std::fs::read_to_string(&m).unwrap();
    std::fs::write(&m, format!("{full}{{\"iter\":5,\"seconds\":0.1,\"lo")).unwrap();
    let o = run_in(&root, &["plot", "."]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("skipped line 5"), "{}", text(&o.stderr));
    assert!(root.join("plots").join("loss.svg").is_file());
    // A malformed line in the middle is still an error naming it.
    std::fs::write(&m, format!("not json\n{full}")).unwrap();
    fails_with(&run_in(&root, &["plot", "."]), 1, &["line 1"]);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn case_10_a_diverged_run_is_reported_and_fails_unless_allowed() {
    let root = scratch("diverge");
    let args =
        ["--model", "rnn", "--optimizer", "sgd", "--lr", "1000", "--iters", "30", "--eval-every", "10", "--json"];
    let o = run_tiny(&root, &args);
    let (code, out, err) = outcome(&o);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("DIVERGED:") && err.contains("--allow-divergence"), "{out}{err}");
    let json: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert!(json["diverged"].as_str().unwrap().contains("stayed above"), "{json}");
    let o = run_tiny(&root, &[&args[..], &["--allow-divergence"]].concat());
    assert!(o.status.success() && text(&o.stdout).contains("DIVERGED:"));
    // A healthy run is not flagged.
    let o = run_tiny(&root, &["--iters", "4", "--json"]);
    assert!(o.status.success() && !text(&o.stdout).contains("diverged"), "{}", text(&o.stdout));
    // Experiments count it as diverged.
    let mut plan = experiments::find("soft-orth")
        .unwrap()
        .plan(&Settings { size: Size::Smoke, out: root.join("exp"), ..Default::default() })
        .unwrap();
    plan.runs.truncate(1);
    if let Job::Train(t) = &mut plan.runs[0].config.job {
        t.optim.rule = ortho_rnn::backend::OptimRule::Sgd { momentum: 0.0, nesterov: false };
        t.optim.lr = 1000.0;
        t.model = ortho_rnn::train::build::ModelSpec::of(ortho_rnn::train::build::ModelKind::Rnn, 4);
        t.duration = Duration::Iters { iters: 30, eval_every: 10 };
    }
    let opts = runner::Options { threads: 1, quiet: true, ..Default::default() };
    let _lock = runner::prepare_output(&root.join("exp")).unwrap();
    let outcomes = runner::execute(&plan, &root.join("exp"), &opts, &mut |_| {}).unwrap();
    assert!(matches!(&outcomes[0], Outcome::Diverged(m) if m.contains("stayed above")), "{outcomes:?}");
    assert!(root.join("exp").join(&plan.runs[0].config.name).join(runner::DIVERGED_FILE).is_file());
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn case_11_messages_name_the_real_flag_and_cause() {
    let root = scratch("messages");
    fails_with(&run_in(&root, &["train", "--task", "ptb", "--seq-len", "0", "--data", "."]), 2, &["--seq-len"]);
    fails_with(&run_in(&root, &["train", "--task", "mnist", "--max-train", "0", "--data", "."]), 2, &["--max-train"]);
    std::fs::write(root.join("file"), "x").unwrap();
    fails_with(&run_in(&root, &["train", "--task", "ptb", "--data", "file"]), 1, &["--data", "is a file"]);
    fails_with(&run_in(&root, &["train", "--task", "mnist", "--data", "nowhere"]), 1, &["--data", "does not exist"]);
    let locked = root.join("locked");
    std::fs::create_dir_all(&locked).unwrap();
    let mut perms = std::fs::metadata(&locked).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o000);
    std::fs::set_permissions(&locked, perms).unwrap();
    if std::fs::read_dir(&locked).is_err() {
        let o = run_in(&root, &["train", "--task", "mnist", "--data", "locked"]);
        fails_with(&o, 1, &["--data", "cannot be listed", "ermission denied"]);
    } else {
        eprintln!("unreadable --data sub-case skipped: running as root, a mode-000 directory stays readable");
    }
    // NaN after a resume: from finite but huge weights, the message says where the process resumed
    // and that no iteration of it was finite (not "the first iteration failed").
    let linear = ["--model", "rnn", "--activation", "identity", "--iters", "2", "--checkpoint", "ck"];
    assert!(run_tiny(&root, &linear).status.success());
    rewrite_checkpoint(&root.join("ck"), &[], |n, _, d| {
        if n == "W" {
            // A linear recurrence with entries of 3e38: the states overflow to inf, then NaN.
            d.iter_mut().enumerate().for_each(|(i, v)| *v = if i % 3 == 0 { -3e38 } else { 3e38 });
        }
    });
    let o = run_in(&root, &["train", "--quiet", "--resume", "ck", "--iters", "4"]);
    fails_with(&o, 1, &["iteration 3", "resumed at iteration 2"]);
    assert!(!text(&o.stderr).contains("first iteration failed"));
    let _ = std::fs::remove_dir_all(&root);
}

/// One random flag value: the text and whether it is certainly invalid for the flag.
#[derive(Clone, Debug)]
struct Value {
    text: String,
    invalid: bool,
}

/// Values no count flag accepts.
const BAD_COUNTS: &[&str] = &["0", "-1", "18446744073709551615", "99999999999999999999999", "1.5", "nan", "abc", ""];

fn count_value(valid: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop_oneof![
        12 => proptest::sample::select(valid).prop_map(|v| Value { text: v.into(), invalid: false }),
        1 => proptest::sample::select(BAD_COUNTS).prop_map(|v| Value { text: v.into(), invalid: true }),
    ]
}

fn float_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        12 => proptest::sample::select(&["0.001", "0.01", "0.5"][..]).prop_map(|v| Value { text: v.into(), invalid: false }),
        1 => proptest::sample::select(&["nan", "inf", "-inf", "-1", "0", "x", "1e999"][..])
            .prop_map(|v| Value { text: v.into(), invalid: true }),
    ]
}

/// What the random data or checkpoint file holds.
#[derive(Clone, Debug)]
enum FileKind {
    None,
    /// Random bytes as the MNIST images, the PTB text or the checkpoint.
    Random(Vec<u8>, u8),
    /// The valid tiny checkpoint with one byte changed.
    FlippedCheckpoint(usize, u8),
}

fn file_kind() -> impl Strategy<Value = FileKind> {
    prop_oneof![
        5 => Just(FileKind::None),
        2 => (proptest::collection::vec(any::<u8>(), 0..300), 0u8..3).prop_map(|(b, w)| FileKind::Random(b, w)),
        1 => (any::<usize>(), 1u8..=255).prop_map(|(i, x)| FileKind::FlippedCheckpoint(i, x)),
    ]
}

#[test]
fn random_flags_and_files_never_panic() {
    let root = scratch("proptest");
    assert!(run_tiny(&root, &["--iters", "2", "--checkpoint", "good_ck"]).status.success());
    let good = std::fs::read(root.join("good_ck")).unwrap();
    let tally: std::cell::RefCell<HashMap<String, usize>> = Default::default();
    let case_no = AtomicUsize::new(0);
    // A fixed seed: the same 64 cases on every run; ORTHO_RNN_PROPTEST_SEED=N explores others.
    let seed = std::env::var("ORTHO_RNN_PROPTEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(11);
    let config = ProptestConfig {
        cases: 64,
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(seed),
        ..ProptestConfig::default()
    };
    let strategy = (
        count_value(&["1", "2", "4", "6"]),
        count_value(&["1", "3", "5"]),
        count_value(&["1", "2", "5"]),
        count_value(&["1", "2", "3"]),
        float_value(),
        float_value(),
        proptest::sample::select(&["factorized", "rnn", "orthogonal", "scornn", "exprnn", "dtriv", "lstm"][..]),
        proptest::sample::select(&["copy", "adding", "mnist-rows", "ptb"][..]),
        file_kind(),
        proptest::option::weighted(0.3, count_value(&["0", "1", "2"])),
        proptest::bool::weighted(0.1),
    );
    proptest!(config, |(hidden in strategy.0, seq in strategy.1, batch in strategy.2, iters in strategy.3,
                        lr in strategy.4, eps in strategy.5, model in strategy.6, task in strategy.7,
                        file in strategy.8, threads in strategy.9, emu in strategy.10)| {
        let n = case_no.fetch_add(1, Ordering::Relaxed);
        let dir = root.join(format!("case{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut args: Vec<String> = ["train", "--quiet", "--model", model, "--task", task]
            .iter().map(|s| s.to_string()).collect();
        let mut invalid = false;
        for (flag, v) in [("--hidden", &hidden), ("--seq-len", &seq), ("--batch", &batch), ("--iters", &iters),
                          ("--lr", &lr), ("--eps", &eps)] {
            args.push(flag.into());
            args.push(v.text.clone());
            invalid |= v.invalid;
        }
        if let Some(t) = &threads {
            args.extend(["--threads".into(), t.text.clone()]);
            invalid |= t.invalid && t.text != "0";
        }
        if emu {
            // The emulator with an impossible worker count: refused before anything starts.
            args.extend(["--device".into(), "emu".into(), "--threads".into(), "400".into()]);
            invalid = true;
        }
        let file_backed = matches!(task, "mnist-rows" | "ptb");
        let data = dir.join("data");
        if file_backed {
            // A valid tiny data set, one of whose files the random bytes may replace.
            let kind = if task == "ptb" { DataKind::Ptb } else { DataKind::Mnist };
            DataSource { kind, dir: data.clone(), name: "x".into(), synthetic: true }.ensure().unwrap();
            args.extend(["--data".into(), "data".into()]);
        }
        let mut random_file = false;
        match &file {
            FileKind::None => {}
            FileKind::Random(bytes, which) if *which == 0 || !file_backed => {
                std::fs::write(dir.join("ck"), bytes).unwrap();
                args.extend(["--resume".into(), "ck".into()]);
                random_file = true;
            }
            FileKind::Random(bytes, _) => {
                if task == "ptb" {
                    std::fs::write(data.join("ptb.char.train.txt"), bytes).unwrap();
                    // Random text can hold a valid sentence: certainly invalid only when it has none.
                    random_file = std::str::from_utf8(bytes).map_or(true, |t| t.trim().is_empty());
                } else {
                    std::fs::write(data.join("train-images-idx3-ubyte"), bytes).unwrap();
                    random_file = true;
                }
            }
            FileKind::FlippedCheckpoint(i, x) => {
                let mut b = good.clone();
                let at = i % b.len();
                b[at] ^= x;
                std::fs::write(dir.join("ck"), b).unwrap();
                args.extend(["--resume".into(), "ck".into()]);
            }
        }
        let o = bin().args(&args).current_dir(&dir).stdin(Stdio::null()).output().unwrap();
        let (code, out, err) = outcome(&o);
        let verdict = match code {
            Some(0) => "exit 0 (trained)",
            Some(1) => "exit 1 (error)",
            Some(2) => "exit 2 (flag rejected by the parser)",
            _ => "killed or abnormal",
        };
        *tally.borrow_mut().entry(verdict.to_string()).or_default() += 1;
        if std::env::var_os("ORTHO_RNN_SHOW_CASES").is_some() {
            eprintln!("{verdict}: {}\n    {}", args.join(" "), err.lines().next().unwrap_or(""));
        }
        prop_assert!(matches!(code, Some(0..=2)), "{args:?}: {code:?}\n{err}");
        prop_assert!(!err.contains("panicked"), "{args:?}: {err}");
        if code == Some(0) {
            prop_assert!(!invalid && !random_file, "accepted an invalid run {args:?}: {out}");
            prop_assert!(out.contains("final loss"), "{args:?}: {out}");
        } else {
            prop_assert!(err.starts_with("error:"), "{args:?}: {err}");
        }
        if invalid || random_file {
            prop_assert!(code != Some(0));
        }
        let _ = std::fs::remove_dir_all(&dir);
    });
    let tally = tally.into_inner();
    eprintln!("random cases (seed {seed}): {} tried: {tally:?}", tally.values().sum::<usize>());
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn metrics_records_read_back_non_finite_values() {
    // The writer turns NaN into null; the readers (plot, results) read it back as NaN, so a diverged
    // run's records are complete, not "unreadable".
    let root = scratch("nan");
    let p = root.join("m.jsonl");
    let line = serde_json::to_string(&EvalRecord { iter: 3, loss: f64::NAN, ..Default::default() }).unwrap();
    std::fs::write(&p, format!("{line}\n")).unwrap();
    let r = read_metrics_tolerant(&p).unwrap();
    assert!(r.records[0].loss.is_nan());
    let (recs, bad) = experiments::report::read_records(&p);
    assert_eq!((recs.len(), bad), (1, 0));
    let _ = std::fs::remove_dir_all(&root);
}

/// Counts the heap bytes this test binary holds, and their peak (for the memory-estimate probe).
struct CountingAlloc;
static HELD: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts sizes.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        let now = HELD.fetch_add(l.size(), Ordering::Relaxed) + l.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: the caller's layout is passed through.
        unsafe { std::alloc::System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        HELD.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: `p` came from `alloc` with this layout.
        unsafe { std::alloc::System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Run in a child process by `memory_estimate_bounds_what_a_run_allocates` (alone, so that no
/// other test's allocations count): trains the run `ORTHO_RNN_PROBE` describes (`model hidden
/// seq_len batch`) for 2 iterations with evaluations and checkpoints, twice, and prints the peak
/// heap growth of each. The first includes what the linear-algebra libraries keep per thread after
/// their first use (faer and gemm workspaces, tens of MB); the second is the run's own memory.
#[test]
#[ignore = "a child process of memory_estimate_bounds_what_a_run_allocates"]
fn memory_probe() {
    use ortho_rnn::backend::cpu::Cpu;
    use ortho_rnn::tasks::{TaskKind, TaskSpec};
    use ortho_rnn::train::build::{ModelKind, ModelSpec};
    use ortho_rnn::train::{Checkpointing, TrainConfig, Trainer, progress::Mode};
    let Ok(spec) = std::env::var("ORTHO_RNN_PROBE") else { return };
    let f: Vec<&str> = spec.split_whitespace().collect();
    let model = match f[0] {
        "rnn" => ModelKind::Rnn,
        "factorized" => ModelKind::Factorized,
        "exprnn" => ModelKind::Exprnn,
        _ => ModelKind::Lstm,
    };
    let (hidden, t, batch): (usize, usize, usize) =
        (f[1].parse().unwrap(), f[2].parse().unwrap(), f[3].parse().unwrap());
    let ck = std::env::temp_dir().join(format!("ortho-rnn-probe-{}", std::process::id()));
    // Everything on this thread (the backend has 1 thread; faer's own routines, such as the QR of
    // the initialization, follow the global setting), so that the second run finds the libraries'
    // per-thread workspaces in place.
    faer::set_global_parallelism(faer::Par::Seq);
    let once = || {
        let start = HELD.load(Ordering::Relaxed);
        PEAK.store(start, Ordering::Relaxed);
        let b = Cpu::<f32>::new(1);
        let task = TaskSpec::synthetic(TaskKind::Copy, t, 1).build().unwrap();
        let net = ModelSpec::of(model, hidden).build(&b, task.as_ref(), 1).unwrap();
        let cfg = TrainConfig {
            iters: 2,
            batch,
            eval_every: 1,
            seed: 1,
            metrics: None,
            record_grad_norms: false,
            diagnostics: true,
            progress: Mode::Quiet,
            checkpoint: Some(Checkpointing { path: ck.clone(), every: 1, run: "{}".into() }),
        };
        let optim = ortho_rnn::optim::OptimConfig {
            rule: ortho_rnn::backend::OptimRule::RmsProp { rho: 0.9, eps: 1e-8 },
            lr: 1e-3,
            geo_lr: if model == ModelKind::Factorized { 1e-3 } else { 0.0 },
            clip: None,
            weight_decay: 0.0,
        };
        let mut trainer = Trainer::new(&b, net, optim, task.as_ref(), cfg).unwrap();
        trainer.run(|_, _| Ok(())).unwrap();
        drop(trainer);
        PEAK.load(Ordering::Relaxed) - start
    };
    let warm = once();
    let run = once();
    let _ = std::fs::remove_file(&ck);
    println!("\nWARM {warm} PEAK {run}");
}

#[test]
fn memory_estimate_bounds_what_a_run_allocates() {
    use ortho_rnn::tasks::{TaskKind, TaskSpec};
    use ortho_rnn::train::build::{ModelKind, ModelSpec};
    use ortho_rnn::train::memory::{RUNTIME_BYTES, TaskDims, estimate};
    let cases = [
        ("rnn", ModelKind::Rnn, 64, 200, 50),             // BPTT activations dominate
        ("lstm", ModelKind::Lstm, 48, 100, 20),           // the LSTM's gate blocks
        ("factorized", ModelKind::Factorized, 256, 2, 2), // n x n workspaces dominate
        ("exprnn", ModelKind::Exprnn, 160, 2, 2),         // the exponential's workspaces
    ];
    for (name, kind, hidden, t, batch) in cases {
        let o = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "memory_probe", "--ignored", "--nocapture", "--test-threads", "1"])
            .env("ORTHO_RNN_PROBE", format!("{name} {hidden} {t} {batch}"))
            .output()
            .unwrap();
        let out = text(&o.stdout);
        let field = |key: &str| -> u64 {
            out.lines()
                .find_map(|l| l.split(key).nth(1))
                .and_then(|v| v.split_whitespace().next())
                .unwrap_or_else(|| panic!("{name}: no {key}: {out}{}", text(&o.stderr)))
                .parse()
                .unwrap()
        };
        let (warm, peak) = (field("WARM "), field("PEAK "));
        let dims = TaskDims::of(&TaskSpec::synthetic(TaskKind::Copy, t, 1)).unwrap();
        let e = estimate(&ModelSpec::of(kind, hidden), &dims, batch, true).unwrap();
        let predicted = e.total() - RUNTIME_BYTES;
        eprintln!(
            "{name} hidden {hidden} T {t} batch {batch}: the run allocated {peak} bytes (the first run in the \
             process {warm}), estimated {predicted} + {RUNTIME_BYTES} for the process"
        );
        assert!(warm <= peak + RUNTIME_BYTES, "{name}: the libraries' first-use memory {warm} exceeds the allowance");
        assert!(predicted >= peak, "{name}: the estimate {predicted} is below the {peak} bytes allocated");
        assert!(predicted <= 4 * peak, "{name}: the estimate {predicted} is over 4x the {peak} bytes allocated");
    }
}
