//! The real-GPU driver: cudarc's driver API for memory and launches, NVRTC for kernels.
//!
//! cudarc loads `libcuda` and `libnvrtc` by name at first use and **panics** when they are missing,
//! so [`CudarcDriver::new`] checks `is_culib_present()` first and returns a clear error naming what is
//! missing (libcuda, a device, or libnvrtc). cudarc finds libraries by name only: `LD_LIBRARY_PATH`
//! must contain the NVRTC wheel's `lib` folder before the process starts, and NVRTC is given the
//! runtime wheel's `include` folder for `cuda_fp16.h` (see [`nvrtc_include_paths`]).
//!
//! Kernel families are compiled the first time one of their kernels is launched and cached per
//! driver (one per device): to a CUBIN for the device's own architecture (`sm_XY`, through NVRTC's
//! C API), which needs no JIT and loads on drivers of an older CUDA minor version; if that fails
//! to compile or load, to PTX (`compute_XY`) for the driver to JIT. When both fail the error names
//! the driver's CUDA version (`cuDriverGetVersion`), the NVRTC version, and what to install.
//!
//! Launches are asynchronous: a kernel that faults is reported by a later call. `ORTHO_RNN_SYNC=1`
//! (read by [`super::Cuda::new`]) synchronizes after every launch, so the error names the kernel.
//!
//! All work goes to one stream the driver creates (not the legacy default stream), so that it can be
//! captured into a CUDA graph (`cuStreamBeginCapture`, instantiated once, replayed with
//! `cuGraphLaunch`); `dtoh` and `synchronize` synchronize that stream.

use super::driver::{Counters, DevPtr, DeviceAttrs, Driver, GraphId, LaunchDims};
use super::kernels;
use crate::error::{Error, Result};
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, result as dres, sys as dsys};
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

/// Folders holding `cuda_fp16.h`, `crt/mma.h` or `nv/target`: `$ORTHO_CUDA_INCLUDE`, `$CUDA_HOME/include`,
/// the pip wheels `nvidia-cuda-runtime-cu12`, `nvidia-cuda-nvcc-cu12` and `nvidia-cuda-cccl-cu12` next to
/// the NVRTC library on `LD_LIBRARY_PATH`, `/usr/local/cuda/include`. (`<mma.h>`, which the tensor-core
/// GEMM kernels include, is in the runtime wheel but includes `crt/mma.h`, which only the nvcc wheel or a
/// toolkit has; `cooperative_groups.h` includes `nv/target`, which the cccl wheel brings.)
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
                cands.push(nvidia.join("cuda_nvcc").join("include"));
                cands.push(nvidia.join("cuda_cccl").join("include"));
            }
        }
    }
    cands.push("/usr/local/cuda/include".into());
    let mut out: Vec<String> = Vec::new();
    for c in cands {
        if c.join("cuda_fp16.h").exists()
            || c.join("crt").join("mma.h").exists()
            || c.join("nv").join("target").exists()
        {
            let s = c.to_string_lossy().into_owned();
            if !out.contains(&s) {
                out.push(s);
            }
        }
    }
    out
}

/// The kernel family's source and NVRTC's options for `arch` (`sm_XY` or `compute_XY`).
fn nvrtc_input(family: &str, arch: &str) -> Result<(String, Vec<String>)> {
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
    let mut options = vec![format!("--gpu-architecture={arch}")];
    options.extend(include_paths.iter().map(|p| format!("--include-path={p}")));
    options.extend(kernels::NVRTC_OPTIONS.iter().map(|s| s.to_string()));
    Ok((src, options))
}

/// What NVRTC produced: PTX (text, `compute_XY`) or a CUBIN (machine code, `sm_XY`).
enum Image {
    Ptx(String),
    Cubin(Vec<u8>),
}

/// Compiles `family` for `arch` through NVRTC's C API: a CUBIN for `sm_XY`, PTX for `compute_XY`.
fn nvrtc_compile(family: &str, arch: &str) -> Result<Image> {
    use cudarc::nvrtc::{result as nres, sys as nsys};
    let (src, options) = nvrtc_input(family, arch)?;
    let file = format!("kernels/{family}.cu");
    let c_src = std::ffi::CString::new(src)
        .map_err(|_| Error::KernelCompile { file: file.clone(), log: "the source holds a NUL byte".into() })?;
    let c_name = std::ffi::CString::new(format!("{family}.cu")).unwrap_or_default();
    let prog = nres::create_program(&c_src, Some(&c_name)).map_err(|e| derr("nvrtcCreateProgram", e))?;
    // SAFETY: `prog` was just created and is destroyed exactly once, after `output` (whose early
    // returns stay inside the closure); every buffer handed to NVRTC is sized by the matching query.
    unsafe {
        let output = || -> Result<Image> {
            if let Err(e) = nres::compile_program(prog, &options) {
                let log = nres::get_program_log(prog)
                    .map(|l| std::ffi::CStr::from_ptr(l.as_ptr()).to_string_lossy().into_owned())
                    .unwrap_or_default();
                return Err(Error::KernelCompile { file: file.clone(), log: format!("{e:?} for {arch}: {log}") });
            }
            if arch.starts_with("sm_") {
                let mut size = 0usize;
                nsys::nvrtcGetCUBINSize(prog, &mut size).result().map_err(|e| derr("nvrtcGetCUBINSize", e))?;
                let mut bin = vec![0u8; size];
                nsys::nvrtcGetCUBIN(prog, bin.as_mut_ptr().cast()).result().map_err(|e| derr("nvrtcGetCUBIN", e))?;
                return Ok(Image::Cubin(bin));
            }
            let ptx = nres::get_ptx(prog).map_err(|e| derr("nvrtcGetPTX", e))?;
            Ok(Image::Ptx(std::ffi::CStr::from_ptr(ptx.as_ptr()).to_string_lossy().into_owned()))
        };
        let result = output();
        let _ = nres::destroy_program(prog);
        result
    }
}

/// Compiles a kernel family to PTX for `arch` (`"sm_90"` or `"compute_90"`: the virtual
/// architecture either way) with the production options.
pub fn compile_family(family: &str, arch: &str) -> Result<String> {
    let virt = arch.replace("sm_", "compute_");
    match nvrtc_compile(family, &virt)? {
        Image::Ptx(ptx) => Ok(ptx),
        Image::Cubin(_) => Err(Error::Device(format!("NVRTC returned a CUBIN for {virt}"))),
    }
}

/// Compiles a kernel family to a CUBIN for `arch` (e.g. `"sm_90"`): machine code, which a driver
/// of an older CUDA minor version loads as long as it knows the architecture (PTX from a newer
/// NVRTC, by contrast, needs a driver at least as new to JIT it).
pub fn compile_family_cubin(family: &str, arch: &str) -> Result<Vec<u8>> {
    match nvrtc_compile(family, arch)? {
        Image::Cubin(bin) => Ok(bin),
        Image::Ptx(_) => Err(Error::Device(format!("NVRTC returned PTX for {arch}"))),
    }
}

/// The architectures NVRTC compiles for (`nvrtcGetSupportedArchs`, e.g. `[75, 80, ..., 90, 100, 120]`).
pub fn nvrtc_supported_archs() -> Vec<i32> {
    use cudarc::nvrtc::sys as nsys;
    if !nvrtc_present() {
        return Vec::new();
    }
    let mut count = 0;
    // SAFETY: libnvrtc is present; the first call writes one int, the second `count` ints.
    unsafe {
        if nsys::nvrtcGetNumSupportedArchs(&mut count) != nsys::nvrtcResult::NVRTC_SUCCESS || count <= 0 {
            return Vec::new();
        }
        let mut archs = vec![0; count as usize];
        if nsys::nvrtcGetSupportedArchs(archs.as_mut_ptr()) != nsys::nvrtcResult::NVRTC_SUCCESS {
            return Vec::new();
        }
        archs
    }
}

/// `sm_XY` for compute capability `cc`: the device's own architecture when NVRTC supports it,
/// else the newest one NVRTC supports below it (whose PTX the driver can JIT for the device).
pub fn nvrtc_arch_for(cc: (i32, i32)) -> String {
    let own = cc.0 * 10 + cc.1;
    let best = nvrtc_supported_archs().into_iter().filter(|&a| a <= own).max().unwrap_or(own);
    format!("sm_{best}")
}

/// The CUDA version the NVIDIA driver supports `(major, minor)` (`cuDriverGetVersion`), if libcuda loads.
pub fn driver_cuda_version() -> Option<(i32, i32)> {
    if !libcuda_present() {
        return None;
    }
    let mut v = 0;
    // SAFETY: libcuda is present (checked above); cuDriverGetVersion writes one int and needs no context.
    let ok = unsafe { dsys::cuDriverGetVersion(&mut v) } == dsys::CUresult::CUDA_SUCCESS;
    ok.then_some((v / 1000, (v % 1000) / 10))
}

/// Why a module did not load, with the driver's and NVRTC's versions and what to do.
pub fn load_failure_message(family: &str, cubin_err: &str, ptx_err: &str) -> String {
    let show = |v: Option<(i32, i32)>| v.map_or("unknown".to_string(), |(a, b)| format!("{a}.{b}"));
    let (drv, nvrtc) = (driver_cuda_version(), nvrtc_version());
    let advice = match (drv, nvrtc) {
        (Some(d), Some(n)) if d < n => format!(
            "the driver supports CUDA {} but NVRTC is {}: PTX from a newer NVRTC cannot be JIT-compiled by an \
             older driver. Install the NVRTC wheel of the driver's version (pip install \
             \"nvidia-cuda-nvrtc-cu12=={}.{}.*\") or update the NVIDIA driver",
            show(drv),
            show(nvrtc),
            d.0,
            d.1
        ),
        _ => "check that the GPU's architecture is supported by this NVRTC (nvrtc --list-gpu-arch) and that \
              the driver and NVRTC wheel belong to the same CUDA major version"
            .to_string(),
    };
    format!(
        "loading kernels/{family}.cu failed as a CUBIN ({cubin_err}) and as PTX ({ptx_err}); driver CUDA \
         version {}, NVRTC {}: {advice}",
        show(drv),
        show(nvrtc)
    )
}

/// A GPU device.
pub struct CudarcDriver {
    ctx: Arc<CudaContext>,
    name: String,
    /// `sm_XY` the kernels are compiled for.
    arch: String,
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

/// Appended to errors of calls that wait for earlier launches.
const FAULT_HINT: &str = " (if a kernel launched before this call faulted, this is where it shows: run with \
                          ORTHO_RNN_SYNC=1 to synchronize after every launch and name the kernel)";

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
        if major < 7 {
            return Err(Error::Device(format!(
                "compute capability {major}.{minor} is older than the kernels support (7.0)"
            )));
        }
        let arch = nvrtc_arch_for((major, minor));
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
                let m = self.load_family(family)?;
                mods.insert(family.to_string(), m.clone());
                m
            }
        };
        let f = module.load_function(kernel).map_err(|e| derr(&format!("kernel {kernel} in {family}.cu"), e))?;
        funcs.insert(kernel.to_string(), f.clone());
        Ok(f)
    }

    /// Compiles and loads `family`: a CUBIN for the device's architecture, or, when that does not
    /// compile or load (an architecture newer than NVRTC's, say), PTX for the driver to JIT.
    fn load_family(&self, family: &str) -> Result<Arc<CudaModule>> {
        let cubin_err = match compile_family_cubin(family, &self.arch) {
            Ok(bin) => match self.ctx.load_module(cudarc::nvrtc::Ptx::from_binary(bin)) {
                Ok(m) => return Ok(m),
                Err(e) => format!("{e:?}"),
            },
            Err(e) => e.to_string(),
        };
        let ptx_err = match compile_family(family, &self.arch) {
            Ok(ptx) => match self.ctx.load_module(cudarc::nvrtc::Ptx::from_src(ptx)) {
                Ok(m) => return Ok(m),
                Err(e) => format!("{e:?}"),
            },
            Err(e) => e.to_string(),
        };
        Err(Error::Device(load_failure_message(family, &cubin_err, &ptx_err)))
    }

    /// Makes this device's context current on the calling thread (for libraries such as cuBLAS
    /// that use the current context).
    pub fn bind_context(&self) -> Result<()> {
        self.bind()
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
        unsafe { dres::memcpy_dtoh_async(dst, src, self.stream.0) }
            .map_err(|e| derr(&format!("cuMemcpyDtoHAsync{FAULT_HINT}"), e))?;
        // SAFETY: the driver's own stream.
        unsafe { dres::stream::synchronize(self.stream.0) }
            .map_err(|e| derr(&format!("cuStreamSynchronize{FAULT_HINT}"), e))
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
        unsafe { dres::stream::synchronize(self.stream.0) }
            .map_err(|e| derr(&format!("cuStreamSynchronize{FAULT_HINT}"), e))
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
