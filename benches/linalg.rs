//! Criterion benchmarks of the linear-algebra stages on `Cpu<f32>` at n = 128, 500, 1000:
//! `expm`, `expm_frechet_adjoint`, one geodesic Cayley step (fast and accurate forms), the drift
//! check and QR re-orthogonalization, and LU factor + solve (n right-hand sides), each through its
//! reusable workspace. `A` is skew with `‖A‖_1 = 2.5` (f32: Pade degree 7,
//! no squaring, for both `expm` and the Frechet derivative), the size a DTRIV/expRNN `A` reaches.
//! Flat sampling with 10 samples keeps the whole run to a few minutes.
//!
//! `cargo bench --bench linalg` (add `-- expm/` etc. to filter).

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use ortho_rnn::backend::cpu::{Cpu, CpuBuf};
use ortho_rnn::backend::{Backend, Slice, SliceMut};
use ortho_rnn::linalg::{self, CayleyForm, CayleyStep, Expm, ExpmFrechet};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use std::hint::black_box;
use std::time::Duration;

const SIZES: [usize; 3] = [128, 500, 1000];

fn gauss(seed: u64, len: usize) -> Vec<f64> {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    (0..len).map(|_| StandardNormal.sample(&mut r)).collect()
}

fn skew(n: usize, norm1: f64) -> Vec<f64> {
    let g = gauss(1, n * n);
    let s: Vec<f64> = (0..n * n).map(|k| g[k] - g[(k % n) * n + k / n]).collect();
    let cur = (0..n).map(|j| (0..n).map(|i| s[i * n + j].abs()).sum::<f64>()).fold(0.0, f64::max);
    s.iter().map(|v| v * norm1 / cur).collect()
}

fn up(b: &Cpu<f32>, x: &[f64]) -> CpuBuf<f32> {
    b.upload(&x.iter().map(|&v| v as f32).collect::<Vec<_>>()).unwrap()
}

fn group<'a>(c: &'a mut Criterion, name: &str) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(10).sampling_mode(SamplingMode::Flat).warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    g
}

fn bench_expm(c: &mut Criterion) {
    let b = Cpu::<f32>::default();
    let mut g = group(c, "expm");
    for n in SIZES {
        let a = up(&b, &skew(n, 2.5));
        let mut ws = Expm::new(&b, n).unwrap();
        let mut out = b.zeros(n * n).unwrap();
        g.throughput(Throughput::Elements((n * n) as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |bch, _| {
            bch.iter(|| ws.compute(&b, Slice::all(&a), SliceMut::all(&mut out)).unwrap())
        });
    }
    g.finish();
}

fn bench_frechet(c: &mut Criterion) {
    let b = Cpu::<f32>::default();
    let mut g = group(c, "expm_frechet_adjoint");
    for n in SIZES {
        let a = up(&b, &skew(n, 2.5));
        let gr = up(&b, &gauss(2, n * n));
        let mut ws = ExpmFrechet::new(&b, n).unwrap();
        let (mut exp, mut grad) = (b.zeros(n * n).unwrap(), b.zeros(n * n).unwrap());
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |bch, _| {
            bch.iter(|| {
                ws.adjoint(&b, Slice::all(&a), Slice::all(&gr), Some(SliceMut::all(&mut exp)), SliceMut::all(&mut grad))
                    .unwrap()
            })
        });
    }
    g.finish();
}

fn bench_cayley(c: &mut Criterion) {
    let b = Cpu::<f32>::default();
    for (name, form) in [("cayley_step", CayleyForm::Fast), ("cayley_step_accurate", CayleyForm::Accurate)] {
        let mut g = group(c, name);
        for n in SIZES {
            let mut m = up(&b, &linalg::orthogonal_from_gaussian(&gauss(3, n * n), n).unwrap());
            let gr = up(&b, &gauss(4, n * n).iter().map(|v| v * 0.01).collect::<Vec<_>>());
            // The step alone; the guard's amortized cost is measured by `drift_and_qr`.
            let mut ws = CayleyStep::new(&b, n).unwrap().with_form(form).with_guard(None);
            g.bench_with_input(BenchmarkId::from_parameter(n), &n, |bch, _| {
                bch.iter(|| ws.step(&b, SliceMut::all(&mut m), Slice::all(&gr), black_box(1e-3)).unwrap())
            });
        }
        g.finish();
    }
}

fn bench_drift_and_qr(c: &mut Criterion) {
    let b = Cpu::<f32>::default();
    let mut g = group(c, "drift_and_qr");
    for n in SIZES {
        let m0 = up(&b, &linalg::orthogonal_from_gaussian(&gauss(6, n * n), n).unwrap());
        let mut m = m0.clone();
        g.bench_with_input(BenchmarkId::new("drift", n), &n, |bch, _| {
            bch.iter(|| linalg::drift(&b, Slice::all(&m0), n).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("reorthogonalize", n), &n, |bch, _| {
            bch.iter(|| linalg::reorthogonalize(&b, SliceMut::all(&mut m), n).unwrap())
        });
    }
    g.finish();
}

fn bench_lu(c: &mut Criterion) {
    let b = Cpu::<f32>::default();
    let mut g = group(c, "lu_factor_solve");
    for n in SIZES {
        let mut p = skew(n, 2.5);
        (0..n).for_each(|i| p[i * n + i] += 1.0);
        let p = up(&b, &p);
        let rhs = up(&b, &gauss(5, n * n));
        let mut x = b.zeros(n * n).unwrap();
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |bch, _| {
            bch.iter(|| {
                let lu = b.lu_factor(Slice::all(&p), n).unwrap();
                b.copy(Slice::all(&rhs), SliceMut::all(&mut x)).unwrap();
                b.lu_solve(&lu, SliceMut::all(&mut x), n, false).unwrap();
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_expm, bench_frechet, bench_cayley, bench_drift_and_qr, bench_lu);
criterion_main!(benches);
