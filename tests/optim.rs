//! Optimizer updates against steps computed by hand.

use ortho_rnn::backend::cpu::Cpu;
use ortho_rnn::backend::{Backend, OptimRule, Slice, SliceMut};
use ortho_rnn::nn::{Param, Update};
use ortho_rnn::optim::{OptimConfig, Optimizer};

type B = Cpu<f64>;

fn setup(p: &[f64], decay: bool) -> (B, Vec<Param<B>>) {
    let b = B::new(1);
    let mut param = Param::new(&b, "p", &[p.len()], p, Update::Euclidean).unwrap();
    param.decay = decay;
    (b, vec![param])
}

fn run(rule: OptimRule, lr: f64, wd: f64, clip: Option<f64>, p: &[f64], g: &[f64], steps: usize) -> Vec<f64> {
    let (b, mut params) = setup(p, wd > 0.0);
    let cfg = OptimConfig { rule, lr, geo_lr: 0.0, clip, weight_decay: wd };
    let mut opt = Optimizer::new(&b, cfg, &params).unwrap();
    for _ in 0..steps {
        b.write(SliceMut::all(&mut params[0].grad), g).unwrap();
        opt.step(&b, &mut params).unwrap();
    }
    b.download(Slice::all(&params[0].value)).unwrap()
}

fn close(got: &[f64], want: &[f64]) {
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-12, "got {got:?}, want {want:?}");
    }
}

const P: [f64; 2] = [1.0, -2.0];
const G: [f64; 2] = [0.5, 0.25];

#[test]
fn sgd_plain_momentum_and_nesterov() {
    let sgd = |momentum, nesterov| OptimRule::Sgd { momentum, nesterov };
    close(&run(sgd(0.0, false), 0.1, 0.0, None, &P, &G, 1), &[0.95, -2.025]);
    // Two steps with momentum 0.9: buffers g, then 1.9 g.
    close(&run(sgd(0.9, false), 0.1, 0.0, None, &P, &G, 2), &[1.0 - 0.1 * 2.9 * 0.5, -2.0 - 0.1 * 2.9 * 0.25]);
    // Nesterov, one step: p -= lr (g + 0.9 g).
    close(&run(sgd(0.9, true), 0.1, 0.0, None, &P, &G, 1), &[1.0 - 0.19 * 0.5, -2.0 - 0.19 * 0.25]);
}

#[test]
fn rmsprop_first_step() {
    // v = 0.1 g^2, so the step is lr g / (sqrt(0.1) |g| + eps).
    let got = run(OptimRule::RmsProp { rho: 0.9, eps: 1e-8 }, 0.01, 0.0, None, &P, &G, 1);
    let step = |g: f64| 0.01 * g / (0.1f64.sqrt() * g.abs() + 1e-8);
    close(&got, &[1.0 - step(0.5), -2.0 - step(0.25)]);
}

#[test]
fn adam_bias_correction_makes_early_steps_lr_sized() {
    // With a constant gradient, m_hat = g and v_hat = g^2 at every step: each step is lr g / (|g| + eps).
    let got = run(OptimRule::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 }, 1e-3, 0.0, None, &P, &G, 3);
    let step = |g: f64| 3.0 * 1e-3 * g / (g.abs() + 1e-8);
    for (g, w) in got.iter().zip([1.0 - step(0.5), -2.0 - step(0.25)]) {
        assert!((g - w).abs() < 1e-10, "{got:?}");
    }
}

#[test]
fn coupled_weight_decay() {
    // g' = g + wd p.
    let got = run(OptimRule::Sgd { momentum: 0.0, nesterov: false }, 0.1, 0.1, None, &P, &G, 1);
    close(&got, &[1.0 - 0.1 * (0.5 + 0.1), -2.0 - 0.1 * (0.25 - 0.2)]);
}

#[test]
fn global_norm_clipping() {
    // ||(3, 4)|| = 5 > 1: the gradient becomes (0.6, 0.8).
    let got = run(OptimRule::Sgd { momentum: 0.0, nesterov: false }, 1.0, 0.0, Some(1.0), &[0.0, 0.0], &[3.0, 4.0], 1);
    close(&got, &[-0.6, -0.8]);
    let below =
        run(OptimRule::Sgd { momentum: 0.0, nesterov: false }, 1.0, 0.0, Some(10.0), &[0.0, 0.0], &[3.0, 4.0], 1);
    close(&below, &[-3.0, -4.0]);
}

#[test]
fn impossible_hyperparameters_are_rejected() {
    let (b, params) = setup(&P, false);
    let ok = OptimConfig {
        rule: OptimRule::Sgd { momentum: 0.0, nesterov: false },
        lr: 0.1,
        geo_lr: 0.0,
        clip: None,
        weight_decay: 0.0,
    };
    for bad in [
        OptimConfig { lr: -0.1, ..ok },
        OptimConfig { lr: f64::NAN, ..ok },
        OptimConfig { clip: Some(0.0), ..ok },
        OptimConfig { weight_decay: -1.0, ..ok },
        OptimConfig { rule: OptimRule::Sgd { momentum: 1.5, nesterov: false }, ..ok },
        OptimConfig { rule: OptimRule::RmsProp { rho: 1.0, eps: 1e-8 }, ..ok },
        OptimConfig { rule: OptimRule::Adam { beta1: 0.9, beta2: 0.999, eps: 0.0 }, ..ok },
    ] {
        let err = Optimizer::new(&b, bad, &params).err().expect("must be rejected");
        assert!(err.to_string().contains("invalid value"), "{err}");
    }
}
