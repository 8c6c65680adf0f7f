//! The Elman RNN's BPTT, every activation and every loss against f64 central finite differences.

mod common;

use common::{B64, gradcheck, random_batch};
use ortho_rnn::backend::{Activation, Backend, SliceMut};
use ortho_rnn::nn::rnn::{Rnn, RnnConfig};
use ortho_rnn::nn::{Model, init};
use ortho_rnn::optim::regularize::Regularizers;
use ortho_rnn::param::free::Free;
use ortho_rnn::tasks::LossKind;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn build(act: Activation, n: usize, inp: usize, loss: LossKind, regs: Regularizers, seed: u64) -> Rnn<B64> {
    let b = B64::new(1);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let w0: Vec<f64> = init::orthogonal(&mut rng, n).into_iter().map(|v| v * 0.9).collect();
    let cfg = RnnConfig {
        input: inp,
        hidden: n,
        loss,
        acc_last: None,
        activation: act,
        prelu_slope: 0.7,
        prelu_trainable: true,
        regs,
        init_in: Default::default(),
        init_out: Default::default(),
    };
    let mut m = Rnn::new(&b, cfg, &mut rng, Box::new(Free), Free::params(&b, n, &w0).unwrap()).unwrap();
    // Non-trivial modReLU biases, so that their gradient is exercised on both sides of the dead zone.
    if act == Activation::Modrelu {
        let p = m.params_mut().iter_mut().find(|p| p.name == "modrelu_bias").unwrap();
        let v: Vec<f64> = (0..n).map(|i| if i % 3 == 0 { -0.2 } else { 0.15 }).collect();
        b.write(SliceMut::all(&mut p.value), &v).unwrap();
    }
    m
}

fn check(act: Activation, n: usize, inp: usize, t: usize, batch: usize, loss: LossKind, regs: Regularizers) {
    let mut m = build(act, n, inp, loss, regs, 7 + n as u64);
    let targets = match loss {
        LossKind::XentEveryStep { .. } => t * batch,
        LossKind::XentLastStep { .. } => batch,
        LossKind::MseLastStep { dim } => batch * dim,
    };
    let classes = match loss {
        LossKind::MseLastStep { .. } => None,
        _ => Some(loss.outputs()),
    };
    let data = random_batch(t, batch, inp, targets, classes, 11 + t as u64);
    // h = 1e-6: small enough that no ReLU-family kink is crossed, large enough for f64 round-off (~1e-10).
    let (err, name) = gradcheck(&mut m, &data, 1e-6, 60);
    assert!(err <= 1e-6, "{act:?} n={n} T={t} B={batch} {loss:?}: relative error {err:.3e} in {name}");
}

const SHAPES: [(usize, usize, usize, usize); 3] = [(6, 3, 5, 2), (4, 1, 3, 3), (10, 4, 7, 5)];

#[test]
fn every_activation_with_every_step_cross_entropy() {
    for act in Activation::ALL {
        for (n, inp, t, b) in SHAPES {
            check(act, n, inp, t, b, LossKind::XentEveryStep { classes: 5 }, Regularizers::default());
        }
    }
}

#[test]
fn last_step_cross_entropy_and_mse() {
    for act in [Activation::Tanh, Activation::Relu, Activation::Oplu] {
        for (n, inp, t, b) in SHAPES {
            check(act, n, inp, t, b, LossKind::XentLastStep { classes: 3 }, Regularizers::default());
            check(act, n, inp, t, b, LossKind::MseLastStep { dim: 2 }, Regularizers::default());
        }
    }
}

#[test]
fn odd_hidden_sizes() {
    for act in [Activation::Tanh, Activation::Prelu, Activation::Modrelu, Activation::Identity] {
        for (n, inp, t, b) in [(5, 3, 4, 3), (1, 2, 6, 1), (7, 1, 2, 4)] {
            check(act, n, inp, t, b, LossKind::XentEveryStep { classes: 4 }, Regularizers::default());
        }
    }
}

#[test]
fn regularizers_on_the_composite_matrix() {
    let regs = Regularizers { soft_orth: 0.3, gain_orth: Some((0.2, 1.3)), spectrum_prior: 0.0, weight_decay: 0.05 };
    for (n, inp, t, b) in SHAPES {
        // Weight decay is a gradient-only term (not part of the reported objective), so check the
        // penalties that have a loss separately from the decay.
        let no_decay = Regularizers { weight_decay: 0.0, ..regs };
        check(Activation::Tanh, n, inp, t, b, LossKind::XentEveryStep { classes: 3 }, no_decay);
    }
}
