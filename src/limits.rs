//! Limits: the largest value each numeric flag may take, and what this machine can give a run
//! (available host memory, the GPU's free memory, how many emulator workers it can start).
//!
//! The flag bounds keep every size product in range: with `hidden <= 2^16`, `T <= 2^20` and
//! `batch <= 2^20`, a tensor of `T * batch * 4 hidden` elements stays below `2^58`, so the memory
//! estimate ([`crate::train::memory`]) never overflows a `u64` (it uses checked arithmetic anyway),
//! and nothing that is allocated can be larger than the estimate says.

use crate::device::DeviceKind;
use crate::error::{Error, Result};

/// Largest `--hidden`.
pub const MAX_HIDDEN: usize = 1 << 16;
/// Largest `--seq-len` (the copy task's delay; PTB's sentence length).
pub const MAX_SEQ_LEN: usize = 1 << 20;
/// Largest `--batch`.
pub const MAX_BATCH: usize = 1 << 20;
/// Largest `--iters`, `--eval-every`, `--checkpoint-every`, `--epochs x --iters-per-epoch`, `--k`.
pub const MAX_ITERS: usize = 1 << 40;
/// Largest `bench --iters` (the timings are kept in memory).
pub const MAX_BENCH_ITERS: usize = 1 << 20;
/// Largest `--max-train`.
pub const MAX_TRAIN_EXAMPLES: usize = 1 << 40;
/// Largest `--threads`.
pub const MAX_THREADS: usize = 1024;
/// Largest `experiment --seeds` (runs per cell of a sweep).
pub const MAX_SEEDS: usize = 1000;
/// Largest `experiment --jobs` and number of `--devices` entries (concurrent runs of one process).
pub const MAX_JOBS: usize = 256;
/// Largest element count of one tensor on `--device cuda` and `emu`: the kernels index with 32-bit
/// signed integers.
pub const MAX_DEVICE_ELEMENTS: u64 = i32::MAX as u64;

/// Checks `value` of `flag` against `[min, max]`.
pub fn check_range(flag: &'static str, value: usize, min: usize, max: usize) -> Result<()> {
    if value < min || value > max {
        return Err(Error::invalid(flag, value, format!("must be between {min} and {max}")));
    }
    Ok(())
}

/// Memory a run may use on a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Available {
    /// Bytes.
    pub bytes: u64,
    /// Where the number comes from, for messages (`MemAvailable in /proc/meminfo`, ...).
    pub source: String,
}

/// The memory available to a run on `device`, when it can be known: host memory for `cpu` and
/// `emu` (whose device memory is host memory), the GPU's free memory for `cuda`. `None` where the
/// number cannot be read (no `/proc/meminfo`, no CUDA driver: the device error comes later).
pub fn available_memory(device: DeviceKind) -> Option<Available> {
    match device {
        DeviceKind::Cpu | DeviceKind::Emu => host_available(),
        DeviceKind::Cuda(k) => gpu_free(k),
    }
}

/// `MemAvailable` from `/proc/meminfo`, lowered to the cgroup's remaining allowance when smaller.
pub fn host_available() -> Option<Available> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let mut best = Available { bytes: kib.saturating_mul(1024), source: "MemAvailable in /proc/meminfo".into() };
    let read = |p: &str| std::fs::read_to_string(p).ok().and_then(|s| s.trim().parse::<u64>().ok());
    if let (Some(max), Some(current)) = (read("/sys/fs/cgroup/memory.max"), read("/sys/fs/cgroup/memory.current")) {
        let left = max.saturating_sub(current);
        if left < best.bytes {
            best = Available { bytes: left, source: "the cgroup's memory.max less memory.current".into() };
        }
    }
    Some(best)
}

/// The free memory of GPU `ordinal` (`cuMemGetInfo`), when a CUDA driver and that GPU exist.
pub fn gpu_free(ordinal: usize) -> Option<Available> {
    if !crate::backend::cuda::cudarc_driver::libcuda_present() {
        return None;
    }
    let ctx = cudarc::driver::CudaContext::new(ordinal).ok()?;
    let (free, _total) = ctx.mem_get_info().ok()?;
    Some(Available { bytes: free as u64, source: format!("free memory of GPU {ordinal} (cuMemGetInfo)") })
}

/// Checks the estimate `e` of a run on `device` against the memory available there (see
/// [`crate::train::memory::check`]); a number that cannot be read skips its check.
pub fn check_memory(device: DeviceKind, e: &crate::train::memory::Estimate) -> Result<()> {
    use crate::train::memory::{Placement, check};
    let placement = match device {
        DeviceKind::Cpu => Placement::Host,
        DeviceKind::Emu => Placement::EmulatedDevice,
        DeviceKind::Cuda(_) => Placement::Gpu,
    };
    let gpu = if let DeviceKind::Cuda(k) = device { gpu_free(k) } else { None };
    check(e, placement, host_available().as_ref(), gpu.as_ref())
}

/// The most `--threads` that `device` can start here. The emulator's workers each map up to 1024
/// fiber stacks (one per thread of a block) with a guard page, two memory mappings a stack; the
/// process may hold `vm.max_map_count` mappings (65530 by default) and glibc aborts when thread
/// creation meets that limit, so the workers get at most half of it.
pub fn max_threads(device: DeviceKind) -> usize {
    match device {
        DeviceKind::Cpu | DeviceKind::Cuda(_) => MAX_THREADS,
        DeviceKind::Emu => {
            let maps = std::fs::read_to_string("/proc/sys/vm/max_map_count")
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .unwrap_or(65530);
            (maps / 2 / EMU_MAPS_PER_WORKER).clamp(1, MAX_THREADS)
        }
    }
}

/// Memory mappings one emulator worker may need: 1024 fiber stacks, each with a guard page, plus
/// its own thread stack.
const EMU_MAPS_PER_WORKER: usize = 2 * 1024 + 4;

/// Checks `--threads` for `device`.
pub fn check_threads(device: DeviceKind, threads: usize) -> Result<()> {
    let max = max_threads(device);
    if threads <= max {
        return Ok(());
    }
    let why = match device {
        DeviceKind::Emu => format!(
            "--device emu starts one worker per thread, each mapping up to 1024 fiber stacks, and this machine's \
             vm.max_map_count allows at most {max} workers; use --threads {max} or fewer (0: one per core)"
        ),
        _ => format!("must be at most {max} (0: every core)"),
    };
    Err(Error::invalid("--threads", threads, why))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_memory_is_read_and_emu_threads_are_bounded() {
        let a = host_available().expect("/proc/meminfo on Linux");
        assert!(a.bytes > 1 << 20, "{a:?}");
        let max = max_threads(DeviceKind::Emu);
        assert!((1..=MAX_THREADS).contains(&max));
        assert!(check_threads(DeviceKind::Emu, max).is_ok());
        let e = check_threads(DeviceKind::Emu, max + 1).unwrap_err().to_string();
        assert!(e.contains("--threads") && e.contains("max_map_count"), "{e}");
        assert!(check_range("--batch", 0, 1, 5).unwrap_err().to_string().contains("between 1 and 5"));
    }
}
