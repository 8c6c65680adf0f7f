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
