//! The thin driver interface the CUDA backend's launch code is generic over.
//!
//! Two implementations: [`super::cudarc_driver`] (real GPUs, through cudarc's driver API and NVRTC) and
//! [`super::emu`] (the same `kernels/*.cu` compiled for the host and run by the emulation harness).
//! Everything above this trait, launch code included, is shared, so it all runs in CI without a GPU.

use crate::backend::profile::Profile;
use crate::error::Result;
use std::ffi::c_void;
use std::sync::{Mutex, PoisonError};

/// A device address (`CUdeviceptr` on a GPU; a host address under `emu`).
pub type DevPtr = u64;

/// Grid and block dimensions of a launch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaunchDims {
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
}

/// One kernel argument, packed exactly as `cuLaunchKernel` takes it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Arg {
    /// A device pointer (8 bytes).
    Ptr(DevPtr),
    /// `int`.
    I32(i32),
    /// `unsigned int`.
    U32(u32),
    /// `float`.
    F32(f32),
    /// `long long`.
    I64(i64),
    /// `double`.
    F64(f64),
}

impl Arg {
    /// Size in bytes of the C type.
    pub fn size(&self) -> usize {
        match self {
            Arg::Ptr(_) | Arg::I64(_) | Arg::F64(_) => 8,
            Arg::I32(_) | Arg::U32(_) | Arg::F32(_) => 4,
        }
    }
    /// The value's bytes in an 8-byte little-endian slot (low bytes first, as the C type reads them).
    pub fn slot(&self) -> u64 {
        match *self {
            Arg::Ptr(p) => p,
            Arg::I32(v) => v as u32 as u64,
            Arg::U32(v) => v as u64,
            Arg::F32(v) => v.to_bits() as u64,
            Arg::I64(v) => v as u64,
            Arg::F64(v) => v.to_bits(),
        }
    }
}

/// Packs arguments into stable slots and hands out the `void**` array `cuLaunchKernel` wants.
pub struct PackedArgs {
    slots: Vec<u64>,
    sizes: Vec<usize>,
}

impl PackedArgs {
    /// Packs `args` in order.
    pub fn new(args: &[Arg]) -> Self {
        PackedArgs { slots: args.iter().map(Arg::slot).collect(), sizes: args.iter().map(Arg::size).collect() }
    }
    /// Pointers to each slot (valid while `self` lives and is not moved).
    pub fn pointers(&mut self) -> Vec<*mut c_void> {
        self.slots.iter_mut().map(|s| s as *mut u64 as *mut c_void).collect()
    }
    /// Size in bytes of each argument.
    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }
}

/// What launch code needs to know about a device to size its grids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceAttrs {
    /// Streaming multiprocessors (132 on an H100 SXM / H200).
    pub sm_count: u32,
    /// Compute capability `(major, minor)`.
    pub compute_capability: (i32, i32),
    /// Shared memory a block may use with the opt-in attribute, in bytes (227 KiB on sm_90).
    pub max_shared_per_block: usize,
    /// Resident threads per SM (2048 on sm_80/sm_90).
    pub max_threads_per_sm: u32,
}

impl DeviceAttrs {
    /// An H100/H200-class device (sm_90, 132 SMs): what the emulator reports unless told otherwise.
    pub const HOPPER_132: DeviceAttrs = DeviceAttrs {
        sm_count: 132,
        compute_capability: (9, 0),
        max_shared_per_block: 227 * 1024,
        max_threads_per_sm: 2048,
    };
}

/// A driver's activity counters (see [`crate::backend::profile`]).
#[derive(Debug, Default)]
pub struct Counters(Mutex<Profile>);

impl Counters {
    /// Applies `f` to the counts.
    pub fn update(&self, f: impl FnOnce(&mut Profile)) {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner));
    }
    /// The counts so far.
    pub fn snapshot(&self) -> Profile {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A captured graph of one driver ([`Driver::end_capture`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GraphId(pub u64);

/// Memory, copies and launches on one device.
///
/// Work is stream-ordered: launches, `memset_zero` and `dtod` are queued in order; `htod` waits until
/// its source is copied; `dtoh` and `synchronize` wait for everything queued (host synchronizations).
/// Between [`Driver::begin_capture`] and [`Driver::end_capture`], launches, `memset_zero` and `dtod`
/// are recorded instead of run, and everything that would make the host wait or change the memory
/// map (`htod`, `dtoh`, `synchronize`, `alloc`, `free`) is an error.
pub trait Driver: Send + Sync + 'static {
    /// Human-readable device name.
    fn name(&self) -> String;
    /// The device's SM count and limits (queried once when the driver is created).
    fn attrs(&self) -> DeviceAttrs;
    /// Allocates `bytes` (uninitialized; at least 1 byte is allocated for `bytes == 0`).
    fn alloc(&self, bytes: usize) -> Result<DevPtr>;
    /// Frees an allocation made by [`Driver::alloc`].
    ///
    /// # Safety
    /// `ptr` must come from this driver's `alloc` and must not be used afterwards.
    unsafe fn free(&self, ptr: DevPtr);
    /// Sets `bytes` bytes at `dst` to zero.
    fn memset_zero(&self, dst: DevPtr, bytes: usize) -> Result<()>;
    /// Host to device.
    fn htod(&self, dst: DevPtr, src: &[u8]) -> Result<()>;
    /// Device to host (synchronizes).
    fn dtoh(&self, dst: &mut [u8], src: DevPtr) -> Result<()>;
    /// Device to device.
    fn dtod(&self, dst: DevPtr, src: DevPtr, bytes: usize) -> Result<()>;
    /// Launches `kernel` (an `extern "C" __global__` entry point of kernel family `family`, i.e. of
    /// `kernels/<family>.cu`). `params[i]` points at argument `i`, whose C type has `sizes[i]` bytes.
    ///
    /// # Safety
    /// The arguments must match the kernel's signature and every pointer argument must address
    /// device memory large enough for what the kernel touches with these dimensions.
    unsafe fn launch(
        &self,
        family: &str,
        kernel: &str,
        dims: LaunchDims,
        params: &mut [*mut c_void],
        sizes: &[usize],
    ) -> Result<()>;
    /// Waits for all queued work.
    fn synchronize(&self) -> Result<()>;

    /// The activity counters (launches, host synchronizations, allocations, copies, work).
    fn counters(&self) -> &Counters;
    /// How many blocks of `kernel` with `block_threads` threads and `shared_bytes` bytes of shared
    /// memory one SM holds at once (`cuOccupancyMaxActiveBlocksPerMultiprocessor` on a GPU).
    fn max_active_blocks_per_sm(
        &self,
        family: &str,
        kernel: &str,
        block_threads: u32,
        shared_bytes: usize,
    ) -> Result<u32>;
    /// Launches `kernel` cooperatively (`cuLaunchCooperativeKernel`): every block is resident at once and
    /// may wait at the grid-wide barrier. The grid must fit: at most `sm_count` times
    /// [`Driver::max_active_blocks_per_sm`] blocks.
    ///
    /// # Safety
    /// As [`Driver::launch`].
    unsafe fn launch_cooperative(
        &self,
        family: &str,
        kernel: &str,
        dims: LaunchDims,
        params: &mut [*mut c_void],
        sizes: &[usize],
    ) -> Result<()>;
    /// Starts recording queued work into a graph (see the trait docs).
    fn begin_capture(&self) -> Result<()>;
    /// Stops recording and returns the graph, ready to replay.
    fn end_capture(&self) -> Result<GraphId>;
    /// Runs a captured graph: the recorded work with the recorded arguments, in order.
    fn replay(&self, graph: GraphId) -> Result<()>;
    /// Frees a captured graph.
    fn destroy_graph(&self, graph: GraphId);
}
