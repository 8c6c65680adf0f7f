//! Training with every parametrization: short copy-task runs beat the baseline, the spectral margin
//! bounds the singular values throughout training, and geodesic steps keep U and V orthogonal.

use ortho_rnn::backend::OptimRule;
use ortho_rnn::backend::cpu::Cpu;
use ortho_rnn::optim::OptimConfig;
use ortho_rnn::param::factorized::Spectrum;
use ortho_rnn::tasks::copy::CopyTask;
use ortho_rnn::train::build::{ModelKind, ModelSpec};
use ortho_rnn::train::metrics::EvalRecord;
use ortho_rnn::train::progress::Mode;
use ortho_rnn::train::{Summary, TrainConfig, Trainer};

fn run(
    spec: ModelSpec,
    lr: f64,
    geo_lr: f64,
    iters: usize,
    eval_every: usize,
    check: impl FnMut(&EvalRecord),
) -> Summary {
    let b = Cpu::<f32>::new(2);
    let task = CopyTask::new(10, 2).unwrap();
    let model = spec.build(&b, &task, 2).unwrap();
    let opt = OptimConfig {
        rule: OptimRule::RmsProp { rho: 0.9, eps: 1e-8 },
        lr,
        geo_lr,
        clip: Some(100.0),
        weight_decay: 0.0,
    };
    let cfg = TrainConfig {
        iters,
        batch: 32,
        eval_every,
        seed: 2,
        metrics: None,
        record_grad_norms: false,
        diagnostics: true,
        progress: Mode::Quiet,
        checkpoint: None,
    };
    let mut check = check;
    let mut t = Trainer::new(&b, model, opt, &task, cfg).unwrap();
    t.run(|_, rec| {
        check(rec);
        Ok(())
    })
    .unwrap()
}

#[test]
fn every_parametrization_beats_the_copy_baseline() {
    for model in [ModelKind::Factorized, ModelKind::Orthogonal, ModelKind::Scornn, ModelKind::Exprnn, ModelKind::Dtriv]
    {
        let geo = if model.geodesic() { 1e-3 } else { 0.0 };
        let s = run(ModelSpec::of(model, 64), 1e-3, geo, 600, 600, |_| {});
        eprintln!("{model:?}: loss {:.4}, accuracy {:.3}", s.loss, s.accuracy.unwrap_or(0.0));
        // The baseline is 0.693 (accuracy 1/8 on the copied symbols); sitting at it means nothing was learned.
        assert!(s.loss < 0.85 * s.baseline, "{model:?}: copy T=10 loss {} vs baseline {}", s.loss, s.baseline);
    }
}

#[test]
fn the_margin_bounds_the_spectrum_throughout_training() {
    for m in [0.01, 0.1] {
        let mut spec = ModelSpec::of(ModelKind::Factorized, 32);
        spec.spectrum = Spectrum::Margin(m);
        // A large learning rate pushes the singular values against the bounds.
        let mut seen = 0;
        run(spec, 1e-2, 1e-3, 300, 20, |rec| {
            let (lo, hi) = (rec.sv_min.unwrap(), rec.sv_max.unwrap());
            // |s| are the singular values (U and V orthogonal to ~1e-5 in f32).
            assert!(
                lo >= 1.0 - m - 1e-4 && hi <= 1.0 + m + 1e-4,
                "m = {m}: singular values in [{lo}, {hi}] at iter {}",
                rec.iter
            );
            assert!(
                rec.drift_u.unwrap() < 1e-4 && rec.drift_v.unwrap() < 1e-4,
                "drift {:?} {:?}",
                rec.drift_u,
                rec.drift_v
            );
            seen += 1;
        });
        assert_eq!(seen, 15);
    }
}

/// `--model factorized --margin none --init glorot`: U, s and V come from the SVD of a Glorot-normal
/// matrix, so U and V are orthogonal, s is that matrix's (non-orthogonal) spectrum, and the singular
/// values of the composite W = U diag(s) V^T are s. With a margin the combination is refused.
#[test]
fn factorized_glorot_init_is_the_svd_of_a_glorot_matrix() {
    use ortho_rnn::nn::init::RecurrentInit;
    let b = Cpu::<f64>::new(1);
    let task = CopyTask::new(10, 2).unwrap();
    let n = 48;
    let spec =
        ModelSpec { init: RecurrentInit::Glorot, spectrum: Spectrum::Free, ..ModelSpec::of(ModelKind::Factorized, n) };
    let mut model = spec.build(&b, &task, 3).unwrap();
    let (u, s, v) = (model.read(&b, "U").unwrap(), model.read(&b, "s").unwrap(), model.read(&b, "V").unwrap());
    for (name, q) in [("U", &u), ("V", &v)] {
        for i in 0..n {
            for j in 0..n {
                let dot: f64 = (0..n).map(|k| q[k * n + i] * q[k * n + j]).sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((dot - want).abs() < 1e-12, "{name}^T {name} [{i},{j}] = {dot}");
            }
        }
    }
    assert!(s.windows(2).all(|w| w[0] >= w[1]) && s[n - 1] >= 0.0, "s is nonincreasing and nonnegative: {s:?}");
    // Glorot normal N(0, 1/n) at n = 48: singular values spread over about (0, 2), far from orthogonal.
    assert!(s[0] > 1.5 && s[n - 1] < 0.2, "a Glorot spectrum, not an orthogonal one: [{}, {}]", s[n - 1], s[0]);
    let d = model.diagnostics().unwrap();
    let mut sv = d.singular_values.clone();
    sv.sort_by(|a, b| b.total_cmp(a));
    for (got, want) in sv.iter().zip(&s) {
        assert!((got - want).abs() < 1e-10, "singular value of W {got} vs s {want}");
    }

    let with_margin = ModelSpec { spectrum: Spectrum::Margin(1.0), ..spec };
    let err = with_margin.build(&b, &task, 3).err().expect("glorot with a margin is refused").to_string();
    assert!(err.contains("--margin none"), "{err}");
}
