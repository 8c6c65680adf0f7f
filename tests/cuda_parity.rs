//! Parity of the CUDA backend's primitives with the CPU reference: GEMM (every transpose, alpha/beta,
//! beta = 0 over a NaN-filled C, strided batches, bias and activation epilogues, both tile variants),
//! element-wise ops, activations and their parameter gradients, losses and reductions.
//! LU, optimizers, the LSTM cell and the recurrence are in `cuda_parity_seq.rs`.
//!
//! Every case runs on `cpu` (`Cpu<f32>`), on the CUDA backend over the emulated driver under each
//! resume order of `ResumeOrder::TEST_SET` (`emu_*`), and on a real GPU when there is one (`gpu`).
//! The reference is `Cpu<f64>` on the same f32 inputs (see `common/backends.rs`).
//!
//! Tolerances (f32 unit roundoff u = 6e-8):
//! - data movement (fill, transpose, copies through sub-views): bit-exact;
//! - one rounding (scale, scale_cols, add_diag, skew, axpby): 2.5e-7 of the terms' magnitude;
//! - GEMM: `|C - C_ref| <= 1e-6 sqrt(k + 1) (|alpha| |A||B| + |beta C| + |bias|)_ij`, element-wise
//!   (a k u bound at k = 257, ~10x the typical sqrt(k) u error); activations of it add `trans_rel`;
//!   with TF32 / BF16 operands (`parity_tests_tc!`: `emu_tf32_*`, `emu_bf16_*`, `gpu_tf32`, `gpu_bf16`)
//!   the bound adds `2 u_op + u_op^2` (9.8e-4 / 7.8e-3), except for operands exactly representable in
//!   BF16 (`gemm_representable`), where the tensor cores' products are exact and the f32 bound holds;
//! - transcendental maps (tanh, sigmoid, exp): `trans_rel` (1e-5, host and GPU alike: the kernels
//!   are compiled without `--use_fast_math`) relative plus absolute;
//! - sums and reductions: `1e-6 sqrt(len)`, or `len u`, of the sum of the terms' magnitudes.

#[path = "common/backends.rs"]
mod backends;

use backends::{Dut, Ref, check, check_exact, check_rel, check_scalar, check_stats, down, rand, uniform, up, up64};
use ortho_rnn::Error;
use ortho_rnn::backend::{Act, Activation, Backend, Epilogue, Gemm, MapOp, Precision, Slice, SliceMut};

const U: f64 = 6.0e-8;

fn refb() -> Ref {
    Ref::new(1)
}

/// The activation parameter of a layer of width `n` (PReLU slope, modReLU bias), or empty.
fn act_param(kind: Activation, n: usize, seed: u64) -> Vec<f32> {
    match kind {
        Activation::Prelu => vec![0.25],
        Activation::Modrelu => uniform(n, -0.5, 0.3, seed),
        _ => Vec::new(),
    }
}

// ------------------------------------------------------------------------------------------------
// GEMM
// ------------------------------------------------------------------------------------------------

/// Runs `g` with an optional bias and activation epilogue on the device and the reference and
/// compares C and the activation output. `beta == 0` fills C with NaN (it must not be read). The
/// product may use the device's reduced precision; the tolerance is the precision's (`Dut::gemm_rel`).
fn gemm_one<B: Backend<Elem = f32>>(t: &Dut<B>, g: Gemm<f32>, bias: bool, act: Option<Activation>, seed: u64) {
    gemm_check(t, g, bias, act, seed, false);
}

/// [`gemm_one`]; with `exact`, A and B hold multiples of 1/16 in [-1, 1], exactly representable in
/// BF16 and TF32, so the tensor cores' products are exact and every precision meets the f32 tolerance.
fn gemm_check<B: Backend<Elem = f32>>(
    t: &Dut<B>,
    g: Gemm<f32>,
    bias: bool,
    act: Option<Activation>,
    seed: u64,
    exact: bool,
) {
    let r = refb();
    let g = Gemm { allow_reduced: true, ..g };
    let (ea, eb, ec) = g.extents();
    let sixteenths = |v: Vec<f32>| -> Vec<f32> { v.into_iter().map(|x| (x * 16.0).round() / 16.0).collect() };
    let (a, b) = if exact {
        (sixteenths(rand(ea, seed)), sixteenths(rand(eb, seed + 1)))
    } else {
        (rand(ea, seed), rand(eb, seed + 1))
    };
    let c: Vec<f32> = if g.beta == 0.0 { vec![f32::NAN; ec] } else { rand(ec, seed + 2) };
    let bias_v = rand(g.n, seed + 3);
    let kind = act.unwrap_or(Activation::Identity);
    let mut param = act_param(kind, g.n, seed + 4);
    if kind == Activation::Modrelu && t.precision != Precision::Fp32 {
        // modReLU jumps at 0 when its bias is positive (sign(z) (|z| + b)), so an input error of a
        // TF32 / BF16 rounding can flip an output by 2b; with b <= 0 it is continuous.
        param.iter_mut().for_each(|b| *b = -b.abs());
    }
    let what = format!("gemm {g:?} bias={bias} act={act:?}");

    // Device.
    let (da, db, dbias, dparam) = (up(&t.dev, &a), up(&t.dev, &b), up(&t.dev, &bias_v), up(&t.dev, &param));
    let mut dc = up(&t.dev, &c);
    let mut dout = up(&t.dev, &vec![7.0; ec]);
    let epi = Epilogue {
        bias: bias.then(|| Slice::all(&dbias)),
        act: act.map(|k| {
            let p = (!param.is_empty()).then(|| Slice::all(&dparam));
            (Act { kind: k, param: p }, SliceMut::all(&mut dout))
        }),
    };
    t.dev.gemm(&g, Slice::all(&da), Slice::all(&db), SliceMut::all(&mut dc), epi).expect(&what);
    let (got_c, got_out) = (down(&t.dev, &dc), down(&t.dev, &dout));

    // Reference, and the magnitude |alpha| |A||B| + |beta C| + |bias| that bounds the rounding error.
    let g64 = Gemm { alpha: g.alpha as f64, beta: g.beta as f64, ..Gemm::new(g.m, g.n, g.k) };
    let g64 = Gemm { trans_a: g.trans_a, trans_b: g.trans_b, batch: g.batch, ..g64 };
    let g64 = Gemm { stride_a: g.stride_a, stride_b: g.stride_b, stride_c: g.stride_c, ..g64 };
    let (ra, rb, rbias, rparam) = (up64(&r, &a), up64(&r, &b), up64(&r, &bias_v), up64(&r, &param));
    let mut rc = up64(&r, &c);
    let mut rout = up64(&r, &vec![7.0; ec]);
    let epi = Epilogue {
        bias: bias.then(|| Slice::all(&rbias)),
        act: act.map(|k| {
            let p = (!param.is_empty()).then(|| Slice::all(&rparam));
            (Act { kind: k, param: p }, SliceMut::all(&mut rout))
        }),
    };
    r.gemm(&g64, Slice::all(&ra), Slice::all(&rb), SliceMut::all(&mut rc), epi).unwrap();
    let (want_c, want_out) = (down(&r, &rc), down(&r, &rout));

    let abs = |v: &[f32]| -> Vec<f32> { v.iter().map(|x| if x.is_nan() { 0.0 } else { x.abs() }).collect() };
    let (aa, ab, ac, abias) = (up64(&r, &abs(&a)), up64(&r, &abs(&b)), abs(&c), up64(&r, &abs(&bias_v)));
    let mut mag = up64(&r, &ac);
    let gm = Gemm { alpha: g64.alpha.abs(), beta: g64.beta.abs(), ..g64 };
    let epi = Epilogue { bias: bias.then(|| Slice::all(&abias)), act: None };
    r.gemm(&gm, Slice::all(&aa), Slice::all(&ab), SliceMut::all(&mut mag), epi).unwrap();
    let mag = down(&r, &mag);
    let rel = if exact { 1e-6 * ((g.k + 1) as f64).sqrt() } else { t.gemm_rel(g.k) };
    check(&format!("{what}: C"), &got_c, &want_c, |i| rel * mag[i] + 1e-30);
    if act.is_some() {
        // OPLU moves values within a pair: bound each by the larger magnitude of its pair.
        let pair = |i: usize| if g.n.is_multiple_of(2) { mag[i].max(mag[i ^ 1]) } else { mag[i] };
        check(&format!("{what}: act out"), &got_out, &want_out, |i| {
            rel * pair(i) + t.trans_rel * want_out[i].abs() + 1e-30
        });
    } else {
        check_exact(&format!("{what}: act out untouched"), &got_out, &want_out);
    }
}

fn gemm_shape<B: Backend<Elem = f32>>(t: &Dut<B>, m: usize, n: usize, k: usize, seed: u64) {
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let mut g = Gemm::new(m, n, k);
        (g.trans_a, g.trans_b) = (ta, tb);
        gemm_one(t, g, false, None, seed);
        gemm_one(t, g.alpha(-0.75).beta(0.5), false, None, seed + 10);
    }
}

/// The 32x32-tile kernel: tiny, odd, even and exactly-tiled shapes, K not a multiple of the K tile.
fn gemm_small_tiles<B: Backend<Elem = f32>>(t: &Dut<B>) {
    for (i, &(m, n, k)) in
        [(1, 1, 1), (2, 2, 2), (1, 33, 7), (31, 32, 33), (33, 31, 32), (32, 32, 257), (5, 64, 1), (127, 3, 9)]
            .iter()
            .enumerate()
    {
        gemm_shape(t, m, n, k, 100 + 20 * i as u64);
    }
}

/// The 128x128-tile kernel (M, N >= 128): exact tiles and partial edge tiles in both dimensions.
fn gemm_large_tiles<B: Backend<Elem = f32>>(t: &Dut<B>) {
    for (i, &(m, n, k)) in [(128, 128, 8), (129, 257, 33), (257, 130, 9)].iter().enumerate() {
        gemm_shape(t, m, n, k, 300 + 20 * i as u64);
    }
}

/// K = 0: the product vanishes and C becomes beta C plus the epilogue. (beta = 0 is left out: the
/// CPU backend computes `C *= beta` there, so a NaN in C stays NaN, while the kernel never reads C.)
fn gemm_empty_k<B: Backend<Elem = f32>>(t: &Dut<B>) {
    let g = Gemm::new(4, 6, 0).alpha(2.0).beta(0.5);
    gemm_one(t, g, false, None, 450);
    gemm_one(t, g, true, Some(Activation::Tanh), 451);
    gemm_one(t, Gemm::new(130, 128, 0).beta(-1.0), true, Some(Activation::Oplu), 452);
}

/// Batches with gaps between the matrices (which must stay untouched) and a shared B (stride 0).
fn gemm_batched<B: Backend<Elem = f32>>(t: &Dut<B>) {
    for (ta, tb) in [(false, false), (true, true), (true, false)] {
        let (m, n, k) = (5, 7, 9);
        let mut g = Gemm::new(m, n, k).alpha(1.25).beta(0.5);
        (g.trans_a, g.trans_b, g.batch) = (ta, tb, 3);
        (g.stride_a, g.stride_b, g.stride_c) = (m * k + 3, 0, m * n + 5);
        gemm_one(t, g, false, None, 400);
        gemm_one(t, Gemm { beta: 0.0, stride_b: k * n + 1, ..g }, false, None, 410);
    }
    let mut g = Gemm::new(130, 128, 4);
    (g.batch, g.stride_a, g.stride_b, g.stride_c) = (2, 130 * 4, 4 * 128, 130 * 128);
    gemm_one(t, g.tb(), false, None, 420);
}

/// Bias and every activation in the forward epilogue, on both tile variants, batched.
fn gemm_epilogue<B: Backend<Elem = f32>>(t: &Dut<B>) {
    let shapes = [(3, 34, 5, 2), (33, 2, 16, 1), (129, 130, 8, 1), (31, 33, 5, 2)];
    for (s, &(m, n, k, batch)) in shapes.iter().enumerate() {
        let mut g = Gemm::new(m, n, k);
        (g.batch, g.stride_a, g.stride_b, g.stride_c) = (batch, m * k, k * n, m * n);
        let seed = 500 + 50 * s as u64;
        gemm_one(t, g, true, None, seed);
        gemm_one(t, g.beta(0.5), false, Some(Activation::Tanh), seed + 1);
        for (i, kind) in Activation::ALL.into_iter().enumerate() {
            if kind == Activation::Oplu && n % 2 == 1 {
                continue;
            }
            gemm_one(t, g, true, Some(kind), seed + 2 + i as u64);
            gemm_one(t, g.tb().alpha(0.5).beta(-1.0), true, Some(kind), seed + 12 + i as u64);
        }
    }
}

/// Shapes around the tensor-core tile (64 x 64, k slices of 16) and the 32 / 128 SIMT tiles, with
/// operands exactly representable in BF16 (see [`gemm_check`]): odd and even sizes, split-K (k = 300,
/// 1000 on a 132-SM device), batches with gaps (rows that are not 16-byte aligned), an epilogue.
fn gemm_representable<B: Backend<Elem = f32>>(t: &Dut<B>) {
    let shapes =
        [(1, 1, 1, 1), (64, 64, 64, 1), (65, 63, 33, 1), (17, 33, 1000, 1), (31, 130, 47, 2), (128, 64, 300, 1)];
    for (i, &(m, n, k, batch)) in shapes.iter().enumerate() {
        for (j, (ta, tb)) in [(false, false), (true, false), (false, true), (true, true)].into_iter().enumerate() {
            let mut g = Gemm::new(m, n, k).alpha(1.25).beta(0.5);
            (g.trans_a, g.trans_b, g.batch) = (ta, tb, batch);
            if batch > 1 {
                (g.stride_a, g.stride_b, g.stride_c) = (m * k + 1, k * n + 3, m * n + 2);
            }
            let seed = 1700 + 40 * i as u64 + 4 * j as u64;
            gemm_check(t, g, false, None, seed, true);
            gemm_check(t, Gemm { beta: 0.0, ..g }, true, Some(Activation::Tanh), seed + 1, true);
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Memory and view checks
// ------------------------------------------------------------------------------------------------

/// zeros, upload, download, write and copy through sub-views; views that do not fit are
/// `Error::Shape` on every backend, not a crash.
fn memory_and_views<B: Backend<Elem = f32>>(t: &Dut<B>) {
    let r = refb();
    let x = rand(100, 1600);
    let (mut dx, mut rx) = (up(&t.dev, &x), up64(&r, &x));
    assert_eq!(down(&t.dev, &t.dev.zeros(33).unwrap()), vec![0.0; 33], "zeros");
    let part = t.dev.download(Slice::all(&dx).sub(7, 20)).unwrap();
    assert_eq!(part, x[7..27].to_vec(), "download of a sub-view");
    let w = rand(13, 1601);
    t.dev.write(SliceMut::all(&mut dx).sub(50, 13), &w).unwrap();
    r.write(SliceMut::all(&mut rx).sub(50, 13), &backends::wide(&w)).unwrap();
    let (mut dy, mut ry) = (up(&t.dev, &[3.0; 40]), up64(&r, &[3.0; 40]));
    t.dev.copy(Slice::all(&dx).sub(45, 30), SliceMut::all(&mut dy).sub(5, 30)).unwrap();
    r.copy(Slice::all(&rx).sub(45, 30), SliceMut::all(&mut ry).sub(5, 30)).unwrap();
    check_exact("write + copy", &down(&t.dev, &dy), &down(&r, &ry));
    check_exact("write", &down(&t.dev, &dx), &down(&r, &rx));

    let shape = |what: &str, res: ortho_rnn::Result<()>| {
        assert!(matches!(res, Err(Error::Shape { .. })), "{what}: expected Error::Shape, got {res:?}");
    };
    let past_end = Slice::<B> { buf: &dx, off: 95, len: 10 };
    shape("download past the end", t.dev.download(past_end).map(|_| ()));
    shape("write of the wrong length", t.dev.write(SliceMut::all(&mut dy), &w));
    let mut small = t.dev.zeros(10).unwrap();
    shape("copy into a shorter view", t.dev.copy(Slice::all(&dx), SliceMut::all(&mut small)));
    let g = Gemm::new(4, 5, 6);
    let (a, b) = (t.dev.zeros(24).unwrap(), t.dev.zeros(30).unwrap());
    shape(
        "gemm with a short C",
        t.dev.gemm(&g, Slice::all(&a), Slice::all(&b), SliceMut::all(&mut small), Epilogue::none()),
    );
    shape(
        "gemm with a short A",
        t.dev.gemm(&g, Slice::all(&b).sub(0, 23), Slice::all(&b), SliceMut::all(&mut dy).sub(0, 20), Epilogue::none()),
    );
    shape("axpby of different lengths", t.dev.axpby(1.0, Slice::all(&dx), 1.0, SliceMut::all(&mut small)));
    shape("transpose of the wrong size", t.dev.transpose(Slice::all(&dx), 7, 7, SliceMut::all(&mut small)));
    shape("col_sum with a short out", t.dev.col_sum(Slice::all(&dx), 5, 20, 0.0, SliceMut::all(&mut small)));
    shape("lu_factor of a non-square view", t.dev.lu_factor(Slice::all(&dx).sub(0, 99), 10).map(|_| ()));
    let act = Act { kind: Activation::Modrelu, param: Some(Slice::all(&small)) };
    shape("modReLU with a short bias", t.dev.act_fwd(act, Slice::all(&dx), SliceMut::all(&mut dy).sub(0, 40), 20));
}

// ------------------------------------------------------------------------------------------------
// Element-wise
// ------------------------------------------------------------------------------------------------

/// fill, scale and axpby on a view at an offset inside a larger buffer (the margins must not change).
fn fill_scale_axpby<B: Backend<Elem = f32>>(t: &Dut<B>) {
    let r = refb();
    for (i, &n) in [1usize, 31, 257, 3000].iter().enumerate() {
        let seed = 600 + 10 * i as u64;
        let (x, y0) = (rand(n + 6, seed), rand(n + 6, seed + 1));
        // One rounding of terms of magnitude <= 2 |x| + 2 |y|.
        let tol = |j: usize| 2.5e-7 * 2.0 * (x[j].abs() + y0[j].abs()) as f64;
        let (dx, rx) = (up(&t.dev, &x), up64(&r, &x));
        for op in ["fill", "scale", "axpby"] {
            let (mut dy, mut ry) = (up(&t.dev, &y0), up64(&r, &y0));
            let (dv, rv) = (SliceMut::all(&mut dy).sub(3, n), SliceMut::all(&mut ry).sub(3, n));
            match op {
                "fill" => {
                    t.dev.fill(dv, 2.5).unwrap();
                    r.fill(rv, 2.5).unwrap();
                }
                "scale" => {
                    t.dev.scale(dv, -1.5).unwrap();
                    r.scale(rv, -1.5).unwrap();
                }
                _ => {
                    t.dev.axpby(0.75, Slice::all(&dx).sub(2, n), -2.0, dv).unwrap();
                    r.axpby(0.75, Slice::all(&rx).sub(2, n), -2.0, rv).unwrap();
                }
            }
            check(&format!("{op} n={n}"), &down(&t.dev, &dy), &down(&r, &ry), tol);
        }
        // beta = 0 never reads y: NaN there must not leak into the result.
        let (mut dy, mut ry) = (up(&t.dev, &vec![f32::NAN; n]), up64(&r, &vec![f32::NAN; n]));
        t.dev.axpby(0.75, Slice::all(&dx).sub(0, n), 0.0, SliceMut::all(&mut dy)).unwrap();
        r.axpby(0.75, Slice::all(&rx).sub(0, n), 0.0, SliceMut::all(&mut ry)).unwrap();
        check_rel(&format!("axpby beta=0 over NaN n={n}"), &down(&t.dev, &dy), &down(&r, &ry), 1.2e-7, 0.0);
    }
}

/// add_diag, skew, transpose and scale_cols on square and rectangular shapes around the 32 tile.
fn matrix_elementwise<B: Backend<Elem = f32>>(t: &Dut<B>) {
    let r = refb();
    for (i, &n) in [1usize, 2, 31, 32, 33, 70].iter().enumerate() {
        let x = rand(n * n, 700 + i as u64);
        let (mut dx, mut rx) = (up(&t.dev, &x), up64(&r, &x));
        t.dev.add_diag(SliceMut::all(&mut dx), n, 0.5).unwrap();
        r.add_diag(SliceMut::all(&mut rx), n, 0.5).unwrap();
        check_rel(&format!("add_diag n={n}"), &down(&t.dev, &dx), &down(&r, &rx), 6e-8, 6e-8);
        let (mut dout, mut rout) = (up(&t.dev, &vec![9.0; n * n]), up64(&r, &vec![9.0; n * n]));
        t.dev.skew(Slice::all(&dx), n, 0.5, SliceMut::all(&mut dout)).unwrap();
        r.skew(Slice::all(&rx), n, 0.5, SliceMut::all(&mut rout)).unwrap();
        check_rel(&format!("skew n={n}"), &down(&t.dev, &dout), &down(&r, &rout), 6e-8, 1.2e-7);
        // The Pade polynomial combination: 0 to 5 terms (the kernel takes 4; the fifth goes through
        // axpby), against a closed form computed here in f64.
        let xs: Vec<Vec<f32>> = (0..5).map(|k| rand(n * n, 720 + 10 * i as u64 + k)).collect();
        let coef = [0.5, -1.25, 2.0, 0.125, -3.0];
        let dxs: Vec<_> = xs.iter().map(|x| up(&t.dev, x)).collect();
        for terms in 0..=5 {
            let d = 0.75;
            let args: Vec<_> = (0..terms).map(|k| (coef[k] as f32, Slice::all(&dxs[k]))).collect();
            let mut dout = up(&t.dev, &vec![9.0; n * n]);
            t.dev.lincomb(n, &args, d as f32, SliceMut::all(&mut dout)).unwrap();
            let want: Vec<f64> = (0..n * n)
                .map(|e| {
                    let diag = if e / n == e % n { d } else { 0.0 };
                    diag + (0..terms).map(|k| coef[k] * xs[k][e] as f64).sum::<f64>()
                })
                .collect();
            // Up to five f32 roundings of terms bounded by sum |c_k| + |d| < 8.
            check_rel(&format!("lincomb n={n} terms={terms}"), &down(&t.dev, &dout), &want, 1e-7, 3e-6);
        }
    }
    for (i, &(rows, cols)) in [(1, 1), (1, 33), (31, 32), (33, 65), (70, 3), (64, 64)].iter().enumerate() {
        let x = rand(rows * cols, 750 + i as u64);
        let s = rand(cols, 760 + i as u64);
        let (dx, ds, rx, rs) = (up(&t.dev, &x), up(&t.dev, &s), up64(&r, &x), up64(&r, &s));
        let (mut dout, mut rout) = (up(&t.dev, &vec![9.0; rows * cols]), up64(&r, &vec![9.0; rows * cols]));
        t.dev.transpose(Slice::all(&dx), rows, cols, SliceMut::all(&mut dout)).unwrap();
        r.transpose(Slice::all(&rx), rows, cols, SliceMut::all(&mut rout)).unwrap();
        check_exact(&format!("transpose {rows}x{cols}"), &down(&t.dev, &dout), &down(&r, &rout));
        t.dev.scale_cols(Slice::all(&dx), Slice::all(&ds), rows, cols, SliceMut::all(&mut dout)).unwrap();
        r.scale_cols(Slice::all(&rx), Slice::all(&rs), rows, cols, SliceMut::all(&mut rout)).unwrap();
        check_rel(&format!("scale_cols {rows}x{cols}"), &down(&t.dev, &dout), &down(&r, &rout), 6e-8, 0.0);
    }
}

/// The spectral margin map and its backward.
fn margin_map<B: Backend<Elem = f32>>(t: &Dut<B>) {
    let r = refb();
    for (i, &m) in [0.0, 0.05, 1.0].iter().enumerate() {
        let n = 257;
        let (x, dy) = (uniform(n, -6.0, 6.0, 800 + i as u64), rand(n, 810 + i as u64));
        let (dx_, ddy, rx, rdy) = (up(&t.dev, &x), up(&t.dev, &dy), up64(&r, &x), up64(&r, &dy));
        let (mut dyo, mut ryo) = (t.dev.zeros(n).unwrap(), r.zeros(n).unwrap());
        t.dev.map(MapOp::Margin { m }, Slice::all(&dx_), SliceMut::all(&mut dyo)).unwrap();
        r.map(MapOp::Margin { m }, Slice::all(&rx), SliceMut::all(&mut ryo)).unwrap();
        check_rel(&format!("margin m={m}"), &down(&t.dev, &dyo), &down(&r, &ryo), t.trans_rel, 0.0);
        t.dev.map_bwd(MapOp::Margin { m }, Slice::all(&dx_), Slice::all(&ddy), SliceMut::all(&mut dyo)).unwrap();
        r.map_bwd(MapOp::Margin { m }, Slice::all(&rx), Slice::all(&rdy), SliceMut::all(&mut ryo)).unwrap();
        check_rel(&format!("margin_bwd m={m}"), &down(&t.dev, &dyo), &down(&r, &ryo), 4.0 * t.trans_rel, 1e-30);
    }
}

// ------------------------------------------------------------------------------------------------
// Activations
// ------------------------------------------------------------------------------------------------

/// act_fwd and act_bwd of every activation, with the parameter gradient accumulated onto a
/// non-zero start and without it. Inputs include exact zeros and tied OPLU pairs.
fn activations<B: Backend<Elem = f32>>(t: &Dut<B>) {
    let r = refb();
    for (ki, kind) in Activation::ALL.into_iter().enumerate() {
        for (si, &(rows, cols)) in [(1, 2), (3, 32), (5, 34), (17, 258), (7, 33)].iter().enumerate() {
            if kind == Activation::Oplu && cols % 2 == 1 {
                continue;
            }
            let seed = 900 + 37 * ki as u64 + 5 * si as u64;
            let len = rows * cols;
            let mut a = uniform(len, -2.0, 2.0, seed);
            for j in (0..len).step_by(11) {
                a[j] = 0.0;
            }
            for j in (0..len / 2).step_by(7) {
                a[2 * j + 1] = a[2 * j];
            }
            let dh = rand(len, seed + 1);
            let param = act_param(kind, cols, seed + 2);
            let plen = kind.param_len(cols);
            let dp0 = uniform(plen, 0.5, 1.0, seed + 3);
            let what = format!("{kind:?} {rows}x{cols}");

            let (da_, ddh, dparam) = (up(&t.dev, &a), up(&t.dev, &dh), up(&t.dev, &param));
            let (ra, rdh, rparam) = (up64(&r, &a), up64(&r, &dh), up64(&r, &param));
            let dact = Act { kind, param: (plen > 0).then(|| Slice::all(&dparam)) };
            let ract = Act { kind, param: (plen > 0).then(|| Slice::all(&rparam)) };
            let (mut dh_out, mut rh_out) = (t.dev.zeros(len).unwrap(), r.zeros(len).unwrap());
            t.dev.act_fwd(dact, Slice::all(&da_), SliceMut::all(&mut dh_out), cols).expect(&what);
            r.act_fwd(ract, Slice::all(&ra), SliceMut::all(&mut rh_out), cols).unwrap();
            let want_h = down(&r, &rh_out);
            check_rel(&format!("{what} fwd"), &down(&t.dev, &dh_out), &want_h, t.trans_rel, 1e-30);

            for with_dparam in [false, true] {
                // Both sides use the reference's h (the input the op documents), rounded to f32.
                let h32: Vec<f32> = want_h.iter().map(|&v| v as f32).collect();
                let (dhh, rhh) = (up(&t.dev, &h32), up64(&r, &h32));
                let (mut dda, mut rda) = (up(&t.dev, &vec![f32::NAN; len]), r.zeros(len).unwrap());
                let (mut ddp, mut rdp) = (up(&t.dev, &dp0), up64(&r, &dp0));
                t.dev
                    .act_bwd(
                        dact,
                        Slice::all(&da_),
                        Slice::all(&dhh),
                        Slice::all(&ddh),
                        SliceMut::all(&mut dda),
                        with_dparam.then(|| SliceMut::all(&mut ddp)),
                        cols,
                    )
                    .expect(&what);
                r.act_bwd(
                    ract,
                    Slice::all(&ra),
                    Slice::all(&rhh),
                    Slice::all(&rdh),
                    SliceMut::all(&mut rda),
                    with_dparam.then(|| SliceMut::all(&mut rdp)),
                    cols,
                )
                .unwrap();
                // A couple of roundings of dh times a factor of magnitude <= 1 (1 - h^2 cancels, so
                // the bound is on |dh|, not on the result); OPLU moves dh within a pair.
                let pair =
                    |i: usize| if cols.is_multiple_of(2) { dh[i].abs().max(dh[i ^ 1].abs()) } else { dh[i].abs() };
                check(&format!("{what} bwd da"), &down(&t.dev, &dda), &down(&r, &rda), |i| {
                    3e-7 * pair(i) as f64 + 1e-30
                });
                // Parameter gradients are sums over rows (modReLU) or over everything (PReLU).
                let terms = if kind == Activation::Prelu { len } else { rows };
                let tol = 1e-6 * (terms as f64).sqrt() * terms as f64 + 1e-6;
                check(&format!("{what} bwd dparam (with={with_dparam})"), &down(&t.dev, &ddp), &down(&r, &rdp), |_| {
                    tol
                });
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Losses
// ------------------------------------------------------------------------------------------------

/// Softmax cross-entropy over class counts around the warp width, with ignored rows and ties
/// (the first maximum wins the arg-max, also across lanes).
fn softmax_xent<B: Backend<Elem = f32>>(t: &Dut<B>) {
    let r = refb();
    for (ci, &classes) in [1usize, 2, 10, 31, 32, 33, 100, 257].iter().enumerate() {
        let rows = 37;
        let seed = 1000 + 10 * ci as u64;
        let mut logits = uniform(rows * classes, -3.0, 3.0, seed);
        let picks = uniform(rows, 0.0, 1.0, seed + 1);
        let mut targets = vec![0f32; rows];
        for row in 0..rows {
            let x = &mut logits[row * classes..(row + 1) * classes];
            let pick = ((picks[row] * classes as f32) as usize).min(classes - 1);
            targets[row] = match row % 7 {
                3 => -1.0,
                5 => {
                    // A tie between two columns, in different lanes when there is room.
                    let (p1, p2) = (pick / 2, (pick / 2 + 32).min(classes - 1));
                    x[p1] = 4.0;
                    x[p2] = 4.0;
                    if row % 2 == 0 { p1 as f32 } else { p2 as f32 }
                }
                6 => {
                    x.iter_mut().for_each(|v| *v = 0.5);
                    if row % 2 == 0 { 0.0 } else { pick as f32 }
                }
                _ => pick as f32,
            };
        }
        let scale = 1.0 / 31.0;
        let (dl, dtg, rl, rtg) = (up(&t.dev, &logits), up(&t.dev, &targets), up64(&r, &logits), up64(&r, &targets));
        let (mut dg, mut rg) = (up(&t.dev, &vec![f32::NAN; rows * classes]), r.zeros(rows * classes).unwrap());
        let got =
            t.dev.softmax_xent(Slice::all(&dl), Slice::all(&dtg), SliceMut::all(&mut dg), classes, scale).unwrap();
        let want = r.softmax_xent(Slice::all(&rl), Slice::all(&rtg), SliceMut::all(&mut rg), classes, scale as f64);
        let want = want.unwrap();
        let what = format!("softmax_xent classes={classes}");
        check_stats(&what, got, want, t.trans_rel, want.count as f64 * (8.0 + (classes as f64).ln()));
        check_rel(
            &format!("{what}: grad"),
            &down(&t.dev, &dg),
            &down(&r, &rg),
            t.trans_rel,
            t.trans_rel * scale as f64,
        );
    }
}

/// Targets that are not integers in `[0, classes)` (nor negative) are an error on every backend.
fn softmax_xent_invalid_targets<B: Backend<Elem = f32>>(t: &Dut<B>) {
    let r = refb();
    for (classes, bad) in [(10usize, 1.5f32), (10, 10.0), (40, 40.0), (10, 1e9), (33, f32::NAN), (5, 2.25)] {
        let rows = 9;
        let logits = rand(rows * classes, 1100);
        let mut targets: Vec<f32> = (0..rows).map(|i| (i % classes) as f32).collect();
        targets[4] = bad;
        let (dl, dtg) = (up(&t.dev, &logits), up(&t.dev, &targets));
        let mut dg = t.dev.zeros(rows * classes).unwrap();
        let got = t.dev.softmax_xent(Slice::all(&dl), Slice::all(&dtg), SliceMut::all(&mut dg), classes, 1.0);
        assert!(matches!(got, Err(Error::InvalidArg { .. })), "target {bad} of {classes}: {got:?}");
        let (rl, rtg) = (up64(&r, &logits), up64(&r, &targets));
        let mut rg = r.zeros(rows * classes).unwrap();
        let want = r.softmax_xent(Slice::all(&rl), Slice::all(&rtg), SliceMut::all(&mut rg), classes, 1.0);
        assert!(matches!(want, Err(Error::InvalidArg { .. })), "reference, target {bad}: {want:?}");
    }
}

fn mse<B: Backend<Elem = f32>>(t: &Dut<B>) {
    let r = refb();
    for (i, &n) in [1usize, 257, 3000].iter().enumerate() {
        let (p, y) = (rand(n, 1200 + i as u64), rand(n, 1210 + i as u64));
        let (dp, dy, rp, ry) = (up(&t.dev, &p), up(&t.dev, &y), up64(&r, &p), up64(&r, &y));
        let (mut dg, mut rg) = (up(&t.dev, &vec![f32::NAN; n]), r.zeros(n).unwrap());
        let got = t.dev.mse(Slice::all(&dp), Slice::all(&dy), SliceMut::all(&mut dg), 0.5).unwrap();
        let want = r.mse(Slice::all(&rp), Slice::all(&ry), SliceMut::all(&mut rg), 0.5).unwrap();
        check_stats(&format!("mse n={n}"), got, want, 1e-6, 0.0);
        check_rel(&format!("mse n={n}: grad"), &down(&t.dev, &dg), &down(&r, &rg), 1.2e-7, 0.0);
    }
}

// ------------------------------------------------------------------------------------------------
// Reductions
// ------------------------------------------------------------------------------------------------

fn reductions<B: Backend<Elem = f32>>(t: &Dut<B>) {
    let r = refb();
    for (i, &n) in [1usize, 31, 257, 5000].iter().enumerate() {
        let mut x = rand(n, 1300 + i as u64);
        x[n / 2] = -1.5; // the largest magnitude is negative
        let (dx, rx) = (up(&t.dev, &x), up64(&r, &x));
        let (got, want) = (t.dev.sum_sq(Slice::all(&dx)).unwrap(), r.sum_sq(Slice::all(&rx)).unwrap());
        check_scalar(&format!("sum_sq n={n}"), got, want, 1e-6, 0.0);
        let (got, want) = (t.dev.max_abs(Slice::all(&dx)).unwrap(), r.max_abs(Slice::all(&rx)).unwrap());
        assert_eq!(got, want, "max_abs n={n}");
        let z = t.dev.zeros(n).unwrap();
        assert_eq!(t.dev.max_abs(Slice::all(&z)).unwrap(), 0.0, "max_abs of zeros");
    }
    for (i, &n) in [1usize, 2, 31, 33, 300].iter().enumerate() {
        let x = rand(n * n, 1400 + i as u64);
        let (got, want) = (t.dev.norm1(Slice::all(&up(&t.dev, &x)), n).unwrap(), r.norm1(Slice::all(&up64(&r, &x)), n));
        check_scalar(&format!("norm1 n={n}"), got, want.unwrap(), n as f64 * U, 0.0);
    }
    for (i, &(rows, cols)) in [(1, 1), (7, 31), (8, 32), (9, 33), (100, 65), (3, 257)].iter().enumerate() {
        let seed = 1500 + 10 * i as u64;
        let (a, b, o) = (rand(rows * cols, seed), rand(rows * cols, seed + 1), rand(cols, seed + 2));
        let (da, db, ra, rb) = (up(&t.dev, &a), up(&t.dev, &b), up64(&r, &a), up64(&r, &b));
        let tol = 1e-6 * (rows as f64).sqrt() * rows as f64;
        for beta in [0.0f32, 1.0, 0.5] {
            let (mut dout, mut rout) = (up(&t.dev, &o), up64(&r, &o));
            t.dev.col_sum(Slice::all(&da), rows, cols, beta, SliceMut::all(&mut dout)).unwrap();
            r.col_sum(Slice::all(&ra), rows, cols, beta as f64, SliceMut::all(&mut rout)).unwrap();
            check(&format!("col_sum {rows}x{cols} beta={beta}"), &down(&t.dev, &dout), &down(&r, &rout), |_| tol);
        }
        let (mut dout, mut rout) = (up(&t.dev, &o), up64(&r, &o));
        t.dev.col_dot(Slice::all(&da), Slice::all(&db), rows, cols, SliceMut::all(&mut dout)).unwrap();
        r.col_dot(Slice::all(&ra), Slice::all(&rb), rows, cols, SliceMut::all(&mut rout)).unwrap();
        check(&format!("col_dot {rows}x{cols}"), &down(&t.dev, &dout), &down(&r, &rout), |_| tol);
    }
}

parity_tests!(
    gemm_representable,
    gemm_small_tiles,
    gemm_large_tiles,
    gemm_empty_k,
    gemm_batched,
    gemm_epilogue,
    memory_and_views,
    fill_scale_axpby,
    matrix_elementwise,
    margin_map,
    activations,
    softmax_xent,
    softmax_xent_invalid_targets,
    mse,
    reductions,
);
parity_tests_tc!(gemm_representable, gemm_small_tiles, gemm_large_tiles, gemm_empty_k, gemm_batched, gemm_epilogue);
