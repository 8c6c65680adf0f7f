//! Accuracy of the GEMM precisions (`--precision fp32|tf32|bf16`), measured on the emulated CUDA backend
//! (the same kernels a GPU runs; the emulator's tensor cores round operands exactly as documented for
//! the hardware and accumulate in f32) against an f64 reference:
//! - the error of one `n x n x n` product of uniform [-1, 1) matrices, relative to `(|A||B|)_ij`
//!   (worst element) and in the Frobenius norm;
//! - the orthogonality drift `||P^T P - I||_max` of `P = R^s Q` for orthogonal `R`, `Q` after `s`
//!   products: what a parametrization would suffer if its products were reduced (they are not: see
//!   `ortho_rnn::backend::precision`).
//!
//! `cargo run --release --example gemm_precision -- [n]` (default n = 128)
use ortho_rnn::backend::cuda::Cuda;
use ortho_rnn::backend::cuda::emu::EmuDriver;
use ortho_rnn::backend::{Backend, Epilogue, Gemm, Precision, Slice, SliceMut};
use ortho_rnn::linalg::orth::orthogonal_from_gaussian;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal, Uniform};

fn matmul64(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut c = vec![0.0; n * n];
    for i in 0..n {
        for k in 0..n {
            let aik = a[i * n + k];
            for j in 0..n {
                c[i * n + j] += aik * b[k * n + j];
            }
        }
    }
    c
}

fn drift(p: &[f64], n: usize) -> f64 {
    let mut worst = 0f64;
    for i in 0..n {
        for j in 0..n {
            let dot: f64 = (0..n).map(|k| p[k * n + i] * p[k * n + j]).sum();
            worst = worst.max((dot - if i == j { 1.0 } else { 0.0 }).abs());
        }
    }
    worst
}

fn product(dev: &Cuda<EmuDriver>, a: &[f32], b: &[f32], n: usize) -> Vec<f32> {
    let (da, db) = (dev.upload(a).unwrap(), dev.upload(b).unwrap());
    let mut dc = dev.zeros(n * n).unwrap();
    let g = Gemm::new(n, n, n).reduced_ok();
    dev.gemm(&g, Slice::all(&da), Slice::all(&db), SliceMut::all(&mut dc), Epilogue::none()).unwrap();
    dev.download(Slice::all(&dc)).unwrap()
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(128);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let unif = Uniform::new(-1.0f32, 1.0).unwrap();
    let a: Vec<f32> = (0..n * n).map(|_| unif.sample(&mut rng)).collect();
    let b: Vec<f32> = (0..n * n).map(|_| unif.sample(&mut rng)).collect();
    let wide = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
    let exact = matmul64(&wide(&a), &wide(&b), n);
    let abs = |v: &[f32]| v.iter().map(|&x| x.abs() as f64).collect::<Vec<f64>>();
    let mag = matmul64(&abs(&a), &abs(&b), n);
    let orth = |rng: &mut rand_chacha::ChaCha8Rng| {
        let g: Vec<f64> = (0..n * n).map(|_| StandardNormal.sample(rng)).collect();
        orthogonal_from_gaussian(&g, n).unwrap().iter().map(|&x| x as f32).collect::<Vec<f32>>()
    };
    let (r, q) = (orth(&mut rng), orth(&mut rng));
    println!("n = {n}; emulated CUDA backend (132 SMs), f64 reference");
    println!(
        "| precision | product: worst |C - C_ref| / (|A||B|) | product: ||C - C_ref||_F / ||C_ref||_F | drift after 1 product | after 10 |"
    );
    println!("|---|---|---|---|---|");
    for p in Precision::ALL {
        let dev = Cuda::new(EmuDriver::new().with_workers(2).unwrap()).unwrap().with_precision(p);
        let c = product(&dev, &a, &b, n);
        let worst = c.iter().zip(&exact).zip(&mag).map(|((&g, &w), &m)| (g as f64 - w).abs() / m).fold(0.0, f64::max);
        let num: f64 = c.iter().zip(&exact).map(|(&g, &w)| (g as f64 - w).powi(2)).sum();
        let den: f64 = exact.iter().map(|w| w * w).sum();
        let mut m = q.clone();
        let mut drifts = Vec::new();
        for step in 1..=10 {
            m = product(&dev, &r, &m, n);
            if step == 1 || step == 10 {
                drifts.push(drift(&wide(&m), n));
            }
        }
        println!("| {p} | {worst:.2e} | {:.2e} | {:.2e} | {:.2e} |", (num / den).sqrt(), drifts[0], drifts[1]);
    }
}
