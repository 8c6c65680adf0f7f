//! Parity of the CUDA backend with the CPU reference, part 2: LU factor and solves, optimizer updates,
//! the LSTM cell, and the recurrence over `T` steps (the CUDA overrides that fuse the activation and its
//! backward into the GEMM epilogue, and the trait's default composed implementations through
//! [`Composed`]). Backends, the reference (`Cpu<f64>`) and the instantiation macro: `common/backends.rs`.
//!
//! Tolerances (f32 unit roundoff u = 6e-8):
//! - LU solves: backward error `||B - A X||_max / (||A||_inf ||X||_max) <= 4 (sqrt(n) + 1) u` (GEPP is
//!   backward stable; measured <= 0.12 of that bound, 3 u at n = 257) and forward error
//!   `||X - X_ref||_max / ||X_ref||_max <= 2 n u cond_1(A)`;
//! - optimizer steps (hyperparameters exact in f32): 1e-6 of the magnitudes involved;
//! - LSTM cell: `4 trans_rel` relative plus absolute, peephole sums `1e-6 rows`;
//! - recurrence: `(2 gemm_rel(n) + 2 trans_rel) T` of the largest magnitude plus `trans_rel` relative
//!   (the errors of each step, `tanh` included, are carried through the next ones; `gemm_rel(n)` is
//!   `1e-6 sqrt(n + 1)` in f32 and adds `2 u_op + u_op^2` with TF32 / BF16 products, `parity_tests_tc!`);
//!   activation parameter gradients `1e-5` of the sum of the magnitudes of their terms.

#[path = "common/backends.rs"]
mod backends;

use backends::{Composed, Dut, Ref, check, check_rel, dims, down, rand, uniform, up, up64, wide};
use ortho_rnn::backend::{Act, Activation, Backend, OptimRule, OptimStep, Precision, SeqDims, Slice, SliceMut};
use ortho_rnn::{Error, Scalar};

const U: f64 = 6.0e-8;

fn refb() -> Ref {
    Ref::new(1)
}

fn max_abs(x: &[f64]) -> f64 {
    x.iter().fold(0.0, |m, v| m.max(v.abs()))
}

// ------------------------------------------------------------------------------------------------
// LU
// ------------------------------------------------------------------------------------------------

/// `||A||_1 ||A^-1||_1` from the reference.
fn cond1(r: &Ref, a: &[f32], n: usize) -> f64 {
    let lu = r.lu_factor(Slice::all(&up64(r, a)), n).unwrap();
    let mut inv = r.zeros(n * n).unwrap();
    r.add_diag(SliceMut::all(&mut inv), n, 1.0).unwrap();
    r.lu_solve(&lu, SliceMut::all(&mut inv), n, false).unwrap();
    r.norm1(Slice::all(&inv), n).unwrap() * r.norm1(Slice::all(&up64(r, a)), n).unwrap()
}

/// A random `n x n` matrix; `graded`: magnitudes spread over four decades element by element, so that
/// any pivot but the largest multiplies rounding errors by up to 1e4 and shows in the backward error.
fn lu_matrix(n: usize, graded: bool, seed: u64) -> Vec<f32> {
    let a = rand(n * n, seed);
    if !graded {
        return a;
    }
    let e = uniform(n * n, -4.0, 0.0, seed + 1);
    a.iter().zip(&e).map(|(v, e)| v * 10f32.powf(*e)).collect()
}

/// Factor and solve `A X = B` and `A^T X = B` across panel sizes (panels of 32 columns, one thread
/// per row up to 512 rows; solve leaves of 256 rows, 8 right-hand sides per block): random matrices
/// (so rows are swapped) and graded ones (so a pivot that is not the column's largest shows).
fn lu_solves<B: Backend<Elem = f32>>(t: &Dut<B>) {
    let r = refb();
    let cases = [
        (1usize, false, 3usize),
        (7, false, 3),
        (31, false, 33),
        (32, false, 1),
        (33, false, 33),
        (64, false, 3),
        (100, false, 9),
        (130, false, 3),
    ];
    let graded = [(33usize, true, 2usize), (70, true, 2), (257, true, 1)];
    for (i, &(n, graded, nrhs_max)) in cases.iter().chain(&graded).enumerate() {
        let seed = 2000 + 10 * i as u64;
        let a = lu_matrix(n, graded, seed);
        let kappa = cond1(&r, &a, n);
        let da = up(&t.dev, &a);
        let lu = t.dev.lu_factor(Slice::all(&da), n).expect("lu_factor");
        assert_eq!(down(&t.dev, &da), wide(&a), "lu_factor must not modify its input (n={n})");
        let rlu = r.lu_factor(Slice::all(&up64(&r, &a)), n).unwrap();
        for nrhs in [1usize, 3, 9, 33].into_iter().filter(|&k| k <= nrhs_max) {
            let b = rand(n * nrhs, seed + nrhs as u64);
            for transpose in [false, true] {
                let what = format!("lu n={n} graded={graded} nrhs={nrhs} transpose={transpose} (cond {kappa:.1e})");
                let mut db = up(&t.dev, &b);
                t.dev.lu_solve(&lu, SliceMut::all(&mut db), nrhs, transpose).expect(&what);
                let x = down(&t.dev, &db);
                let mut rb = up64(&r, &b);
                r.lu_solve(&rlu, SliceMut::all(&mut rb), nrhs, transpose).unwrap();
                let x_ref = down(&r, &rb);
                // Backward error, in f64: residual of the device's X against the f32 A and B.
                let op = |row: usize, k: usize| if transpose { a[k * n + row] } else { a[row * n + k] } as f64;
                let (mut res, mut a_inf) = (0.0f64, 0.0f64);
                for row in 0..n {
                    a_inf = a_inf.max((0..n).map(|k| op(row, k).abs()).sum());
                    for c in 0..nrhs {
                        let ax: f64 = (0..n).map(|k| op(row, k) * x[k * nrhs + c]).sum();
                        res = res.max((b[row * nrhs + c] as f64 - ax).abs());
                    }
                }
                let backward = res / (a_inf * max_abs(&x));
                let bound = 4.0 * ((n as f64).sqrt() + 1.0) * U;
                assert!(backward <= bound, "{what}: backward error {backward:.2e} > 4 (sqrt(n) + 1) u");
                let forward = x.iter().zip(&x_ref).fold(0.0f64, |m, (g, w)| m.max((g - w).abs())) / max_abs(&x_ref);
                assert!(forward <= 2.0 * n as f64 * U * kappa, "{what}: forward error {forward:.2e} > 2 n u cond");
            }
        }
    }
}

/// Factors `a` into `lu`: the status (`lu_status`) and the solution of `A X = 1` (one column).
fn factor_and_solve<B: Backend>(dev: &B, lu: &mut B::Lu, a: &[f32], n: usize) -> (ortho_rnn::Result<()>, Vec<f64>) {
    let of = |v: &[f32]| dev.upload(&v.iter().map(|&x| B::Elem::of(x as f64)).collect::<Vec<_>>()).unwrap();
    dev.lu_factor_into(Slice::all(&of(a)), lu).expect("lu_factor_into does not report singularity");
    let mut x = of(&vec![1.0; n]);
    dev.lu_solve(lu, SliceMut::all(&mut x), 1, false).expect("lu_solve");
    (dev.lu_status(lu), down(dev, &x))
}

/// An exactly zero column gives an exactly zero pivot: `lu_status` names that column (in the first
/// panel, at a panel's first column, in a later panel) and every solve returns NaN. A NaN column (no
/// pivot compares larger than anything) and an all-NaN matrix are `Error::Singular` too, not a
/// crash. The same workspace then factors a regular matrix correctly (status and permutation reset),
/// and an unused workspace is an error, not a silent zero.
fn lu_singular<B: Backend<Elem = f32>>(t: &Dut<B>) {
    let r = refb();
    for (n, zero_col) in [(1usize, 0usize), (5, 2), (33, 32), (70, 40)] {
        let mut a = rand(n * n, 2100 + n as u64);
        (0..n).for_each(|row| a[row * n + zero_col] = 0.0);
        let mut lu = t.dev.lu_new(n).unwrap();
        assert!(t.dev.lu_status(&lu).is_err(), "n={n}: an empty workspace has no regular factorization");
        let (got, x) = factor_and_solve(&t.dev, &mut lu, &a, n);
        let mut rlu = r.lu_new(n).unwrap();
        let (want, x_ref) = factor_and_solve(&r, &mut rlu, &a, n);
        assert!(matches!(want, Err(Error::Singular { index, .. }) if index == zero_col), "reference: {want:?}");
        assert!(x_ref.iter().all(|v| v.is_nan()), "reference: the solve of a singular system is NaN");
        assert!(
            matches!(got, Err(Error::Singular { index, .. }) if index == zero_col),
            "n={n}, zero column {zero_col}: {got:?}"
        );
        assert!(x.iter().all(|v| v.is_nan()), "n={n}: the solve of a singular system must be NaN: {x:?}");
        // The same workspace, now with a regular matrix (a random one, one column replaced).
        let a2 = rand(n * n, 2200 + n as u64);
        let (got, x) = factor_and_solve(&t.dev, &mut lu, &a2, n);
        let (want, x_ref) = factor_and_solve(&r, &mut rlu, &a2, n);
        assert!(want.is_ok() && got.is_ok(), "n={n}: a regular matrix after a singular one: {got:?}");
        let scale = max_abs(&x_ref);
        check_rel(&format!("n={n}: solve after reuse"), &x, &x_ref, 0.0, 1e-3 * scale);
    }
    for (n, nan_col) in [(5usize, Some(0usize)), (40, Some(35)), (33, None)] {
        let mut a = rand(n * n, 2150 + n as u64);
        for row in 0..n {
            for col in 0..n {
                if nan_col.is_none_or(|c| c == col) {
                    a[row * n + col] = f32::NAN;
                }
            }
        }
        let (got, x) = factor_and_solve(&t.dev, &mut t.dev.lu_new(n).unwrap(), &a, n);
        let (want, _) = factor_and_solve(&r, &mut r.lu_new(n).unwrap(), &a, n);
        assert!(matches!(want, Err(Error::Singular { .. })), "reference, NaN column {nan_col:?}: {want:?}");
        assert!(matches!(got, Err(Error::Singular { .. })), "n={n}, NaN column {nan_col:?}: {got:?}");
        assert!(x.iter().all(|v| v.is_nan()), "n={n}: NaN column {nan_col:?}: the solve must be NaN");
    }
}

// ------------------------------------------------------------------------------------------------
// Optimizers
// ------------------------------------------------------------------------------------------------

/// Three consecutive steps of every rule, with and without weight decay. Hyperparameters are exact
/// in f32, so the f64 reference sees the same values.
fn optim_steps<B: Backend<Elem = f32>>(t: &Dut<B>) {
    let r = refb();
    let rules = [
        OptimRule::Sgd { momentum: 0.0, nesterov: false },
        OptimRule::Sgd { momentum: 0.875, nesterov: false },
        OptimRule::Sgd { momentum: 0.875, nesterov: true },
        OptimRule::RmsProp { rho: 0.875, eps: 1.0 / 1048576.0 },
        OptimRule::Adam { beta1: 0.875, beta2: 0.9921875, eps: 1.0 / 1048576.0 },
    ];
    for (ri, rule) in rules.into_iter().enumerate() {
        for weight_decay in [0.0, 1.0 / 128.0] {
            for (ni, &n) in [1usize, 257, 3000].iter().enumerate() {
                let seed = 2200 + 100 * ri as u64 + 10 * ni as u64;
                let p0 = rand(n, seed);
                let (mut dp, mut ds1, mut ds2) = (up(&t.dev, &p0), t.dev.zeros(n).unwrap(), t.dev.zeros(n).unwrap());
                let (mut rp, mut rs1, mut rs2) = (up64(&r, &p0), r.zeros(n).unwrap(), r.zeros(n).unwrap());
                for step in 1..=3u64 {
                    let g = rand(n, seed + step);
                    let st = OptimStep { rule, lr: 1.0 / 64.0, weight_decay, t: step };
                    let what = format!("{rule:?} wd={weight_decay} n={n} step {step}");
                    let (dg, rg) = (up(&t.dev, &g), up64(&r, &g));
                    let (p, s1, s2) = (SliceMut::all(&mut dp), SliceMut::all(&mut ds1), SliceMut::all(&mut ds2));
                    t.dev.optim_step(&st, p, Slice::all(&dg), s1, s2).expect(&what);
                    let (p, s1, s2) = (SliceMut::all(&mut rp), SliceMut::all(&mut rs1), SliceMut::all(&mut rs2));
                    r.optim_step(&st, p, Slice::all(&rg), s1, s2).unwrap();
                    // |p| <= ~1.1; a step is at most ~lr / (1 - beta) in magnitude.
                    check_rel(&format!("{what}: param"), &down(&t.dev, &dp), &down(&r, &rp), 1e-6, 1e-6);
                    check_rel(&format!("{what}: s1"), &down(&t.dev, &ds1), &down(&r, &rs1), 1e-6, 1e-7);
                    check_rel(&format!("{what}: s2"), &down(&t.dev, &ds2), &down(&r, &rs2), 1e-6, 1e-7);
                }
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// LSTM cell
// ------------------------------------------------------------------------------------------------

fn lstm_cell<B: Backend<Elem = f32>>(t: &Dut<B>) {
    let r = refb();
    for (i, &(rows, n)) in [(1usize, 1usize), (5, 31), (3, 33), (2, 130)].iter().enumerate() {
        let seed = 2500 + 10 * i as u64;
        let (z, peep) = (uniform(4 * rows * n, -2.0, 2.0, seed), uniform(3 * n, -0.5, 0.5, seed + 1));
        let mut c = rand(rows * n, seed + 2);
        c.extend(vec![f32::NAN; rows * n]);
        let what = format!("lstm rows={rows} n={n}");
        let tol = 4.0 * t.trans_rel;

        let (dz, dpeep) = (up(&t.dev, &z), up(&t.dev, &peep));
        let (mut dc, mut dg, mut dh) =
            (up(&t.dev, &c), up(&t.dev, &vec![f32::NAN; 4 * rows * n]), t.dev.zeros(rows * n).unwrap());
        t.dev
            .lstm_fwd(
                Slice::all(&dz),
                Slice::all(&dpeep),
                SliceMut::all(&mut dc),
                SliceMut::all(&mut dg),
                SliceMut::all(&mut dh),
                n,
            )
            .expect(&what);
        let (rz, rpeep) = (up64(&r, &z), up64(&r, &peep));
        let (mut rc, mut rg, mut rh) = (up64(&r, &c), r.zeros(4 * rows * n).unwrap(), r.zeros(rows * n).unwrap());
        r.lstm_fwd(
            Slice::all(&rz),
            Slice::all(&rpeep),
            SliceMut::all(&mut rc),
            SliceMut::all(&mut rg),
            SliceMut::all(&mut rh),
            n,
        )
        .unwrap();
        let (want_c, want_g) = (down(&r, &rc), down(&r, &rg));
        check_rel(&format!("{what}: c"), &down(&t.dev, &dc), &want_c, tol, tol);
        check_rel(&format!("{what}: gates"), &down(&t.dev, &dg), &want_g, tol, tol);
        check_rel(&format!("{what}: h"), &down(&t.dev, &dh), &down(&r, &rh), tol, tol);

        // Backward from the reference's forward state, rounded to f32, on both sides.
        let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        let (gates, cpair) = (f32s(&want_g), f32s(&want_c));
        let (dh_in, dc_in, dpeep0) = (rand(rows * n, seed + 3), rand(rows * n, seed + 4), rand(3 * n, seed + 5));
        let bn = rows * n;
        let (dgates, dcp, dpp) = (up(&t.dev, &gates), up(&t.dev, &cpair), up(&t.dev, &peep));
        let ddh = up(&t.dev, &dh_in);
        let (mut ddc, mut ddz, mut ddp) =
            (up(&t.dev, &dc_in), up(&t.dev, &vec![f32::NAN; 4 * bn]), up(&t.dev, &dpeep0));
        t.dev
            .lstm_bwd(
                Slice::all(&dgates),
                Slice::all(&dcp).sub(0, bn),
                Slice::all(&dcp).sub(bn, bn),
                Slice::all(&dpp),
                Slice::all(&ddh),
                SliceMut::all(&mut ddc),
                SliceMut::all(&mut ddz),
                SliceMut::all(&mut ddp),
                n,
            )
            .expect(&what);
        let (rgates, rcp, rpp, rdh) = (up64(&r, &gates), up64(&r, &cpair), up64(&r, &peep), up64(&r, &dh_in));
        let (mut rdc, mut rdz, mut rdp) = (up64(&r, &dc_in), r.zeros(4 * bn).unwrap(), up64(&r, &dpeep0));
        r.lstm_bwd(
            Slice::all(&rgates),
            Slice::all(&rcp).sub(0, bn),
            Slice::all(&rcp).sub(bn, bn),
            Slice::all(&rpp),
            Slice::all(&rdh),
            SliceMut::all(&mut rdc),
            SliceMut::all(&mut rdz),
            SliceMut::all(&mut rdp),
            n,
        )
        .unwrap();
        check_rel(&format!("{what}: dc"), &down(&t.dev, &ddc), &down(&r, &rdc), tol, tol);
        check_rel(&format!("{what}: dz"), &down(&t.dev, &ddz), &down(&r, &rdz), tol, tol);
        check(&format!("{what}: dpeep"), &down(&t.dev, &ddp), &down(&r, &rdp), |_| tol * rows as f64 * 4.0);
    }
}

// ------------------------------------------------------------------------------------------------
// Recurrence
// ------------------------------------------------------------------------------------------------

struct SeqData {
    w: Vec<f32>,
    param: Vec<f32>,
    pre: Vec<f32>,
    h: Vec<f32>,
    dh: Vec<f32>,
    dparam0: Vec<f32>,
}

fn seq_data(kind: Activation, d: SeqDims, seed: u64) -> SeqData {
    let bn = d.batch * d.n;
    // Spectral radius ~0.9: uniform entries have variance 1/3.
    let w = rand(d.n * d.n, seed).iter().map(|v| v * (2.7 / d.n as f32).sqrt()).collect();
    let param = match kind {
        Activation::Prelu => vec![0.25],
        Activation::Modrelu => uniform(d.n, -0.4, 0.2, seed + 1),
        _ => Vec::new(),
    };
    let pre = rand(d.t * bn, seed + 2);
    let mut h = rand(bn, seed + 3);
    h.extend(vec![f32::NAN; d.t * bn]); // every later block must be written
    let dh = rand(d.t * bn, seed + 4);
    let dparam0 = uniform(kind.param_len(d.n), 0.5, 1.0, seed + 5);
    SeqData { w, param, pre, h, dh, dparam0 }
}

/// Forward then backward on `dev`: `(pre, h, delta, dparam)` after the calls. The backward pass
/// starts from `fwd_state` (`pre`, `h` from the reference) so that both sides see the same state.
fn run_seq<B: Backend<Elem = f32>>(
    dev: &B,
    kind: Activation,
    d: SeqDims,
    s: &SeqData,
    fwd_state: Option<(&[f32], &[f32])>,
    with_dparam: bool,
) -> [Vec<f64>; 4] {
    let (w, param) = (up(dev, &s.w), up(dev, &s.param));
    let act = Act { kind, param: (!s.param.is_empty()).then(|| Slice::all(&param)) };
    let (mut pre, mut h) = (up(dev, &s.pre), up(dev, &s.h));
    dev.recurrent_forward(Slice::all(&w), act, SliceMut::all(&mut pre), SliceMut::all(&mut h), d).expect("forward");
    let fwd = [down(dev, &pre), down(dev, &h)];
    if let Some((p, hh)) = fwd_state {
        (pre, h) = (up(dev, p), up(dev, hh));
    }
    let (mut dh, mut delta, mut dp) = (up(dev, &s.dh), up(dev, &vec![f32::NAN; s.dh.len()]), up(dev, &s.dparam0));
    let dparam = with_dparam.then(|| SliceMut::all(&mut dp));
    dev.recurrent_backward(
        Slice::all(&w),
        act,
        Slice::all(&pre),
        Slice::all(&h),
        SliceMut::all(&mut dh),
        SliceMut::all(&mut delta),
        dparam,
        d,
    )
    .expect("backward");
    let [pre, h] = fwd;
    [pre, h, down(dev, &delta), down(dev, &dp)]
}

/// The f64 reference of one recurrence case: the forward pass, its outputs rounded to f32 (the
/// inputs of the backward pass under test), and the backward pass (with the parameter gradient when
/// `with_dparam`), plus the magnitude of each parameter-gradient entry's terms (PReLU
/// `sum_{a<=0} |dh a| = |delta a| / slope`; modReLU per column `sum |dh|` over active units
/// `= sum |delta|`), which scales its tolerance.
struct SeqRef {
    want_pre: Vec<f64>,
    want_h: Vec<f64>,
    pre32: Vec<f32>,
    h32: Vec<f32>,
    want_delta: Vec<f64>,
    want_dp: Vec<f64>,
    mag: Vec<f64>,
}

fn seq_reference(kind: Activation, d: SeqDims, s: &SeqData, with_dparam: bool) -> SeqRef {
    let r = refb();
    let refp = up64(&r, &s.param);
    let ract = Act { kind, param: (!s.param.is_empty()).then(|| Slice::all(&refp)) };
    let w = up64(&r, &s.w);
    let (mut pre, mut h) = (up64(&r, &s.pre), up64(&r, &s.h));
    r.recurrent_forward(Slice::all(&w), ract, SliceMut::all(&mut pre), SliceMut::all(&mut h), d).unwrap();
    let (want_pre, want_h) = (down(&r, &pre), down(&r, &h));
    let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    let (pre32, h32) = (f32s(&want_pre), f32s(&want_h));
    let (pre, h) = (up64(&r, &pre32), up64(&r, &h32));
    let (mut dh, mut delta, mut dp) = (up64(&r, &s.dh), r.zeros(s.dh.len()).unwrap(), up64(&r, &s.dparam0));
    let dparam = with_dparam.then(|| SliceMut::all(&mut dp));
    let (ws, ps, hs) = (Slice::all(&w), Slice::all(&pre), Slice::all(&h));
    r.recurrent_backward(ws, ract, ps, hs, SliceMut::all(&mut dh), SliceMut::all(&mut delta), dparam, d).unwrap();
    let (want_delta, want_dp) = (down(&r, &delta), down(&r, &dp));
    let mut mag = vec![0.0f64; want_dp.len()];
    for (i, (&dl, &a)) in want_delta.iter().zip(&want_pre).enumerate() {
        match kind {
            Activation::Prelu if a <= 0.0 => mag[0] += (dl * a).abs() / 0.25,
            Activation::Modrelu => mag[i % d.n] += dl.abs(),
            _ => {}
        }
    }
    SeqRef { want_pre, want_h, pre32, h32, want_delta, want_dp, mag }
}

/// `recurrent_forward` / `recurrent_backward` for every activation, with and without the parameter
/// gradient: the device's own implementation (fused on CUDA) and the trait's default composition.
fn recurrence<B: Backend<Elem = f32>>(t: &Dut<B>) {
    let shapes = [dims(1, 1, 2), dims(3, 2, 34), dims(4, 5, 33), dims(2, 130, 128)];
    for (si, &d) in shapes.iter().enumerate() {
        for (ki, kind) in Activation::ALL.into_iter().enumerate() {
            if kind == Activation::Oplu && d.n % 2 == 1 {
                continue;
            }
            let mut s = seq_data(kind, d, 3000 + 100 * si as u64 + 10 * ki as u64);
            if kind == Activation::Modrelu && t.precision != Precision::Fp32 {
                // modReLU jumps at 0 for a positive bias: keep it continuous under TF32 / BF16 rounding.
                s.param.iter_mut().for_each(|b| *b = -b.abs());
            }
            let tol_seq = |want: &[f64]| {
                let m = max_abs(want);
                move |v: f64| (2.0 * t.gemm_rel(d.n) + 2.0 * t.trans_rel) * d.t as f64 * m + t.trans_rel * v.abs()
            };
            for with_dparam in [false, true] {
                let SeqRef { want_pre, want_h, pre32, h32, want_delta, want_dp, mag } =
                    seq_reference(kind, d, &s, with_dparam);
                let mut variants = vec![("own", run_seq(&t.dev, kind, d, &s, Some((&pre32, &h32)), with_dparam))];
                // The composition runs the same primitives at every shape; the large shape is there
                // for the fused path's 128x128 tiles, so the composition skips it (emu time).
                if d.batch < 128 {
                    let composed = run_seq(&Composed(t.dev.clone()), kind, d, &s, Some((&pre32, &h32)), with_dparam);
                    variants.push(("composed", composed));
                }
                for (name, [got_pre, got_h, got_delta, got_dp]) in variants {
                    let what = format!("{name} {kind:?} {d:?} dparam={with_dparam}");
                    let tp = tol_seq(&want_pre);
                    check(&format!("{what}: pre"), &got_pre, &want_pre, |i| tp(want_pre[i]));
                    let th = tol_seq(&want_h);
                    check(&format!("{what}: h"), &got_h, &want_h, |i| th(want_h[i]));
                    let td = tol_seq(&want_delta);
                    check(&format!("{what}: delta"), &got_delta, &want_delta, |i| td(want_delta[i]));
                    // With TF32 / BF16 products, dh carries the products' error through the steps.
                    let carried = if t.precision == Precision::Fp32 { 0.0 } else { 2.0 * t.gemm_rel(d.n) * d.t as f64 };
                    check(&format!("{what}: dparam"), &got_dp, &want_dp, |i| (1e-5 + carried) * mag[i] + 1e-6);
                }
            }
        }
    }
}

parity_tests!(lu_solves, lu_singular, optim_steps, lstm_cell, recurrence);
parity_tests_tc!(recurrence);

/// The persistent cooperative recurrence and the per-step path under emu: several SM counts (so that the
/// grid has one or many blocks, or cannot hold `W` on chip and falls back), odd and even `n`, every
/// activation with its parameter gradient, every resume order; the path that ran is checked by name.
#[test]
fn emu_recurrence_paths_match_the_reference() {
    use ortho_rnn::backend::cuda::emu::{EmuDriver, ResumeOrder};
    use ortho_rnn::backend::cuda::{Cuda, RecurrenceMode};
    // (T, B, n, SMs, persistent expected)
    let cases = [
        (4usize, 64usize, 37usize, 132u32, true),
        (3, 64, 40, 2, true),
        (3, 5, 38, 1, true),
        (2, 64, 200, 1, false), // 4 co-resident blocks would need 64 units of 201 floats each
    ];
    for (ci, &(t, batch, n, sms, persistent)) in cases.iter().enumerate() {
        let d = dims(t, batch, n);
        for (ki, kind) in Activation::ALL.into_iter().enumerate() {
            if kind == Activation::Oplu && n % 2 == 1 {
                continue;
            }
            let s = seq_data(kind, d, 7000 + 100 * ci as u64 + 10 * ki as u64);
            let SeqRef { want_pre, want_h, pre32, h32, want_delta, want_dp, mag } = seq_reference(kind, d, &s, true);
            let tol = |want: &[f64]| {
                let m = max_abs(want);
                move |v: f64| (2e-6 * (n as f64).sqrt() + 2e-5) * t as f64 * m + 1e-5 * v.abs()
            };
            let orders = if ci == 0 { &ResumeOrder::TEST_SET[..] } else { &ResumeOrder::TEST_SET[..3] };
            for &order in orders {
                let dev = Cuda::new(EmuDriver::with_order(order).with_sm_count(sms).unwrap()).unwrap();
                let what = format!("{kind:?} {d:?} {sms} SMs {order}");
                let [got_pre, got_h, got_delta, got_dp] = run_seq(&dev, kind, d, &s, Some((&pre32, &h32)), true);
                let notes = dev.path_notes();
                for (op, path) in &notes {
                    assert_eq!(path.starts_with("persistent"), persistent, "{what}: {op} ran {path}");
                }
                assert_eq!(notes.len(), 2, "{what}: {notes:?}");
                let tp = tol(&want_pre);
                check(&format!("{what}: pre"), &got_pre, &want_pre, |i| tp(want_pre[i]));
                let th = tol(&want_h);
                check(&format!("{what}: h"), &got_h, &want_h, |i| th(want_h[i]));
                let td = tol(&want_delta);
                check(&format!("{what}: delta"), &got_delta, &want_delta, |i| td(want_delta[i]));
                check(&format!("{what}: dparam"), &got_dp, &want_dp, |i| 1e-5 * mag[i] + 1e-6);
                if ci == 1 && order == ResumeOrder::InOrder {
                    // The same case forced onto the per-step path agrees too.
                    dev.set_recurrence(RecurrenceMode::PerStep);
                    let [_, got_h2, got_delta2, _] = run_seq(&dev, kind, d, &s, Some((&pre32, &h32)), true);
                    assert!(dev.path_notes().iter().all(|(_, p)| p.starts_with("per-step")));
                    check(&format!("{what} per-step: h"), &got_h2, &want_h, |i| th(want_h[i]));
                    check(&format!("{what} per-step: delta"), &got_delta2, &want_delta, |i| td(want_delta[i]));
                }
            }
        }
    }
}

/// Whole training iterations under emu against the CPU backend, every model (Adam with clipping that
/// triggers, so that the multi-tensor step clips, updates and counts Adam's steps on the device), and
/// replayed graphs against direct iterations bit for bit.
#[test]
fn emu_training_iterations_match_cpu_and_replayed_graphs_match_direct_bits() {
    use ortho_rnn::backend::cpu::Cpu;
    use ortho_rnn::backend::cuda::Cuda;
    use ortho_rnn::backend::cuda::emu::{EmuDriver, ResumeOrder};
    use ortho_rnn::optim::OptimConfig;
    use ortho_rnn::tasks::Task;
    use ortho_rnn::tasks::copy::CopyTask;
    use ortho_rnn::train::bench::Iteration;
    use ortho_rnn::train::build::{ModelKind, ModelSpec};
    let task = CopyTask::new(4, 3).unwrap();
    let opt = OptimConfig {
        rule: OptimRule::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 },
        lr: 1e-2,
        geo_lr: 1e-2,
        clip: Some(0.5),
        weight_decay: 1e-4,
    };
    let kinds = [
        ModelKind::Rnn,
        ModelKind::Factorized,
        ModelKind::Orthogonal,
        ModelKind::Scornn,
        ModelKind::Exprnn,
        ModelKind::Dtriv,
        ModelKind::Lstm,
    ];
    for kind in kinds {
        let mut spec = ModelSpec::of(kind, 8);
        if kind == ModelKind::Dtriv {
            spec.k = Some(2);
        }
        let cpu = Cpu::<f32>::new(1);
        let emu = Cuda::new(EmuDriver::with_order(ResumeOrder::Random(9))).unwrap();
        let emu_direct = Cuda::new(EmuDriver::with_order(ResumeOrder::Random(9))).unwrap();
        let mut ic = Iteration::new(&cpu, &spec, opt, &task).unwrap();
        let mut ie = Iteration::new(&emu, &spec, opt, &task).unwrap();
        let mut id = Iteration::new(&emu_direct, &spec, opt, &task).unwrap().with_graphs(false);
        for i in 0..4 {
            let batch = task.train_batch(i, 3).unwrap();
            let (sc, nc) = ic.run(&cpu, &batch).unwrap();
            let (se, ne) = ie.run(&emu, &batch).unwrap();
            let (sd, nd) = id.run(&emu_direct, &batch).unwrap();
            let what = format!("{kind:?} iteration {i}");
            assert!(
                (sc.loss - se.loss).abs() <= 1e-4 * sc.loss.abs().max(1.0),
                "{what}: loss {} vs {}",
                sc.loss,
                se.loss
            );
            assert!(nc.clipped && ne.clipped, "{what}: clipping at 0.5 must trigger");
            assert!((nc.grad_norm - ne.grad_norm).abs() <= 1e-4 * nc.grad_norm, "{what}: norm");
            assert_eq!(
                (se.loss.to_bits(), ne.grad_norm.to_bits()),
                (sd.loss.to_bits(), nd.grad_norm.to_bits()),
                "{what}"
            );
        }
        let graph_safe = matches!(kind, ModelKind::Rnn | ModelKind::Factorized | ModelKind::Orthogonal);
        assert_eq!(ie.replaying(), graph_safe, "{kind:?}: graphs replayed");
        for ((pc, pe), pd) in ic.model().params().iter().zip(ie.model().params()).zip(id.model().params()) {
            let (c, e, d) =
                (cpu.download(pc.v()).unwrap(), emu.download(pe.v()).unwrap(), emu_direct.download(pd.v()).unwrap());
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&e), bits(&d), "{kind:?} {}: replayed graph and direct iterations differ", pc.name);
            for (x, y) in c.iter().zip(&e) {
                assert!((x - y).abs() <= 2e-4 * x.abs().max(1.0), "{kind:?} {}: cpu {x} emu {y}", pc.name);
            }
        }
    }
}

/// The GPU-recurrence issue's budget: an Elman iteration (the copy task, RMSprop with clipping)
/// launches at most 20 kernels and synchronizes with the host at most twice, counted by the driver
/// layer under emu (the counts depend on T only through the persistent kernel's grid barriers).
#[test]
fn emu_rnn_iteration_stays_within_the_launch_and_sync_budget() {
    use ortho_rnn::backend::cuda::Cuda;
    use ortho_rnn::backend::cuda::emu::EmuDriver;
    use ortho_rnn::optim::OptimConfig;
    use ortho_rnn::train::bench::{BenchOptions, bench_with};
    use ortho_rnn::train::build::{ModelKind, ModelSpec};
    let spec = ModelSpec::of(ModelKind::Rnn, 16);
    let opt = OptimConfig {
        rule: OptimRule::RmsProp { rho: 0.9, eps: 1e-8 },
        lr: 1e-3,
        geo_lr: 1e-3,
        clip: Some(1.0),
        weight_decay: 0.0,
    };
    let emu = Cuda::new(EmuDriver::new()).unwrap();
    let r = bench_with(&emu, &spec, opt, 6, 4, 3, BenchOptions { profile: true, predict: None }).unwrap();
    let p = r.profile.expect("--profile counts");
    assert!(p.launches_per_iter <= 20.0, "{} launches per iteration", p.launches_per_iter);
    assert!(p.host_syncs_per_iter <= 2.0, "{} host syncs per iteration", p.host_syncs_per_iter);
    assert_eq!(p.allocs_per_iter, 0.0, "allocations inside an iteration");
    assert!(p.graph_kernels_per_iter > 0.0, "the iteration replays a graph: {p:?}");
    assert!(p.paths.values().any(|v| v.starts_with("persistent")), "{:?}", p.paths);
}
