//! The real-GPU driver: cudarc's driver API for memory and launches, NVRTC for kernels.
//!
//! cudarc loads `libcuda` and `libnvrtc` by name at first use and **panics** when they are missing,
//! so [`CudarcDriver::new`] checks `is_culib_present()` first and returns a clear error naming what is
//! missing (libcuda, a device, or libnvrtc). cudarc finds libraries by name only: `LD_LIBRARY_PATH`
//! must contain the NVRTC wheel's `lib` folder before the process starts, and NVRTC is given the
//! runtime wheel's `include` folder for `cuda_fp16.h` (see [`nvrtc_include_paths`]).
//!
//! Kernel families are compiled the first time one of their kernels is launched, for the device's
//! own architecture, and cached per driver (one per device).
//!
//! All work goes to one stream the driver creates (not the legacy default stream), so that it can be
//! captured into a CUDA graph (`cuStreamBeginCapture`, instantiated once, replayed with
//! `cuGraphLaunch`); `dtoh` and `synchronize` synchronize that stream.

use super::driver::{Counters, DevPtr, DeviceAttrs, Driver, GraphId, LaunchDims};
use super::kernels;
use crate::error::{Error, Result};
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, result as dres, sys as dsys};
use cudarc::nvrtc::{CompileOptions, compile_ptx_with_opts};
use std::collections::HashMap;
use std::ffi::c_void;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Whether `libnvrtc` can be loaded (never panics).
pub fn nvrtc_present() -> bool {
    // SAFETY: only tries to dlopen candidate library names; no CUDA call is made.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// Whether `libcuda` can be loaded (never panics).
pub fn libcuda_present() -> bool {
    // SAFETY: only tries to dlopen candidate library names.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// NVRTC's version `(major, minor)`, if the library loads.
pub fn nvrtc_version() -> Option<(i32, i32)> {
    if !nvrtc_present() {
        return None;
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: the library is present (checked above); nvrtcVersion writes two ints.
    let ok = unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) };
    (ok == cudarc::nvrtc::sys::nvrtcResult::NVRTC_SUCCESS).then_some((major, minor))
}

/// Folders holding `cuda_fp16.h`: `$ORTHO_CUDA_INCLUDE`, `$CUDA_HOME/include`, the pip wheel
/// `nvidia-cuda-runtime-cu12` next to the NVRTC library on `LD_LIBRARY_PATH`, `/usr/local/cuda/include`;
/// and those holding `nv/target` (which `cooperative_groups.h` includes; a toolkit's include folder
/// has it, the pip wheels bring it in `nvidia-cuda-cccl-cu12`).
pub fn nvrtc_include_paths() -> Vec<String> {
    let mut cands: Vec<PathBuf> = Vec::new();
    if let Ok(p) = std::env::var("ORTHO_CUDA_INCLUDE") {
        cands.push(p.into());
    }
    if let Ok(p) = std::env::var("CUDA_HOME") {
        cands.push(PathBuf::from(p).join("include"));
    }
    if let Ok(ld) = std::env::var("LD_LIBRARY_PATH") {
        for dir in ld.split(':').filter(|d| !d.is_empty()) {
            // .../nvidia/cuda_nvrtc/lib -> .../nvidia/cuda_runtime/include
            let dir = PathBuf::from(dir);
            if let Some(nvidia) = dir.parent().and_then(|p| p.parent()) {
                cands.push(nvidia.join("cuda_runtime").join("include"));
                cands.push(nvidia.join("cuda_cccl").join("include"));
            }
        }
    }
    cands.push("/usr/local/cuda/include".into());
    let mut out: Vec<String> = Vec::new();
    for c in cands {
        if c.join("cuda_fp16.h").exists() || c.join("nv").join("target").exists() {
            let s = c.to_string_lossy().into_owned();
            if !out.contains(&s) {
                out.push(s);
            }
        }
    }
    out
}

/// Compiles a kernel family to PTX for `arch` (e.g. `"sm_90"`) with the production options.
pub fn compile_family(family: &str, arch: &'static str) -> Result<String> {
    if !nvrtc_present() {
        return Err(Error::Device(
            "libnvrtc was not found: install the nvidia-cuda-nvrtc-cu12 wheel and put its lib folder on LD_LIBRARY_PATH"
                .into(),
        ));
    }
    let src = kernels::source(family).ok_or_else(|| Error::Device(format!("unknown kernel family {family}")))?;
    let include_paths = nvrtc_include_paths();
    if include_paths.is_empty() {
        return Err(Error::Device(
            "cuda_fp16.h was not found: install the nvidia-cuda-runtime-cu12 wheel or set ORTHO_CUDA_INCLUDE".into(),
        ));
    }
    let opts = CompileOptions {
        arch: Some(arch),
        include_paths,
        options: kernels::NVRTC_OPTIONS.iter().map(|s| s.to_string()).collect(),
        name: Some(format!("{family}.cu")),
        ..Default::default()
    };
    let ptx = compile_ptx_with_opts(src, opts)
        .map_err(|e| Error::KernelCompile { file: format!("kernels/{family}.cu"), log: format!("{e:?}") })?;
    Ok(ptx.to_src())
}

/// A GPU device.
pub struct CudarcDriver {
    ctx: Arc<CudaContext>,
    name: String,
    arch: &'static str,
    attrs: DeviceAttrs,
    modules: Mutex<HashMap<String, Arc<CudaModule>>>,
    functions: Mutex<HashMap<String, CudaFunction>>,
    stream: Stream,
    counters: Counters,
    /// Kernels launched into the capture in progress, if one is.
    capture: Mutex<Option<u64>>,
    /// Instantiated graphs and the number of kernels each runs.
    graphs: Mutex<HashMap<u64, (Graph, u64)>>,
    next_graph: std::sync::atomic::AtomicU64,
}

/// The driver's stream.
struct Stream(dsys::CUstream);
// SAFETY: a CUstream handle may be used from any thread of the process (the context is bound first).
unsafe impl Send for Stream {}
// SAFETY: as above; the driver API serializes work submitted to one stream.
unsafe impl Sync for Stream {}

/// An instantiated graph and its template.
struct Graph(dsys::CUgraph, dsys::CUgraphExec);
// SAFETY: graph handles may be used from any thread of the process.
unsafe impl Send for Graph {}
// SAFETY: as above.
unsafe impl Sync for Graph {}

/// A GPU found on this machine.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuInfo {
    pub ordinal: usize,
    pub name: String,
    pub memory_bytes: usize,
    pub compute_capability: (i32, i32),
}

fn derr(what: &str, e: impl std::fmt::Debug) -> Error {
    Error::Device(format!("{what}: {e:?}"))
}

/// Lists GPUs, or explains why there are none (libcuda missing, no device).
pub fn list_gpus() -> Result<Vec<GpuInfo>> {
    if !libcuda_present() {
        return Err(Error::Device("libcuda was not found (no NVIDIA driver on this machine)".into()));
    }
    let count = CudaContext::device_count().map_err(|e| derr("cuDeviceGetCount", e))?;
    let mut out = Vec::new();
    for i in 0..count.max(0) as usize {
        let ctx = CudaContext::new(i).map_err(|e| derr("creating a CUDA context", e))?;
        out.push(GpuInfo {
            ordinal: i,
            name: ctx.name().map_err(|e| derr("cuDeviceGetName", e))?,
            memory_bytes: ctx.total_mem().map_err(|e| derr("cuDeviceTotalMem", e))?,
            compute_capability: ctx.compute_capability().map_err(|e| derr("compute capability", e))?,
        });
    }
    Ok(out)
}

impl CudarcDriver {
    /// Opens GPU `ordinal`, checking first for libcuda, a device and libnvrtc.
    pub fn new(ordinal: usize) -> Result<Self> {
        if !libcuda_present() {
            return Err(Error::Device(
                "--device cuda needs an NVIDIA GPU, but libcuda was not found (no NVIDIA driver); use --device cpu, or --device emu to run the CUDA kernels on the host".into(),
            ));
        }
        let count = CudaContext::device_count().map_err(|e| derr("cuDeviceGetCount", e))?;
        if ordinal >= count.max(0) as usize {
            return Err(Error::Device(format!("--device cuda: no CUDA device {ordinal} (this machine has {count})")));
        }
        if !nvrtc_present() {
            return Err(Error::Device(
                "--device cuda needs libnvrtc to compile the kernels: install the nvidia-cuda-nvrtc-cu12 wheel and put its lib folder on LD_LIBRARY_PATH".into(),
            ));
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| derr("creating a CUDA context", e))?;
        let (major, minor) = ctx.compute_capability().map_err(|e| derr("compute capability", e))?;
        let arch = match (major, minor) {
            (9, _) => "sm_90",
            (8, 9) => "sm_89",
            (8, 6) => "sm_86",
            (8, _) => "sm_80",
            (7, 5) => "sm_75",
            (7, _) => "sm_70",
            (m, _) if m >= 10 => "sm_90",
            _ => {
                return Err(Error::Device(format!(
                    "compute capability {major}.{minor} is older than the kernels support (7.0)"
                )));
            }
        };
        let name = format!("cuda:{ordinal} ({})", ctx.name().unwrap_or_default());
        let attr = |a: dsys::CUdevice_attribute| {
            ctx.attribute(a).map_err(|e| derr(&format!("cuDeviceGetAttribute({a:?})"), e))
        };
        use dsys::CUdevice_attribute as A;
        let attrs = DeviceAttrs {
            sm_count: attr(A::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?.max(1) as u32,
            compute_capability: (major, minor),
            max_shared_per_block: attr(A::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)?.max(0) as usize,
            max_threads_per_sm: attr(A::CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR)?.max(1) as u32,
        };
        ctx.bind_to_thread().map_err(|e| derr("binding the CUDA context", e))?;
        let stream = dres::stream::create(dres::stream::StreamKind::NonBlocking)
            .map_err(|e| derr("creating a CUDA stream", e))?;
        Ok(CudarcDriver {
            ctx,
            name,
            arch,
            attrs,
            modules: Mutex::new(HashMap::new()),
            functions: Mutex::new(HashMap::new()),
            stream: Stream(stream),
            counters: Counters::default(),
            capture: Mutex::new(None),
            graphs: Mutex::new(HashMap::new()),
            next_graph: std::sync::atomic::AtomicU64::new(1),
        })
    }

    fn function(&self, family: &str, kernel: &str) -> Result<CudaFunction> {
        let mut funcs = self.functions.lock().map_err(|_| Error::Device("kernel cache poisoned".into()))?;
        if let Some(f) = funcs.get(kernel) {
            return Ok(f.clone());
        }
        let mut mods = self.modules.lock().map_err(|_| Error::Device("module cache poisoned".into()))?;
        let module = match mods.get(family) {
            Some(m) => m.clone(),
            None => {
                let ptx = compile_family(family, self.arch)?;
                let m =
                    self.ctx.load_module(cudarc::nvrtc::Ptx::from_src(ptx)).map_err(|e| derr("loading a module", e))?;
                mods.insert(family.to_string(), m.clone());
                m
            }
        };
        let f = module.load_function(kernel).map_err(|e| derr(&format!("kernel {kernel} in {family}.cu"), e))?;
        funcs.insert(kernel.to_string(), f.clone());
        Ok(f)
    }

    fn bind(&self) -> Result<()> {
        self.ctx.bind_to_thread().map_err(|e| derr("binding the CUDA context", e))
    }

    fn capturing(&self) -> std::sync::MutexGuard<'_, Option<u64>> {
        self.capture.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Fails `op` while a graph is being captured.
    fn not_capturing(&self, op: &str) -> Result<()> {
        if self.capturing().is_some() {
            return Err(Error::Device(format!(
                "{op} during CUDA graph capture: a captured region may only launch kernels, zero memory and copy \
                 between device buffers"
            )));
        }
        Ok(())
    }

    /// Launches on the driver's stream, cooperatively or not, and counts it.
    ///
    /// # Safety
    /// As [`Driver::launch`].
    unsafe fn launch_on_stream(
        &self,
        family: &str,
        kernel: &str,
        dims: LaunchDims,
        params: &mut [*mut c_void],
        cooperative: bool,
    ) -> Result<()> {
        let f = self.function(family, kernel)?;
        self.bind()?;
        let s = self.stream.0;
        // SAFETY: the caller guarantees the arguments match the kernel's signature and address memory
        // large enough for these dimensions.
        let r = unsafe {
            if cooperative {
                dres::launch_cooperative_kernel(f.cu_function(), dims.grid, dims.block, 0, s, params)
            } else {
                dres::launch_kernel(f.cu_function(), dims.grid, dims.block, 0, s, params)
            }
        };
        r.map_err(|e| derr(&format!("launching {kernel}"), e))?;
        match self.capturing().as_mut() {
            Some(n) => *n += 1,
            None => self.counters.update(|c| {
                c.launches += 1;
                c.cooperative_launches += cooperative as u64;
            }),
        }
        Ok(())
    }
}

impl Drop for CudarcDriver {
    fn drop(&mut self) {
        let graphs = std::mem::take(&mut *self.graphs.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        if self.bind().is_err() {
            return;
        }
        for (_, (g, _)) in graphs {
            // SAFETY: created by end_capture and destroyed once, here.
            unsafe {
                let _ = dres::graph::exec_destroy(g.1);
                let _ = dres::graph::destroy(g.0);
            }
        }
        // SAFETY: the stream was created by `new` and nothing uses it after the driver is dropped.
        let _ = unsafe { dres::stream::destroy(self.stream.0) };
    }
}

impl Driver for CudarcDriver {
    fn attrs(&self) -> DeviceAttrs {
        self.attrs
    }
    fn name(&self) -> String {
        self.name.clone()
    }
    fn alloc(&self, bytes: usize) -> Result<DevPtr> {
        self.not_capturing("cuMemAlloc")?;
        self.bind()?;
        self.counters.update(|c| {
            c.allocs += 1;
            c.alloc_bytes += bytes as u64;
        });
        // SAFETY: a plain allocation of at least one byte in the bound context.
        unsafe { dres::malloc_sync(bytes.max(1)) }.map_err(|e| derr(&format!("allocating {bytes} bytes on the GPU"), e))
    }
    unsafe fn free(&self, ptr: DevPtr) {
        if self.bind().is_ok() {
            // SAFETY: the caller guarantees `ptr` came from `alloc` and is not used again; pending work on
            // the stream that uses it completes first (cuMemFree synchronizes).
            let _ = unsafe { dres::free_sync(ptr) };
        }
    }
    fn memset_zero(&self, dst: DevPtr, bytes: usize) -> Result<()> {
        self.bind()?;
        // SAFETY: `dst` addresses at least `bytes` bytes of a live allocation (callers use views
        // checked against their buffers).
        unsafe { dres::memset_d8_async(dst, 0, bytes, self.stream.0) }.map_err(|e| derr("cuMemsetD8Async", e))
    }
    fn htod(&self, dst: DevPtr, src: &[u8]) -> Result<()> {
        self.not_capturing("cuMemcpyHtoD")?;
        self.bind()?;
        self.counters.update(|c| c.htod_bytes += src.len() as u64);
        // SAFETY: as above; `src` is pageable memory, which the driver stages before returning, so
        // it may be freed afterwards.
        unsafe { dres::memcpy_htod_async(dst, src, self.stream.0) }.map_err(|e| derr("cuMemcpyHtoDAsync", e))
    }
    fn dtoh(&self, dst: &mut [u8], src: DevPtr) -> Result<()> {
        self.not_capturing("cuMemcpyDtoH")?;
        self.bind()?;
        self.counters.update(|c| {
            c.host_syncs += 1;
            c.dtoh_bytes += dst.len() as u64;
        });
        // SAFETY: as above; the stream is synchronized before `dst` is used.
        unsafe { dres::memcpy_dtoh_async(dst, src, self.stream.0) }.map_err(|e| derr("cuMemcpyDtoHAsync", e))?;
        // SAFETY: the driver's own stream.
        unsafe { dres::stream::synchronize(self.stream.0) }.map_err(|e| derr("cuStreamSynchronize", e))
    }
    fn dtod(&self, dst: DevPtr, src: DevPtr, bytes: usize) -> Result<()> {
        self.bind()?;
        // SAFETY: both ranges lie inside live allocations (checked views).
        unsafe { dres::memcpy_dtod_async(dst, src, bytes, self.stream.0) }.map_err(|e| derr("cuMemcpyDtoDAsync", e))
    }
    unsafe fn launch(
        &self,
        family: &str,
        kernel: &str,
        dims: LaunchDims,
        params: &mut [*mut c_void],
        _sizes: &[usize],
    ) -> Result<()> {
        // SAFETY: forwarded from the caller.
        unsafe { self.launch_on_stream(family, kernel, dims, params, false) }
    }
    fn synchronize(&self) -> Result<()> {
        self.not_capturing("cuStreamSynchronize")?;
        self.bind()?;
        self.counters.update(|c| c.host_syncs += 1);
        // SAFETY: the driver's own stream.
        unsafe { dres::stream::synchronize(self.stream.0) }.map_err(|e| derr("cuStreamSynchronize", e))
    }
    fn counters(&self) -> &Counters {
        &self.counters
    }
    fn max_active_blocks_per_sm(
        &self,
        family: &str,
        kernel: &str,
        block_threads: u32,
        _shared_bytes: usize,
    ) -> Result<u32> {
        let f = self.function(family, kernel)?;
        self.bind()?;
        // SAFETY: a loaded function; the kernels use static shared memory only, which the driver counts
        // itself, so no dynamic shared memory is passed.
        let n =
            unsafe { dres::occupancy::max_active_block_per_multiprocessor(f.cu_function(), block_threads as i32, 0) }
                .map_err(|e| derr(&format!("cuOccupancyMaxActiveBlocksPerMultiprocessor({kernel})"), e))?;
        Ok(n.max(0) as u32)
    }
    unsafe fn launch_cooperative(
        &self,
        family: &str,
        kernel: &str,
        dims: LaunchDims,
        params: &mut [*mut c_void],
        _sizes: &[usize],
    ) -> Result<()> {
        let threads = dims.block.0 * dims.block.1 * dims.block.2;
        let per_sm = self.max_active_blocks_per_sm(family, kernel, threads, 0)?;
        let blocks = dims.grid.0 as u64 * dims.grid.1 as u64 * dims.grid.2 as u64;
        let most = per_sm as u64 * self.attrs.sm_count as u64;
        if blocks > most {
            return Err(Error::Device(format!(
                "{kernel}: a cooperative grid of {blocks} blocks of {threads} threads cannot be co-resident on \
                 {} ({} SMs x {per_sm} blocks = {most} at most): launch fewer blocks",
                self.name, self.attrs.sm_count
            )));
        }
        // SAFETY: forwarded from the caller.
        unsafe { self.launch_on_stream(family, kernel, dims, params, true) }
    }
    fn begin_capture(&self) -> Result<()> {
        let mut cap = self.capturing();
        if cap.is_some() {
            return Err(Error::Device("begin_capture: a capture is already in progress".into()));
        }
        self.bind()?;
        let mode = dsys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL;
        // SAFETY: the driver's own stream, not capturing (checked above).
        unsafe { dres::stream::begin_capture(self.stream.0, mode) }.map_err(|e| derr("cuStreamBeginCapture", e))?;
        *cap = Some(0);
        Ok(())
    }
    fn end_capture(&self) -> Result<GraphId> {
        let kernels =
            self.capturing().take().ok_or_else(|| Error::Device("end_capture: no capture in progress".into()))?;
        self.bind()?;
        // SAFETY: the stream is capturing (begun by begin_capture).
        let graph = unsafe { dres::stream::end_capture(self.stream.0) }.map_err(|e| derr("cuStreamEndCapture", e))?;
        // SAFETY: a graph just captured.
        let exec = unsafe { dres::graph::instantiate(graph, dsys::CUgraphInstantiate_flags(0)) }
            .map_err(|e| derr("cuGraphInstantiate", e))?;
        let id = self.next_graph.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.graphs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id, (Graph(graph, exec), kernels));
        Ok(GraphId(id))
    }
    fn replay(&self, graph: GraphId) -> Result<()> {
        self.not_capturing("cuGraphLaunch")?;
        self.bind()?;
        let graphs = self.graphs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (g, kernels) = graphs.get(&graph.0).ok_or_else(|| Error::Device(format!("no CUDA graph {}", graph.0)))?;
        // SAFETY: an instantiated graph of this driver, launched on its stream.
        unsafe { dres::graph::launch(g.1, self.stream.0) }.map_err(|e| derr("cuGraphLaunch", e))?;
        let k = *kernels;
        self.counters.update(|c| {
            c.graph_replays += 1;
            c.graph_kernels += k;
            c.launches += k;
        });
        Ok(())
    }
    fn destroy_graph(&self, graph: GraphId) {
        let g = self.graphs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&graph.0);
        if let (Some((g, _)), Ok(())) = (g, self.bind()) {
            // SAFETY: created by end_capture and removed from the table, so destroyed once.
            unsafe {
                let _ = dres::graph::exec_destroy(g.1);
                let _ = dres::graph::destroy(g.0);
            }
        }
    }
}
