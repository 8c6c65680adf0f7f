//! Device selection: run generic code on the backend a flag names.
//!
//! `--device` takes `cpu`, `emu`, `cuda` (GPU 0) or `cuda:K` (GPU `K`, numbered as `ortho-rnn
//! devices` and `nvidia-smi` list them, after `CUDA_VISIBLE_DEVICES`); `--devices` a comma-separated
//! list of these (`cuda:0,cuda:1`, `emu,emu`), one concurrent job per entry.

use crate::backend::cpu::Cpu;
use crate::backend::cuda::Cuda;
use crate::backend::cuda::cudarc_driver::{self, CudarcDriver};
use crate::backend::cuda::emu::EmuDriver;
use crate::backend::{Backend, Precision};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Where to run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    /// The CPU backend (f32, multi-threaded).
    #[default]
    Cpu,
    /// The CUDA backend on GPU `K` (kernels compiled by NVRTC at first use).
    Cuda(usize),
    /// The CUDA backend's kernels executed on the host by the emulation harness (slow; for debugging).
    /// Its device name, e.g. `emu (host CPU, 2 workers, resume order in-order)`, gives the worker
    /// threads running blocks and the order in which the emulator resumes a block's threads at each
    /// barrier and runs a grid's blocks: `in-order` is ascending index (the kernel tests also run
    /// reversed and random orders, so that a missing `__syncthreads()` changes a result).
    Emu,
}

/// GPU ordinals above this are refused when parsed (no machine has that many).
const MAX_GPU_ORDINAL: usize = 1023;

impl DeviceKind {
    /// Parses `cpu`, `emu`, `cuda` (GPU 0) or `cuda:K`; `flag` names the flag in the error.
    pub fn parse_for(s: &str, flag: &'static str) -> Result<Self> {
        let t = s.trim().to_ascii_lowercase();
        let bad = |why: String| Error::invalid(flag, s, why);
        match t.as_str() {
            "cpu" => Ok(DeviceKind::Cpu),
            "emu" => Ok(DeviceKind::Emu),
            "cuda" | "gpu" => Ok(DeviceKind::Cuda(0)),
            _ => match t.strip_prefix("cuda:").or_else(|| t.strip_prefix("gpu:")) {
                Some(k) => match k.parse::<usize>() {
                    Ok(k) if k <= MAX_GPU_ORDINAL => Ok(DeviceKind::Cuda(k)),
                    _ => Err(bad(format!(
                        "`{k}` is not a GPU number; write cuda:K with K from 0 (see `ortho-rnn devices`)"
                    ))),
                },
                None => Err(bad("expected cpu, cuda, cuda:K (GPU K) or emu".into())),
            },
        }
    }

    /// Parses a comma-separated list (`cuda:0,cuda:1`, `emu,emu`, `cpu`) for `--devices`.
    pub fn parse_list(s: &str) -> Result<Vec<Self>> {
        let list: Vec<DeviceKind> =
            s.split(',').map(|d| DeviceKind::parse_for(d, "--devices")).collect::<Result<_>>()?;
        if list.len() > crate::limits::MAX_JOBS {
            return Err(Error::invalid(
                "--devices",
                s,
                format!("at most {} entries (one concurrent run each)", crate::limits::MAX_JOBS),
            ));
        }
        Ok(list)
    }

    /// True for `cuda` and `cuda:K`.
    pub fn is_cuda(self) -> bool {
        matches!(self, DeviceKind::Cuda(_))
    }

    /// Checks that GPU `K` exists (for `cuda:K`); the error names how many GPUs there are. Other
    /// devices, and a machine without a CUDA driver (whose error comes when the backend starts,
    /// naming what is missing), pass.
    pub fn check_exists(self) -> Result<()> {
        let DeviceKind::Cuda(k) = self else { return Ok(()) };
        if !cudarc_driver::libcuda_present() {
            return Ok(());
        }
        let Ok(count) = cudarc::driver::CudaContext::device_count() else { return Ok(()) };
        let count = count.max(0) as usize;
        if k < count {
            return Ok(());
        }
        let have = match count {
            0 => "no CUDA GPU".to_string(),
            1 => "1 GPU (cuda:0)".to_string(),
            n => format!("{n} GPUs (cuda:0 to cuda:{})", n - 1),
        };
        Err(Error::Device(format!(
            "--device cuda:{k}: this machine has {have}; pick one of those (`ortho-rnn devices` lists them; \
             CUDA_VISIBLE_DEVICES renumbers them from 0)"
        )))
    }
}

impl std::fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceKind::Cpu => f.write_str("cpu"),
            DeviceKind::Cuda(k) => write!(f, "cuda:{k}"),
            DeviceKind::Emu => f.write_str("emu"),
        }
    }
}

impl std::str::FromStr for DeviceKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        DeviceKind::parse_for(s, "--device")
    }
}

/// Written as its flag value (`"cpu"`, `"cuda:1"`, `"emu"`); `"cuda"` reads as `cuda:0`.
impl Serialize for DeviceKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
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
            let b: Cpu<f32> = Cpu::with_threads(threads);
            job.run(&b)
        }
        DeviceKind::Cuda(k) => {
            device.check_exists()?;
            job.run(&Cuda::new(CudarcDriver::new(k)?)?.with_precision(precision))
        }
        DeviceKind::Emu => {
            let workers =
                if threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { threads };
            job.run(&Cuda::new(EmuDriver::new().with_workers(workers)?)?.with_precision(precision))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing_and_printing() {
        for (s, d) in [
            ("cpu", DeviceKind::Cpu),
            ("emu", DeviceKind::Emu),
            ("cuda", DeviceKind::Cuda(0)),
            ("CUDA:3", DeviceKind::Cuda(3)),
            ("gpu:1", DeviceKind::Cuda(1)),
        ] {
            assert_eq!(s.parse::<DeviceKind>().unwrap(), d, "{s}");
            assert_eq!(d.to_string().parse::<DeviceKind>().unwrap(), d);
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(serde_json::from_str::<DeviceKind>(&json).unwrap(), d);
        }
        assert_eq!(serde_json::to_string(&DeviceKind::Cuda(2)).unwrap(), "\"cuda:2\"");
        assert_eq!(serde_json::from_str::<DeviceKind>("\"cuda\"").unwrap(), DeviceKind::Cuda(0));
        for bad in ["", "tpu", "cuda:", "cuda:-1", "cuda:x", "cuda:99999", "cuda:1:2"] {
            let e = bad.parse::<DeviceKind>().unwrap_err().to_string();
            assert!(e.contains("--device") && (e.contains("cuda:K") || e.contains("GPU")), "{bad}: {e}");
        }
        assert_eq!(DeviceKind::parse_list("cuda:0, cuda:1").unwrap(), vec![DeviceKind::Cuda(0), DeviceKind::Cuda(1)]);
        assert!(DeviceKind::parse_list("cpu,,cpu").unwrap_err().to_string().contains("--devices"));
    }
}
