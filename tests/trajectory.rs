//! Whole trainings against PyTorch, step by step: every model, optimizer, regularizer and activation
//! of ortho-rnn replays 60 iterations from the committed reference trajectories in `tests/golden/`
//! and must agree with them.
//!
//! Each golden file holds a run specification (metadata `run`), the initial weights
//! (`init.{name}`), and what PyTorch 2.15 (float64, CPU) computed from those weights on the same
//! batches: per iteration the loss, the regularizer terms, the global gradient norm before clipping
//! and whether clipping acted, and the parameters after iterations 1, 2, 3, 10, 20, ..., 60
//! (`after.{name}`). The reference implementation is `tools/torch_replay.py` (models and losses
//! written with torch ops and autograd, Cayley steps with `torch.linalg.solve`, expRNN/DTRIV with
//! `torch.linalg.matrix_exp`, `torch.optim` for SGD, RMSprop and Adam); its docstring lists the
//! conventions it shares with ortho-rnn. CI needs no PyTorch: it reads the committed files.
//!
//! Regenerate (needs `pip install torch safetensors`; a few seconds once PyTorch is installed):
//!
//! ```sh
//! tools/golden_trajectories.sh         # dumps every case (ortho-rnn train --dtype f64 --dump-trajectory
//!                                      # target/trajectory/CASE ...), replays them in PyTorch, prints the
//!                                      # differences, writes tests/golden/CASE.safetensors
//! DTYPE=f32 DUMP_ONLY=1 tools/golden_trajectories.sh && python3 tools/torch_replay.py target/trajectory/*/
//!                                      # the same cases trained in f32, against PyTorch float64
//! ```
//!
//! Tolerances:
//! - **f64**: `1e-9` relative on every loss, gradient norm and parameter (normwise: the largest
//!   entry difference over the largest reference entry), and the same clipping decisions. Measured
//!   when the files were made: at most `3.4e-13` over all cases.
//! - **f32** (the training default), against the same float64 reference: `2e-3` relative. The
//!   measured worst over all cases was `1.9e-4` (a gradient norm; losses at most `5e-5`). Why that
//!   large: f32's unit roundoff is `6e-8` and one BPTT pass sums hundreds of products per entry, so
//!   gradients carry relative errors near `1e-6`; RMSprop and Adam divide by `sqrt(v)`, which turns
//!   the error of near-zero gradient entries into step differences of order `lr * 1e-3`, and 60
//!   iterations of training compound them. The tolerance is ten times the measured worst. Clipping
//!   decisions are not compared in f32 (a norm within rounding of the threshold may go either way).

use ortho_rnn::backend::cpu::Cpu;
use ortho_rnn::backend::{Activation, Backend, OptimRule};
use ortho_rnn::nn::Update;
use ortho_rnn::param::factorized::Spectrum;
use ortho_rnn::scalar::Scalar;
use ortho_rnn::train::build::ModelKind;
use ortho_rnn::train::progress::Mode;
use ortho_rnn::train::trajectory::Tensors;
use ortho_rnn::train::{RunSpec, TrainConfig, Trainer};
use std::path::{Path, PathBuf};

struct Golden {
    name: String,
    path: PathBuf,
    run: RunSpec,
    t: Tensors,
}

impl Golden {
    fn get(&self, name: &str) -> &(Vec<usize>, Vec<f64>) {
        self.t.get(&self.path, name).unwrap_or_else(|e| panic!("{e}"))
    }
    fn iters(&self) -> usize {
        self.get("loss").1.len()
    }
}

fn goldens() -> Vec<Golden> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 10, "expected the golden trajectories in {}", dir.display());
    paths
        .into_iter()
        .map(|path| {
            let t = Tensors::read(&path).unwrap_or_else(|e| panic!("{e}"));
            let run: RunSpec =
                serde_json::from_str(&t.metadata["run"]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            Golden { name, path, run, t }
        })
        .collect()
}

/// `max |a - b| / max |b|` (0 when both are zero).
fn normwise(a: &[f64], b: &[f64]) -> f64 {
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let diff = a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
    if diff == 0.0 { 0.0 } else { diff / scale.max(f64::MIN_POSITIVE) }
}

/// Replays a golden case on backend `b`; returns the largest relative difference and where.
fn replay<B: Backend>(b: &B, g: &Golden, check_clipping: bool) -> (f64, String) {
    let run = &g.run;
    let task = run.task.build().unwrap();
    let model = run.model.build(b, task.as_ref(), run.seed).unwrap();
    let mut worst = (0.0f64, String::new());
    let mut note = |d: f64, what: String| {
        if d > worst.0 || worst.1.is_empty() {
            worst = (d, what);
        }
    };
    // The initial weights are the ones PyTorch started from (up to the element type's rounding).
    for p in model.params() {
        let got: Vec<f64> = b.download(p.v()).unwrap().iter().map(|v| v.f64()).collect();
        let (shape, want) = g.get(&format!("init.{}", p.name));
        assert_eq!(shape, &p.shape, "{}: shape of {}", g.name, p.name);
        let d = normwise(&got, want);
        assert!(
            d <= 1e-7,
            "{}: the initial {} differs from the reference's by {d:.2e}: the initialization changed; regenerate the golden files",
            g.name,
            p.name
        );
    }
    let sums: Vec<[f64; 2]> = serde_json::from_str(&g.t.metadata["batch_sums"]).unwrap();
    let cfg = TrainConfig {
        iters: g.iters(),
        batch: run.batch,
        eval_every: usize::MAX,
        seed: run.seed,
        metrics: None,
        record_grad_norms: false,
        diagnostics: false,
        progress: Mode::Quiet,
        checkpoint: None,
    };
    let mut trainer = Trainer::new(b, model, run.optim, task.as_ref(), cfg).unwrap();
    let param_iters: Vec<usize> = g.get("param_iters").1.iter().map(|&v| v as usize).collect();
    let (loss, reg, norm, clipped) = (&g.get("loss").1, &g.get("reg").1, &g.get("grad_norm").1, &g.get("clipped").1);
    for i in 1..=g.iters() {
        let batch = task.train_batch(i - 1, run.batch).unwrap();
        let s = [batch.x.iter().map(|&v| v as f64).sum::<f64>(), batch.y.iter().map(|&v| v as f64).sum::<f64>()];
        assert!(
            normwise(&s, &sums[i - 1]) < 1e-9,
            "{}: batch {i} is not the one the reference replayed ({s:?} vs {:?}): the task generator changed",
            g.name,
            sums[i - 1]
        );
        let st = trainer.step().unwrap();
        let info = trainer.last_step;
        note((st.loss - loss[i - 1]).abs() / loss[i - 1].abs(), format!("loss at iteration {i}"));
        note(
            (st.reg - reg[i - 1]).abs() / (loss[i - 1].abs() + reg[i - 1].abs()),
            format!("regularizer at iteration {i}"),
        );
        note((info.grad_norm - norm[i - 1]).abs() / norm[i - 1], format!("gradient norm at iteration {i}"));
        if check_clipping {
            assert_eq!(info.clipped, clipped[i - 1] == 1.0, "{}: clipping decision at iteration {i}", g.name);
        }
        if let Some(k) = param_iters.iter().position(|&it| it == i) {
            for p in trainer.model.params() {
                let (shape, all) = g.get(&format!("after.{}", p.name));
                let len: usize = shape[1..].iter().product();
                let want = &all[k * len..(k + 1) * len];
                let got: Vec<f64> = b.download(p.v()).unwrap().iter().map(|v| v.f64()).collect();
                note(normwise(&got, want), format!("{} after iteration {i}", p.name));
            }
        }
    }
    worst
}

#[test]
fn f64_training_matches_pytorch_to_1e_9() {
    let b = Cpu::<f64>::new(2);
    let mut lines = Vec::new();
    for g in goldens() {
        let (d, at) = replay(&b, &g, true);
        lines.push(format!("{:<40} {d:.2e} ({at})", g.name));
        assert!(d <= 1e-9, "{}: relative difference {d:.3e} from PyTorch at {at}", g.name);
    }
    eprintln!("largest relative difference per case (f64):\n{}", lines.join("\n"));
}

#[test]
fn f32_training_matches_pytorch_to_2e_3() {
    let b = Cpu::<f32>::new(2);
    for g in goldens() {
        let (d, at) = replay(&b, &g, false);
        assert!(d <= 2e-3, "{}: relative difference {d:.3e} from PyTorch (f32) at {at}", g.name);
    }
}

#[test]
fn the_golden_cases_cover_every_model_optimizer_regularizer_and_activation() {
    let gs = goldens();
    let has = |f: &dyn Fn(&Golden) -> bool| gs.iter().any(f);
    for kind in [
        ModelKind::Rnn,
        ModelKind::Factorized,
        ModelKind::Orthogonal,
        ModelKind::Scornn,
        ModelKind::Exprnn,
        ModelKind::Dtriv,
        ModelKind::Lstm,
    ] {
        assert!(has(&|g| g.run.model.model == kind), "no golden case for {kind:?}");
    }
    let fact =
        |g: &Golden, s: fn(Spectrum) -> bool| g.run.model.model == ModelKind::Factorized && s(g.run.model.spectrum);
    assert!(has(&|g| fact(g, |s| matches!(s, Spectrum::Margin(_)))), "factorized with a margin");
    assert!(has(&|g| fact(g, |s| s == Spectrum::Free)), "factorized without a margin");
    for k in [1, 10] {
        // DTRIV-K with enough iterations for several base changes.
        assert!(has(&|g| g.run.model.model == ModelKind::Dtriv && g.run.model.k == Some(k) && g.iters() >= 5 * k));
    }
    assert!(
        has(&|g| matches!(g.run.optim.rule, OptimRule::Sgd { momentum, .. } if momentum > 0.0)),
        "SGD with momentum"
    );
    assert!(has(&|g| matches!(g.run.optim.rule, OptimRule::RmsProp { .. })), "RMSprop");
    assert!(has(&|g| matches!(g.run.optim.rule, OptimRule::Adam { .. })), "Adam");
    for act in [Activation::Prelu, Activation::Oplu, Activation::Modrelu] {
        assert!(has(&|g| g.run.model.activation == act && g.run.model.model != ModelKind::Lstm), "activation {act:?}");
    }
    let r = |g: &Golden| g.run.model.regs;
    assert!(has(&|g| r(g).soft_orth > 0.0), "soft-orth");
    assert!(has(&|g| r(g).spectrum_prior > 0.0), "spectrum-prior");
    assert!(has(&|g| r(g).gain_orth.is_some_and(|(l, _)| l > 0.0)), "gain-orth");
    assert!(has(&|g| g.run.optim.weight_decay > 0.0 && g.run.model.model != ModelKind::Lstm), "weight decay (RNN)");
    assert!(has(&|g| g.run.optim.weight_decay > 0.0 && g.run.model.model == ModelKind::Lstm), "weight decay (LSTM)");
    // Clipping acts in some iterations of some case, and not in all of them.
    let clipped: Vec<f64> = gs.iter().flat_map(|g| g.get("clipped").1.clone()).collect();
    assert!(clipped.contains(&1.0) && clipped.contains(&0.0), "clipping active in some iterations only");
    assert!(has(&|g| g.run.model.model.geodesic() && g.get("clipped").1.contains(&1.0)), "clipped geodesic steps");
    // Frozen parameters (the DTRIV base between changes, a fixed PReLU slope) are covered too.
    let b = Cpu::<f64>::new(1);
    assert!(gs.iter().any(|g| {
        let task = g.run.task.build().unwrap();
        let m = g.run.model.build(&b, task.as_ref(), g.run.seed).unwrap();
        m.params().iter().any(|p| p.name == "prelu_slope" && p.update == Update::Frozen)
    }));
    assert!(gs.iter().all(|g| g.iters() >= 50), "every case replays at least 50 iterations");
}

#[test]
fn the_command_line_dump_holds_the_same_trajectory() {
    // `ortho-rnn train --dump-trajectory` writes what the library computes: its first iterations
    // equal the reference's within the f64 tolerance.
    let g = goldens().into_iter().find(|g| g.name.starts_with("factorized_margin_rmsprop")).expect("case");
    let dir = std::env::temp_dir().join(format!("ortho-rnn-dump-{}", std::process::id()));
    let spec = &g.run;
    let margin = match spec.model.spectrum {
        Spectrum::Margin(m) => m.to_string(),
        _ => unreachable!(),
    };
    let OptimRule::RmsProp { rho, eps } = spec.optim.rule else { unreachable!() };
    let num = |v: f64| v.to_string();
    let args = [
        "train",
        "--dtype",
        "f64",
        "--quiet",
        "--no-diagnostics",
        "--iters",
        "10",
        "--eval-every",
        "10",
        "--task",
        "copy",
        "--seq-len",
        &spec.task.seq_len.unwrap().to_string(),
        "--batch",
        &spec.batch.to_string(),
        "--seed",
        &spec.seed.to_string(),
        "--model",
        "factorized",
        "--hidden",
        &spec.model.hidden.to_string(),
        "--margin",
        &margin,
        "--activation",
        "identity",
        "--optimizer",
        "rmsprop",
        "--rho",
        &num(rho),
        "--eps",
        &num(eps),
        "--lr",
        &num(spec.optim.lr),
        "--geo-lr",
        &num(spec.optim.geo_lr),
        "--clip",
        &num(spec.optim.clip.unwrap()),
        "--weight-decay",
        &num(spec.optim.weight_decay),
        "--dump-trajectory",
        dir.to_str().unwrap(),
    ];
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ortho-rnn")).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["run"]["model"], serde_json::to_value(&spec.model).unwrap());
    let traj = Tensors::read(&dir.join("trajectory.safetensors")).unwrap();
    let dumped = &traj.tensors["loss"].1;
    assert_eq!(dumped.len(), 10);
    assert!(normwise(dumped, &g.get("loss").1[..10]) < 1e-9, "{dumped:?}");
    let x = Tensors::read(&dir.join("batches.safetensors")).unwrap();
    assert_eq!(
        x.tensors["x_index.1"].0,
        vec![spec.task.seq_len.unwrap() + 20, spec.batch],
        "one-hot inputs as indices"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn keep_best_writes_the_checkpoint_of_the_best_evaluation() {
    // SGD 0.5 on a tiny copy task: the best evaluation (iteration 80) is not the last one.
    use ortho_rnn::optim::OptimConfig;
    use ortho_rnn::tasks::{TaskKind, TaskSpec};
    use ortho_rnn::train::build::ModelSpec;
    use ortho_rnn::train::checkpoint;
    let dir = std::env::temp_dir().join(format!("ortho-rnn-keep-best-{}", std::process::id()));
    let best_path = dir.join("run.best.safetensors");
    let run = RunSpec {
        task: TaskSpec::synthetic(TaskKind::Copy, 5, 1),
        model: ModelSpec::of(ModelKind::Rnn, 8),
        optim: OptimConfig {
            rule: OptimRule::Sgd { momentum: 0.0, nesterov: false },
            lr: 0.5,
            geo_lr: 0.0,
            clip: None,
            weight_decay: 0.0,
        },
        batch: 50,
        seed: 1,
        eval_every: 20,
        iters: 200,
        precision: Default::default(),
    };
    let json = serde_json::to_string(&run).unwrap();
    let b = Cpu::<f32>::new(1);
    let task = run.task.build().unwrap();
    let cfg = |iters| TrainConfig {
        iters,
        batch: run.batch,
        eval_every: run.eval_every,
        seed: run.seed,
        metrics: None,
        record_grad_norms: false,
        diagnostics: false,
        progress: Mode::Quiet,
        checkpoint: None,
    };
    let model = run.model.build(&b, task.as_ref(), run.seed).unwrap();
    let mut t = Trainer::new(&b, model, run.optim, task.as_ref(), cfg(run.iters)).unwrap();
    t.keep_best = Some((best_path.clone(), json.clone()));
    let summary = t.run(|_, _| Ok(())).unwrap();
    let best = summary.best.expect("a best evaluation");
    assert!(best.iter < run.iters && best.accuracy > summary.accuracy, "{best:?} vs final {:?}", summary.accuracy);
    // The file holds the weights of that evaluation: restored, they evaluate to the same loss.
    let ck = checkpoint::load(&best_path).unwrap();
    assert_eq!((ck.iter, ck.best), (best.iter, Some(best)));
    let model = run.model.build(&b, task.as_ref(), run.seed).unwrap();
    let mut t = Trainer::new(&b, model, run.optim, task.as_ref(), cfg(run.iters)).unwrap();
    checkpoint::restore(&mut t, &ck, &best_path).unwrap();
    let st = ortho_rnn::train::evaluate(t.model.as_mut(), task.as_ref(), run.batch).unwrap();
    assert_eq!(st.loss, best.loss);
    std::fs::remove_dir_all(&dir).unwrap();
}
