//! NVIDIA's cuBLAS (`sgemm`) and cuSOLVER (`sgetrf`/`sgetrs`) timed beside our kernels on the same
//! data, so that the first GPU run prints our GEMM and LU against NVIDIA's side by side
//! (`ortho-rnn bench --gemm cublas --lu cusolver`, and the `cuda` Criterion bench).
//!
//! Behind the cargo feature `cuda-baselines` (cudarc's `cublas` and `cusolver` modules, loaded at
//! run time like the rest, so the crate still builds with no CUDA). Without the feature, or without
//! a GPU, asking for a baseline is an error that says which is missing.
//!
//! Layouts: our matrices are row-major, the libraries' column-major. A row-major product
//! `C = op(A) op(B)` is the column-major `C^T = op(B)^T op(A)^T`, so `sgemm` gets the operands
//! swapped and nothing is copied. The LU baseline factors the same `n x n` buffer (which cuSOLVER
//! reads as `A^T`) and `sgetrs` with `CUBLAS_OP_T` then solves `A x = b`; with one right-hand side
//! the layouts agree, which is how the two solutions are cross-checked.

use crate::backend::Gemm;
use crate::error::{Error, Result};
use crate::tasks::Task;
use crate::tasks::copy::CopyTask;
use crate::train::build::ModelSpec;

/// Which GEMM `ortho-rnn bench` compares against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum GemmBaseline {
    /// Our kernels only.
    #[default]
    Ours,
    /// cuBLAS `sgemm` beside our GEMM, at every GEMM shape of the model's training iteration.
    Cublas,
}

/// Which LU `ortho-rnn bench` compares against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LuBaseline {
    /// Our kernels only.
    #[default]
    Ours,
    /// cuSOLVER `sgetrf`/`sgetrs` beside our factorization and solve at `n = hidden`.
    Cusolver,
}

/// One row of a side-by-side table.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// What was timed.
    pub what: String,
    /// Our median time, in milliseconds.
    pub ours_ms: f64,
    /// The NVIDIA library's median time, in milliseconds.
    pub theirs_ms: f64,
    /// Largest difference of the results, relative to the largest magnitude.
    pub rel_diff: f64,
}

/// Renders comparisons as a table (`ours / theirs` above 1 means ours is slower).
pub fn table(title: &str, rows: &[Comparison]) -> String {
    let mut t =
        format!("{title}\n{:<44} {:>10} {:>10} {:>8} {:>10}\n", "", "ours ms", "NVIDIA ms", "ratio", "rel diff");
    for r in rows {
        t.push_str(&format!(
            "{:<44} {:>10.4} {:>10.4} {:>8.2} {:>10.1e}\n",
            r.what,
            r.ours_ms,
            r.theirs_ms,
            r.ours_ms / r.theirs_ms.max(1e-12),
            r.rel_diff
        ));
    }
    t
}

/// The side-by-side tables `ortho-rnn bench` prints for `--gemm`/`--lu` on GPU `gpu`: the GEMM shapes
/// of one training iteration of `spec` on the copy task (`seq_len`, `batch`), and the LU, solve and
/// Cayley step at `n = spec.hidden`. `Ok(None)` when neither asks for a baseline.
pub fn compare_on_gpu(
    gpu: usize,
    spec: &ModelSpec,
    seq_len: usize,
    batch: usize,
    gemm: GemmBaseline,
    lu: LuBaseline,
) -> Result<Option<String>> {
    if gemm == GemmBaseline::Ours && lu == LuBaseline::Ours {
        return Ok(None);
    }
    imp::compare(gpu, spec, seq_len, batch, gemm, lu).map(Some)
}

/// The GEMM shapes of one training iteration (an Elman-type network on the copy task), as
/// `(what, Gemm)`; the LSTM's recurrent and input products have four gate blocks.
pub fn iteration_gemms(spec: &ModelSpec, seq_len: usize, batch: usize) -> Result<Vec<(String, Gemm<f32>)>> {
    let task = CopyTask::new(seq_len, 1)?;
    let (l, b, n) = (task.seq_len(), batch, spec.hidden);
    let (m, k) = (task.input_dim(), task.loss().outputs());
    let g4 = if spec.model == crate::train::build::ModelKind::Lstm { 4 } else { 1 };
    let lb = l * b;
    Ok(vec![
        (format!("step forward   [{b}x{}] = H [{b}x{n}] W^T", g4 * n), Gemm::new(b, g4 * n, n).tb()),
        (format!("step backward  [{b}x{n}] = D [{b}x{}] W", g4 * n), Gemm::new(b, n, g4 * n)),
        (format!("input proj     [{lb}x{}] = X V^T", g4 * n), Gemm::new(lb, g4 * n, m).tb()),
        (format!("readout        [{lb}x{k}] = H W_o^T"), Gemm::new(lb, k, n).tb()),
        (format!("dW             [{}x{n}] K={lb}", g4 * n), Gemm::new(g4 * n, n, lb).ta()),
        (format!("dV             [{}x{m}] K={lb}", g4 * n), Gemm::new(g4 * n, m, lb).ta()),
        (format!("dW_o           [{k}x{n}] K={lb}"), Gemm::new(k, n, lb).ta()),
        (format!("dH             [{lb}x{n}] = dY W_o"), Gemm::new(lb, n, k)),
        (format!("n x n x n      (G M^T, n = {n})"), Gemm::new(n, n, n).tb()),
    ])
}

#[cfg(not(feature = "cuda-baselines"))]
mod imp {
    use super::*;

    pub fn compare(_: usize, _: &ModelSpec, _: usize, _: usize, g: GemmBaseline, l: LuBaseline) -> Result<String> {
        let which = if g == GemmBaseline::Cublas { "--gemm cublas" } else { "--lu cusolver" };
        let _ = l;
        Err(Error::Unsupported(format!(
            "{which}: this binary was built without the NVIDIA baselines; rebuild with \
             `cargo build --release --features cuda-baselines` (needs no CUDA to build; libcublas and \
             libcusolver are loaded at run time)"
        )))
    }
}

#[cfg(feature = "cuda-baselines")]
pub use imp::{Cublas, Cusolver, gemm_rows, lu_rows};

#[cfg(feature = "cuda-baselines")]
mod imp {
    use super::*;
    use crate::backend::cuda::cudarc_driver::CudarcDriver;
    use crate::backend::cuda::driver::{DevPtr, Driver};
    use crate::backend::cuda::{Cuda, CudaBuf, DevAlloc};
    use crate::backend::{Backend, Epilogue, Slice, SliceMut};
    use crate::linalg::CayleyStep;
    use cudarc::cublas::{result as blas, sys as blas_sys};
    use cudarc::cusolver::sys as sol;
    use std::time::Instant;

    /// A cuBLAS handle on the backend's context (the legacy default stream, as our launches).
    pub struct Cublas {
        handle: blas_sys::cublasHandle_t,
    }

    // SAFETY: the handle is used from one thread at a time (every method takes `&self` of a value
    // that is not shared across threads concurrently by this crate); cuBLAS handles may move.
    unsafe impl Send for Cublas {}

    impl Cublas {
        /// A handle for GPU `b`: errors name a missing libcublas.
        pub fn new(b: &Cuda<CudarcDriver>) -> Result<Self> {
            // SAFETY: only tries to dlopen candidate library names.
            if !unsafe { blas_sys::is_culib_present() } {
                return Err(Error::Device(
                    "--gemm cublas: libcublas was not found: install the nvidia-cublas-cu12 wheel and put its lib \
                     folder on LD_LIBRARY_PATH"
                        .into(),
                ));
            }
            b.driver().bind_context()?;
            let handle = blas::create_handle().map_err(|e| Error::Device(format!("cublasCreate: {e:?}")))?;
            Ok(Cublas { handle })
        }

        /// `C = alpha op(A) op(B) + beta C` for row-major operands at `a`, `b`, `c` (one matrix).
        pub fn gemm(&self, g: &Gemm<f32>, a: DevPtr, b: DevPtr, c: DevPtr) -> Result<()> {
            use blas_sys::cublasOperation_t::{CUBLAS_OP_N, CUBLAS_OP_T};
            let (m, n, k) = (g.m as i32, g.n as i32, g.k as i32);
            let (op_a, lda) = if g.trans_a { (CUBLAS_OP_T, m) } else { (CUBLAS_OP_N, k) };
            let (op_b, ldb) = if g.trans_b { (CUBLAS_OP_T, k) } else { (CUBLAS_OP_N, n) };
            // SAFETY: the pointers address live device buffers of the sizes `g` implies (the
            // callers allocate them from `g`); alpha and beta are host scalars that outlive the call.
            unsafe {
                blas::sgemm(
                    self.handle,
                    op_b,
                    op_a,
                    n,
                    m,
                    k,
                    &g.alpha,
                    b as *const f32,
                    ldb.max(1),
                    a as *const f32,
                    lda.max(1),
                    &g.beta,
                    c as *mut f32,
                    n.max(1),
                )
            }
            .map_err(|e| Error::Device(format!("cublasSgemm: {e:?}")))
        }
    }

    impl Drop for Cublas {
        fn drop(&mut self) {
            // SAFETY: created in `new`, destroyed once.
            let _ = unsafe { blas::destroy_handle(self.handle) };
        }
    }

    /// A cuSOLVER dense handle with the workspace, pivots and status of `n x n` factorizations.
    pub struct Cusolver {
        handle: sol::cusolverDnHandle_t,
        n: usize,
        a: DevAlloc<CudarcDriver>,
        work: DevAlloc<CudarcDriver>,
        ipiv: DevAlloc<CudarcDriver>,
        info: DevAlloc<CudarcDriver>,
    }

    // SAFETY: as for `Cublas`.
    unsafe impl Send for Cusolver {}

    fn serr(what: &str, s: sol::cusolverStatus_t) -> Result<()> {
        if s == sol::cusolverStatus_t::CUSOLVER_STATUS_SUCCESS {
            Ok(())
        } else {
            Err(Error::Device(format!("{what}: {s:?}")))
        }
    }

    impl Cusolver {
        /// A handle and workspaces for order `n` on GPU `b`: errors name a missing libcusolver.
        pub fn new(b: &Cuda<CudarcDriver>, n: usize) -> Result<Self> {
            // SAFETY: only tries to dlopen candidate library names.
            if !unsafe { sol::is_culib_present() } {
                return Err(Error::Device(
                    "--lu cusolver: libcusolver was not found: install the nvidia-cusolver-cu12 wheel (and its \
                     nvidia-cublas-cu12 and nvidia-cusparse-cu12 dependencies) and put their lib folders on \
                     LD_LIBRARY_PATH"
                        .into(),
                ));
            }
            let drv = b.driver();
            drv.bind_context()?;
            let mut handle = std::ptr::null_mut();
            // SAFETY: writes one handle.
            serr("cusolverDnCreate", unsafe { sol::cusolverDnCreate(&mut handle) })?;
            let a = DevAlloc::new(drv, 4 * n * n)?;
            let mut lwork = 0;
            // SAFETY: `a` holds n x n floats; writes one int.
            let s = unsafe {
                sol::cusolverDnSgetrf_bufferSize(
                    handle,
                    n as i32,
                    n as i32,
                    a.ptr as *mut f32,
                    n.max(1) as i32,
                    &mut lwork,
                )
            };
            let made = Cusolver {
                handle,
                n,
                work: DevAlloc::new(drv, 4 * (lwork.max(1) as usize))?,
                ipiv: DevAlloc::new(drv, 4 * n.max(1))?,
                info: DevAlloc::new(drv, 4)?,
                a,
            };
            serr("cusolverDnSgetrf_bufferSize", s)?;
            Ok(made)
        }

        /// Copies the `n x n` matrix at `src` and factors it (`sgetrf`; the status stays on the device).
        pub fn factor(&self, b: &Cuda<CudarcDriver>, src: DevPtr) -> Result<()> {
            let n = self.n;
            b.driver().dtod(self.a.ptr, src, 4 * n * n)?;
            // SAFETY: every pointer addresses a live allocation of the size sgetrf needs for order n
            // (the workspace from sgetrf_bufferSize).
            serr("cusolverDnSgetrf", unsafe {
                sol::cusolverDnSgetrf(
                    self.handle,
                    n as i32,
                    n as i32,
                    self.a.ptr as *mut f32,
                    n.max(1) as i32,
                    self.work.ptr as *mut f32,
                    self.ipiv.ptr as *mut i32,
                    self.info.ptr as *mut i32,
                )
            })
        }

        /// `sgetrs` with `nrhs` columns at `rhs` (column-major `n x nrhs`); with `transpose` the
        /// factored buffer's transpose, which for our row-major input is `A` itself.
        pub fn solve(&self, rhs: DevPtr, nrhs: usize, transpose: bool) -> Result<()> {
            use sol::cublasOperation_t::{CUBLAS_OP_N, CUBLAS_OP_T};
            let n = self.n as i32;
            // SAFETY: the factors, pivots and status are this handle's; `rhs` holds n x nrhs floats.
            serr("cusolverDnSgetrs", unsafe {
                sol::cusolverDnSgetrs(
                    self.handle,
                    if transpose { CUBLAS_OP_T } else { CUBLAS_OP_N },
                    n,
                    nrhs as i32,
                    self.a.ptr as *const f32,
                    n.max(1),
                    self.ipiv.ptr as *const i32,
                    rhs as *mut f32,
                    n.max(1),
                    self.info.ptr as *mut i32,
                )
            })
        }
    }

    impl Drop for Cusolver {
        fn drop(&mut self) {
            // SAFETY: created in `new`, destroyed once.
            let _ = unsafe { sol::cusolverDnDestroy(self.handle) };
        }
    }

    /// Median wall time of `f` in milliseconds over `reps` runs after one warm-up, synchronizing
    /// around each run.
    fn time_ms(b: &Cuda<CudarcDriver>, reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
        f()?;
        b.synchronize()?;
        let mut t = Vec::with_capacity(reps);
        for _ in 0..reps {
            let t0 = Instant::now();
            f()?;
            b.synchronize()?;
            t.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        t.sort_by(f64::total_cmp);
        Ok(t[t.len() / 2])
    }

    fn rel_diff(x: &[f32], y: &[f32]) -> f64 {
        let scale = y.iter().fold(0.0f64, |m, v| m.max(v.abs() as f64)).max(1e-30);
        x.iter().zip(y).fold(0.0f64, |m, (a, b)| m.max((*a as f64 - *b as f64).abs())) / scale
    }

    fn data(n: usize, seed: u64) -> Vec<f32> {
        // A small deterministic generator: no dependence on the rand crate's stream here.
        let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }

    fn upload(b: &Cuda<CudarcDriver>, len: usize, seed: u64) -> Result<CudaBuf<CudarcDriver>> {
        b.upload(&data(len, seed))
    }

    /// Our GEMM and cuBLAS at every shape of [`iteration_gemms`].
    pub fn gemm_rows(
        b: &Cuda<CudarcDriver>,
        spec: &ModelSpec,
        seq_len: usize,
        batch: usize,
    ) -> Result<Vec<Comparison>> {
        let blas = Cublas::new(b)?;
        let mut rows = Vec::new();
        for (i, (what, g)) in iteration_gemms(spec, seq_len, batch)?.into_iter().enumerate() {
            let (ea, eb, ec) = g.extents();
            let (x, y) = (upload(b, ea, 2 * i as u64 + 1)?, upload(b, eb, 2 * i as u64 + 2)?);
            let (mut c1, c2) = (b.zeros(ec)?, b.zeros(ec)?);
            let reps = if g.flops() > 1e9 { 10 } else { 50 };
            let ours = time_ms(b, reps, || {
                b.gemm(&g, Slice::all(&x), Slice::all(&y), SliceMut::all(&mut c1), Epilogue::none())
            })?;
            let theirs = time_ms(b, reps, || blas.gemm(&g, x.ptr(), y.ptr(), c2.ptr()))?;
            let d = rel_diff(&b.download(Slice::all(&c1))?, &b.download(Slice::all(&c2))?);
            rows.push(Comparison { what, ours_ms: ours, theirs_ms: theirs, rel_diff: d });
        }
        Ok(rows)
    }

    /// Our LU and cuSOLVER at order `n` on `P = I + B` (`B` skew, the Cayley step's matrix):
    /// factorization, a solve with `n` right-hand sides, and (ours) a whole Cayley step; the
    /// relative difference is that of the two solutions of `P x = b` (one right-hand side).
    pub fn lu_rows(b: &Cuda<CudarcDriver>, n: usize) -> Result<Vec<Comparison>> {
        let sol = Cusolver::new(b, n)?;
        let r = data(n * n, 7);
        let p: Vec<f32> = (0..n * n)
            .map(|e| {
                let (i, j) = (e / n, e % n);
                let skew = 0.01 * (r[i * n + j] - r[j * n + i]);
                skew + if i == j { 1.0 } else { 0.0 }
            })
            .collect();
        let pa = b.upload(&p)?;
        let mut lu = b.lu_new(n)?;
        let rhs = upload(b, n * n, 8)?;
        let (mut x1, x2) = (b.zeros(n * n)?, b.zeros(n * n)?);
        let reps = 20;
        let f_ours = time_ms(b, reps, || b.lu_factor_into(Slice::all(&pa), &mut lu))?;
        let f_theirs = time_ms(b, reps, || sol.factor(b, pa.ptr()))?;
        let s_ours = time_ms(b, reps, || {
            b.copy(Slice::all(&rhs), SliceMut::all(&mut x1))?;
            b.lu_solve(&lu, SliceMut::all(&mut x1), n, false)
        })?;
        let s_theirs = time_ms(b, reps, || {
            b.driver().dtod(x2.ptr(), rhs.ptr(), 4 * n * n)?;
            sol.solve(x2.ptr(), n, true)
        })?;
        // One right-hand side: the same vector in both layouts.
        let (mut y1, y2) = (upload(b, n, 9)?, upload(b, n, 9)?);
        b.lu_solve(&lu, SliceMut::all(&mut y1), 1, false)?;
        sol.solve(y2.ptr(), 1, true)?;
        let d = rel_diff(&b.download(Slice::all(&y1))?, &b.download(Slice::all(&y2))?);
        // A whole Cayley step (ours; the NVIDIA column is its LU and solve plus our other launches).
        let eye: Vec<f32> = (0..n * n).map(|e| if e / n == e % n { 1.0 } else { 0.0 }).collect();
        let (mut m, g) = (b.upload(&eye)?, upload(b, n * n, 11)?);
        let mut step = CayleyStep::new(b, n)?.with_guard(None);
        let c_ours = time_ms(b, reps, || step.step(b, SliceMut::all(&mut m), Slice::all(&g), 1e-3))?;
        Ok(vec![
            Comparison { what: format!("LU factor (n = {n})"), ours_ms: f_ours, theirs_ms: f_theirs, rel_diff: d },
            Comparison {
                what: format!("LU solve, {n} right-hand sides"),
                ours_ms: s_ours,
                theirs_ms: s_theirs,
                rel_diff: d,
            },
            Comparison {
                what: format!("Cayley step (n = {n}; NVIDIA: factor + solve)"),
                ours_ms: c_ours,
                theirs_ms: f_theirs + s_theirs,
                rel_diff: f64::NAN,
            },
        ])
    }

    pub fn compare(
        gpu: usize,
        spec: &ModelSpec,
        seq_len: usize,
        batch: usize,
        g: GemmBaseline,
        l: LuBaseline,
    ) -> Result<String> {
        let b = Cuda::new(CudarcDriver::new(gpu)?)?;
        let mut out = String::new();
        if g == GemmBaseline::Cublas {
            let rows = gemm_rows(&b, spec, seq_len, batch)?;
            out.push_str(&table(&format!("GEMM on {} (ours vs cuBLAS sgemm, FP32)", b.name()), &rows));
        }
        if l == LuBaseline::Cusolver {
            let rows = lu_rows(&b, spec.hidden)?;
            out.push_str(&table(&format!("LU on {} (ours vs cuSOLVER sgetrf/sgetrs)", b.name()), &rows));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lists_every_row_with_its_ratio() {
        let rows = [
            Comparison { what: "a".into(), ours_ms: 2.0, theirs_ms: 1.0, rel_diff: 1e-6 },
            Comparison { what: "b".into(), ours_ms: 0.5, theirs_ms: 1.0, rel_diff: 0.0 },
        ];
        let t = table("T", &rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(lines[2].starts_with('a') && lines[2].contains("2.00"), "{t}");
        assert!(lines[3].starts_with('b') && lines[3].contains("0.50"), "{t}");
    }

    #[cfg(not(feature = "cuda-baselines"))]
    #[test]
    fn without_the_feature_a_baseline_is_an_error_naming_the_feature() {
        let spec = ModelSpec::default();
        assert!(compare_on_gpu(0, &spec, 10, 2, GemmBaseline::Ours, LuBaseline::Ours).unwrap().is_none());
        let e = compare_on_gpu(0, &spec, 10, 2, GemmBaseline::Cublas, LuBaseline::Ours).unwrap_err().to_string();
        assert!(e.contains("--gemm cublas") && e.contains("--features cuda-baselines"), "{e}");
        let e = compare_on_gpu(0, &spec, 10, 2, GemmBaseline::Ours, LuBaseline::Cusolver).unwrap_err().to_string();
        assert!(e.contains("--lu cusolver"), "{e}");
    }
}
