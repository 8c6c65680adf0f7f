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

// ---------- Model::recurrent_matrix against the hand-built composition ----------

mod recurrent_matrix {
    use nalgebra::DMatrix;
    use ortho_rnn::prelude::*;

    const N: usize = 6;

    /// Seeded values in `[-scale, scale)` (an LCG: independent of the crate's generators).
    fn values(seed: u64, len: usize, scale: f64) -> Vec<f64> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                scale * (2.0 * ((s >> 11) as f64 / (1u64 << 53) as f64) - 1.0)
            })
            .collect()
    }

    fn mat(x: &[f64]) -> DMatrix<f64> {
        DMatrix::from_row_slice(N, N, x)
    }

    fn rows(m: &DMatrix<f64>) -> Vec<f64> {
        (0..N * N).map(|k| m[(k / N, k % N)]).collect()
    }

    fn build(kind: ModelKind) -> (Cpu<f64>, Box<dyn Model<Cpu<f64>>>) {
        let b = Cpu::<f64>::new(1);
        let task = CopyTask::new(5, 0).unwrap();
        let spec = match kind {
            ModelKind::Factorized => ModelSpec { spectrum: Spectrum::Margin(0.3), ..ModelSpec::of(kind, N) },
            _ => ModelSpec::of(kind, N),
        };
        let model = spec.build(&b, &task, 3).unwrap();
        (b, model)
    }

    fn assert_close(kind: ModelKind, got: &[f64], want: &[f64]) {
        let err = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(err < 1e-12, "{kind:?}: max |W - reference| = {err:e}");
    }

    /// The skew part `(A - A^T) / 2` the skew parametrizations use.
    fn skew_part(a: &[f64]) -> DMatrix<f64> {
        let a = mat(a);
        (&a - a.transpose()) * 0.5
    }

    #[test]
    fn free_and_orthogonal_return_their_parameter() {
        for kind in [ModelKind::Rnn, ModelKind::Orthogonal] {
            let (b, mut model) = build(kind);
            let w = values(1, N * N, 1.0);
            model.write(&b, "W", &w).unwrap();
            assert_close(kind, &model.recurrent_matrix().unwrap(), &w);
        }
    }

    #[test]
    fn factorized_is_u_diag_margin_s_v_transposed() {
        let kind = ModelKind::Factorized;
        let (b, mut model) = build(kind);
        let m = 0.3;
        let p = values(2, N, 3.0);
        model.write(&b, "p", &p).unwrap();
        let (u, v) = (mat(&model.read(&b, "U").unwrap()), mat(&model.read(&b, "V").unwrap()));
        // s = 2m (sigmoid(p) - 1/2) + 1.
        let s: Vec<f64> = p.iter().map(|&x| 2.0 * m * (1.0 / (1.0 + (-x).exp()) - 0.5) + 1.0).collect();
        let want = &u * DMatrix::from_diagonal(&nalgebra::DVector::from_vec(s.clone())) * v.transpose();
        let w = model.recurrent_matrix().unwrap();
        assert_close(kind, &w, &rows(&want));
        // U and V start orthogonal, so the singular values of W are s, sorted.
        let mut sorted = s;
        sorted.sort_by(|a, b| b.total_cmp(a));
        let sv = singular_values_host(&w, N).unwrap();
        assert_close(kind, &sv, &sorted);
        assert_close(kind, &model.diagnostics().unwrap().singular_values, &sorted);
    }

    #[test]
    fn scornn_is_the_cayley_transform_times_d() {
        let kind = ModelKind::Scornn;
        let (b, mut model) = build(kind);
        let a = values(3, N * N, 0.5); // not skew: the model uses its skew part
        model.write(&b, "A", &a).unwrap();
        let s = skew_part(&a);
        let i = DMatrix::<f64>::identity(N, N);
        // D: the first N / 2 entries -1 (the default --neg).
        let d = DMatrix::from_fn(N, N, |r, c| {
            if r != c {
                0.0
            } else if r < N / 2 {
                -1.0
            } else {
                1.0
            }
        });
        let want = (&i + &s).try_inverse().unwrap() * (&i - &s) * d;
        let w = model.recurrent_matrix().unwrap();
        assert_close(kind, &w, &rows(&want));
        assert!(drift_host(&w, N).unwrap() < 1e-13);
    }

    #[test]
    fn exprnn_and_dtriv_are_b_exp_a() {
        for kind in [ModelKind::Exprnn, ModelKind::Dtriv] {
            let (b, mut model) = build(kind);
            let a = values(4, N * N, 0.8);
            // Any base (it is frozen and only multiplies): a non-orthogonal one shows the order B exp(A).
            let base = values(5, N * N, 1.0);
            model.write(&b, "A", &a).unwrap();
            model.write(&b, "B", &base).unwrap();
            let want = mat(&base) * skew_part(&a).exp();
            assert_close(kind, &model.recurrent_matrix().unwrap(), &rows(&want));
        }
    }

    #[test]
    fn the_lstm_has_no_single_recurrent_matrix() {
        let (_, mut model) = build(ModelKind::Lstm);
        let e = model.recurrent_matrix().unwrap_err().to_string();
        assert!(e.contains("no single recurrent matrix") && e.contains("Model::read"), "{e}");
    }
}
