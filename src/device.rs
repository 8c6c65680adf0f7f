//! Device selection: run generic code on the backend a flag names.

use crate::backend::Backend;
use crate::backend::cpu::Cpu;
use crate::backend::cuda::Cuda;
use crate::backend::cuda::cudarc_driver::CudarcDriver;
use crate::backend::cuda::emu::EmuDriver;
use crate::error::Result;
use serde::{Deserialize, Serialize};

/// Where to run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// The CPU backend (f32, multi-threaded).
    #[default]
    Cpu,
    /// The CUDA backend on GPU 0 (kernels compiled by NVRTC at first use).
    Cuda,
    /// The CUDA backend's kernels executed on the host by the emulation harness (slow; for debugging).
    /// Its device name, e.g. `emu (host CPU, 2 workers, resume order in-order)`, gives the worker
    /// threads running blocks and the order in which the emulator resumes a block's threads at each
    /// barrier and runs a grid's blocks: `in-order` is ascending index (the kernel tests also run
    /// reversed and random orders, so that a missing `__syncthreads()` changes a result).
    Emu,
}

/// Work that is generic over the backend: write it once, run it on the device a flag names with
/// [`dispatch`].
///
/// ```
/// use ortho_rnn::prelude::*;
/// struct Name;
/// impl BackendJob for Name {
///     type Out = String;
///     fn run<B: Backend>(self, b: &B) -> Result<String> { Ok(b.name()) }
/// }
/// assert!(dispatch(DeviceKind::Cpu, 1, Name)?.starts_with("cpu"));
/// # Ok::<(), ortho_rnn::Error>(())
/// ```
pub trait BackendJob {
    /// What the job returns.
    type Out;
    /// Runs the job on `b`.
    fn run<B: Backend>(self, b: &B) -> Result<Self::Out>;
}

/// Runs `job` on the backend `device` names; `threads` caps CPU threads (0: all cores; under `emu`,
/// the number of worker threads running blocks).
pub fn dispatch<J: BackendJob>(device: DeviceKind, threads: usize, job: J) -> Result<J::Out> {
    match device {
        DeviceKind::Cpu => {
            let b: Cpu<f32> = if threads == 0 { Cpu::default() } else { Cpu::new(threads) };
            job.run(&b)
        }
        DeviceKind::Cuda => job.run(&Cuda::new(CudarcDriver::new(0)?)?),
        DeviceKind::Emu => {
            let workers =
                if threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { threads };
            job.run(&Cuda::new(EmuDriver::new().with_workers(workers)?)?)
        }
    }
}
