//! Milliseconds per training iteration on the copy task (T = 100: sequences of 120 steps, batch 50):
//! hidden 128, 500 and 1000, linear and tanh transitions, the plain RNN (SGD) and the factorized
//! model with geodesic steps, on the CPU backend.
//!
//! `cargo bench --bench train` (add `-- 128` to filter by name). The same measurement with a JSON
//! summary: `ortho-rnn bench --model rnn --hidden 128 --seq-len 100 --batch 50 --iters 20 --json`.

mod common;

use criterion::{Criterion, criterion_group, criterion_main};
use ortho_rnn::backend::Activation;
use ortho_rnn::backend::cpu::Cpu;
use ortho_rnn::tasks::Task;
use ortho_rnn::tasks::copy::CopyTask;
use ortho_rnn::train::bench::Iteration;
use ortho_rnn::train::build::{ModelKind, ModelSpec};
use std::time::Duration;

fn iteration(c: &mut Criterion) {
    let b = Cpu::<f32>::default();
    let task = CopyTask::new(100, 1).unwrap();
    let mut group = c.benchmark_group("train_iteration");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    for (model, geo) in [(ModelKind::Rnn, 0.0), (ModelKind::Factorized, 1e-3)] {
        for act in [Activation::Identity, Activation::Tanh] {
            for n in [128, 500, 1000] {
                if model == ModelKind::Factorized && act == Activation::Identity {
                    continue;
                }
                let mut spec = ModelSpec::of(model, n);
                spec.activation = act;
                let opt = common::timing_sgd(geo);
                let mut it = Iteration::new(&b, &spec, opt, &task).unwrap();
                let data = task.train_batch(0, 50).unwrap();
                let name =
                    format!("{}/{}/{n}", model.as_str(), if act == Activation::Tanh { "tanh" } else { "linear" });
                group.bench_function(name, |bench| bench.iter(|| it.run(&b, &data).unwrap()));
            }
        }
    }
    group.finish();
}

criterion_group!(benches, iteration);
criterion_main!(benches);
