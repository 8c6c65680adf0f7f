//! The device LU's launch budget, deterministic reductions, and launch error reporting (issue 8,
//! part B), all under `emu`.
//!
//! - Launch counts: a [`Counting`] driver wraps the emulator, counts launches, allocations and
//!   device-to-host copies, and can skip kernel execution ("dry run"): the LU's control flow does not
//!   depend on the data (no readback), so a dry run at `n = 1000` counts exactly what a GPU would run.

use ortho_rnn::backend::cuda::Cuda;
use ortho_rnn::backend::cuda::driver::{DevPtr, DeviceAttrs, Driver, LaunchDims};
use ortho_rnn::backend::cuda::emu::EmuDriver;
use ortho_rnn::backend::{Backend, Slice, SliceMut};
use ortho_rnn::linalg::CayleyStep;
use std::ffi::c_void;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

// ------------------------------------------------------------------------------------------------
// A counting driver
// ------------------------------------------------------------------------------------------------

/// What a [`Counting`] driver has seen since the last [`Counting::take`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Counts {
    launches: usize,
    allocs: usize,
    readbacks: usize,
    /// Kernel names in launch order.
    kernels: Vec<String>,
}

/// The emulator with counters; with `dry` set, launches are counted but not executed.
struct Counting {
    inner: EmuDriver,
    dry: AtomicBool,
    launches: AtomicUsize,
    allocs: AtomicUsize,
    readbacks: AtomicUsize,
    kernels: Mutex<Vec<String>>,
}

impl Counting {
    fn new() -> Self {
        Counting {
            inner: EmuDriver::new(),
            dry: AtomicBool::new(false),
            launches: AtomicUsize::new(0),
            allocs: AtomicUsize::new(0),
            readbacks: AtomicUsize::new(0),
            kernels: Mutex::new(Vec::new()),
        }
    }
    fn take(&self) -> Counts {
        Counts {
            launches: self.launches.swap(0, Ordering::SeqCst),
            allocs: self.allocs.swap(0, Ordering::SeqCst),
            readbacks: self.readbacks.swap(0, Ordering::SeqCst),
            kernels: std::mem::take(&mut *self.kernels.lock().unwrap()),
        }
    }
}

impl Driver for Counting {
    fn name(&self) -> String {
        format!("counting({})", self.inner.name())
    }
    fn attrs(&self) -> DeviceAttrs {
        self.inner.attrs()
    }
    fn alloc(&self, bytes: usize) -> ortho_rnn::Result<DevPtr> {
        self.allocs.fetch_add(1, Ordering::SeqCst);
        self.inner.alloc(bytes)
    }
    unsafe fn free(&self, ptr: DevPtr) {
        // SAFETY: forwarded unchanged; the caller's guarantee carries over.
        unsafe { self.inner.free(ptr) }
    }
    fn memset_zero(&self, dst: DevPtr, bytes: usize) -> ortho_rnn::Result<()> {
        self.inner.memset_zero(dst, bytes)
    }
    fn htod(&self, dst: DevPtr, src: &[u8]) -> ortho_rnn::Result<()> {
        self.inner.htod(dst, src)
    }
    fn dtoh(&self, dst: &mut [u8], src: DevPtr) -> ortho_rnn::Result<()> {
        self.readbacks.fetch_add(1, Ordering::SeqCst);
        self.inner.dtoh(dst, src)
    }
    fn dtod(&self, dst: DevPtr, src: DevPtr, bytes: usize) -> ortho_rnn::Result<()> {
        self.inner.dtod(dst, src, bytes)
    }
    unsafe fn launch(
        &self,
        family: &str,
        kernel: &str,
        dims: LaunchDims,
        params: &mut [*mut c_void],
        sizes: &[usize],
    ) -> ortho_rnn::Result<()> {
        self.launches.fetch_add(1, Ordering::SeqCst);
        self.kernels.lock().unwrap().push(kernel.to_string());
        if self.dry.load(Ordering::SeqCst) {
            return Ok(());
        }
        // SAFETY: forwarded unchanged; the caller's guarantee carries over.
        unsafe { self.inner.launch(family, kernel, dims, params, sizes) }
    }
    fn synchronize(&self) -> ortho_rnn::Result<()> {
        self.inner.synchronize()
    }
}

/// Launches, allocations and readbacks at order `n` (dry run; workspaces allocated before counting
/// starts): one factorization, the first solve with `n` right-hand sides (which sizes the solve
/// workspace), a second one, and one geodesic Cayley step.
fn lu_counts(n: usize) -> [Counts; 4] {
    let b = Cuda::new(Counting::new()).unwrap();
    let a = b.zeros(n * n).unwrap();
    let mut x = b.zeros(n * n).unwrap();
    let mut lu = b.lu_new(n).unwrap();
    let mut step = CayleyStep::new(&b, n).unwrap();
    b.driver().dry.store(true, Ordering::SeqCst);
    b.driver().take();
    b.lu_factor_into(Slice::all(&a), &mut lu).unwrap();
    let factor = b.driver().take();
    b.lu_solve(&lu, SliceMut::all(&mut x), n, false).unwrap();
    let first_solve = b.driver().take();
    b.lu_solve(&lu, SliceMut::all(&mut x), n, true).unwrap();
    let solve = b.driver().take();
    step.step(&b, SliceMut::all(&mut x), Slice::all(&a), 1e-3).unwrap();
    let cayley = b.driver().take();
    [factor, first_solve, solve, cayley]
}

/// At `n = 1000` (32 panels of 32 columns, solve leaves of 256 rows): a factorization is 32 panel
/// launches, 31 trailing GEMMs and one diagonal-block inversion; a solve is one gather (or scatter)
/// and 4 leaves and 3 GEMMs per triangle. Nothing allocates (the first solve sizes the solve
/// workspace once) and nothing is read back. Before this change: 126 launches, two allocations
/// and one blocking readback per factorization, 127 launches per solve.
#[test]
fn lu_launch_counts_at_n_1000() {
    let [factor, first_solve, solve, cayley] = lu_counts(1000);
    for (what, c) in [("factor", &factor), ("first solve", &first_solve), ("solve", &solve), ("Cayley step", &cayley)] {
        println!("{what}: {} launches, {} allocations, {} readbacks", c.launches, c.allocs, c.readbacks);
    }
    let count = |c: &Counts, name: &str| c.kernels.iter().filter(|k| k.starts_with(name)).count();
    assert_eq!((factor.launches, factor.allocs, factor.readbacks), (64, 0, 0), "{:?}", factor.kernels);
    assert_eq!(count(&factor, "lu_panel_32x"), 32);
    assert_eq!(count(&factor, "gemm"), 31);
    assert_eq!(count(&factor, "lu_inv_diag_f32"), 1);
    assert_eq!((first_solve.launches, first_solve.allocs, first_solve.readbacks), (15, 1, 0));
    assert_eq!((solve.launches, solve.allocs, solve.readbacks), (15, 0, 0), "{:?}", solve.kernels);
    assert_eq!(count(&solve, "trsm_leaf_f32"), 8);
    assert_eq!(count(&solve, "gemm"), 6);
    // G M^T, skew, add_diag, the factorization, the solve, axpby.
    assert_eq!((cayley.launches, cayley.allocs, cayley.readbacks), (4 + 64 + 15, 0, 0), "{:?}", cayley.kernels);
}
