//! Integration tests of `ortho_rnn::linalg` on the CPU backend: expm against nalgebra, the adjoint
//! Frechet derivative against the block-matrix form and finite differences, Cayley steps, the
//! scoRNN backward, QR re-orthogonalization and singular values. All random data is seeded.

use nalgebra::DMatrix;
use ortho_rnn::backend::cpu::{Cpu, CpuBuf};
use ortho_rnn::backend::{Backend, Slice, SliceMut};
use ortho_rnn::linalg::{self, CayleyForm, CayleyStep, Expm, ExpmFrechet, PadeChoice, Scornn};
use ortho_rnn::{Error, Scalar};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

// ---------- helpers ----------

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn gauss(r: &mut ChaCha8Rng, len: usize) -> Vec<f64> {
    (0..len).map(|_| r.sample::<f64, _>(StandardNormal)).collect()
}

fn norm1(x: &[f64], n: usize) -> f64 {
    (0..n).map(|j| (0..n).map(|i| x[i * n + j].abs()).sum::<f64>()).fold(0.0, f64::max)
}

/// `x` scaled to 1-norm `target`.
fn with_norm1(mut x: Vec<f64>, n: usize, target: f64) -> Vec<f64> {
    let s = target / norm1(&x, n);
    x.iter_mut().for_each(|v| *v *= s);
    x
}

/// A random skew-symmetric matrix with 1-norm `target`.
fn skew(r: &mut ChaCha8Rng, n: usize, target: f64) -> Vec<f64> {
    let g = gauss(r, n * n);
    let s: Vec<f64> = (0..n * n).map(|k| g[k] - g[(k % n) * n + k / n]).collect();
    with_norm1(s, n, target)
}

fn transpose(x: &[f64], n: usize) -> Vec<f64> {
    (0..n * n).map(|k| x[(k % n) * n + k / n]).collect()
}

fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
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

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `‖a - b‖_F / ‖b‖_F`.
fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
    (num / dot(b, b)).sqrt()
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// nalgebra's `exp` (an independent implementation) of a row-major matrix.
fn nalgebra_exp(x: &[f64], n: usize) -> Vec<f64> {
    transpose(DMatrix::from_row_slice(n, n, x).exp().as_slice(), n)
}

fn up<T: Scalar>(b: &Cpu<T>, x: &[f64]) -> CpuBuf<T> {
    b.upload(&x.iter().map(|&v| T::of(v)).collect::<Vec<_>>()).unwrap()
}

fn down<T: Scalar>(buf: &CpuBuf<T>) -> Vec<f64> {
    buf.0.iter().map(|v| v.f64()).collect()
}

/// `x` rounded to `T` and back (so a reference sees exactly the input `T` sees).
fn rounded<T: Scalar>(x: &[f64]) -> Vec<f64> {
    x.iter().map(|&v| T::of(v).f64()).collect()
}

fn expm_with_choice<T: Scalar>(b: &Cpu<T>, a: &[f64], n: usize) -> (Vec<f64>, PadeChoice) {
    let abuf = up(b, a);
    let mut out = b.zeros(n * n).unwrap();
    let choice = Expm::new(b, n).unwrap().compute(b, Slice::all(&abuf), SliceMut::all(&mut out)).unwrap();
    (down(&out), choice)
}

fn pc(degree: usize, squarings: u32) -> PadeChoice {
    PadeChoice { degree, squarings }
}

// ---------- expm ----------

#[test]
fn expm_f64_matches_nalgebra_at_every_degree_and_scaling() {
    let n = 20;
    let mut r = rng(1);
    let cases =
        [(0.01, pc(3, 0)), (0.2, pc(5, 0)), (0.9, pc(7, 0)), (2.0, pc(9, 0)), (5.0, pc(13, 0)), (10.0, pc(13, 1))];
    let scaled = [(40.0, pc(13, 3)), (150.0, pc(13, 5))];
    let b = Cpu::<f64>::new(1);
    for (i, &(norm, want)) in cases.iter().chain(&scaled).enumerate() {
        let a = with_norm1(gauss(&mut r, n * n), n, norm);
        let (e, choice) = expm_with_choice(&b, &a, n);
        assert_eq!(choice, want, "norm {norm}");
        let err = rel_err(&e, &nalgebra_exp(&a, n));
        // Random non-normal matrices: the forward error carries exp's condition number, which
        // grows with the norm; the small-norm cases sit at a few ulps.
        let tol = if i < cases.len() { 1e-13 } else { 1e-12 };
        eprintln!("expm f64 norm {norm} {choice:?}: relative error {err:.2e}");
        assert!(err < tol, "norm {norm} {choice:?}: relative error {err:e}");
    }
}

#[test]
fn expm_f32_matches_nalgebra_at_every_degree_and_scaling() {
    let n = 20;
    let mut r = rng(2);
    let b = Cpu::<f32>::new(1);
    let cases = [(0.4, pc(3, 0)), (1.5, pc(5, 0)), (3.5, pc(7, 0)), (7.5, pc(7, 1)), (30.0, pc(7, 3))];
    for (norm, want) in cases {
        let a = rounded::<f32>(&with_norm1(gauss(&mut r, n * n), n, norm));
        let (e, choice) = expm_with_choice(&b, &a, n);
        assert_eq!(choice, want, "norm {norm}");
        let err = rel_err(&e, &nalgebra_exp(&a, n));
        eprintln!("expm f32 norm {norm} {choice:?}: relative error {err:.2e}");
        assert!(err < 1e-5, "f32 norm {norm} {choice:?}: relative error {err:e}");
    }
}

#[test]
fn expm_of_rotation_blocks_is_closed_form() {
    // Block-diagonal 2x2 blocks [[0, -t], [t, 0]] have exp [[cos t, -sin t], [sin t, cos t]].
    let angles: [f64; 6] = [1e-3, 0.5, 1.0, 3.0, 7.0, 25.0];
    let n = 2 * angles.len();
    let mut a = vec![0.0; n * n];
    let mut want = vec![0.0; n * n];
    for (k, &t) in angles.iter().enumerate() {
        let (i, j) = (2 * k, 2 * k + 1);
        a[i * n + j] = -t;
        a[j * n + i] = t;
        want[i * n + i] = t.cos();
        want[j * n + j] = t.cos();
        want[i * n + j] = -t.sin();
        want[j * n + i] = t.sin();
    }
    let (e, choice) = expm_with_choice(&Cpu::<f64>::new(1), &a, n);
    assert_eq!(choice, pc(13, 3));
    let err = max_abs_diff(&e, &want);
    assert!(err < 1e-13, "f64: max error {err:e}");
    let (e, choice) = expm_with_choice(&Cpu::<f32>::new(1), &a, n);
    assert_eq!(choice, pc(7, 3));
    let err = max_abs_diff(&e, &want);
    assert!(err < 2e-6, "f32: max error {err:e}");
}

#[test]
fn expm_of_skew_is_orthogonal() {
    let n = 64;
    let mut r = rng(3);
    for norm in [0.5, 4.0, 60.0] {
        let a = skew(&mut r, n, norm);
        let (e, choice) = expm_with_choice(&Cpu::<f64>::new(1), &a, n);
        let b = Cpu::<f64>::new(1);
        let d = linalg::drift(&b, Slice::all(&up(&b, &e)), n).unwrap();
        assert!(d < 1e-14 * (1 + choice.squarings) as f64, "f64 norm {norm} {choice:?}: drift {d:e}");
        let (e, choice) = expm_with_choice(&Cpu::<f32>::new(1), &rounded::<f32>(&a), n);
        let b = Cpu::<f32>::new(1);
        let d = linalg::drift(&b, Slice::all(&up(&b, &e)), n).unwrap();
        // Each squaring can double the rounding error.
        assert!(d < 1e-6 * (1 + choice.squarings) as f64, "f32 norm {norm} {choice:?}: drift {d:e}");
    }
}

#[test]
fn expm_workspace_is_reusable_and_handles_transpose() {
    let n = 9;
    let mut r = rng(4);
    let b = Cpu::<f64>::new(1);
    let mut ws = Expm::new(&b, n).unwrap();
    let mut out = b.zeros(n * n).unwrap();
    for norm in [30.0, 0.1, 3.0] {
        let a = with_norm1(gauss(&mut r, n * n), n, norm);
        let abuf = up(&b, &a);
        ws.compute(&b, Slice::all(&abuf), SliceMut::all(&mut out)).unwrap();
        assert!(rel_err(&down(&out), &nalgebra_exp(&a, n)) < 1e-13);
        ws.compute_transposed(&b, Slice::all(&abuf), SliceMut::all(&mut out)).unwrap();
        assert!(rel_err(&down(&out), &transpose(&nalgebra_exp(&a, n), n)) < 1e-13);
    }
}

#[test]
fn expm_rejects_bad_input() {
    let b = Cpu::<f64>::new(1);
    let a = b.upload(&[1.0, 2.0, 3.0]).unwrap();
    assert!(matches!(linalg::expm(&b, Slice::all(&a), 2), Err(Error::Shape { .. })));
    let a = b.upload(&[1.0, f64::NAN, 0.0, 1.0]).unwrap();
    assert!(matches!(linalg::expm(&b, Slice::all(&a), 2), Err(Error::InvalidArg { .. })));
    let a = b.upload(&[]).unwrap();
    assert!(linalg::expm(&b, Slice::all(&a), 0).unwrap().0.is_empty());
}

// ---------- adjoint Frechet derivative ----------

#[test]
fn frechet_adjoint_matches_the_block_reference() {
    let n = 12;
    let mut r = rng(5);
    let b = Cpu::<f64>::new(1);
    let cases = [
        (0.005, pc(3, 0)),
        (0.1, pc(5, 0)),
        (0.5, pc(7, 0)),
        (1.5, pc(9, 0)),
        (4.0, pc(13, 0)),
        (8.0, pc(13, 1)),
        (30.0, pc(13, 3)),
    ];
    for (norm, want) in cases {
        for skew_a in [false, true] {
            let a = if skew_a { skew(&mut r, n, norm) } else { with_norm1(gauss(&mut r, n * n), n, norm) };
            let g = gauss(&mut r, n * n);
            let (abuf, gbuf) = (up(&b, &a), up(&b, &g));
            let fast = linalg::expm_frechet_adjoint(&b, Slice::all(&abuf), Slice::all(&gbuf), n).unwrap();
            assert_eq!(fast.choice, want, "norm {norm}");
            let slow = linalg::expm_frechet_adjoint_block(&b, Slice::all(&abuf), Slice::all(&gbuf), n).unwrap();
            let err = rel_err(&down(&fast.deriv), &down(&slow));
            eprintln!("adjoint vs block, norm {norm} skew {skew_a} {want:?}: relative error {err:.2e}");
            assert!(err < 1e-12, "norm {norm} skew {skew_a}: relative error vs block {err:e}");
            // exp(A^T) comes with it.
            let err = rel_err(&down(&fast.exp), &transpose(&nalgebra_exp(&a, n), n));
            assert!(err < 1e-12, "norm {norm}: exp(A^T) relative error {err:e}");
        }
    }
}

/// `<G, exp(A + h E)>` evaluated with nalgebra (independent of the code under test).
fn inner_exp(a: &[f64], e: &[f64], g: &[f64], h: f64, n: usize) -> f64 {
    let x: Vec<f64> = a.iter().zip(e).map(|(a, e)| a + h * e).collect();
    dot(g, &nalgebra_exp(&x, n))
}

#[test]
fn frechet_adjoint_matches_finite_differences() {
    let n = 8;
    let mut r = rng(6);
    let b = Cpu::<f64>::new(1);
    for norm in [0.3, 3.0, 25.0] {
        let a = with_norm1(gauss(&mut r, n * n), n, norm);
        let (g, e) = (gauss(&mut r, n * n), gauss(&mut r, n * n));
        let adj = linalg::expm_frechet_adjoint(&b, Slice::all(&up(&b, &a)), Slice::all(&up(&b, &g)), n).unwrap();
        let analytic = dot(&down(&adj.deriv), &e);
        // Richardson-extrapolated central differences: O(h^4) truncation.
        let cd = |h: f64| (inner_exp(&a, &e, &g, h, n) - inner_exp(&a, &e, &g, -h, n)) / (2.0 * h);
        let h = 1e-3;
        let fd = (4.0 * cd(h / 2.0) - cd(h)) / 3.0;
        let err = (analytic - fd).abs() / fd.abs();
        eprintln!("adjoint vs finite differences, norm {norm} {:?}: relative error {err:.2e}", adj.choice);
        assert!(err < 1e-6, "norm {norm}: analytic {analytic} vs finite differences {fd}, relative error {err:e}");
    }
}

#[test]
fn frechet_forward_and_adjoint_are_adjoint() {
    // <G, L(A, E)> = <L(A^T, G), E>, and expm_frechet's exp is exp(A).
    let n = 10;
    let mut r = rng(7);
    let b = Cpu::<f64>::new(1);
    let mut ws = ExpmFrechet::new(&b, n).unwrap();
    let (mut l, mut lt, mut ex) = (b.zeros(n * n).unwrap(), b.zeros(n * n).unwrap(), b.zeros(n * n).unwrap());
    for norm in [0.05, 2.0, 12.0] {
        let a = with_norm1(gauss(&mut r, n * n), n, norm);
        let (e, g) = (gauss(&mut r, n * n), gauss(&mut r, n * n));
        let (abuf, ebuf, gbuf) = (up(&b, &a), up(&b, &e), up(&b, &g));
        ws.compute(&b, Slice::all(&abuf), Slice::all(&ebuf), Some(SliceMut::all(&mut ex)), SliceMut::all(&mut l))
            .unwrap();
        ws.adjoint(&b, Slice::all(&abuf), Slice::all(&gbuf), None, SliceMut::all(&mut lt)).unwrap();
        let (lhs, rhs) = (dot(&g, &down(&l)), dot(&down(&lt), &e));
        assert!((lhs - rhs).abs() <= 1e-12 * lhs.abs().max(1.0), "norm {norm}: {lhs} vs {rhs}");
        assert!(rel_err(&down(&ex), &nalgebra_exp(&a, n)) < 1e-13);
    }
}

#[test]
fn frechet_adjoint_f32_matches_f64() {
    let n = 16;
    let mut r = rng(8);
    for (norm, want) in [(0.2, pc(3, 0)), (1.0, pc(5, 0)), (3.0, pc(7, 0)), (20.0, pc(7, 3))] {
        let a = rounded::<f32>(&skew(&mut r, n, norm));
        let g = rounded::<f32>(&gauss(&mut r, n * n));
        let b32 = Cpu::<f32>::new(1);
        let f32r = linalg::expm_frechet_adjoint(&b32, Slice::all(&up(&b32, &a)), Slice::all(&up(&b32, &g)), n).unwrap();
        assert_eq!(f32r.choice, want);
        let b64 = Cpu::<f64>::new(1);
        let f64r = linalg::expm_frechet_adjoint(&b64, Slice::all(&up(&b64, &a)), Slice::all(&up(&b64, &g)), n).unwrap();
        let err = rel_err(&down(&f32r.deriv), &down(&f64r.deriv));
        eprintln!("adjoint f32 vs f64, norm {norm} {want:?}: relative error {err:.2e}");
        assert!(err < 1e-5, "norm {norm}: f32 vs f64 relative error {err:e}");
    }
}

// ---------- Cayley ----------

/// Random gradients of the size a hidden-128 RNN sees: entries `U(-1, 1) * 0.03` (`‖G‖_F ≈ 2.2`).
fn random_gradient(r: &mut ChaCha8Rng, g: &mut [f32]) {
    g.iter_mut().for_each(|v| *v = (r.random::<f32>() * 2.0 - 1.0) * 0.03);
}

#[test]
fn cayley_step_keeps_f32_orthogonal_over_10000_steps() {
    // The default workspace: fast form, drift checked every 50 steps, QR repair above 32 eps.
    let (n, steps, eta) = (128, 10_000, 1e-3);
    let mut r = rng(9);
    let b = Cpu::<f32>::new(1);
    let mut m = up(&b, &linalg::orthogonal_from_gaussian(&gauss(&mut r, n * n), n).unwrap());
    let mut ws = CayleyStep::new(&b, n).unwrap();
    let guard = linalg::DriftGuard::default_for::<f32>();
    let mut g = vec![0f32; n * n];
    let mut gbuf = b.zeros(n * n).unwrap();
    let mut max_drift = 0f64;
    for step in 1..=steps {
        random_gradient(&mut r, &mut g);
        b.write(SliceMut::all(&mut gbuf), &g).unwrap();
        ws.step(&b, SliceMut::all(&mut m), Slice::all(&gbuf), eta).unwrap();
        if step % guard.every == 0 {
            max_drift = max_drift.max(ws.last_drift().unwrap());
        }
    }
    let d = ws.drift(&b, Slice::all(&m)).unwrap();
    let count = ws.reorthogonalizations();
    eprintln!("cayley 10k f32: final drift {d:e}, max drift at checks {max_drift:e}, {count} QR repairs");
    assert!(
        d <= 1e-5 && max_drift <= 1e-5,
        "drift {d:e} (largest before a repair {max_drift:e}) after {steps} steps with {count} QR \
         re-orthogonalizations (guard {guard:?})"
    );
}

#[test]
fn cayley_accurate_form_drifts_far_less_without_repairs() {
    // Same gradients for both forms, no guard: the accurate form's drift stays near rounding level.
    let (n, steps, eta) = (128, 1000, 1e-3);
    let mut r = rng(17);
    let b = Cpu::<f32>::new(1);
    let m0 = up(&b, &linalg::orthogonal_from_gaussian(&gauss(&mut r, n * n), n).unwrap());
    let (mut fast, mut accurate) = (m0.clone(), m0);
    let mut wf = CayleyStep::new(&b, n).unwrap().with_guard(None);
    let mut wa = CayleyStep::new(&b, n).unwrap().with_guard(None).with_form(CayleyForm::Accurate);
    let mut g = vec![0f32; n * n];
    let mut gbuf = b.zeros(n * n).unwrap();
    for _ in 0..steps {
        random_gradient(&mut r, &mut g);
        b.write(SliceMut::all(&mut gbuf), &g).unwrap();
        wf.step(&b, SliceMut::all(&mut fast), Slice::all(&gbuf), eta).unwrap();
        wa.step(&b, SliceMut::all(&mut accurate), Slice::all(&gbuf), eta).unwrap();
    }
    let (df, da) = (wf.drift(&b, Slice::all(&fast)).unwrap(), wa.drift(&b, Slice::all(&accurate)).unwrap());
    eprintln!("{steps} f32 steps without repair: fast drift {df:e}, accurate drift {da:e}");
    assert!(da <= 2e-6 && df >= 5.0 * da, "fast {df:e}, accurate {da:e}");
    assert_eq!(wa.reorthogonalizations() + wf.reorthogonalizations(), 0);
    // The two forms are the same map: in f64 one step agrees to rounding error.
    let b = Cpu::<f64>::new(1);
    let n = 12;
    let m0 = up(&b, &linalg::orthogonal_from_gaussian(&gauss(&mut r, n * n), n).unwrap());
    let gb = up(&b, &gauss(&mut r, n * n));
    let (mut m1, mut m2) = (m0.clone(), m0);
    CayleyStep::new(&b, n).unwrap().step(&b, SliceMut::all(&mut m1), Slice::all(&gb), 0.3).unwrap();
    let mut wa = CayleyStep::new(&b, n).unwrap().with_form(CayleyForm::Accurate);
    wa.step(&b, SliceMut::all(&mut m2), Slice::all(&gb), 0.3).unwrap();
    assert!(max_abs_diff(&down(&m1), &down(&m2)) < 1e-14);
}

#[test]
fn cayley_step_descends_a_linear_loss() {
    // L(M) = <C, M>, G = C: a small step must lower L, by eta <C, C - M C^T M> to first order.
    let n = 16;
    let mut r = rng(10);
    let b = Cpu::<f64>::new(1);
    let m0 = linalg::orthogonal_from_gaussian(&gauss(&mut r, n * n), n).unwrap();
    let c = gauss(&mut r, n * n);
    let (mut m, cb) = (up(&b, &m0), up(&b, &c));
    let eta = 1e-4;
    linalg::cayley_step(&b, SliceMut::all(&mut m), Slice::all(&cb), n, eta).unwrap();
    let (before, after) = (dot(&c, &m0), dot(&c, &down(&m)));
    let mcm = matmul(&matmul(&m0, &transpose(&c, n), n), &m0, n);
    let predicted = -eta * (dot(&c, &c) - dot(&c, &mcm));
    assert!(after < before, "loss went from {before} to {after}");
    assert!(((after - before) - predicted).abs() < 1e-3 * predicted.abs(), "{} vs {predicted}", after - before);
    // The step keeps M orthogonal to rounding error, even a large one.
    linalg::cayley_step(&b, SliceMut::all(&mut m), Slice::all(&cb), n, 0.5).unwrap();
    let d = linalg::drift(&b, Slice::all(&m), n).unwrap();
    assert!(d < 1e-14, "f64 drift after a large step {d:e}");
}

#[test]
fn cayley_transform_solves_the_defining_system() {
    let n = 20;
    let mut r = rng(11);
    let b = Cpu::<f64>::new(1);
    let a = skew(&mut r, n, 6.0);
    let (w, _lu) = linalg::cayley_transform(&b, Slice::all(&up(&b, &a)), n).unwrap();
    let w = down(&w);
    // (I + A) W = I - A, and W is orthogonal.
    let mut lhs = matmul(&a, &w, n);
    lhs.iter_mut().zip(&w).for_each(|(l, w)| *l += w);
    let mut rhs: Vec<f64> = a.iter().map(|v| -v).collect();
    (0..n).for_each(|i| rhs[i * n + i] += 1.0);
    assert!(max_abs_diff(&lhs, &rhs) < 1e-13);
    assert!(linalg::drift(&b, Slice::all(&up(&b, &w)), n).unwrap() < 1e-14);
    // A non-skew A with I + A singular is an error, not a panic.
    let minus_i: Vec<f64> = (0..n * n).map(|k| if k % (n + 1) == 0 { -1.0 } else { 0.0 }).collect();
    assert!(matches!(linalg::cayley_transform(&b, Slice::all(&up(&b, &minus_i)), n), Err(Error::Singular { .. })));
}

/// scoRNN loss: `L(W) = <C, W> + ‖W - T‖_F^2 / 2` with `W = (I + A)^{-1}(I - A) D`.
fn scornn_loss(a: &[f64], d: &[f64], c: &[f64], t: &[f64], n: usize) -> f64 {
    let b = Cpu::<f64>::new(1);
    let (w, _) = linalg::cayley_transform(&b, Slice::all(&up(&b, a)), n).unwrap();
    let w: Vec<f64> = down(&w).iter().enumerate().map(|(k, v)| v * d[k % n]).collect();
    dot(c, &w) + 0.5 * w.iter().zip(t).map(|(w, t)| (w - t).powi(2)).sum::<f64>()
}

#[test]
fn scornn_gradient_matches_finite_differences() {
    let n = 8;
    let mut r = rng(12);
    let b = Cpu::<f64>::new(1);
    let a = skew(&mut r, n, 2.0);
    let d: Vec<f64> = (0..n).map(|i| if i % 3 == 0 { -1.0 } else { 1.0 }).collect();
    let (c, t) = (gauss(&mut r, n * n), gauss(&mut r, n * n));
    let mut sc = Scornn::new(&b, n).unwrap();
    sc.forward(&b, Slice::all(&up(&b, &a)), Slice::all(&up(&b, &d))).unwrap();
    let w = down(sc.w());
    let g: Vec<f64> = c.iter().zip(w.iter().zip(&t)).map(|(c, (w, t))| c + w - t).collect();
    let mut grad = b.zeros(n * n).unwrap();
    sc.backward(&b, Slice::all(&up(&b, &g)), SliceMut::all(&mut grad)).unwrap();
    let grad = down(&grad);
    // The free-function form agrees.
    let (wf, lu) = linalg::cayley_transform(&b, Slice::all(&up(&b, &a)), n).unwrap();
    let wd: Vec<f64> = down(&wf).iter().enumerate().map(|(k, v)| v * d[k % n]).collect();
    let g2 =
        linalg::scornn_grad(&b, &lu, Slice::all(&up(&b, &wd)), Slice::all(&up(&b, &d)), Slice::all(&up(&b, &g)), n);
    assert!(max_abs_diff(&down(&g2.unwrap()), &grad) < 1e-14);
    // dL/da_ij for i < j, with A_ij = a_ij, A_ji = -a_ij.
    let (mut fd, mut an) = (Vec::new(), Vec::new());
    let h = 1e-4;
    for i in 0..n {
        for j in i + 1..n {
            let at = |s: f64| {
                let mut x = a.clone();
                x[i * n + j] += s;
                x[j * n + i] -= s;
                scornn_loss(&x, &d, &c, &t, n)
            };
            let cd = |h: f64| (at(h) - at(-h)) / (2.0 * h);
            fd.push((4.0 * cd(h / 2.0) - cd(h)) / 3.0);
            an.push(grad[i * n + j]);
        }
    }
    let err = rel_err(&an, &fd);
    eprintln!("scoRNN gradient vs finite differences: relative error {err:.2e}");
    assert!(err < 1e-6, "scoRNN gradient relative error {err:e}");
    assert!(linalg::is_skew(&b, Slice::all(&up(&b, &grad)), n, 0.0).unwrap());
}

// ---------- orthogonality, QR, SVD ----------

#[test]
fn qr_reorthogonalization_repairs_drift_with_a_small_change() {
    let n = 50;
    let mut r = rng(13);
    let q = linalg::orthogonal_from_gaussian(&gauss(&mut r, n * n), n).unwrap();
    let noise = 1e-6;
    let m0: Vec<f64> = q.iter().zip(gauss(&mut r, n * n)).map(|(q, e)| q + noise * e).collect();
    // f64
    let b = Cpu::<f64>::new(1);
    let mut m = up(&b, &m0);
    let before = linalg::drift(&b, Slice::all(&m), n).unwrap();
    linalg::reorthogonalize(&b, SliceMut::all(&mut m), n).unwrap();
    let after = linalg::drift(&b, Slice::all(&m), n).unwrap();
    let moved = max_abs_diff(&down(&m), &m0);
    assert!(before > 1e-6 && after < 1e-14, "drift {before:e} -> {after:e}");
    assert!(moved < 10.0 * before, "moved {moved:e} for drift {before:e}");
    // f32
    let b = Cpu::<f32>::new(1);
    let m0 = rounded::<f32>(&m0);
    let mut m = up(&b, &m0);
    linalg::reorthogonalize(&b, SliceMut::all(&mut m), n).unwrap();
    let after = linalg::drift(&b, Slice::all(&m), n).unwrap();
    let moved = max_abs_diff(&down(&m), &m0);
    assert!(after < 1e-6, "f32 drift after {after:e}");
    assert!(moved < 10.0 * before, "f32 moved {moved:e} for drift {before:e}");
}

#[test]
fn orthogonal_from_gaussian_is_orthogonal_and_seeded() {
    let n = 33;
    let data = gauss(&mut rng(14), n * n);
    let q = linalg::orthogonal_from_gaussian(&data, n).unwrap();
    let b = Cpu::<f64>::new(1);
    assert!(linalg::drift(&b, Slice::all(&up(&b, &q)), n).unwrap() < 1e-14);
    assert_eq!(q, linalg::orthogonal_from_gaussian(&data, n).unwrap());
    assert!(linalg::orthogonal_from_gaussian(&data[1..], n).is_err());
}

#[test]
fn singular_values_of_known_matrices() {
    let n = 6;
    let b = Cpu::<f32>::new(1);
    let q = linalg::orthogonal_from_gaussian(&gauss(&mut rng(15), n * n), n).unwrap();
    let s = linalg::singular_values(&b, Slice::all(&up(&b, &q)), n).unwrap();
    assert!(s.iter().all(|v| (v - 1.0).abs() < 1e-6), "{s:?}");
    // Q diag(d) has singular values |d| in decreasing order.
    let d = [0.5, -3.0, 2.0, 0.0, 1.0, -0.25];
    let qd: Vec<f64> = q.iter().enumerate().map(|(k, v)| v * d[k % n]).collect();
    let s = linalg::singular_values(&b, Slice::all(&up(&b, &qd)), n).unwrap();
    for (got, want) in s.iter().zip([3.0, 2.0, 1.0, 0.5, 0.25, 0.0]) {
        assert!((got - want).abs() < 1e-5, "{s:?}");
    }
}

#[test]
fn skew_helpers() {
    let n = 5;
    let b = Cpu::<f64>::new(1);
    let x = gauss(&mut rng(16), n * n);
    let xb = up(&b, &x);
    let mut s = b.zeros(n * n).unwrap();
    linalg::skew_part(&b, Slice::all(&xb), n, SliceMut::all(&mut s)).unwrap();
    let want: Vec<f64> = x.iter().zip(transpose(&x, n)).map(|(a, t)| 0.5 * (a - t)).collect();
    assert!(max_abs_diff(&down(&s), &want) < 1e-15);
    assert_eq!(linalg::skew_defect(&b, Slice::all(&s), n).unwrap(), 0.0);
    assert!(!linalg::is_skew(&b, Slice::all(&xb), n, 1e-3).unwrap());
}

// ---------- host-matrix helpers (singular_values_host, drift_host) ----------

/// A random orthogonal matrix: the product of `k` Householder reflections `I - 2 v v^T / v^T v`.
fn householder_product(r: &mut ChaCha8Rng, n: usize, k: usize) -> Vec<f64> {
    let mut q: Vec<f64> = (0..n * n).map(|i| if i % (n + 1) == 0 { 1.0 } else { 0.0 }).collect();
    for _ in 0..k {
        let v = gauss(r, n);
        let vv = dot(&v, &v);
        let h: Vec<f64> =
            (0..n * n).map(|i| if i % (n + 1) == 0 { 1.0 } else { 0.0 } - 2.0 * v[i / n] * v[i % n] / vv).collect();
        q = matmul(&q, &h, n);
    }
    q
}

#[test]
fn host_singular_values_match_closed_forms() {
    // diag(d): the sorted absolute values of d.
    let d = [3.0, -0.5, 0.0, 2.0, -7.0];
    let n = d.len();
    let m: Vec<f64> = (0..n * n).map(|i| if i % (n + 1) == 0 { d[i / n] } else { 0.0 }).collect();
    let s = linalg::singular_values_host(&m, n).unwrap();
    assert!(max_abs_diff(&s, &[7.0, 3.0, 2.0, 0.5, 0.0]) < 1e-14, "{s:?}");
    // Q diag(d) P with Q, P orthogonal: the same values.
    let mut r = rng(41);
    let (q, p) = (householder_product(&mut r, n, 3), householder_product(&mut r, n, 4));
    let s = linalg::singular_values_host(&matmul(&matmul(&q, &m, n), &p, n), n).unwrap();
    assert!(max_abs_diff(&s, &[7.0, 3.0, 2.0, 0.5, 0.0]) < 1e-13, "{s:?}");
    // An orthogonal matrix: all ones.
    let n = 12;
    let s = linalg::singular_values_host(&householder_product(&mut r, n, 5), n).unwrap();
    assert!(max_abs_diff(&s, &[1.0; 12]) < 1e-13, "{s:?}");
    // A rank-one u v^T: ||u|| ||v||, then zeros.
    let (u, v) = (gauss(&mut r, n), gauss(&mut r, n));
    let uv: Vec<f64> = (0..n * n).map(|i| u[i / n] * v[i % n]).collect();
    let s = linalg::singular_values_host(&uv, n).unwrap();
    let want = dot(&u, &u).sqrt() * dot(&v, &v).sqrt();
    assert!((s[0] - want).abs() < 1e-12 * want && s[1..].iter().all(|&x| x < 1e-12 * want), "{s:?}");
    // Agrees with the backend version on the same data.
    let b = Cpu::<f64>::new(1);
    let buf = b.upload(&uv).unwrap();
    assert!(max_abs_diff(&linalg::singular_values(&b, Slice::all(&buf), n).unwrap(), &s) < 1e-14);
    assert!(linalg::singular_values_host(&[], 0).unwrap().is_empty());
}

#[test]
fn host_drift_matches_closed_forms() {
    // A plane rotation and a product of reflections are orthogonal: drift at rounding level.
    let (c, s) = (0.7f64.cos(), 0.7f64.sin());
    assert!(linalg::drift_host(&[c, -s, s, c], 2).unwrap() < 1e-15);
    let mut r = rng(43);
    let q = householder_product(&mut r, 16, 6);
    assert!(linalg::drift_host(&q, 16).unwrap() < 1e-14);
    // c Q: Q^T Q c^2 - I = (c^2 - 1) I.
    for k in [0.5, 1.1, 3.0] {
        let cq: Vec<f64> = q.iter().map(|x| k * x).collect();
        let d = linalg::drift_host(&cq, 16).unwrap();
        assert!((d - (k * k - 1.0f64).abs()).abs() < 1e-13, "scale {k}: drift {d}");
    }
    // [[1, e], [0, 1]]: M^T M - I = [[0, e], [e, e^2]], max e (for e < 1).
    assert!((linalg::drift_host(&[1.0, 0.25, 0.0, 1.0], 2).unwrap() - 0.25).abs() < 1e-15);
    // Agrees with the backend version.
    let b = Cpu::<f64>::new(1);
    let cq: Vec<f64> = q.iter().map(|x| 1.01 * x).collect();
    let dev = linalg::drift(&b, Slice::all(&b.upload(&cq).unwrap()), 16).unwrap();
    assert!((dev - linalg::drift_host(&cq, 16).unwrap()).abs() < 1e-14);
}

#[test]
fn host_helpers_reject_bad_input_with_a_reason() {
    let msg = |e: Error| e.to_string();
    let e = msg(linalg::singular_values_host(&[1.0, 2.0, 3.0], 2).unwrap_err());
    assert!(e.contains("3 entries") && e.contains("n = 2 needs 4"), "{e}");
    let e = msg(linalg::drift_host(&[1.0, f64::NAN, 0.0, 1.0], 2).unwrap_err());
    assert!(e.contains("NaN") && e.contains("finite"), "{e}");
    let e = msg(linalg::singular_values_host(&[f64::INFINITY], 1).unwrap_err());
    assert!(e.contains("finite"), "{e}");
}
