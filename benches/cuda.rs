//! CUDA benchmarks, run only where a GPU is present (skipped with a message otherwise):
//! the GEMM kernel at 1024^3 (target: at least half the card's FP32 peak), every GEMM shape of a
//! training iteration (hidden 1000, batch 50, T = 100) and the LU factorization, solve and Cayley
//! step at n = 128, 500, 1000, each beside cuBLAS / cuSOLVER when built with
//! `--features cuda-baselines`, and full copy-task training iterations (T = 100, batch 50, hidden
//! 128 and 1000; target under 5 ms at 1000).
//!
//! `cargo bench --bench cuda [--features cuda-baselines]` (needs libcuda, and libnvrtc (and
//! libcublas, libcusolver for the baselines) on LD_LIBRARY_PATH).

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ortho_rnn::backend::cuda::Cuda;
use ortho_rnn::backend::cuda::baselines::iteration_gemms;
use ortho_rnn::backend::cuda::cudarc_driver::{CudarcDriver, list_gpus};
use ortho_rnn::backend::{Backend, Epilogue, Gemm, Slice, SliceMut};
use ortho_rnn::linalg::CayleyStep;
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

/// Every GEMM shape of a training iteration: ours, and cuBLAS beside it with the feature.
fn gemm_shapes(c: &mut Criterion) {
    let Some(b) = gpu() else { return };
    #[cfg(feature = "cuda-baselines")]
    let blas = ortho_rnn::backend::cuda::baselines::Cublas::new(&b).unwrap();
    let spec = ModelSpec::of(ModelKind::Rnn, 1000);
    let mut group = c.benchmark_group("cuda_gemm_shapes");
    for (i, (what, g)) in iteration_gemms(&spec, 100, 50).unwrap().into_iter().enumerate() {
        let (ea, eb, ec) = g.extents();
        let (x, y) = (b.upload(&vec![0.5f32; ea]).unwrap(), b.upload(&vec![0.25f32; eb]).unwrap());
        let mut z = b.zeros(ec).unwrap();
        group.throughput(Throughput::Elements(g.flops() as u64));
        let name = format!("{i}_{}", what.split_whitespace().next().unwrap_or("gemm"));
        group.bench_function(format!("ours/{name}"), |bench| {
            bench.iter(|| {
                b.gemm(&g, Slice::all(&x), Slice::all(&y), SliceMut::all(&mut z), Epilogue::none()).unwrap();
                b.synchronize().unwrap();
            })
        });
        #[cfg(feature = "cuda-baselines")]
        group.bench_function(format!("cublas/{name}"), |bench| {
            bench.iter(|| {
                blas.gemm(&g, x.ptr(), y.ptr(), z.ptr()).unwrap();
                b.synchronize().unwrap();
            })
        });
    }
    group.finish();
}

/// LU factorization, a solve with n right-hand sides and a Cayley step at n = 128, 500, 1000:
/// ours, and cuSOLVER beside the first two with the feature.
fn lu(c: &mut Criterion) {
    let Some(b) = gpu() else { return };
    let mut group = c.benchmark_group("cuda_lu");
    group.sample_size(20);
    for n in [128usize, 500, 1000] {
        let p: Vec<f32> =
            (0..n * n).map(|e| if e / n == e % n { 1.0 } else { 0.01 * ((e % 7) as f32 - 3.0) }).collect();
        let pa = b.upload(&p).unwrap();
        let rhs = b.upload(&vec![1.0f32; n * n]).unwrap();
        let mut x = b.zeros(n * n).unwrap();
        let mut lu = b.lu_new(n).unwrap();
        group.bench_function(format!("factor/ours/{n}"), |bench| {
            bench.iter(|| {
                b.lu_factor_into(Slice::all(&pa), &mut lu).unwrap();
                b.synchronize().unwrap();
            })
        });
        group.bench_function(format!("solve/ours/{n}"), |bench| {
            bench.iter(|| {
                b.copy(Slice::all(&rhs), SliceMut::all(&mut x)).unwrap();
                b.lu_solve(&lu, SliceMut::all(&mut x), n, false).unwrap();
                b.synchronize().unwrap();
            })
        });
        #[cfg(feature = "cuda-baselines")]
        {
            let sol = ortho_rnn::backend::cuda::baselines::Cusolver::new(&b, n).unwrap();
            group.bench_function(format!("factor/cusolver/{n}"), |bench| {
                bench.iter(|| {
                    sol.factor(&b, pa.ptr()).unwrap();
                    b.synchronize().unwrap();
                })
            });
            group.bench_function(format!("solve/cusolver/{n}"), |bench| {
                bench.iter(|| {
                    b.copy(Slice::all(&rhs), SliceMut::all(&mut x)).unwrap();
                    sol.solve(x.ptr(), n, true).unwrap();
                    b.synchronize().unwrap();
                })
            });
        }
        let eye: Vec<f32> = (0..n * n).map(|e| if e / n == e % n { 1.0 } else { 0.0 }).collect();
        let (mut m, g) = (b.upload(&eye).unwrap(), b.upload(&vec![0.01f32; n * n]).unwrap());
        let mut step = CayleyStep::new(&b, n).unwrap().with_guard(None);
        group.bench_function(format!("cayley_step/ours/{n}"), |bench| {
            bench.iter(|| {
                step.step(&b, SliceMut::all(&mut m), Slice::all(&g), 1e-3).unwrap();
                b.synchronize().unwrap();
            })
        });
    }
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

criterion_group!(benches, kernels, gemm_shapes, lu, iteration);
criterion_main!(benches);
