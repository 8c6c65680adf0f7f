//! Times the GEMM shapes of one copy-task training iteration (T = 100, batch 50) on the CPU backend.
//! `cargo run --release --example gemm_shapes -- [hidden] [threads]`
use ortho_rnn::backend::cpu::Cpu;
use ortho_rnn::backend::{Backend, Epilogue, Gemm, Slice, SliceMut};
use std::time::Instant;

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let n = args.first().copied().unwrap_or(128);
    let threads = args.get(1).copied().unwrap_or(1);
    let b = Cpu::<f32>::new(threads);
    let (l, bs, inp, out) = (120, 50, 10, 9);
    let rows = l * bs;
    let shapes: Vec<(&str, Gemm<f32>, usize)> = vec![
        ("input projection X W_in^T", Gemm::new(rows, n, inp).tb(), 1),
        ("step H W^T (x120)", Gemm::new(bs, n, n).tb().beta(1.0), l),
        ("readout H W_o^T", Gemm::new(rows, out, n).tb(), 1),
        ("dW_o = dY^T H", Gemm::new(out, n, rows).ta(), 1),
        ("dH = dY W_o", Gemm::new(rows, n, out), 1),
        ("step delta W (x120)", Gemm::new(bs, n, n).beta(1.0), l),
        ("dW = Delta^T H", Gemm::new(n, n, rows).ta(), 1),
        ("dW_in = Delta^T X", Gemm::new(n, inp, rows).ta(), 1),
        ("n^3 product", Gemm::new(n, n, n), 1),
    ];
    let mut total = 0.0;
    for (name, g, reps) in shapes {
        let (ea, eb, ec) = g.extents();
        let a = b.upload(&vec![0.01f32; ea]).unwrap();
        let bb = b.upload(&vec![0.02f32; eb]).unwrap();
        let mut c = b.zeros(ec).unwrap();
        let run = |c: &mut _| {
            for _ in 0..reps {
                b.gemm(&g, Slice::all(&a), Slice::all(&bb), SliceMut::all(c), Epilogue::none()).unwrap();
            }
        };
        run(&mut c);
        let iters = 20;
        let t0 = Instant::now();
        for _ in 0..iters {
            run(&mut c);
        }
        let ms = t0.elapsed().as_secs_f64() * 1e3 / iters as f64;
        total += ms;
        let gf = g.flops() * reps as f64 / (ms * 1e6);
        println!("{name:32} {ms:8.3} ms  {gf:6.1} GF/s");
    }
    println!("{:32} {total:8.3} ms", "total");
}
