//! The GEMM shapes of one copy-task training iteration of an Elman RNN (T = 100: 120 steps; input 10,
//! output 9) and what the CUDA backend launches for each on a 132-SM H100/H200: the kernel, tile and
//! split-K chosen by `backend::cuda::gemm_plan`, blocks launched, and an ESTIMATED fraction of peak,
//! before this planner (the old 128x128 / 32x32 FP32 tiles, no split-K) and after (FP32, TF32, BF16).
//!
//! `cargo run --release --example gemm_shapes`              markdown tables, hidden 128 / 1000 x batch 50 / 128
//! `cargo run --release --example gemm_shapes -- --cpu [hidden] [threads]`   times the shapes on the CPU backend
//!
//! Every GPU figure printed is an estimate from the model below (no GPU has run these kernels yet):
//! - peaks: 67 TFLOP/s FP32, 495 dense TF32, 990 dense BF16, 3.35 TB/s HBM (H100 SXM; an H200 has 4.8);
//! - a kernel reaches a fraction `e` of peak on an SM that holds at least `sat` of its blocks, and
//!   `j / sat` of that with `j < sat`; at most `r` blocks are resident per SM (registers, shared memory):
//!   old gemm_f32 (128x128, 8x8 per thread, 2 barriers per slice, bank conflicts) e 0.45, r 2, sat 2;
//!   old gemm_small_f32 (32x32, 2x2 per thread: one FMA per shared load) e 0.20, r 8, sat 4;
//!   gemm_f32 (128x64, 8x4, double-buffered) e 0.55, r 3, sat 2; gemm_small_f32 (32x32, 4x2) e 0.35,
//!   r 10, sat 4; WMMA TF32 (64x64, 3-stage cp.async) e 0.45, r 4, sat 2; WMMA BF16 e 0.35 (plus a
//!   conversion pass and a second barrier per slice), r 4, sat 2 (WMMA without wgmma reaches well under
//!   Hopper's dense peak);
//! - the busiest SM runs `ceil(blocks / 132)` blocks of `2 BM BN kchunk` flops each; the time is the
//!   larger of that and the main kernel's memory traffic (`4 (MK + KN) + 4 MN (1 + beta)` bytes, plus
//!   the split-K partials), plus the split-K reduction's traffic; launch latency (~3-5 us per launch,
//!   which dominates the per-step products and is what a persistent kernel removes) is left out.
use ortho_rnn::backend::cpu::Cpu;
use ortho_rnn::backend::cuda::gemm_plan::{GemmPlan, GemmShape, Layout, Tile, plan};
use ortho_rnn::backend::{Backend, Epilogue, Gemm, Precision, Slice, SliceMut};
use std::time::Instant;

const SMS: usize = 132;
const HBM: f64 = 3.35e12;

fn peak(p: Precision) -> f64 {
    match p {
        Precision::Fp32 => 67e12,
        Precision::Tf32 => 495e12,
        Precision::Bf16 => 990e12,
    }
}

/// `(e, r, sat)` of a kernel (module docs).
fn kernel_model(kernel: &str, old: bool) -> (f64, usize, usize) {
    match (kernel, old) {
        ("gemm_f32", true) => (0.45, 2, 2),
        ("gemm_small_f32", true) => (0.20, 8, 4),
        ("gemm_f32", false) => (0.55, 3, 2),
        ("gemm_small_f32", false) => (0.35, 10, 4),
        (k, _) if k.starts_with("gemm_tf32") => (0.45, 4, 2),
        _ => (0.35, 4, 2),
    }
}

/// The plan of the kernel before this work: 128x128 tiles when M, N >= 128, else 32x32; no split-K.
fn old_plan(s: &GemmShape) -> GemmPlan {
    let (kernel, t) = if s.m >= 128 && s.n >= 128 { ("gemm_f32", 128) } else { ("gemm_small_f32", 32) };
    let tile = Tile { bm: t, bn: t, bk: 8, threads: 256 };
    let grid = (s.n.div_ceil(t), s.m.div_ceil(t), s.batch);
    GemmPlan { family: "gemm", kernel, tile, tiles: grid.0 * grid.1 * grid.2, splits: 1, kchunk: s.k.max(1), grid }
}

/// Estimated seconds and fraction of `precision`'s peak of one launch of plan `p` (module docs).
fn estimate(s: &GemmShape, p: &GemmPlan, beta: f64, old: bool) -> (f64, f64) {
    let (e, r, sat) = kernel_model(p.kernel, old);
    let prec = if p.family == "gemm_tc" { s.precision } else { Precision::Fp32 };
    let per_sm = p.blocks().div_ceil(SMS);
    let rate = peak(prec) / SMS as f64 * e * (per_sm.min(r).min(sat) as f64 / sat as f64);
    let block_flops = 2.0 * (p.tile.bm * p.tile.bn * p.kchunk.min(s.k.max(1))) as f64;
    let t_compute = per_sm as f64 * block_flops / rate;
    let (m, n, k) = (s.m as f64, s.n as f64, s.k as f64);
    let partials = if p.splits > 1 { 4.0 * p.splits as f64 * m * n } else { 0.0 };
    let c_bytes = 4.0 * m * n * (1.0 + beta);
    let t_main = t_compute.max((4.0 * (m * k + k * n) + if p.splits > 1 { 0.0 } else { c_bytes } + partials) / HBM);
    let t_reduce = if p.splits > 1 { (partials + c_bytes) / HBM } else { 0.0 };
    let t = t_main + t_reduce;
    let flops = 2.0 * m * n * k;
    (t, flops / (t * peak(prec)))
}

struct Product {
    name: &'static str,
    g: Gemm<f32>,
    reps: usize,
    /// A network product (TF32 / BF16 allowed) rather than a parametrization product (f32 always).
    reduced: bool,
}

fn products(n: usize, bs: usize) -> Vec<Product> {
    let (l, inp, out) = (120, 10, 9);
    let rows = l * bs;
    let p = |name, g: Gemm<f32>, reps, reduced| Product { name, g, reps, reduced };
    vec![
        p("input projection X W_in^T", Gemm::new(rows, n, inp).tb(), 1, true),
        p("step H W^T (x120)", Gemm::new(bs, n, n).tb().beta(1.0), l, true),
        p("readout H W_o^T", Gemm::new(rows, out, n).tb(), 1, true),
        p("dW_o = dY^T H", Gemm::new(out, n, rows).ta(), 1, true),
        p("dH = dY W_o", Gemm::new(rows, n, out), 1, true),
        p("step delta W (x120)", Gemm::new(bs, n, n).beta(1.0), l, true),
        p("dW = Delta^T H", Gemm::new(n, n, rows).ta(), 1, true),
        p("dW_in = Delta^T X", Gemm::new(n, inp, rows).ta(), 1, true),
        p("n x n product (expm, Cayley)", Gemm::new(n, n, n), 1, false),
    ]
}

fn shape(g: &Gemm<f32>, precision: Precision) -> GemmShape {
    let a = if g.trans_a { Layout::OuterContiguous } else { Layout::KContiguous };
    let b = if g.trans_b { Layout::KContiguous } else { Layout::OuterContiguous };
    GemmShape { m: g.m, n: g.n, k: g.k, batch: g.batch, a, b, precision }
}

fn describe(p: &GemmPlan) -> String {
    let split = if p.splits > 1 { format!(", split {}", p.splits) } else { String::new() };
    format!("{} {}x{}{split}, {} blocks", p.kernel, p.tile.bm, p.tile.bn, p.blocks())
}

fn table(n: usize, bs: usize) {
    println!("\n#### hidden {n}, batch {bs} (T = 100: 120 steps)\n");
    println!(
        "| product | M x N x K | before: kernel, blocks, est. % FP32 peak | after FP32 | after TF32 | after BF16 |"
    );
    println!("|---|---|---|---|---|---|");
    let mut totals = [0.0f64; 4];
    let mut flops = 0.0;
    for pr in products(n, bs) {
        let g = &pr.g;
        flops += g.flops() * pr.reps as f64;
        let s32 = shape(g, Precision::Fp32);
        let old = old_plan(&s32);
        let (t_old, f_old) = estimate(&s32, &old, g.beta as f64, true);
        totals[0] += t_old * pr.reps as f64;
        let mut cells = vec![format!("{}, {:.0} %", describe(&old), 100.0 * f_old)];
        for (i, prec) in Precision::ALL.into_iter().enumerate() {
            let used = if pr.reduced { prec } else { Precision::Fp32 };
            let s = shape(g, used);
            let p = plan(&s, SMS as u32);
            let (t, f) = estimate(&s, &p, g.beta as f64, false);
            totals[i + 1] += t * pr.reps as f64;
            cells.push(if used != prec {
                "(f32: as FP32)".to_string()
            } else {
                format!("{}, {:.0} %", describe(&p), 100.0 * f)
            });
        }
        println!("| {} | {} x {} x {} | {} |", pr.name, g.m, g.n, g.k, cells.join(" | "));
    }
    let pct = |t: f64, p: Precision| 100.0 * flops / (t * peak(p));
    println!(
        "| **iteration** (launch latency excluded) | {:.2} GFLOP | {:.2} ms, {:.0} % | {:.2} ms, {:.0} % | {:.2} ms, {:.1} % of TF32 | {:.2} ms, {:.1} % of BF16 |",
        flops / 1e9,
        totals[0] * 1e3,
        pct(totals[0], Precision::Fp32),
        totals[1] * 1e3,
        pct(totals[1], Precision::Fp32),
        totals[2] * 1e3,
        pct(totals[2], Precision::Tf32),
        totals[3] * 1e3,
        pct(totals[3], Precision::Bf16),
    );
}

/// Times the shapes on the CPU backend (f32).
fn time_cpu(n: usize, threads: usize) {
    let b = Cpu::<f32>::new(threads);
    let mut total = 0.0;
    for pr in products(n, 50) {
        let g = pr.g;
        let (ea, eb, ec) = g.extents();
        let a = b.upload(&vec![0.01f32; ea]).unwrap();
        let bb = b.upload(&vec![0.02f32; eb]).unwrap();
        let mut c = b.zeros(ec).unwrap();
        let run = |c: &mut _| {
            for _ in 0..pr.reps {
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
        let gf = g.flops() * pr.reps as f64 / (ms * 1e6);
        println!("{:32} {ms:8.3} ms  {gf:6.1} GF/s", pr.name);
    }
    println!("{:32} {total:8.3} ms", "total");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--cpu") {
        let nums: Vec<usize> = args.iter().skip(1).filter_map(|a| a.parse().ok()).collect();
        time_cpu(nums.first().copied().unwrap_or(128), nums.get(1).copied().unwrap_or(1));
        return;
    }
    println!("GEMM plans of one training iteration on a {SMS}-SM device; every percentage is an ESTIMATE");
    println!("(see examples/gemm_shapes.rs for the model); no GPU has run these kernels yet.");
    for n in [128, 1000] {
        for bs in [50, 128] {
            table(n, bs);
        }
    }
}
