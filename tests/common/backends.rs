//! Backends under test for the parity suites (`tests/cuda_parity*.rs`), the CPU reference, data and
//! tolerance helpers, and [`Composed`], a wrapper that runs a backend through the trait's *default*
//! (composed) `recurrent_forward` / `recurrent_backward`.
//!
//! The reference is `Cpu<f64>` run on the very same inputs (every test input is an f32 value, widened
//! exactly), so a tolerance bounds the f32 device's distance from a result with ~1e-16 rounding, not
//! from another f32 result: that is what lets the `cpu` instantiation (`Cpu<f32>`) fail too.
//!
//! [`parity_tests!`] stamps every case out once per backend: `cpu`, `emu_*` (the CUDA backend on the
//! emulated driver under each [`ResumeOrder`] of [`ResumeOrder::TEST_SET`], and once with three worker
//! threads running blocks concurrently) and `gpu` (the CUDA backend on a real GPU, skipped with a
//! visible message when there is none). [`parity_tests_tc!`] stamps cases out for the tensor-core
//! precisions (`emu_tf32_*`, `emu_bf16_*` under two resume orders each, `gpu_tf32`, `gpu_bf16`); a case
//! reads the precision's product tolerance from [`Dut::gemm_rel`].
#![allow(dead_code)]

use ortho_rnn::backend::cpu::Cpu;
use ortho_rnn::backend::cuda::Cuda;
use ortho_rnn::backend::cuda::cudarc_driver::{CudarcDriver, libcuda_present, list_gpus, nvrtc_present};
use ortho_rnn::backend::cuda::emu::{EmuDriver, ResumeOrder};
use ortho_rnn::backend::{
    Act, Backend, Epilogue, Gemm, LossStats, MapOp, OptimStep, Precision, SeqDims, Slice, SliceMut,
};
use ortho_rnn::{Result, Scalar};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::Write;
use std::sync::Once;

/// The reference backend.
pub type Ref = Cpu<f64>;

/// One backend under test.
pub struct Dut<B> {
    /// The backend.
    pub dev: B,
    /// Relative tolerance of one transcendental function (`expf`, `tanhf`): 1e-5 (the kernels are
    /// compiled without `--use_fast_math`, so the GPU's functions are accurate to a few ulp).
    pub trans_rel: f64,
    /// The arithmetic of the backend's reduced-precision-tolerant products.
    pub precision: Precision,
}

impl<B> Dut<B> {
    /// Relative tolerance of a `k`-term product against `(|A| |B|)_ij`: `1e-6 sqrt(k + 1)` for f32 (a
    /// `k u` bound at k = 257, ~10x the typical `sqrt(k) u` error), plus the rigorous operand-rounding
    /// bound `2 u_op + u_op^2` of TF32 / BF16 (see `ortho_rnn::backend::precision`).
    pub fn gemm_rel(&self, k: usize) -> f64 {
        let f32_part = 1e-6 * ((k + 1) as f64).sqrt();
        match self.precision {
            Precision::Fp32 => f32_part,
            p => f32_part + p.product_error_bound(0),
        }
    }
}

/// The f32 CPU backend (two threads, so its parallel paths are the ones a user gets).
pub fn cpu() -> Dut<Cpu<f32>> {
    Dut { dev: Cpu::new(2), trans_rel: 1e-5, precision: Precision::Fp32 }
}

/// The CUDA backend on the emulated driver, threads resumed in `order`.
pub fn emu(order: ResumeOrder) -> Dut<Cuda<EmuDriver>> {
    emu_precision(order, Precision::Fp32)
}

/// The CUDA backend on the emulated driver, threads resumed in `order`, computing reduced-precision-
/// tolerant products in `precision`.
pub fn emu_precision(order: ResumeOrder, precision: Precision) -> Dut<Cuda<EmuDriver>> {
    let dev = Cuda::new(EmuDriver::with_order(order)).expect("emu backend").with_precision(precision);
    Dut { dev, trans_rel: 1e-5, precision }
}

/// The CUDA backend on the emulated driver with `workers` threads running blocks of a grid at once
/// (real host atomics and concurrent blocks, as `--device emu` runs), threads resumed in `order`.
pub fn emu_workers(order: ResumeOrder, workers: usize) -> Dut<Cuda<EmuDriver>> {
    let drv = EmuDriver::with_order(order).with_workers(workers).expect("emu workers");
    Dut { dev: Cuda::new(drv).expect("emu backend"), trans_rel: 1e-5, precision: Precision::Fp32 }
}

/// The CUDA backend on GPU 0, or `None` (after printing one visible `SKIPPED` line per process) when
/// this machine has no usable GPU.
pub fn gpu() -> Option<Dut<Cuda<CudarcDriver>>> {
    gpu_precision(Precision::Fp32)
}

/// [`gpu`] computing reduced-precision-tolerant products in `precision`.
pub fn gpu_precision(precision: Precision) -> Option<Dut<Cuda<CudarcDriver>>> {
    let why = if !libcuda_present() {
        "libcuda not found: no NVIDIA driver on this machine".to_string()
    } else {
        match list_gpus() {
            Err(e) => format!("listing GPUs failed: {e}"),
            Ok(g) if g.is_empty() => "the driver reports no CUDA device".to_string(),
            Ok(_) if !nvrtc_present() => {
                "a GPU is present but libnvrtc is not loadable: put the nvidia-cuda-nvrtc-cu12 wheel's lib folder \
                 on LD_LIBRARY_PATH"
                    .to_string()
            }
            Ok(_) => {
                let dev = Cuda::new(CudarcDriver::new(0).expect("opening GPU 0")).expect("CUDA backend");
                return Some(Dut { dev: dev.with_precision(precision), trans_rel: 1e-5, precision });
            }
        }
    };
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Straight to fd 2: the test harness captures `eprintln!` of passing tests, not this.
        let line = format!("\nSKIPPED: real-GPU parity tests (gpu::*) pass without running: no GPU ({why})\n");
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    });
    None
}

/// Stamps out `mod cpu`, `mod emu_<order>` (one per order of `ResumeOrder::TEST_SET`), `mod emu_3_workers`
/// (blocks of a grid on three threads at once) and `mod gpu`,
/// each with one `#[test]` per case. A case is a generic `fn case<B: Backend<Elem = f32>>(t: &Dut<B>)`.
#[macro_export]
macro_rules! parity_tests {
    ($($case:ident),* $(,)?) => {
        mod cpu {
            $( #[test] fn $case() { super::$case(&super::backends::cpu()); } )*
        }
        $crate::parity_tests!(@emu emu_in_order, 0; $($case),*);
        $crate::parity_tests!(@emu emu_reversed, 1; $($case),*);
        $crate::parity_tests!(@emu emu_random_1, 2; $($case),*);
        $crate::parity_tests!(@emu emu_random_2, 3; $($case),*);
        $crate::parity_tests!(@emu emu_random_3, 4; $($case),*);
        mod emu_3_workers {
            $( #[test] fn $case() {
                super::$case(&super::backends::emu_workers(ortho_rnn::backend::cuda::emu::ResumeOrder::TEST_SET[2], 3));
            } )*
        }
        mod gpu {
            $( #[test] fn $case() { if let Some(t) = super::backends::gpu() { super::$case(&t); } } )*
        }
        #[test]
        fn the_emu_modules_cover_the_test_orders() {
            // emu_in_order .. emu_random_3 above index TEST_SET[0..5]; they must stay in step.
            use ortho_rnn::backend::cuda::emu::ResumeOrder;
            assert_eq!(ResumeOrder::TEST_SET.len(), 5);
            assert_eq!(ResumeOrder::TEST_SET[0], ResumeOrder::InOrder);
            assert_eq!(ResumeOrder::TEST_SET[1], ResumeOrder::Reversed);
        }
    };
    (@emu $m:ident, $i:literal; $($case:ident),*) => {
        $crate::parity_tests!(@prec $m, $i, Fp32; $($case),*);
    };
    (@prec $m:ident, $i:literal, $p:ident; $($case:ident),*) => {
        mod $m {
            $( #[test] fn $case() {
                super::$case(&super::backends::emu_precision(
                    ortho_rnn::backend::cuda::emu::ResumeOrder::TEST_SET[$i],
                    ortho_rnn::backend::Precision::$p,
                ));
            } )*
        }
    };
}

/// Stamps out the cases for the tensor-core precisions: `mod emu_tf32_in_order`, `emu_tf32_random`,
/// `emu_bf16_reversed`, `emu_bf16_random` (the emulated driver) and `gpu_tf32`, `gpu_bf16`.
#[macro_export]
macro_rules! parity_tests_tc {
    ($($case:ident),* $(,)?) => {
        $crate::parity_tests!(@prec emu_tf32_in_order, 0, Tf32; $($case),*);
        $crate::parity_tests!(@prec emu_tf32_random, 2, Tf32; $($case),*);
        $crate::parity_tests!(@prec emu_bf16_reversed, 1, Bf16; $($case),*);
        $crate::parity_tests!(@prec emu_bf16_random, 3, Bf16; $($case),*);
        mod gpu_tf32 {
            $( #[test] fn $case() {
                let p = ortho_rnn::backend::Precision::Tf32;
                if let Some(t) = super::backends::gpu_precision(p) { super::$case(&t); }
            } )*
        }
        mod gpu_bf16 {
            $( #[test] fn $case() {
                let p = ortho_rnn::backend::Precision::Bf16;
                if let Some(t) = super::backends::gpu_precision(p) { super::$case(&t); }
            } )*
        }
    };
}

// ------------------------------------------------------------------------------------------------
// Data
// ------------------------------------------------------------------------------------------------

/// `n` uniform values in `[lo, hi)` from `seed`.
pub fn uniform(n: usize, lo: f32, hi: f32, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

/// `n` values in `[-1, 1)`.
pub fn rand(n: usize, seed: u64) -> Vec<f32> {
    uniform(n, -1.0, 1.0, seed)
}

/// Exact widening.
pub fn wide(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

/// Uploads f32 data to a device under test.
pub fn up<B: Backend<Elem = f32>>(dev: &B, x: &[f32]) -> B::Buf {
    dev.upload(x).expect("upload")
}

/// Uploads f32 data, widened, to the reference.
pub fn up64(r: &Ref, x: &[f32]) -> <Ref as Backend>::Buf {
    r.upload(&wide(x)).expect("upload")
}

/// A whole buffer back to the host, widened.
pub fn down<B: Backend>(dev: &B, buf: &B::Buf) -> Vec<f64> {
    dev.download(Slice::all(buf)).expect("download").iter().map(|v| v.f64()).collect()
}

// ------------------------------------------------------------------------------------------------
// Comparison
// ------------------------------------------------------------------------------------------------

/// Asserts `|got_i - want_i| <= tol(i)` for every element (NaN never passes), listing the worst few.
pub fn check(what: &str, got: &[f64], want: &[f64], tol: impl Fn(usize) -> f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut bad: Vec<(usize, f64)> = Vec::new();
    for i in 0..got.len() {
        let err = (got[i] - want[i]).abs();
        let same = got[i] == want[i] || (got[i].is_nan() && want[i].is_nan());
        if !(err <= tol(i) || same) {
            bad.push((i, if err.is_nan() { f64::INFINITY } else { err / tol(i) }));
        }
    }
    if !bad.is_empty() {
        let nbad = bad.len();
        bad.sort_by(|a, b| b.1.total_cmp(&a.1));
        let show: Vec<String> = bad
            .iter()
            .take(6)
            .map(|&(i, r)| format!("[{i}] got {:.9e} want {:.9e} ({r:.1}x tol {:.2e})", got[i], want[i], tol(i)))
            .collect();
        panic!("{what}: {nbad} of {} elements outside tolerance; worst: {}", got.len(), show.join("; "));
    }
}

/// Element-wise relative-plus-absolute tolerance: `|got - want| <= abs + rel |want|`.
pub fn check_rel(what: &str, got: &[f64], want: &[f64], rel: f64, abs: f64) {
    check(what, got, want, |i| abs + rel * want[i].abs());
}

/// Bit-exact equality of f32 results (data movement ops).
pub fn check_exact(what: &str, got: &[f64], want: &[f64]) {
    check(what, got, want, |_| 0.0);
}

/// Relative difference of two scalars, against `scale` (at least `|want|`).
pub fn check_scalar(what: &str, got: f64, want: f64, rel: f64, scale: f64) {
    let tol = rel * scale.max(want.abs()) + 1e-30;
    assert!((got - want).abs() <= tol, "{what}: got {got:.9e}, want {want:.9e} (tolerance {tol:.2e})");
}

/// Loss totals: `sum` relative to `scale`, counts exactly.
pub fn check_stats(what: &str, got: LossStats, want: LossStats, rel: f64, scale: f64) {
    check_scalar(&format!("{what}: sum"), got.sum, want.sum, rel, scale);
    assert_eq!((got.correct, got.count), (want.correct, want.count), "{what}: (correct, count)");
}

// ------------------------------------------------------------------------------------------------
// Composed: the trait's default sequence ops over another backend's primitives
// ------------------------------------------------------------------------------------------------

/// `B` (an f32 backend) with every op delegated except `recurrent_forward` / `recurrent_backward`, which keep the
/// trait's default implementations (composed from `gemm` and `act_fwd` / `act_bwd`).
#[derive(Clone)]
pub struct Composed<B>(pub B);

fn s<'a, B: Backend<Elem = f32>>(v: Slice<'a, Composed<B>>) -> Slice<'a, B> {
    Slice { buf: v.buf, off: v.off, len: v.len }
}
fn sm<'a, B: Backend<Elem = f32>>(v: SliceMut<'a, Composed<B>>) -> SliceMut<'a, B> {
    SliceMut { buf: v.buf, off: v.off, len: v.len }
}
fn act<'a, B: Backend<Elem = f32>>(a: Act<'a, Composed<B>>) -> Act<'a, B> {
    Act { kind: a.kind, param: a.param.map(s) }
}

impl<B: Backend<Elem = f32>> Backend for Composed<B> {
    type Elem = f32;
    type Buf = B::Buf;
    type Lu = B::Lu;

    fn name(&self) -> String {
        format!("composed({})", self.0.name())
    }
    fn synchronize(&self) -> Result<()> {
        self.0.synchronize()
    }
    fn zeros(&self, len: usize) -> Result<B::Buf> {
        self.0.zeros(len)
    }
    fn upload(&self, host: &[f32]) -> Result<B::Buf> {
        self.0.upload(host)
    }
    fn download(&self, src: Slice<Self>) -> Result<Vec<f32>> {
        self.0.download(s(src))
    }
    fn write(&self, dst: SliceMut<Self>, host: &[f32]) -> Result<()> {
        self.0.write(sm(dst), host)
    }
    fn copy(&self, src: Slice<Self>, dst: SliceMut<Self>) -> Result<()> {
        self.0.copy(s(src), sm(dst))
    }
    fn gemm(&self, g: &Gemm<f32>, a: Slice<Self>, b: Slice<Self>, c: SliceMut<Self>, e: Epilogue<Self>) -> Result<()> {
        let e = Epilogue { bias: e.bias.map(s), act: e.act.map(|(a, o)| (act(a), sm(o))) };
        self.0.gemm(g, s(a), s(b), sm(c), e)
    }
    fn fill(&self, x: SliceMut<Self>, v: f32) -> Result<()> {
        self.0.fill(sm(x), v)
    }
    fn scale(&self, x: SliceMut<Self>, v: f32) -> Result<()> {
        self.0.scale(sm(x), v)
    }
    fn axpby(&self, alpha: f32, x: Slice<Self>, beta: f32, y: SliceMut<Self>) -> Result<()> {
        self.0.axpby(alpha, s(x), beta, sm(y))
    }
    fn add_diag(&self, x: SliceMut<Self>, n: usize, v: f32) -> Result<()> {
        self.0.add_diag(sm(x), n, v)
    }
    fn lincomb(&self, n: usize, terms: &[(f32, Slice<Self>)], d: f32, out: SliceMut<Self>) -> Result<()> {
        let terms: Vec<_> = terms.iter().map(|&(c, x)| (c, s(x))).collect();
        self.0.lincomb(n, &terms, d, sm(out))
    }
    fn skew(&self, x: Slice<Self>, n: usize, alpha: f32, out: SliceMut<Self>) -> Result<()> {
        self.0.skew(s(x), n, alpha, sm(out))
    }
    fn transpose(&self, x: Slice<Self>, rows: usize, cols: usize, out: SliceMut<Self>) -> Result<()> {
        self.0.transpose(s(x), rows, cols, sm(out))
    }
    fn scale_cols(&self, x: Slice<Self>, v: Slice<Self>, rows: usize, cols: usize, out: SliceMut<Self>) -> Result<()> {
        self.0.scale_cols(s(x), s(v), rows, cols, sm(out))
    }
    fn map(&self, op: MapOp, x: Slice<Self>, y: SliceMut<Self>) -> Result<()> {
        self.0.map(op, s(x), sm(y))
    }
    fn map_bwd(&self, op: MapOp, x: Slice<Self>, dy: Slice<Self>, dx: SliceMut<Self>) -> Result<()> {
        self.0.map_bwd(op, s(x), s(dy), sm(dx))
    }
    fn act_fwd(&self, a: Act<Self>, x: Slice<Self>, h: SliceMut<Self>, cols: usize) -> Result<()> {
        self.0.act_fwd(act(a), s(x), sm(h), cols)
    }
    fn act_bwd(
        &self,
        a: Act<Self>,
        x: Slice<Self>,
        h: Slice<Self>,
        dh: Slice<Self>,
        da: SliceMut<Self>,
        dparam: Option<SliceMut<Self>>,
        cols: usize,
    ) -> Result<()> {
        self.0.act_bwd(act(a), s(x), s(h), s(dh), sm(da), dparam.map(sm), cols)
    }
    fn lstm_fwd(
        &self,
        z: Slice<Self>,
        peep: Slice<Self>,
        c: SliceMut<Self>,
        gates: SliceMut<Self>,
        h: SliceMut<Self>,
        n: usize,
    ) -> Result<()> {
        self.0.lstm_fwd(s(z), s(peep), sm(c), sm(gates), sm(h), n)
    }
    fn lstm_bwd(
        &self,
        gates: Slice<Self>,
        c_prev: Slice<Self>,
        c: Slice<Self>,
        peep: Slice<Self>,
        dh: Slice<Self>,
        dc: SliceMut<Self>,
        dz: SliceMut<Self>,
        dpeep: SliceMut<Self>,
        n: usize,
    ) -> Result<()> {
        self.0.lstm_bwd(s(gates), s(c_prev), s(c), s(peep), s(dh), sm(dc), sm(dz), sm(dpeep), n)
    }
    fn softmax_xent(
        &self,
        logits: Slice<Self>,
        targets: Slice<Self>,
        grad: SliceMut<Self>,
        classes: usize,
        scale: f32,
    ) -> Result<LossStats> {
        self.0.softmax_xent(s(logits), s(targets), sm(grad), classes, scale)
    }
    fn mse(&self, pred: Slice<Self>, target: Slice<Self>, grad: SliceMut<Self>, scale: f32) -> Result<LossStats> {
        self.0.mse(s(pred), s(target), sm(grad), scale)
    }
    fn sum_sq(&self, x: Slice<Self>) -> Result<f64> {
        self.0.sum_sq(s(x))
    }
    fn max_abs(&self, x: Slice<Self>) -> Result<f64> {
        self.0.max_abs(s(x))
    }
    fn norm1(&self, x: Slice<Self>, n: usize) -> Result<f64> {
        self.0.norm1(s(x), n)
    }
    fn col_sum(&self, x: Slice<Self>, rows: usize, cols: usize, beta: f32, out: SliceMut<Self>) -> Result<()> {
        self.0.col_sum(s(x), rows, cols, beta, sm(out))
    }
    fn col_dot(&self, a: Slice<Self>, b: Slice<Self>, rows: usize, cols: usize, out: SliceMut<Self>) -> Result<()> {
        self.0.col_dot(s(a), s(b), rows, cols, sm(out))
    }
    fn lu_new(&self, n: usize) -> Result<B::Lu> {
        self.0.lu_new(n)
    }
    fn lu_factor_into(&self, a: Slice<Self>, lu: &mut B::Lu) -> Result<()> {
        self.0.lu_factor_into(s(a), lu)
    }
    fn lu_status(&self, lu: &B::Lu) -> Result<()> {
        self.0.lu_status(lu)
    }
    fn lu_solve(&self, lu: &B::Lu, b: SliceMut<Self>, nrhs: usize, transpose: bool) -> Result<()> {
        self.0.lu_solve(lu, sm(b), nrhs, transpose)
    }
    fn optim_step(
        &self,
        step: &OptimStep,
        param: SliceMut<Self>,
        grad: Slice<Self>,
        s1: SliceMut<Self>,
        s2: SliceMut<Self>,
    ) -> Result<()> {
        self.0.optim_step(step, sm(param), s(grad), sm(s1), sm(s2))
    }
}

/// The dimensions of a sequence op: `t` steps of `batch` rows of width `n`.
pub fn dims(t: usize, batch: usize, n: usize) -> SeqDims {
    SeqDims { t, batch, n }
}
