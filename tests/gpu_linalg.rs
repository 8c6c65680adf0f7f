//! The device LU's launch budget, deterministic reductions, and launch error reporting (issue 8,
//! part B), all under `emu`.
//!
//! - Launch counts: a [`Counting`] driver wraps the emulator, counts launches, allocations and
//!   device-to-host copies, and can skip kernel execution ("dry run"): the LU's control flow does not
//!   depend on the data (no readback), so a dry run at `n = 1000` counts exactly what a GPU would run.

use ortho_rnn::backend::cuda::Cuda;
use ortho_rnn::backend::cuda::driver::{Counters, DevPtr, DeviceAttrs, Driver, GraphId, LaunchDims};
use ortho_rnn::backend::cuda::emu::{EmuDriver, ResumeOrder};
use ortho_rnn::backend::{Activation, Backend, OptimRule, Slice, SliceMut};
use ortho_rnn::linalg::CayleyStep;
use ortho_rnn::nn::Pass;
use ortho_rnn::optim::{OptimConfig, Optimizer};
use ortho_rnn::tasks::Task;
use ortho_rnn::tasks::adding::AddingTask;
use ortho_rnn::tasks::copy::CopyTask;
use ortho_rnn::train::build::{ModelKind, ModelSpec};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
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

/// The emulator with counters; with `dry` set, launches are counted but not executed. With
/// `fault_after` naming a kernel, a launch of it succeeds but the next synchronization or
/// device-to-host copy fails, as an asynchronous fault (an illegal address) shows on a GPU.
struct Counting {
    inner: EmuDriver,
    dry: AtomicBool,
    fault_after: Mutex<Option<&'static str>>,
    pending_fault: AtomicBool,
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
            fault_after: Mutex::new(None),
            pending_fault: AtomicBool::new(false),
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
        self.take_fault("cuMemcpyDtoH")?;
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
        if *self.fault_after.lock().unwrap() == Some(kernel) {
            self.pending_fault.store(true, Ordering::SeqCst);
        }
        if self.dry.load(Ordering::SeqCst) {
            return Ok(());
        }
        // SAFETY: forwarded unchanged; the caller's guarantee carries over.
        unsafe { self.inner.launch(family, kernel, dims, params, sizes) }
    }
    fn synchronize(&self) -> ortho_rnn::Result<()> {
        self.take_fault("cuCtxSynchronize")?;
        self.inner.synchronize()
    }
    fn counters(&self) -> &Counters {
        self.inner.counters()
    }
    fn max_active_blocks_per_sm(
        &self,
        family: &str,
        kernel: &str,
        block_threads: u32,
        shared_bytes: usize,
    ) -> ortho_rnn::Result<u32> {
        self.inner.max_active_blocks_per_sm(family, kernel, block_threads, shared_bytes)
    }
    unsafe fn launch_cooperative(
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
        unsafe { self.inner.launch_cooperative(family, kernel, dims, params, sizes) }
    }
    fn begin_capture(&self) -> ortho_rnn::Result<()> {
        self.inner.begin_capture()
    }
    fn end_capture(&self) -> ortho_rnn::Result<GraphId> {
        self.inner.end_capture()
    }
    fn replay(&self, graph: GraphId) -> ortho_rnn::Result<()> {
        self.inner.replay(graph)
    }
    fn destroy_graph(&self, graph: GraphId) {
        self.inner.destroy_graph(graph)
    }
}

impl Counting {
    /// The pending asynchronous fault, reported (once) by the call `what`.
    fn take_fault(&self, what: &str) -> ortho_rnn::Result<()> {
        if self.pending_fault.swap(false, Ordering::SeqCst) {
            return Err(ortho_rnn::Error::Device(format!("{what}: CUDA_ERROR_ILLEGAL_ADDRESS")));
        }
        Ok(())
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
/// launches, 32 row-interchange launches, 31 trailing GEMMs and one diagonal-block inversion; a solve is one gather (or scatter)
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
    assert_eq!((factor.launches, factor.allocs, factor.readbacks), (96, 0, 0), "{:?}", factor.kernels);
    assert_eq!(count(&factor, "lu_panel_32x"), 32);
    assert_eq!(count(&factor, "lu_rows_f32"), 32);
    assert_eq!(count(&factor, "gemm"), 31);
    assert_eq!(count(&factor, "lu_inv_diag_f32"), 1);
    assert_eq!((first_solve.launches, first_solve.allocs, first_solve.readbacks), (15, 1, 0));
    assert_eq!((solve.launches, solve.allocs, solve.readbacks), (15, 0, 0), "{:?}", solve.kernels);
    assert_eq!(count(&solve, "trsm_leaf_f32"), 8);
    assert_eq!(count(&solve, "gemm"), 6);
    // G M^T, skew, add_diag, the factorization, the solve, axpby.
    assert_eq!((cayley.launches, cayley.allocs, cayley.readbacks), (4 + 96 + 15, 0, 0), "{:?}", cayley.kernels);
}

// ------------------------------------------------------------------------------------------------
// Deterministic results
// ------------------------------------------------------------------------------------------------

/// Losses (as bits) of `iters` training iterations and every parameter (as bits) afterwards, on
/// the CUDA backend over `drv`.
fn train_bits(drv: EmuDriver, spec: &ModelSpec, task: &dyn Task, iters: usize) -> (Vec<u64>, Vec<Vec<u32>>) {
    let b = Cuda::new(drv).unwrap();
    let mut model = spec.build(&b, task, 3).unwrap();
    let cfg = OptimConfig {
        rule: OptimRule::RmsProp { rho: 0.9, eps: 1e-8 },
        lr: 1e-3,
        geo_lr: 1e-3,
        clip: Some(1.0), // small, so that clipping (a norm reduction) acts
        weight_decay: 1e-4,
    };
    let mut optim = Optimizer::new(&b, cfg, model.params()).unwrap();
    let mut losses = Vec::new();
    for i in 0..iters {
        let batch = task.train_batch(i, 6).unwrap();
        let stats = model.run(&batch, Pass::Train).unwrap();
        losses.push(stats.loss.to_bits());
        optim.step(&b, model.params_mut()).unwrap();
        model.after_update(i + 1).unwrap();
    }
    let params =
        model.params().iter().map(|p| b.download(p.v()).unwrap().iter().map(|v| v.to_bits()).collect()).collect();
    (losses, params)
}

/// Two runs of whole training iterations, one with threads and blocks resumed in order on one
/// worker and one in seeded random orders (or reversed) with blocks on several worker threads at
/// once, give bit-identical losses and parameters: every reduction (losses, the clipping norm, the
/// PReLU slope and modReLU bias gradients, the LSTM peepholes, column sums) adds in a fixed order.
/// Models: modReLU and PReLU RNNs, the LSTM, the factorized RNN (LU and Cayley steps); heads:
/// softmax cross-entropy (copy) and squared error (adding).
#[test]
fn training_is_bit_identical_across_resume_orders_and_workers() {
    let copy = CopyTask::new(3, 1).unwrap();
    let adding = AddingTask::new(6, 1).unwrap();
    let with_act = |model, act| ModelSpec { activation: act, ..ModelSpec::of(model, 12) };
    let cases: [(&str, ModelSpec, &dyn Task); 5] = [
        ("rnn modrelu copy", with_act(ModelKind::Rnn, Activation::Modrelu), &copy),
        ("rnn prelu copy", with_act(ModelKind::Rnn, Activation::Prelu), &copy),
        ("lstm copy", ModelSpec::of(ModelKind::Lstm, 12), &copy),
        ("lstm adding", ModelSpec::of(ModelKind::Lstm, 12), &adding),
        ("factorized prelu adding", with_act(ModelKind::Factorized, Activation::Prelu), &adding),
    ];
    for (what, spec, task) in cases {
        let base = train_bits(EmuDriver::with_order(ResumeOrder::InOrder), &spec, task, 3);
        for (order, workers) in [(ResumeOrder::Random(0x5eed_0002), 3), (ResumeOrder::Reversed, 2)] {
            let drv = EmuDriver::with_order(order).with_workers(workers).unwrap();
            let other = train_bits(drv, &spec, task, 3);
            assert_eq!(base.0, other.0, "{what}: losses differ under {order} with {workers} workers");
            for (i, (p, q)) in base.1.iter().zip(&other.1).enumerate() {
                let diff = p.iter().zip(q).filter(|(a, b)| a != b).count();
                assert_eq!(diff, 0, "{what}: parameter {i} differs in {diff} entries under {order}, {workers} workers");
            }
        }
    }
}

/// Bits of every result of the reductions on inputs spanning many blocks: `sum_sq`, `mse`,
/// `softmax_xent` (sum, correct, count and the gradient), the PReLU slope and modReLU bias
/// gradients (added to a nonzero start), and the LSTM peephole gradients.
fn reduction_bits(drv: EmuDriver) -> Vec<Vec<u64>> {
    let b = Cuda::new(drv).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut data = |n: usize| (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect::<Vec<f32>>();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits() as u64).collect::<Vec<u64>>();
    let mut out = Vec::new();
    let x = b.upload(&data(100_003)).unwrap();
    out.push(vec![b.sum_sq(Slice::all(&x)).unwrap().to_bits()]);
    let (pred, target) = (b.upload(&data(50_001)).unwrap(), b.upload(&data(50_001)).unwrap());
    let mut grad = b.zeros(50_001).unwrap();
    let s = b.mse(Slice::all(&pred), Slice::all(&target), SliceMut::all(&mut grad), 0.5).unwrap();
    out.push(vec![s.sum.to_bits()]);
    let (rows, classes) = (3001, 10);
    let logits = b.upload(&data(rows * classes)).unwrap();
    let targets: Vec<f32> = (0..rows).map(|r| if r % 7 == 0 { -1.0 } else { (r % classes) as f32 }).collect();
    let targets = b.upload(&targets).unwrap();
    let mut grad = b.zeros(rows * classes).unwrap();
    let s = b.softmax_xent(Slice::all(&logits), Slice::all(&targets), SliceMut::all(&mut grad), classes, 0.1).unwrap();
    out.push(vec![s.sum.to_bits(), s.correct as u64, s.count as u64]);
    out.push(bits(&b.download(Slice::all(&grad)).unwrap()));
    let (rows, cols) = (2000, 33);
    for (kind, plen) in [(Activation::Prelu, 1), (Activation::Modrelu, cols)] {
        let (a, dh) = (b.upload(&data(rows * cols)).unwrap(), b.upload(&data(rows * cols)).unwrap());
        let param = b.upload(&data(plen).iter().map(|v| v.abs() * 0.5).collect::<Vec<_>>()).unwrap();
        let act = ortho_rnn::backend::Act { kind, param: Some(Slice::all(&param)) };
        let mut h = b.zeros(rows * cols).unwrap();
        b.act_fwd(act, Slice::all(&a), SliceMut::all(&mut h), cols).unwrap();
        let (mut da, mut dparam) = (b.zeros(rows * cols).unwrap(), b.upload(&data(plen)).unwrap());
        let dp = Some(SliceMut::all(&mut dparam));
        b.act_bwd(act, Slice::all(&a), Slice::all(&h), Slice::all(&dh), SliceMut::all(&mut da), dp, cols).unwrap();
        out.push(bits(&b.download(Slice::all(&dparam)).unwrap()));
    }
    let (rows, n) = (200, 40);
    let z = b.upload(&data(4 * rows * n)).unwrap();
    let peep = b.upload(&data(3 * n)).unwrap();
    let (mut c, mut gates, mut h) =
        (b.upload(&data(2 * rows * n)).unwrap(), b.zeros(4 * rows * n).unwrap(), b.zeros(rows * n).unwrap());
    let (zs, ps) = (Slice::all(&z), Slice::all(&peep));
    b.lstm_fwd(zs, ps, SliceMut::all(&mut c), SliceMut::all(&mut gates), SliceMut::all(&mut h), n).unwrap();
    let (dh, mut dc, mut dz, mut dpeep) = (
        b.upload(&data(rows * n)).unwrap(),
        b.upload(&data(rows * n)).unwrap(),
        b.zeros(4 * rows * n).unwrap(),
        b.upload(&data(3 * n)).unwrap(),
    );
    let (c_prev, c_t) = (Slice::all(&c).sub(0, rows * n), Slice::all(&c).sub(rows * n, rows * n));
    b.lstm_bwd(
        Slice::all(&gates),
        c_prev,
        c_t,
        ps,
        Slice::all(&dh),
        SliceMut::all(&mut dc),
        SliceMut::all(&mut dz),
        SliceMut::all(&mut dpeep),
        n,
    )
    .unwrap();
    out.push(bits(&b.download(Slice::all(&dpeep)).unwrap()));
    out
}

/// Each reduction, over inputs that span many blocks, gives the same bits whatever the order in
/// which blocks run and threads resume, and however many workers run blocks at once.
#[test]
fn reductions_are_bit_identical_across_resume_orders_and_workers() {
    let names =
        ["sum_sq", "mse", "softmax_xent stats", "softmax_xent grad", "prelu slope", "modrelu bias", "peepholes"];
    let base = reduction_bits(EmuDriver::with_order(ResumeOrder::InOrder));
    for (order, workers) in [(ResumeOrder::Random(0x5eed_0001), 3), (ResumeOrder::Reversed, 2)] {
        let other = reduction_bits(EmuDriver::with_order(order).with_workers(workers).unwrap());
        for ((name, p), q) in names.iter().zip(&base).zip(&other) {
            assert_eq!(p, q, "{name} differs under {order} with {workers} workers");
        }
    }
}

// ------------------------------------------------------------------------------------------------
// ORTHO_RNN_SYNC
// ------------------------------------------------------------------------------------------------

const SYNC_INNER: &str = "inner_sync_env_names_the_faulting_kernel";

/// A kernel that faults asynchronously (`scale_f32` under a [`Counting`] driver): without
/// synchronous launches the op returns `Ok` and the fault surfaces at the next copy, under the
/// copy's name; with them, the op itself fails naming `elementwise/scale_f32`.
fn scale_fault(b: &Cuda<Counting>) -> (ortho_rnn::Result<()>, ortho_rnn::Result<Vec<f32>>) {
    let mut x = b.upload(&[1.0, 2.0, 3.0]).unwrap();
    *b.driver().fault_after.lock().unwrap() = Some("scale_f32");
    let op = b.scale(SliceMut::all(&mut x), 2.0);
    let copy = b.download(Slice::all(&x));
    (op, copy)
}

#[test]
fn sync_launches_name_the_faulting_kernel() {
    let parse = ortho_rnn::backend::cuda::parse_sync_env;
    assert!(!parse(None).unwrap() && !parse(Some("0")).unwrap() && !parse(Some("")).unwrap());
    assert!(parse(Some("1")).unwrap() && parse(Some(" TRUE ")).unwrap());
    let err = parse(Some("maybe")).unwrap_err().to_string();
    assert!(err.contains("ORTHO_RNN_SYNC") && err.contains("maybe"), "{err}");

    let b = Cuda::new(Counting::new()).unwrap().with_sync_launches(false);
    let (op, copy) = scale_fault(&b);
    assert!(op.is_ok(), "an asynchronous fault is not seen by the launch: {op:?}");
    let msg = copy.unwrap_err().to_string();
    assert!(!msg.contains("scale_f32"), "without synchronous launches the copy reports it: {msg}");

    let b = b.with_sync_launches(true);
    let (op, copy) = scale_fault(&b);
    let msg = op.unwrap_err().to_string();
    assert!(msg.contains("elementwise/scale_f32") && msg.contains("ORTHO_RNN_SYNC=1"), "{msg}");
    assert!(msg.contains("ILLEGAL_ADDRESS"), "the driver's error is kept: {msg}");
    assert!(copy.is_ok(), "the fault was reported once, by the launch");

    // The variable is read by Cuda::new: run the inner test in a child process with it set.
    if std::env::var_os("ORTHO_RNN_SYNC").is_none() {
        assert!(!Cuda::new(EmuDriver::new()).unwrap().sync_launches());
    }
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args(["--ignored", "--exact", SYNC_INNER, "--nocapture", "--test-threads=1"])
        .env("ORTHO_RNN_SYNC", "1")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("1 passed"), "the inner test failed:\n{text}");
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", SYNC_INNER, "--test-threads=1"])
        .env("ORTHO_RNN_SYNC", "sometimes")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success() && text.contains("ORTHO_RNN_SYNC"), "a bad value must be an error:\n{text}");
}

/// Run by `sync_launches_name_the_faulting_kernel` with `ORTHO_RNN_SYNC` set.
#[test]
#[ignore = "run by sync_launches_name_the_faulting_kernel with ORTHO_RNN_SYNC set"]
fn inner_sync_env_names_the_faulting_kernel() {
    let b = match Cuda::new(Counting::new()) {
        Ok(b) => b,
        Err(e) => panic!("Cuda::new: {e}"),
    };
    assert!(b.sync_launches(), "ORTHO_RNN_SYNC=1 must turn synchronous launches on");
    let msg = scale_fault(&b).0.unwrap_err().to_string();
    assert!(msg.contains("elementwise/scale_f32"), "{msg}");
}
