//! Gradients of every parametrization of the recurrent matrix (U, V and p or s of the factorized
//! model, W of the orthogonal one, A of scoRNN and expRNN/DTRIV) against f64 central finite
//! differences, through the whole network and BPTT.

mod common;

use common::{B64, gradcheck, random_batch};
use ortho_rnn::backend::{Activation, Backend, SliceMut};
use ortho_rnn::nn::Model;
use ortho_rnn::nn::init;
use ortho_rnn::optim::regularize::Regularizers;
use ortho_rnn::param::factorized::Spectrum;
use ortho_rnn::tasks::{Task, copy::CopyTask};
use ortho_rnn::train::build::{ModelKind, ModelSpec};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn set(m: &mut dyn Model<B64>, name: &str, v: &[f64]) {
    let b = B64::new(1);
    let p = m.params_mut().iter_mut().find(|p| p.name == name).unwrap_or_else(|| panic!("no parameter {name}"));
    b.write(SliceMut::all(&mut p.value), v).unwrap();
    m.refresh().unwrap();
}

fn random_skew(rng: &mut ChaCha8Rng, n: usize, scale: f64) -> Vec<f64> {
    let mut a = vec![0.0; n * n];
    for i in 0..n {
        for j in i + 1..n {
            let v = scale * rng.random_range(-1.0..1.0);
            a[i * n + j] = v;
            a[j * n + i] = -v;
        }
    }
    a
}

/// Builds `spec` for a tiny copy task (one-hot inputs, every-step cross-entropy), lets `tweak`
/// move the parameters off their special initial values, and checks every gradient.
fn check(spec: ModelSpec, tweak: impl Fn(&mut dyn Model<B64>, &mut ChaCha8Rng)) {
    let b = B64::new(1);
    let task = CopyTask::new(2, 1).unwrap();
    let mut m = spec.build(&b, &task, 5).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    tweak(m.as_mut(), &mut rng);
    let batch = task.train_batch(0, 3).unwrap();
    let mut data = random_batch(batch.t, 3, task.input_dim(), batch.t * 3, Some(9), 3);
    data.x = batch.x; // one-hot inputs, random targets
    let (err, name) = gradcheck(m.as_mut(), &data, 1e-6, 60);
    assert!(err <= 1e-6, "{:?}: relative error {err:.3e} in {name}", spec.model);
}

#[test]
fn factorized_with_margin_prior_and_free_spectrum() {
    for (spectrum, prior) in [(Spectrum::Margin(0.3), 0.0), (Spectrum::Margin(2.0), 0.05), (Spectrum::Free, 0.1)] {
        for n in [4, 7] {
            let mut spec = ModelSpec::of(ModelKind::Factorized, n);
            spec.spectrum = spectrum;
            spec.regs = Regularizers { spectrum_prior: prior, ..Default::default() };
            check(spec, |m, rng| {
                let name = if spectrum == Spectrum::Free { "s" } else { "p" };
                let v: Vec<f64> = (0..n).map(|_| rng.random_range(0.5..1.5)).collect();
                set(m, name, &v);
            });
        }
    }
}

#[test]
fn orthogonal_and_scornn() {
    for n in [5, 8] {
        check(ModelSpec::of(ModelKind::Orthogonal, n), |_, _| {});
        for neg in [0, 2] {
            let mut spec = ModelSpec::of(ModelKind::Scornn, n);
            spec.neg = Some(neg);
            check(spec, |m, rng| set(m, "A", &random_skew(rng, n, 0.6)));
        }
    }
}

#[test]
fn exprnn_and_dtriv_with_scaling_and_a_moved_base() {
    for (n, scale) in [(4, 0.3), (6, 1.5), (5, 4.0)] {
        // Larger norms trigger higher Pade degrees and scaling-and-squaring in the forward and adjoint.
        check(ModelSpec::of(ModelKind::Exprnn, n), |m, rng| set(m, "A", &random_skew(rng, n, scale)));
        let mut spec = ModelSpec::of(ModelKind::Dtriv, n);
        spec.activation = Activation::Modrelu;
        check(spec, |m, rng| {
            set(m, "A", &random_skew(rng, n, scale));
            set(m, "B", &init::orthogonal(rng, n));
        });
    }
}
