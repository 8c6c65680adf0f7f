//! The LSTM baseline's BPTT (peepholes included) against f64 central finite differences.

mod common;

use common::{B64, gradcheck, random_batch};
use ortho_rnn::backend::{Backend, SliceMut};
use ortho_rnn::nn::Model;
use ortho_rnn::nn::lstm::Lstm;
use ortho_rnn::tasks::LossKind;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn check(n: usize, inp: usize, t: usize, bs: usize, loss: LossKind) {
    let b = B64::new(1);
    let mut rng = ChaCha8Rng::seed_from_u64(n as u64);
    let mut m = Lstm::new(&b, inp, n, loss, None, Default::default(), &mut rng).unwrap();
    // Non-zero peepholes so that their paths through c_{t-1} and c_t are exercised.
    let p = m.params_mut().iter_mut().find(|p| p.name == "peep").unwrap();
    let v: Vec<f64> = (0..3 * n).map(|i| 0.3 * ((i as f64) * 0.7).sin()).collect();
    b.write(SliceMut::all(&mut p.value), &v).unwrap();
    let targets = match loss {
        LossKind::XentEveryStep { .. } => t * bs,
        LossKind::XentLastStep { .. } => bs,
        LossKind::MseLastStep { dim } => bs * dim,
    };
    let classes = (!matches!(loss, LossKind::MseLastStep { .. })).then(|| loss.outputs());
    let data = random_batch(t, bs, inp, targets, classes, 5);
    let (err, name) = gradcheck(&mut m, &data, 1e-6, 80);
    assert!(err <= 1e-6, "LSTM n={n} T={t} B={bs} {loss:?}: relative error {err:.3e} in {name}");
}

#[test]
fn lstm_gradients_match_finite_differences() {
    for (n, inp, t, bs) in [(3, 2, 4, 2), (5, 3, 6, 3), (8, 1, 3, 4)] {
        check(n, inp, t, bs, LossKind::XentEveryStep { classes: 4 });
        check(n, inp, t, bs, LossKind::MseLastStep { dim: 2 });
    }
}
