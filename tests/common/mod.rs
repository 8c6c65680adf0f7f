//! Shared test helpers: f64 central finite differences over a model's parameters.
#![allow(dead_code)]

use ortho_rnn::backend::cpu::Cpu;
use ortho_rnn::backend::{Backend, Slice, SliceMut};
use ortho_rnn::nn::{Model, Pass};
use ortho_rnn::tasks::Batch;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub type B64 = Cpu<f64>;

/// The training objective (loss plus regularizers) of `model` on `batch`.
pub fn objective(model: &mut dyn Model<B64>, batch: &Batch) -> f64 {
    let st = model.run(batch, Pass::Train).expect("run");
    st.loss + st.reg
}

/// Relative error `||a - f|| / max(||a||, ||f||)` between analytic and finite-difference gradients
/// of every parameter (or `max_entries` seeded entries of large ones); returns the worst and its name.
pub fn gradcheck(model: &mut dyn Model<B64>, batch: &Batch, h: f64, max_entries: usize) -> (f64, String) {
    let b = B64::new(1);
    model.run(batch, Pass::Train).expect("run");
    let analytic: Vec<Vec<f64>> = model.params().iter().map(|p| b.download(Slice::all(&p.grad)).unwrap()).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let mut worst = (0.0f64, String::new());
    #[allow(clippy::needless_range_loop)]
    for pi in 0..model.params().len() {
        if model.params()[pi].update == ortho_rnn::nn::Update::Frozen {
            continue;
        }
        let name = model.params()[pi].name.clone();
        let value = b.download(model.params()[pi].v()).unwrap();
        let idx: Vec<usize> = if value.len() <= max_entries {
            (0..value.len()).collect()
        } else {
            (0..max_entries).map(|_| rng.random_range(0..value.len())).collect()
        };
        let (mut num, mut den_a, mut den_f) = (0.0, 0.0, 0.0);
        for &j in &idx {
            let mut eval = |delta: f64| {
                let mut v = value.clone();
                v[j] += delta;
                b.write(SliceMut::all(&mut model.params_mut()[pi].value), &v).unwrap();
                model.refresh().unwrap();
                objective(model, batch)
            };
            let fd = (eval(h) - eval(-h)) / (2.0 * h);
            let a = analytic[pi][j];
            num += (a - fd) * (a - fd);
            den_a += a * a;
            den_f += fd * fd;
        }
        b.write(SliceMut::all(&mut model.params_mut()[pi].value), &value).unwrap();
        model.refresh().unwrap();
        let rel = if den_a.max(den_f) == 0.0 { 0.0 } else { num.sqrt() / den_a.max(den_f).sqrt() };
        if rel >= worst.0 {
            worst = (rel, format!("{name} (|g| = {:.3e})", den_a.sqrt()));
        }
    }
    worst
}

/// A random batch: inputs N(0,1)-ish, class targets with some ignored rows, or regression targets.
pub fn random_batch(t: usize, batch: usize, inp: usize, targets: usize, classes: Option<usize>, seed: u64) -> Batch {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = (0..t * batch * inp).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let y = (0..targets)
        .map(|i| match classes {
            Some(_) if i % 7 == 3 => -1.0,
            Some(c) => rng.random_range(0..c) as f32,
            None => rng.random_range(-1.0f32..1.0),
        })
        .collect();
    Batch { t, batch, input_dim: inp, x, y }
}
