//! Checkpoints: resuming continues bit-identically on the CPU, files are written atomically (a run
//! killed at any moment leaves the last checkpoint intact), and malformed files are rejected.

use ortho_rnn::backend::cpu::Cpu;
use ortho_rnn::backend::{Backend, OptimRule, Slice};
use ortho_rnn::optim::OptimConfig;
use ortho_rnn::tasks::{TaskKind, TaskSpec};
use ortho_rnn::train::build::{ModelKind, ModelSpec};
use ortho_rnn::train::checkpoint;
use ortho_rnn::train::progress::Mode;
use ortho_rnn::train::{Checkpointing, RunSpec, TrainConfig, Trainer};
use std::path::{Path, PathBuf};

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ortho-rnn-ckpt-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run_spec(model: ModelSpec, iters: usize) -> RunSpec {
    let geo = if model.model.geodesic() { 2e-3 } else { 0.0 };
    RunSpec {
        task: TaskSpec::synthetic(TaskKind::Copy, 5, 4),
        model,
        optim: OptimConfig {
            rule: OptimRule::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 },
            lr: 2e-3,
            geo_lr: geo,
            clip: Some(1.0),
            weight_decay: 1e-4,
        },
        batch: 8,
        seed: 4,
        eval_every: 1000,
        iters,
        precision: Default::default(),
    }
}

/// Trains `run` for its iterations, optionally resuming from / writing a checkpoint; returns every
/// parameter and optimizer-state value as raw f32 bits.
fn train(run: &RunSpec, resume: Option<&Path>, save: Option<&Path>) -> Vec<u32> {
    let b = Cpu::<f32>::new(2);
    let task = run.task.build().unwrap();
    let model = run.model.build(&b, task.as_ref(), run.seed).unwrap();
    let cfg = TrainConfig {
        iters: run.iters,
        batch: run.batch,
        eval_every: run.eval_every,
        seed: run.seed,
        metrics: None,
        record_grad_norms: false,
        diagnostics: false,
        progress: Mode::Quiet,
        checkpoint: save.map(|p| Checkpointing {
            path: p.to_path_buf(),
            every: run.iters,
            run: serde_json::to_string(run).unwrap(),
        }),
    };
    let mut t = Trainer::new(&b, model, run.optim, task.as_ref(), cfg).unwrap();
    if let Some(p) = resume {
        let ck = checkpoint::load(p).unwrap();
        checkpoint::restore(&mut t, &ck, p).unwrap();
    }
    t.run(|_, _| Ok(())).unwrap();
    let mut bits = Vec::new();
    for (p, (s1, s2)) in t.model.params().iter().zip(t.opt.states()) {
        for buf in [&p.value, s1, s2] {
            bits.extend(b.download(Slice::all(buf)).unwrap().iter().map(|v| v.to_bits()));
        }
    }
    bits
}

#[test]
fn resume_is_bit_identical() {
    let dir = tmpdir("resume");
    let mut dtriv = ModelSpec::of(ModelKind::Dtriv, 12);
    dtriv.k = Some(7);
    // N = 30 and M = 45: the factorized model's drift guard checks at step 50 and DTRIV's base
    // changes every 7 steps both fall on each side of the checkpoint.
    for spec in [
        ModelSpec::of(ModelKind::Rnn, 16),
        ModelSpec::of(ModelKind::Factorized, 16),
        dtriv,
        ModelSpec::of(ModelKind::Lstm, 8),
    ] {
        let name = spec.model.as_str();
        let straight = train(&run_spec(spec.clone(), 75), None, None);
        let ck = dir.join(format!("{name}.safetensors"));
        train(&run_spec(spec.clone(), 30), None, Some(&ck));
        let mut resumed_run = run_spec(spec.clone(), 75);
        resumed_run.iters = 75;
        let resumed = train(&resumed_run, Some(&ck), None);
        assert_eq!(straight.len(), resumed.len());
        let differ = straight.iter().zip(&resumed).filter(|(a, b)| a != b).count();
        assert_eq!(differ, 0, "{name}: {differ} of {} values differ after resuming", straight.len());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_file_is_safetensors_with_documented_names() {
    let dir = tmpdir("names");
    let ck = dir.join("f.safetensors");
    let mut spec = ModelSpec::of(ModelKind::Factorized, 6);
    spec.spectrum = ortho_rnn::param::factorized::Spectrum::Margin(0.1);
    train(&run_spec(spec, 3), None, Some(&ck));
    // Parse the header independently of the safetensors crate: 8-byte little-endian length, JSON.
    let bytes = std::fs::read(&ck).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    for name in ["W_in", "b", "W_o", "b_o", "U", "V", "p", "optim.U.0", "optim.p.1"] {
        assert_eq!(header[name]["dtype"], "F32", "{name} in {header}");
    }
    assert_eq!(header["U"]["shape"], serde_json::json!([6, 6]));
    assert_eq!(header["__metadata__"]["format"], checkpoint::FORMAT);
    assert_eq!(header["__metadata__"]["iter"], "3");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn malformed_checkpoints_are_rejected_with_the_file_named() {
    let dir = tmpdir("bad");
    let ck = dir.join("ok.safetensors");
    train(&run_spec(ModelSpec::of(ModelKind::Rnn, 4), 2), None, Some(&ck));
    let bytes = std::fs::read(&ck).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", bytes[..bytes.len() / 2].to_vec()),
        ("garbage", b"this is not a checkpoint at all".to_vec()),
        ("empty", Vec::new()),
    ];
    for (what, data) in cases {
        let p = dir.join(format!("{what}.safetensors"));
        std::fs::write(&p, data).unwrap();
        let err = checkpoint::load(&p).err().unwrap_or_else(|| panic!("{what} accepted"));
        assert!(err.to_string().contains(&p.display().to_string()), "{what}: {err}");
    }
    let missing = checkpoint::load(&dir.join("nope.safetensors")).err().unwrap();
    assert!(missing.to_string().contains("nope.safetensors"));
    // A checkpoint of another model does not restore into this one.
    let b = Cpu::<f32>::new(1);
    let run = run_spec(ModelSpec::of(ModelKind::Lstm, 4), 2);
    let task = run.task.build().unwrap();
    let model = run.model.build(&b, task.as_ref(), 1).unwrap();
    let cfg = TrainConfig {
        iters: 2,
        batch: 8,
        eval_every: 2,
        seed: 1,
        metrics: None,
        record_grad_norms: false,
        diagnostics: false,
        progress: Mode::Quiet,
        checkpoint: None,
    };
    let mut t = Trainer::new(&b, model, run.optim, task.as_ref(), cfg).unwrap();
    let err = checkpoint::restore(&mut t, &checkpoint::load(&ck).unwrap(), &ck).err().unwrap();
    assert!(err.to_string().contains("model rnn"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn killing_a_run_never_leaves_a_broken_checkpoint() {
    use std::process::{Command, Stdio};
    let dir = tmpdir("kill");
    let ck = dir.join("run.safetensors");
    let mut loaded = 0;
    for i in 0..12u64 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ortho-rnn"))
            .args(["train", "--task", "copy", "--seq-len", "5", "--hidden", "24", "--batch", "4", "--iters", "1000000"])
            .args([
                "--eval-every",
                "1000000",
                "--quiet",
                "--no-diagnostics",
                "--checkpoint-every",
                "1",
                "--threads",
                "1",
            ])
            .arg("--checkpoint")
            .arg(&ck)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill at varied moments: before the first write, in the middle of writes, later.
        std::thread::sleep(std::time::Duration::from_millis(40 + 37 * i));
        child.kill().unwrap();
        child.wait().unwrap();
        if ck.exists() {
            let c = checkpoint::load(&ck).unwrap_or_else(|e| panic!("kill {i} left a broken checkpoint: {e}"));
            assert!(c.iter >= 1);
            loaded += 1;
        }
    }
    assert!(loaded >= 8, "only {loaded} of 12 kills happened after a checkpoint was written");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--precision` is recorded in the summary, every metrics record and the checkpoint's run
/// specification; a resumed run keeps it (and refuses another one); the CPU backend refuses TF32/BF16.
#[test]
fn precision_is_recorded_and_kept_by_a_resumed_run() {
    use std::process::Command;
    let dir = tmpdir("precision");
    let (ck, metrics) = (dir.join("run.safetensors"), dir.join("m.jsonl"));
    let run = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_ortho-rnn"))
            .args(["train", "--device", "emu", "--threads", "1", "--task", "copy", "--seq-len", "5", "--hidden"])
            .args(["16", "--batch", "4", "--eval-every", "2", "--no-diagnostics", "--quiet", "--json"])
            .arg("--checkpoint")
            .arg(&ck)
            .arg("--metrics")
            .arg(&metrics)
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, stdout, stderr) = run(&["--iters", "2", "--precision", "tf32"]);
    assert!(ok, "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["precision"], "tf32", "{stdout}");
    assert!(stdout.contains("(tf32 products)"), "{stdout}");
    let spec: serde_json::Value = serde_json::from_str(&checkpoint::load(&ck).unwrap().run).unwrap();
    assert_eq!(spec["precision"], "tf32");

    let ck_arg = ck.to_str().unwrap().to_string();
    let (ok, stdout, stderr) = run(&["--iters", "4", "--resume", &ck_arg]);
    assert!(ok, "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!((summary["precision"].as_str(), summary["iters"].as_u64()), (Some("tf32"), Some(4)));
    let records = ortho_rnn::train::metrics::read_metrics(&metrics).unwrap();
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|r| r.precision == Some(ortho_rnn::backend::Precision::Tf32)), "{records:?}");

    let (ok, _, stderr) = run(&["--iters", "6", "--resume", &ck_arg, "--precision", "bf16"]);
    // Refused by --resume's check of experiment-changing flags, which names the flag.
    assert!(!ok && stderr.contains("--precision (fixed by the checkpoint)"), "{stderr}");
    let out = Command::new(env!("CARGO_BIN_EXE_ortho-rnn"))
        .args(["train", "--precision", "bf16", "--iters", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("--precision") && stderr.contains("--device cpu"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
