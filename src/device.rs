//! Device selection: run generic code on the backend a flag names.

use crate::backend::cpu::Cpu;
use crate::backend::cuda::Cuda;
use crate::backend::cuda::cudarc_driver::CudarcDriver;
use crate::backend::cuda::emu::EmuDriver;
use crate::backend::{Backend, Precision};
use crate::error::{Error, Result};
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
    Emu,
}

/// Work that is generic over the backend.
pub trait BackendJob {
    /// What the job returns.
    type Out;
    /// Runs the job on `b`.
    fn run<B: Backend>(self, b: &B) -> Result<Self::Out>;
}

/// Runs `job` on the backend `device` names; `threads` caps CPU threads (0: all cores; under `emu`,
/// the number of worker threads running blocks).
pub fn dispatch<J: BackendJob>(device: DeviceKind, threads: usize, job: J) -> Result<J::Out> {
    dispatch_with_precision(device, threads, Precision::Fp32, job)
}

/// [`dispatch`] with the network's products computed in `precision` (TF32 / BF16 need the tensor cores
/// of `cuda` or their emulation under `emu`; the CPU backend computes in f32 only and refuses them).
pub fn dispatch_with_precision<J: BackendJob>(
    device: DeviceKind,
    threads: usize,
    precision: Precision,
    job: J,
) -> Result<J::Out> {
    if device == DeviceKind::Cpu && precision != Precision::Fp32 {
        return Err(Error::Inapplicable {
            flag: "--precision",
            context: format!("--device cpu with --precision {precision}"),
            hint: "TF32 and BF16 are tensor-core modes of --device cuda (and emu, which emulates them); \
                   the CPU backend computes in f32: use --precision fp32"
                .into(),
        });
    }
    match device {
        DeviceKind::Cpu => {
            let b: Cpu<f32> = if threads == 0 { Cpu::default() } else { Cpu::new(threads) };
            job.run(&b)
        }
        DeviceKind::Cuda => job.run(&Cuda::new(CudarcDriver::new(0)?)?.with_precision(precision)),
        DeviceKind::Emu => {
            let workers =
                if threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { threads };
            job.run(&Cuda::new(EmuDriver::new().with_workers(workers)?)?.with_precision(precision))
        }
    }
}
