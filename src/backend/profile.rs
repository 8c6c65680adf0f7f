//! Counters of device activity and a roofline prediction of the time they would take on a named GPU.
//!
//! The CUDA drivers (real and emulated) count, from their creation on: kernels run (a graph replay
//! counts every kernel it runs), graph replays, cooperative launches, host synchronizations (a copy to
//! the host or a stream synchronization: every point where the host waits for the device), allocations
//! and their bytes, and bytes copied host to device and device to host. The launch code adds the
//! arithmetic of each op from its shape (`2 m n k` for a product, `2 T B n^2` for a recurrence pass,
//! `2 n^3 / 3` for an LU factorization, ...), an estimate of the device-memory bytes it moves (each
//! operand read once, each result written once), and the grid-wide barriers it executes. The
//! difference of two snapshots ([`Profile::since`]) is the profile of what ran in between.
//!
//! # Prediction
//! [`Profile::predict_seconds`] is a lower-bound model, not a measurement:
//!
//! `t = sum_ops max(flops_i / P, bytes_i / BW) + L_d (direct launches) + L_g (kernels run by graph
//! replays) + G (graph replays) + S (host syncs) + Y (grid barriers) + (host bytes) / link`,
//!
//! with `P` the FP32 (non-tensor-core) peak, since every kernel here computes in FP32 on the SIMT
//! cores, and `BW` the HBM bandwidth. The per-op roofline term is accumulated for every GPU of
//! [`GpuModel::ALL`] as the ops are counted, so any of them can be asked afterwards.
//!
//! Peak rates (datasheets): H100 SXM5 67 TFLOP/s FP32, 3.35 TB/s HBM3 (NVIDIA H100 Tensor Core GPU
//! datasheet); H200 SXM 67 TFLOP/s FP32 (the same GH100 die), 4.8 TB/s HBM3e (NVIDIA H200 product
//! brief); A100 SXM4 80 GB 19.5 TFLOP/s FP32, 2.039 TB/s HBM2e (NVIDIA A100 datasheet). Host link:
//! PCIe Gen5 x16 (64 GB/s nominal) for H100/H200, Gen4 x16 (32 GB/s) for A100, at 80 % efficiency.
//!
//! Fixed costs (approximate, from published measurements; treat the predicted times as estimates):
//! - `L_d = 3 us` per directly launched kernel: the host-side cost of `cuLaunchKernel` that bounds a
//!   stream of tiny kernels ("Getting Started with CUDA Graphs", NVIDIA Technical Blog, 2019: a
//!   2.9 us kernel took 3.8 us per launch when launched back to back from a stream);
//! - `L_g = 1 us` per kernel inside a replayed graph (same source: 3.4 us per kernel with graphs,
//!   i.e. about 0.5 us above the kernel; 1 us leaves room for node dependencies) and `G = 5 us` per
//!   graph launch;
//! - `S = 8 us` per host synchronization (a small device-to-host copy and the round trip; same
//!   source: 9.6 us per kernel when every launch was followed by a synchronization);
//! - `Y = 2 us` per grid-wide barrier of a cooperative kernel on a full GPU (an estimate in the
//!   range Zhang et al., "A Study of Single and Multi-device Synchronization Methods in Nvidia
//!   GPUs", IPDPS 2020, measured for `grid.sync()` on V100).

use serde::{Deserialize, Serialize};

/// A GPU the prediction knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GpuModel {
    /// NVIDIA H100 SXM5.
    H100,
    /// NVIDIA H200 SXM.
    H200,
    /// NVIDIA A100 SXM4 80 GB.
    A100,
}

impl GpuModel {
    /// Every known GPU, in the order of [`Profile::roofline_s`].
    pub const ALL: [GpuModel; 3] = [GpuModel::H100, GpuModel::H200, GpuModel::A100];

    /// Parses `h100`, `h200`, `a100` (case-insensitive).
    pub fn parse(s: &str) -> Option<GpuModel> {
        match s.to_ascii_lowercase().as_str() {
            "h100" => Some(GpuModel::H100),
            "h200" => Some(GpuModel::H200),
            "a100" => Some(GpuModel::A100),
            _ => None,
        }
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            GpuModel::H100 => "h100",
            GpuModel::H200 => "h200",
            GpuModel::A100 => "a100",
        }
    }

    /// FP32 (SIMT) peak, flop/s.
    pub fn fp32_flops(self) -> f64 {
        match self {
            GpuModel::H100 | GpuModel::H200 => 67e12,
            GpuModel::A100 => 19.5e12,
        }
    }

    /// Device-memory bandwidth, bytes/s.
    pub fn mem_bw(self) -> f64 {
        match self {
            GpuModel::H100 => 3.35e12,
            GpuModel::H200 => 4.8e12,
            GpuModel::A100 => 2.039e12,
        }
    }

    /// Effective host link bandwidth, bytes/s (80 % of the PCIe nominal rate).
    pub fn link_bw(self) -> f64 {
        match self {
            GpuModel::H100 | GpuModel::H200 => 0.8 * 64e9,
            GpuModel::A100 => 0.8 * 32e9,
        }
    }

    fn index(self) -> usize {
        match self {
            GpuModel::H100 => 0,
            GpuModel::H200 => 1,
            GpuModel::A100 => 2,
        }
    }
}

/// Seconds per directly launched kernel (see the module docs).
pub const LAUNCH_S: f64 = 3e-6;
/// Seconds per kernel run by a graph replay.
pub const GRAPH_KERNEL_S: f64 = 1e-6;
/// Seconds per graph launch.
pub const GRAPH_LAUNCH_S: f64 = 5e-6;
/// Seconds per host synchronization.
pub const SYNC_S: f64 = 8e-6;
/// Seconds per grid-wide barrier of a cooperative kernel.
pub const GRID_BARRIER_S: f64 = 2e-6;

/// Counts of device activity (see the module docs). Monotonic from the driver's creation; subtract
/// two snapshots with [`Profile::since`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Kernels run, directly or by graph replays.
    pub launches: u64,
    /// Of those, kernels run by graph replays.
    pub graph_kernels: u64,
    /// Graph replays.
    pub graph_replays: u64,
    /// Cooperative launches (a grid that is co-resident, with grid-wide barriers).
    pub cooperative_launches: u64,
    /// Points where the host waited for the device (copies to the host, synchronizations).
    pub host_syncs: u64,
    /// Device allocations.
    pub allocs: u64,
    /// Bytes allocated.
    pub alloc_bytes: u64,
    /// Bytes copied host to device.
    pub htod_bytes: u64,
    /// Bytes copied device to host.
    pub dtoh_bytes: u64,
    /// Floating-point operations of the counted ops, from their shapes.
    pub flops: f64,
    /// Estimated device-memory bytes of the counted ops.
    pub dram_bytes: f64,
    /// Grid-wide barriers executed by cooperative kernels.
    pub grid_barriers: u64,
    /// Sum over counted ops of `max(flops / peak, bytes / bandwidth)`, per [`GpuModel::ALL`].
    pub roofline_s: [f64; 3],
}

impl Profile {
    /// Adds one op's work: `flops` floating-point operations moving `bytes` bytes of device memory.
    pub fn add_work(&mut self, flops: f64, bytes: f64) {
        self.flops += flops;
        self.dram_bytes += bytes;
        for g in GpuModel::ALL {
            self.roofline_s[g.index()] += (flops / g.fp32_flops()).max(bytes / g.mem_bw());
        }
    }

    /// `self - earlier`, field by field.
    pub fn since(&self, earlier: &Profile) -> Profile {
        let mut roofline_s = self.roofline_s;
        for (r, e) in roofline_s.iter_mut().zip(earlier.roofline_s) {
            *r -= e;
        }
        Profile {
            launches: self.launches - earlier.launches,
            graph_kernels: self.graph_kernels - earlier.graph_kernels,
            graph_replays: self.graph_replays - earlier.graph_replays,
            cooperative_launches: self.cooperative_launches - earlier.cooperative_launches,
            host_syncs: self.host_syncs - earlier.host_syncs,
            allocs: self.allocs - earlier.allocs,
            alloc_bytes: self.alloc_bytes - earlier.alloc_bytes,
            htod_bytes: self.htod_bytes - earlier.htod_bytes,
            dtoh_bytes: self.dtoh_bytes - earlier.dtoh_bytes,
            flops: self.flops - earlier.flops,
            dram_bytes: self.dram_bytes - earlier.dram_bytes,
            grid_barriers: self.grid_barriers - earlier.grid_barriers,
            roofline_s,
        }
    }

    /// `self + other`, field by field.
    pub fn plus(&self, o: &Profile) -> Profile {
        let mut roofline_s = self.roofline_s;
        for (r, e) in roofline_s.iter_mut().zip(o.roofline_s) {
            *r += e;
        }
        Profile {
            launches: self.launches + o.launches,
            graph_kernels: self.graph_kernels + o.graph_kernels,
            graph_replays: self.graph_replays + o.graph_replays,
            cooperative_launches: self.cooperative_launches + o.cooperative_launches,
            host_syncs: self.host_syncs + o.host_syncs,
            allocs: self.allocs + o.allocs,
            alloc_bytes: self.alloc_bytes + o.alloc_bytes,
            htod_bytes: self.htod_bytes + o.htod_bytes,
            dtoh_bytes: self.dtoh_bytes + o.dtoh_bytes,
            flops: self.flops + o.flops,
            dram_bytes: self.dram_bytes + o.dram_bytes,
            grid_barriers: self.grid_barriers + o.grid_barriers,
            roofline_s,
        }
    }

    /// The predicted time of this profile on `gpu`, in seconds (see the module docs).
    pub fn predict_seconds(&self, gpu: GpuModel) -> f64 {
        let direct = self.launches - self.graph_kernels;
        self.roofline_s[gpu.index()]
            + direct as f64 * LAUNCH_S
            + self.graph_kernels as f64 * GRAPH_KERNEL_S
            + self.graph_replays as f64 * GRAPH_LAUNCH_S
            + self.host_syncs as f64 * SYNC_S
            + self.grid_barriers as f64 * GRID_BARRIER_S
            + (self.htod_bytes + self.dtoh_bytes) as f64 / gpu.link_bw()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roofline_takes_the_slower_of_compute_and_memory_per_op() {
        let mut p = Profile::default();
        // 67 GFLOP at 67 TFLOP/s = 1 ms; 1 GB at 3.35 TB/s = 0.3 ms: compute-bound on an H100.
        p.add_work(67e9, 1e9);
        assert!((p.roofline_s[0] - 1e-3).abs() < 1e-12);
        // 4.8 GB at 4.8 TB/s = 1 ms on an H200, with negligible flops: memory-bound.
        let mut q = Profile::default();
        q.add_work(1.0, 4.8e9);
        assert!((q.predict_seconds(GpuModel::H200) - 1e-3).abs() < 1e-9);
    }

    #[test]
    fn fixed_costs_and_differences() {
        let a = Profile { launches: 10, host_syncs: 1, ..Default::default() };
        let b = Profile { launches: 30, graph_kernels: 10, graph_replays: 1, host_syncs: 3, ..a };
        let d = b.since(&a);
        assert_eq!((d.launches, d.graph_kernels, d.host_syncs), (20, 10, 2));
        let want = 10.0 * LAUNCH_S + 10.0 * GRAPH_KERNEL_S + GRAPH_LAUNCH_S + 2.0 * SYNC_S;
        assert!((d.predict_seconds(GpuModel::A100) - want).abs() < 1e-12);
        assert_eq!(GpuModel::parse("H100"), Some(GpuModel::H100));
        assert_eq!(GpuModel::parse("v100"), None);
    }
}
