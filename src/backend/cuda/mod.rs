//! The CUDA backend: hand-written kernels in `kernels/*.cu`, launched through a [`driver::Driver`].
//!
//! `Cuda<D>` holds the launch code for every op; `D` is either the cudarc driver (a real GPU, kernels
//! compiled by NVRTC on first use and cached per device) or the emulated driver (the same kernels
//! compiled for the host by `build.rs` and run by the emulation harness). Everything here except
//! `cudarc_driver.rs` therefore runs in CI without a GPU.
//!
//! Buffers are f32 device allocations; a [`Slice`] maps to `ptr + 4 * off`. Host-visible results
//! (loss sums, norms) go through a small device accumulator that is zeroed, filled (sums by the
//! fixed-order reductions of `reduce.rs`, maxima by integer atomics on float bits) and copied back.

pub mod baselines;
pub mod cudarc_driver;
pub mod driver;
pub mod emu;
mod gemm;
pub mod gemm_plan;
pub mod kernels;
mod lu;
mod multi;
mod ops;
mod recurrent;
mod reduce;

use crate::backend::profile::Profile;
use crate::backend::{DeviceBuf, Precision, Slice, SliceMut};
use crate::error::{Error, Result};
use driver::{Arg, DevPtr, DeviceAttrs, Driver, LaunchDims, PackedArgs};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

pub use gemm::GemmLaunch;
pub use recurrent::RecurrenceMode;

/// A device buffer of f32.
pub struct CudaBuf<D: Driver> {
    ptr: DevPtr,
    len: usize,
    drv: Arc<D>,
}

impl<D: Driver> DeviceBuf for CudaBuf<D> {
    fn len(&self) -> usize {
        self.len
    }
}

impl<D: Driver> CudaBuf<D> {
    /// The device address of element 0.
    pub fn ptr(&self) -> DevPtr {
        self.ptr
    }
}

impl<D: Driver> Drop for CudaBuf<D> {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from this driver's `alloc` and the buffer is being dropped, so nothing
        // uses it afterwards.
        unsafe { self.drv.free(self.ptr) };
    }
}

/// A raw device allocation freed on drop (pivots, accumulators).
pub(crate) struct DevAlloc<D: Driver> {
    pub ptr: DevPtr,
    bytes: usize,
    drv: Arc<D>,
}

impl<D: Driver> DevAlloc<D> {
    pub fn new(drv: &Arc<D>, bytes: usize) -> Result<Self> {
        let ptr = drv.alloc(bytes)?;
        let a = DevAlloc { ptr, bytes, drv: drv.clone() };
        drv.memset_zero(ptr, bytes)?;
        Ok(a)
    }
}

impl<D: Driver> Drop for DevAlloc<D> {
    fn drop(&mut self) {
        // SAFETY: allocated by this driver in `new`, dropped once.
        unsafe { self.drv.free(self.ptr) };
    }
}

/// A device workspace slot. Each slot belongs to one op (or one family of ops that never nest), so an
/// op holding its slot may call ops that take other slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(dead_code)] // taken by the split-K GEMM, the LU and the fixed-order reductions as they land
pub(crate) enum Slot {
    /// Partial products of split-K GEMMs.
    SplitK,
    /// The LU solves' permuted right-hand sides.
    Lu,
    /// Per-block partials of fixed-order reductions.
    Reduce,
    /// Per-block partials of the persistent recurrence's parameter gradient.
    Recurrent,
    /// Per-block partial sums of squares of the multi-tensor optimizer step.
    Optim,
}

impl Slot {
    const COUNT: usize = 5;
}

/// Grow-only device workspaces, one allocation per [`Slot`], kept for the backend's lifetime: after the
/// first call at a given size nothing is allocated on the hot path.
struct Arena<D: Driver> {
    cells: [Mutex<Option<DevAlloc<D>>>; Slot::COUNT],
    /// Allocations a slot outgrew, freed with the backend (graphs captured before a growth use them).
    retired: Mutex<Vec<DevAlloc<D>>>,
}

/// Exclusive use of one workspace slot of at least the requested size, until dropped. Work launched
/// with it is stream-ordered, so releasing the guard right after the launches is safe.
pub(crate) struct Scratch<'a, D: Driver> {
    guard: MutexGuard<'a, Option<DevAlloc<D>>>,
}

impl<D: Driver> Scratch<'_, D> {
    /// The slot's device address.
    pub fn ptr(&self) -> DevPtr {
        self.guard.as_ref().map_or(0, |a| a.ptr)
    }
}

/// The CUDA backend over driver `D`.
pub struct Cuda<D: Driver> {
    drv: Arc<D>,
    /// 32 bytes of device scratch for reductions returned to the host.
    acc: Arc<Mutex<DevAlloc<D>>>,
    arena: Arc<Arena<D>>,
    /// Synchronize after every launch and name the kernel in its error (`ORTHO_RNN_SYNC=1`).
    sync_launches: bool,
    /// The arithmetic of the products marked reduced-precision-tolerant.
    precision: Precision,
    ext: Arc<Ext<D>>,
}

/// State of the recurrence, tally and multi-tensor launch code.
struct Ext<D: Driver> {
    /// How the recurrence runs, and what the last recurrence ops ran (for `bench`).
    rec_mode: Mutex<RecurrenceMode>,
    notes: Mutex<std::collections::BTreeMap<String, String>>,
    /// The per-iteration readback slots and the multi-tensor optimizer plan.
    multi: Mutex<multi::MultiState<D>>,
}

impl<D: Driver> Clone for Cuda<D> {
    fn clone(&self) -> Self {
        Cuda {
            drv: self.drv.clone(),
            acc: self.acc.clone(),
            arena: self.arena.clone(),
            sync_launches: self.sync_launches,
            precision: self.precision,
            ext: self.ext.clone(),
        }
    }
}

/// The environment variable that makes every launch synchronous.
pub const SYNC_ENV: &str = "ORTHO_RNN_SYNC";

/// Whether `value` (of [`SYNC_ENV`]) asks for synchronous launches: `1`/`true`/`yes`/`on` or
/// `0`/`false`/`no`/`off`/empty, any case; anything else is an error naming the variable.
pub fn parse_sync_env(value: Option<&str>) -> Result<bool> {
    let Some(v) = value else { return Ok(false) };
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "" | "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(Error::invalid(SYNC_ENV, v, "set it to 1 to synchronize after every kernel launch, or 0")),
    }
}

/// Threads per block of the 1-D element-wise kernels.
pub(crate) const THREADS: u32 = 256;

impl<D: Driver> Cuda<D> {
    /// A backend over `drv`.
    pub fn new(drv: D) -> Result<Self> {
        let drv = Arc::new(drv);
        let multi = multi::MultiState::new(&drv)?;
        let acc = DevAlloc::new(&drv, 32)?;
        let arena =
            Arc::new(Arena { cells: std::array::from_fn(|_| Mutex::new(None)), retired: Mutex::new(Vec::new()) });
        let sync_launches = parse_sync_env(std::env::var(SYNC_ENV).ok().as_deref())?;
        Ok(Cuda {
            drv,
            acc: Arc::new(Mutex::new(acc)),
            arena,
            sync_launches,
            precision: Precision::Fp32,
            ext: Arc::new(Ext {
                rec_mode: Mutex::new(RecurrenceMode::default()),
                notes: Mutex::new(Default::default()),
                multi: Mutex::new(multi),
            }),
        })
    }

    /// Whether every launch is followed by a synchronization (from `ORTHO_RNN_SYNC` at creation).
    pub fn sync_launches(&self) -> bool {
        self.sync_launches
    }

    /// Turns synchronous launches on or off (overrides `ORTHO_RNN_SYNC`).
    pub fn with_sync_launches(mut self, on: bool) -> Self {
        self.sync_launches = on;
        self
    }

    /// This backend computing the products marked [`Gemm::allow_reduced`](crate::backend::Gemm) in
    /// `precision` (TF32 / BF16 on tensor cores; see [`Precision`]).
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// The driver.
    pub fn driver(&self) -> &Arc<D> {
        &self.drv
    }

    /// The device's SM count and limits (what grids are sized from).
    pub fn attrs(&self) -> DeviceAttrs {
        self.drv.attrs()
    }

    /// The driver's activity counters so far.
    pub fn profile(&self) -> Profile {
        self.drv.counters().snapshot()
    }

    /// Counts the arithmetic of one op (`flops`) and the device-memory bytes it moves, for the profile.
    pub(crate) fn work(&self, flops: f64, bytes: f64) {
        self.drv.counters().update(|c| c.add_work(flops, bytes));
    }

    /// Workspace `slot` with at least `bytes` bytes (zeroed when first allocated or grown; otherwise
    /// holding whatever its last user left).
    pub(crate) fn scratch(&self, slot: Slot, bytes: usize) -> Result<Scratch<'_, D>> {
        let mut guard = self.arena.cells[slot as usize].lock().unwrap_or_else(PoisonError::into_inner);
        let have = guard.as_ref().map_or(0, |a| a.bytes);
        if have < bytes.max(1) {
            // Doubling bounds the retired allocations by the live one. The smaller allocation is kept
            // alive, not freed: a captured CUDA graph may hold its address and replay after the growth.
            let grown = DevAlloc::new(&self.drv, bytes.max(1).max(2 * have))?;
            if let Some(old) = guard.replace(grown) {
                self.arena.retired.lock().unwrap_or_else(PoisonError::into_inner).push(old);
            }
        }
        Ok(Scratch { guard })
    }

    pub(crate) fn ptr(s: &Slice<Self>) -> DevPtr {
        s.buf.ptr + 4 * s.off as u64
    }

    pub(crate) fn ptr_mut(s: &SliceMut<Self>) -> DevPtr {
        s.buf.ptr + 4 * s.off as u64
    }

    /// Launches `family::kernel` with `args` packed as `cuLaunchKernel` takes them.
    pub(crate) fn launch(
        &self,
        family: &str,
        kernel: &str,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        args: &[Arg],
    ) -> Result<()> {
        if grid.0 == 0 || grid.1 == 0 || grid.2 == 0 {
            return Ok(());
        }
        let mut packed = PackedArgs::new(args);
        let mut ptrs = packed.pointers();
        // SAFETY: every launcher in this module passes arguments in the kernel's declared order and
        // C types (checked under emu by the trampolines' size checks and by the parity tests), and
        // device pointers come from views that `check` validated against their buffers' lengths.
        let launched =
            unsafe { self.drv.launch(family, kernel, LaunchDims { grid, block }, &mut ptrs, packed.sizes()) };
        if !self.sync_launches {
            return launched;
        }
        // A fault surfaces at the next synchronization; make that this one, under this kernel's name.
        launched.and_then(|()| self.drv.synchronize()).map_err(|e| {
            Error::Device(format!(
                "kernel {family}/{kernel} (grid {grid:?}, block {block:?}) failed ({SYNC_ENV}=1: synchronized \
                 after the launch): {e}"
            ))
        })
    }

    /// A 1-D launch over `n` elements with grid-stride loops (at most 4096 blocks).
    pub(crate) fn launch_1d(&self, family: &str, kernel: &str, n: usize, args: &[Arg]) -> Result<()> {
        let blocks = n.div_ceil(THREADS as usize).clamp(1, 4096) as u32;
        self.launch(family, kernel, (blocks, 1, 1), (THREADS, 1, 1), args)
    }

    /// Runs `f` with the zeroed accumulator, then reads back `N` doubles.
    pub(crate) fn with_acc<const N: usize>(&self, f: impl FnOnce(DevPtr) -> Result<()>) -> Result<[f64; N]> {
        let acc = self.acc.lock().map_err(|_| Error::Device("accumulator lock poisoned".into()))?;
        self.drv.memset_zero(acc.ptr, 8 * N)?;
        f(acc.ptr)?;
        let mut bytes = vec![0u8; 8 * N];
        self.drv.dtoh(&mut bytes, acc.ptr)?;
        let mut out = [0.0; N];
        for (o, c) in out.iter_mut().zip(bytes.chunks_exact(8)) {
            *o = f64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
        }
        Ok(out)
    }

    /// Runs `f` with a zeroed `u32` accumulator and reads it back as the f32 it holds.
    pub(crate) fn with_max(&self, f: impl FnOnce(DevPtr) -> Result<()>) -> Result<f64> {
        let acc = self.acc.lock().map_err(|_| Error::Device("accumulator lock poisoned".into()))?;
        self.drv.memset_zero(acc.ptr, 4)?;
        f(acc.ptr)?;
        let mut bytes = [0u8; 4];
        self.drv.dtoh(&mut bytes, acc.ptr)?;
        Ok(f32::from_bits(u32::from_le_bytes(bytes)) as f64)
    }
}

/// The kernels' activation code (see `kernels/common.cuh`).
pub(crate) fn act_code(a: crate::backend::Activation) -> i32 {
    use crate::backend::Activation::*;
    match a {
        Tanh => 0,
        Relu => 1,
        Prelu => 2,
        Oplu => 3,
        Modrelu => 4,
        Identity => 5,
    }
}
