//! The emulated driver: `kernels/*.cu` compiled for the host and run by the emulation harness in `emu/`.
//!
//! Every thread of a block is a cooperative fiber that runs until it reaches `__syncthreads`, a warp
//! collective or its end; the scheduler then resumes the next runnable fiber in the launch's
//! [`ResumeOrder`]. A barrier completes when every live thread of the block waits at it (exited threads
//! count as arrived); a warp collective when all 32 lanes of the warp have reached it. Because a missing
//! barrier gives different results under different orders, running a kernel under several orders (see
//! [`ResumeOrder::TEST_SET`]) catches most missing `__syncthreads`. Divergent barriers (threads of a block
//! waiting at different `__syncthreads`), collectives reached by part of a warp, and deadlocks abort the
//! launch with [`Error::Device`] naming the source lines.
//!
//! Cooperative launches ([`Driver::launch_cooperative`]) keep every block of the grid alive at once: each
//! block's threads are fibers on a host thread of its own, one block runs at a time, and after each round
//! of a block's fibers the next block in the resume order (applied across blocks too) takes over. The
//! grid-wide barrier (`cooperative_groups::this_grid().sync()`) opens when every live thread of every
//! block waits at it. Graphs ([`Driver::begin_capture`]) record the launch list with every argument's
//! bytes, and memsets and device copies; a replay runs that list again.
//!
//! Blocks run one at a time per worker; by default the calling thread is the only worker, and
//! [`EmuDriver::with_workers`] adds helper threads that run blocks of the same grid concurrently (global
//! atomics are real host atomics). Launches are synchronous. "Device" memory is host memory aligned to
//! 256 bytes; every copy and every pointer argument of a launch is checked against the live allocations.
//!
//! What a kernel file must look like, and the supported CUDA subset: see `build.rs` and `emu/cuda_emu.h`.

use super::driver::{Counters, DevPtr, DeviceAttrs, Driver, GraphId, LaunchDims};
use crate::error::{Error, Result};
use std::alloc::Layout;
use std::collections::{BTreeMap, HashMap};
use std::ffi::{CStr, c_char, c_void};
use std::fmt;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

/// Alignment of every allocation (what `cudaMalloc` guarantees).
const ALIGN: usize = 256;
/// Byte pattern fresh allocations are filled with: NaN as f32/f64/f16/bf16, -1 as a signed integer,
/// so that a kernel reading memory nobody wrote gives a visibly wrong result.
const POISON: u8 = 0xFF;
/// Room for an error message from the C++ side.
const ERR_CAP: usize = 4096;

/// The order in which the scheduler resumes runnable threads of a block (at every scheduling point) and
/// runs the blocks of a grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResumeOrder {
    /// Ascending thread and block index.
    InOrder,
    /// Descending thread and block index.
    Reversed,
    /// A random permutation at every scheduling point, drawn from this seed (and the block index).
    Random(u64),
}

impl ResumeOrder {
    /// The orders a kernel test should pass under: in order, reversed and three seeded random orders.
    pub const TEST_SET: [ResumeOrder; 5] = [
        ResumeOrder::InOrder,
        ResumeOrder::Reversed,
        ResumeOrder::Random(0x5eed_0001),
        ResumeOrder::Random(0x5eed_0002),
        ResumeOrder::Random(0x5eed_0003),
    ];

    fn code(self) -> (u32, u64) {
        match self {
            ResumeOrder::InOrder => (0, 0),
            ResumeOrder::Reversed => (1, 0),
            ResumeOrder::Random(seed) => (2, seed),
        }
    }
}

impl fmt::Display for ResumeOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResumeOrder::InOrder => write!(f, "in-order"),
            ResumeOrder::Reversed => write!(f, "reversed"),
            ResumeOrder::Random(seed) => write!(f, "random (seed {seed:#x})"),
        }
    }
}

// ------------------------------------------------------------------------------------------------
// FFI: mirrors emu/emu_abi.h.
// ------------------------------------------------------------------------------------------------

#[repr(C)]
struct LaunchRequest {
    grid: [u32; 3],
    block: [u32; 3],
    params: *const *mut c_void,
    sizes: *const usize,
    nparams: usize,
    order: u32,
    flags: u32,
    seed: u64,
    pool: *mut c_void,
}

#[repr(C)]
struct KernelInfo {
    family: *const c_char,
    name: *const c_char,
    nparams: u32,
    reserved: u32,
    param_sizes: *const u32,
    param_is_ptr: *const u8,
    launch: *const c_void,
}

const _: () = assert!(size_of::<LaunchRequest>() == 72 && size_of::<KernelInfo>() == 48);

/// `LaunchRequest::flags`: a cooperative launch (emu_abi.h `kLaunchCooperative`).
const LAUNCH_COOPERATIVE: u32 = 1;
/// Most blocks of a grid one SM holds (sm_80 / sm_90).
const MAX_BLOCKS_PER_SM: u32 = 32;
/// Shared memory per SM on sm_90 (228 KiB), for the emulated occupancy.
const SHARED_PER_SM: usize = 228 * 1024;

unsafe extern "C" {
    fn ortho_emu_registry(count: *mut usize) -> *const *const KernelInfo;
    fn ortho_emu_launch(info: *const KernelInfo, req: *const LaunchRequest, err: *mut c_char, cap: usize) -> i32;
    fn ortho_emu_pool_new(helpers: u32) -> *mut c_void;
    fn ortho_emu_pool_free(pool: *mut c_void);
}

// ------------------------------------------------------------------------------------------------
// Registry
// ------------------------------------------------------------------------------------------------

/// One parameter of a registered kernel, as its C++ signature declares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmuParam {
    /// `sizeof` the parameter type.
    pub size: usize,
    /// Whether it is a pointer (checked against live allocations at launch).
    pub pointer: bool,
}

/// One `extern "C" __global__` entry point compiled into the harness.
#[derive(Clone, Debug)]
pub struct EmuKernel {
    /// Kernel family: the file stem of `kernels/<family>.cu`.
    pub family: &'static str,
    /// Entry point name.
    pub name: &'static str,
    /// Its parameters, in order.
    pub params: Vec<EmuParam>,
    info: InfoPtr,
}

#[derive(Clone, Copy, Debug)]
struct InfoPtr(*const KernelInfo);
// SAFETY: the pointer addresses a constant-initialized, immutable static of the C++ library.
unsafe impl Send for InfoPtr {}
// SAFETY: as above; it is only ever read.
unsafe impl Sync for InfoPtr {}

struct Registry {
    kernels: Vec<EmuKernel>,
    by_name: HashMap<(&'static str, &'static str), usize>,
}

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut count = 0usize;
        // SAFETY: the generated function writes the entry count and returns a static table of that many
        // valid pointers.
        let table = unsafe { ortho_emu_registry(&mut count) };
        let kernels: Vec<EmuKernel> = (0..count)
            .map(|i| {
                // SAFETY: i < count, see above; the entries and everything they point at are static.
                let info = unsafe { &**table.add(i) };
                let n = info.nparams as usize;
                let params = (0..n)
                    .map(|p| EmuParam {
                        // SAFETY: both arrays have `nparams` entries (plus a terminator).
                        size: unsafe { *info.param_sizes.add(p) } as usize,
                        // SAFETY: as above.
                        pointer: unsafe { *info.param_is_ptr.add(p) } != 0,
                    })
                    .collect();
                EmuKernel { family: static_str(info.family), name: static_str(info.name), params, info: InfoPtr(info) }
            })
            .collect();
        let by_name = kernels.iter().enumerate().map(|(i, k)| ((k.family, k.name), i)).collect();
        Registry { kernels, by_name }
    })
}

fn static_str(p: *const c_char) -> &'static str {
    // SAFETY: the registry's strings are NUL-terminated literals with static storage duration.
    let s = unsafe { CStr::from_ptr(p) };
    // build.rs takes names from file stems and C identifiers, both UTF-8.
    s.to_str().unwrap_or("<non-UTF-8 name>")
}

/// Every kernel of every `kernels/*.cu` family compiled into the emulator, in file then source order.
pub fn registered_kernels() -> &'static [EmuKernel] {
    &registry().kernels
}

/// Looks up `family`/`kernel`; the error lists what exists instead.
pub fn find_kernel(family: &str, kernel: &str) -> Result<&'static EmuKernel> {
    let reg = registry();
    if let Some(&i) = reg.by_name.get(&(family, kernel)) {
        return Ok(&reg.kernels[i]);
    }
    let in_family: Vec<&str> = reg.kernels.iter().filter(|k| k.family == family).map(|k| k.name).collect();
    if in_family.is_empty() {
        let mut families: Vec<&str> = reg.kernels.iter().map(|k| k.family).collect();
        families.dedup();
        return Err(Error::Device(format!(
            "emu: no kernel family `{family}` (no kernels/{family}.cu with entry points); families: {}",
            families.join(", ")
        )));
    }
    let elsewhere = reg.kernels.iter().find(|k| k.name == kernel).map(|k| format!(" (it is in `{}`)", k.family));
    Err(Error::Device(format!(
        "emu: kernel family `{family}` has no kernel `{kernel}`{}; its kernels: {}",
        elsewhere.unwrap_or_default(),
        in_family.join(", ")
    )))
}

// ------------------------------------------------------------------------------------------------
// Driver
// ------------------------------------------------------------------------------------------------

/// Helper threads of a driver (the C++ `WorkerPool`).
struct Pool(*mut c_void);
// SAFETY: the C++ pool is internally synchronized (one grid at a time under a mutex) and owned by us.
unsafe impl Send for Pool {}
// SAFETY: as above.
unsafe impl Sync for Pool {}

impl Drop for Pool {
    fn drop(&mut self) {
        // SAFETY: created by ortho_emu_pool_new and freed exactly once, here; no launch can be running
        // because launches borrow the driver that owns the pool.
        unsafe { ortho_emu_pool_free(self.0) }
    }
}

/// A [`Driver`] that runs the CUDA kernels on the host. See the module docs.
pub struct EmuDriver {
    order: ResumeOrder,
    attrs: DeviceAttrs,
    workers: usize,
    pool: Option<Pool>,
    /// Live allocations: base address -> size in bytes.
    allocs: Mutex<BTreeMap<u64, usize>>,
    counters: Counters,
    /// The graph being recorded, if any.
    capture: Mutex<Option<Vec<Node>>>,
    /// Recorded graphs.
    graphs: Mutex<HashMap<u64, Vec<Node>>>,
    next_graph: std::sync::atomic::AtomicU64,
}

/// One recorded operation of a graph.
enum Node {
    Launch { kernel: &'static EmuKernel, dims: LaunchDims, args: Vec<Vec<u8>>, cooperative: bool },
    Memset { dst: DevPtr, bytes: usize },
    Dtod { dst: DevPtr, src: DevPtr, bytes: usize },
}

impl Default for EmuDriver {
    fn default() -> Self {
        Self::new()
    }
}

impl EmuDriver {
    /// One worker (the calling thread), threads resumed in order.
    pub fn new() -> Self {
        Self::with_order(ResumeOrder::InOrder)
    }

    /// One worker, threads resumed in `order`.
    pub fn with_order(order: ResumeOrder) -> Self {
        EmuDriver {
            order,
            attrs: default_attrs(),
            workers: 1,
            pool: None,
            allocs: Mutex::new(BTreeMap::new()),
            counters: Counters::default(),
            capture: Mutex::new(None),
            graphs: Mutex::new(HashMap::new()),
            next_graph: std::sync::atomic::AtomicU64::new(1),
        }
    }

    /// Reports `sm_count` SMs to the launch code (which sizes grids from it), so that the tile and
    /// split-K choices of any GPU can be exercised on the host.
    pub fn with_sm_count(mut self, sm_count: u32) -> Result<Self> {
        if sm_count == 0 || sm_count > 1024 {
            return Err(Error::invalid("emu SM count", sm_count, "must be between 1 and 1024"));
        }
        self.attrs.sm_count = sm_count;
        Ok(self)
    }

    /// Runs the blocks of each grid on `workers` threads: the launching thread plus `workers - 1` helper
    /// threads owned by this driver. Launches on one multi-worker driver are serialized.
    pub fn with_workers(mut self, workers: usize) -> Result<Self> {
        if workers == 0 || workers > 1024 {
            return Err(Error::invalid("emu workers", workers, "must be between 1 and 1024"));
        }
        self.pool = None;
        if workers > 1 {
            // SAFETY: plain constructor call; a null result is handled.
            let p = unsafe { ortho_emu_pool_new((workers - 1) as u32) };
            if p.is_null() {
                return Err(Error::Device(format!("emu: could not start {} worker threads", workers - 1)));
            }
            self.pool = Some(Pool(p));
        }
        self.workers = workers;
        Ok(self)
    }

    /// The resume order of this driver's launches.
    pub fn order(&self) -> ResumeOrder {
        self.order
    }

    /// Number of worker threads running blocks (the launching thread included).
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Number of allocations not yet freed.
    pub fn live_allocations(&self) -> usize {
        self.allocs().len()
    }

    fn allocs(&self) -> MutexGuard<'_, BTreeMap<u64, usize>> {
        self.allocs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Checks that `[ptr, ptr + bytes)` lies inside one live allocation.
    fn check_range(&self, op: &str, ptr: DevPtr, bytes: usize) -> Result<()> {
        let allocs = self.allocs();
        let inside = allocs
            .range(..=ptr)
            .next_back()
            .is_some_and(|(&base, &size)| ptr.checked_add(bytes as u64).is_some_and(|end| end <= base + size as u64));
        if inside {
            Ok(())
        } else {
            Err(Error::Device(format!("emu {op}: [{ptr:#x}, {ptr:#x} + {bytes}) is not inside a live allocation")))
        }
    }

    /// Checks every non-null pointer argument of a launch against the live allocations.
    ///
    /// # Safety
    /// Each `params[i]` with `sizes[i] == 8` must point at 8 readable bytes.
    unsafe fn check_pointer_args(&self, k: &EmuKernel, params: &[*mut c_void], sizes: &[usize]) -> Result<()> {
        for (i, p) in k.params.iter().enumerate() {
            if !p.pointer || i >= params.len() || sizes[i] != 8 || params[i].is_null() {
                continue; // argument count and size mismatches are reported by the trampoline
            }
            // SAFETY: the caller guarantees 8 readable bytes behind params[i].
            let ptr = unsafe { params[i].cast::<u64>().read_unaligned() };
            if ptr != 0 && self.check_range("launch", ptr, 0).is_err() {
                return Err(Error::Device(format!(
                    "emu {}/{}: argument {i} ({ptr:#x}) does not point into a live allocation of this driver",
                    k.family, k.name
                )));
            }
        }
        Ok(())
    }
}

impl EmuDriver {
    fn capturing(&self) -> MutexGuard<'_, Option<Vec<Node>>> {
        self.capture.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Fails `op` while a graph is being recorded (it would make the host wait or change the memory map).
    fn not_capturing(&self, op: &str) -> Result<()> {
        if self.capturing().is_some() {
            return Err(Error::Device(format!(
                "emu {op} during graph capture: a captured region may only launch kernels, zero memory and copy \
                 between device buffers (no host copies, synchronizations, allocations or frees)"
            )));
        }
        Ok(())
    }

    fn memset_now(&self, dst: DevPtr, bytes: usize) -> Result<()> {
        self.check_range("memset_zero", dst, bytes)?;
        // SAFETY: [dst, dst + bytes) lies inside a live allocation (checked above).
        unsafe { std::ptr::write_bytes(dst as *mut u8, 0, bytes) };
        Ok(())
    }

    fn dtod_now(&self, dst: DevPtr, src: DevPtr, bytes: usize) -> Result<()> {
        self.check_range("dtod", src, bytes)?;
        self.check_range("dtod", dst, bytes)?;
        // SAFETY: both ranges lie inside live allocations (checked above); `copy` allows overlap.
        unsafe { std::ptr::copy(src as *const u8, dst as *mut u8, bytes) };
        Ok(())
    }

    /// Checks and runs one launch now.
    ///
    /// # Safety
    /// As [`Driver::launch`].
    unsafe fn run_launch(
        &self,
        k: &'static EmuKernel,
        dims: LaunchDims,
        params: &[*mut c_void],
        sizes: &[usize],
        cooperative: bool,
    ) -> Result<()> {
        // SAFETY: the caller guarantees that params[i] points at an argument of sizes[i] bytes.
        unsafe { self.check_pointer_args(k, params, sizes)? };
        let (order, seed) = self.order.code();
        let req = LaunchRequest {
            grid: [dims.grid.0, dims.grid.1, dims.grid.2],
            block: [dims.block.0, dims.block.1, dims.block.2],
            params: params.as_ptr(),
            sizes: sizes.as_ptr(),
            nparams: params.len(),
            order,
            flags: if cooperative { LAUNCH_COOPERATIVE } else { 0 },
            seed,
            pool: self.pool.as_ref().map_or(std::ptr::null_mut(), |p| p.0),
        };
        let mut err = vec![0u8; ERR_CAP];
        // SAFETY: `k.info` is a registry entry; `req` and the arrays it points at outlive the call; the
        // caller guarantees the arguments match the kernel and its pointers address enough memory (the
        // trampoline checks count and sizes, check_pointer_args that pointers are live allocations).
        let rc = unsafe { ortho_emu_launch(k.info.0, &req, err.as_mut_ptr().cast(), err.len()) };
        self.counters.update(|c| {
            c.launches += 1;
            c.cooperative_launches += cooperative as u64;
        });
        if rc == 0 {
            return Ok(());
        }
        let msg = CStr::from_bytes_until_nul(&err).map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        Err(Error::Device(format!("emu {}/{} (resume order {}): {msg}", k.family, k.name, self.order)))
    }

    /// Looks up the kernel, checks the argument arrays, and runs or records the launch.
    ///
    /// # Safety
    /// As [`Driver::launch`].
    unsafe fn launch_any(
        &self,
        family: &str,
        kernel: &str,
        dims: LaunchDims,
        params: &mut [*mut c_void],
        sizes: &[usize],
        cooperative: bool,
    ) -> Result<()> {
        let k = find_kernel(family, kernel)?;
        if params.len() != sizes.len() {
            return Err(Error::Device(format!(
                "emu {family}/{kernel}: {} parameter pointers but {} sizes",
                params.len(),
                sizes.len()
            )));
        }
        if cooperative {
            let threads = dims.block.0 * dims.block.1 * dims.block.2;
            let per_sm = self.max_active_blocks_per_sm(family, kernel, threads, 0)?;
            let blocks = dims.grid.0 as u64 * dims.grid.1 as u64 * dims.grid.2 as u64;
            let most = per_sm as u64 * self.attrs.sm_count as u64;
            if blocks > most {
                return Err(Error::Device(format!(
                    "emu {family}/{kernel}: a cooperative grid of {blocks} blocks of {threads} threads cannot be \
                     co-resident on this device ({} SMs x {per_sm} blocks = {most} at most): launch fewer blocks",
                    self.attrs.sm_count
                )));
            }
        }
        if let Some(nodes) = self.capturing().as_mut() {
            // SAFETY: as in run_launch; the recorded pointers are checked now and again at replay.
            unsafe { self.check_pointer_args(k, params, sizes)? };
            let args = params
                .iter()
                .zip(sizes)
                // SAFETY: the caller guarantees params[i] points at sizes[i] readable bytes.
                .map(|(&p, &n)| unsafe { std::slice::from_raw_parts(p.cast::<u8>(), n) }.to_vec())
                .collect();
            nodes.push(Node::Launch { kernel: k, dims, args, cooperative });
            return Ok(());
        }
        // SAFETY: forwarded from the caller.
        unsafe { self.run_launch(k, dims, params, sizes, cooperative) }
    }
}

impl Drop for EmuDriver {
    fn drop(&mut self) {
        let allocs = std::mem::take(&mut *self.allocs());
        for (base, size) in allocs {
            // SAFETY: every entry was allocated by `alloc` with exactly this layout and not yet freed.
            unsafe { std::alloc::dealloc(base as *mut u8, Layout::from_size_align_unchecked(size, ALIGN)) }
        }
    }
}

/// [`DeviceAttrs::HOPPER_132`], with the SM count from `ORTHO_EMU_SMS` when that is set to a number in
/// `1..=1024`.
fn default_attrs() -> DeviceAttrs {
    let mut a = DeviceAttrs::HOPPER_132;
    if let Some(n) = std::env::var("ORTHO_EMU_SMS").ok().and_then(|v| v.trim().parse::<u32>().ok())
        && (1..=1024).contains(&n)
    {
        a.sm_count = n;
    }
    a
}

impl Driver for EmuDriver {
    fn attrs(&self) -> DeviceAttrs {
        self.attrs
    }

    fn name(&self) -> String {
        let s = if self.workers == 1 { "" } else { "s" };
        format!("emu (host CPU, {} worker{s}, resume order {})", self.workers, self.order)
    }

    fn alloc(&self, bytes: usize) -> Result<DevPtr> {
        self.not_capturing("alloc")?;
        self.counters.update(|c| {
            c.allocs += 1;
            c.alloc_bytes += bytes as u64;
        });
        let layout = Layout::from_size_align(bytes.max(1), ALIGN)
            .map_err(|_| Error::Device(format!("emu alloc: {bytes} bytes is too large")))?;
        // SAFETY: the layout has a nonzero size.
        let p = unsafe { std::alloc::alloc(layout) };
        if p.is_null() {
            return Err(Error::Device(format!("emu alloc: out of host memory allocating {bytes} bytes")));
        }
        // SAFETY: p addresses layout.size() writable bytes just allocated.
        unsafe { std::ptr::write_bytes(p, POISON, layout.size()) };
        self.allocs().insert(p as u64, layout.size());
        Ok(p as u64)
    }

    unsafe fn free(&self, ptr: DevPtr) {
        // A free inside a capture would be an error on a GPU; nothing calls it there (buffers outlive the
        // captured region), and a free cannot report an error, so it is carried out.
        let size = self.allocs().remove(&ptr);
        debug_assert!(size.is_some(), "emu free: {ptr:#x} is not a live allocation of this driver");
        if let Some(size) = size {
            // SAFETY: allocated by `alloc` with this size and alignment, and removed from the table above,
            // so it is freed once.
            unsafe { std::alloc::dealloc(ptr as *mut u8, Layout::from_size_align_unchecked(size, ALIGN)) }
        }
    }

    fn memset_zero(&self, dst: DevPtr, bytes: usize) -> Result<()> {
        if let Some(nodes) = self.capturing().as_mut() {
            self.check_range("memset_zero", dst, bytes)?;
            nodes.push(Node::Memset { dst, bytes });
            return Ok(());
        }
        self.memset_now(dst, bytes)
    }

    fn htod(&self, dst: DevPtr, src: &[u8]) -> Result<()> {
        self.not_capturing("htod")?;
        self.counters.update(|c| c.htod_bytes += src.len() as u64);
        self.check_range("htod", dst, src.len())?;
        // SAFETY: the destination lies inside a live allocation (checked above); the source is a slice.
        unsafe { std::ptr::copy(src.as_ptr(), dst as *mut u8, src.len()) };
        Ok(())
    }

    fn dtoh(&self, dst: &mut [u8], src: DevPtr) -> Result<()> {
        self.not_capturing("dtoh")?;
        self.counters.update(|c| {
            c.host_syncs += 1;
            c.dtoh_bytes += dst.len() as u64;
        });
        self.check_range("dtoh", src, dst.len())?;
        // SAFETY: the source lies inside a live allocation (checked above); the destination is a slice.
        unsafe { std::ptr::copy(src as *const u8, dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }

    fn dtod(&self, dst: DevPtr, src: DevPtr, bytes: usize) -> Result<()> {
        if let Some(nodes) = self.capturing().as_mut() {
            self.check_range("dtod", src, bytes)?;
            self.check_range("dtod", dst, bytes)?;
            nodes.push(Node::Dtod { dst, src, bytes });
            return Ok(());
        }
        self.dtod_now(dst, src, bytes)
    }

    unsafe fn launch(
        &self,
        family: &str,
        kernel: &str,
        dims: LaunchDims,
        params: &mut [*mut c_void],
        sizes: &[usize],
    ) -> Result<()> {
        // SAFETY: forwarded from the caller.
        unsafe { self.launch_any(family, kernel, dims, params, sizes, false) }
    }

    fn synchronize(&self) -> Result<()> {
        self.not_capturing("synchronize")?;
        self.counters.update(|c| c.host_syncs += 1);
        Ok(())
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }

    fn max_active_blocks_per_sm(
        &self,
        family: &str,
        kernel: &str,
        block_threads: u32,
        shared_bytes: usize,
    ) -> Result<u32> {
        find_kernel(family, kernel)?;
        if block_threads == 0 || block_threads > 1024 || shared_bytes > self.attrs.max_shared_per_block {
            return Ok(0);
        }
        let by_threads = self.attrs.max_threads_per_sm / block_threads;
        let by_shared = SHARED_PER_SM.checked_div(shared_bytes).map_or(u32::MAX, |v| v as u32);
        Ok(by_threads.min(by_shared).min(MAX_BLOCKS_PER_SM))
    }

    unsafe fn launch_cooperative(
        &self,
        family: &str,
        kernel: &str,
        dims: LaunchDims,
        params: &mut [*mut c_void],
        sizes: &[usize],
    ) -> Result<()> {
        // SAFETY: forwarded from the caller.
        unsafe { self.launch_any(family, kernel, dims, params, sizes, true) }
    }

    fn begin_capture(&self) -> Result<()> {
        let mut cap = self.capturing();
        if cap.is_some() {
            return Err(Error::Device("emu begin_capture: a capture is already in progress".into()));
        }
        *cap = Some(Vec::new());
        Ok(())
    }

    fn end_capture(&self) -> Result<GraphId> {
        let nodes =
            self.capturing().take().ok_or_else(|| Error::Device("emu end_capture: no capture in progress".into()))?;
        let id = self.next_graph.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.graphs.lock().unwrap_or_else(PoisonError::into_inner).insert(id, nodes);
        Ok(GraphId(id))
    }

    fn replay(&self, graph: GraphId) -> Result<()> {
        self.not_capturing("replay")?;
        let graphs = self.graphs.lock().unwrap_or_else(PoisonError::into_inner);
        let nodes = graphs.get(&graph.0).ok_or_else(|| Error::Device(format!("emu replay: no graph {}", graph.0)))?;
        self.counters.update(|c| c.graph_replays += 1);
        for node in nodes {
            match node {
                Node::Launch { kernel, dims, args, cooperative } => {
                    let mut bytes = args.clone();
                    let ptrs: Vec<*mut c_void> = bytes.iter_mut().map(|b| b.as_mut_ptr().cast()).collect();
                    let sizes: Vec<usize> = args.iter().map(Vec::len).collect();
                    // SAFETY: the arguments were recorded from a launch whose caller guaranteed them, and
                    // run_launch checks every pointer against the live allocations again.
                    unsafe { self.run_launch(kernel, *dims, &ptrs, &sizes, *cooperative)? };
                    self.counters.update(|c| c.graph_kernels += 1);
                }
                Node::Memset { dst, bytes } => self.memset_now(*dst, *bytes)?,
                Node::Dtod { dst, src, bytes } => self.dtod_now(*dst, *src, *bytes)?,
            }
        }
        Ok(())
    }

    fn destroy_graph(&self, graph: GraphId) {
        self.graphs.lock().unwrap_or_else(PoisonError::into_inner).remove(&graph.0);
    }
}
