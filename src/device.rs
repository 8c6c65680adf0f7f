//! Device selection: run generic code on the backend a flag names.

use crate::backend::Backend;
use crate::backend::cpu::Cpu;
use crate::error::Result;
use serde::{Deserialize, Serialize};

/// Where to run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// The CPU backend (f32, multi-threaded).
    #[default]
    Cpu,
}

/// Work that is generic over the backend.
pub trait BackendJob {
    /// What the job returns.
    type Out;
    /// Runs the job on `b`.
    fn run<B: Backend>(self, b: &B) -> Result<Self::Out>;
}

/// Runs `job` on the backend `device` names; `threads` caps CPU threads (0: all cores).
pub fn dispatch<J: BackendJob>(device: DeviceKind, threads: usize, job: J) -> Result<J::Out> {
    match device {
        DeviceKind::Cpu => {
            let b: Cpu<f32> = if threads == 0 { Cpu::default() } else { Cpu::new(threads) };
            job.run(&b)
        }
    }
}
