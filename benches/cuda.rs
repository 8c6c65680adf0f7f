//! CUDA benchmarks, run only where a GPU is present (skipped with a message otherwise):
//! the GEMM kernel at 1024^3 (target: at least half the card's FP32 peak) and full copy-task
//! training iterations (T = 100, batch 50, hidden 128 and 1000; target under 5 ms at 1000).
//!
//! `cargo bench --bench cuda` (needs libcuda, and libnvrtc on LD_LIBRARY_PATH).

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ortho_rnn::backend::cuda::Cuda;
use ortho_rnn::backend::cuda::cudarc_driver::{CudarcDriver, list_gpus};
use ortho_rnn::backend::{Backend, Epilogue, Gemm, Slice, SliceMut};
use ortho_rnn::tasks::Task;
use ortho_rnn::tasks::copy::CopyTask;
use ortho_rnn::train::bench::Iteration;
use ortho_rnn::train::build::{ModelKind, ModelSpec};
use std::time::Duration;

fn gpu() -> Option<Cuda<CudarcDriver>> {
    match list_gpus() {
        Ok(g) if !g.is_empty() => match CudarcDriver::new(0).and_then(Cuda::new) {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!("SKIPPED cuda benchmarks: {e}");
                None
            }
        },
        Ok(_) => {
            eprintln!("SKIPPED cuda benchmarks: no CUDA device");
            None
        }
        Err(e) => {
            eprintln!("SKIPPED cuda benchmarks: {e}");
            None
        }
    }
}

fn kernels(c: &mut Criterion) {
    let Some(b) = gpu() else { return };
    let n = 1024;
    let x = b.upload(&vec![0.5f32; n * n]).unwrap();
    let y = b.upload(&vec![0.25f32; n * n]).unwrap();
    let mut z = b.zeros(n * n).unwrap();
    let g = Gemm::new(n, n, n);
    let mut group = c.benchmark_group("cuda_kernels");
    group.throughput(Throughput::Elements(g.flops() as u64));
    group.bench_function("gemm_f32_1024", |bench| {
        bench.iter(|| {
            b.gemm(&g, Slice::all(&x), Slice::all(&y), SliceMut::all(&mut z), Epilogue::none()).unwrap();
            b.synchronize().unwrap();
        })
    });
    group.finish();
}

fn iteration(c: &mut Criterion) {
    let Some(b) = gpu() else { return };
    let task = CopyTask::new(100, 1).unwrap();
    let mut group = c.benchmark_group("cuda_train_iteration");
    group.sample_size(20).measurement_time(Duration::from_secs(5));
    for (model, geo) in [(ModelKind::Rnn, 0.0), (ModelKind::Factorized, 1e-3)] {
        for n in [128, 1000] {
            let opt = common::timing_sgd(geo);
            let mut it = Iteration::new(&b, &ModelSpec::of(model, n), opt, &task).unwrap();
            let data = task.train_batch(0, 50).unwrap();
            group.bench_function(format!("{}/{n}", model.as_str()), |bench| {
                bench.iter(|| {
                    it.run(&b, &data).unwrap();
                    b.synchronize().unwrap();
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, kernels, iteration);
criterion_main!(benches);
