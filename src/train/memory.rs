//! How much memory a training run needs, estimated from its specification before anything is
//! allocated, and the check against what the machine (or the GPU) has available.
//!
//! With hidden size `n`, input width `m`, output width `k`, `L` steps per sequence, batch `B`,
//! `R = L B` rows and `P` parameter elements, the device buffers (f32, 4 bytes each) are
//!
//! - parameters: value, gradient and two optimizer moments, `4 P`;
//! - BPTT activations kept for the backward pass: for an Elman cell the inputs `R m`, the
//!   pre-activations, hidden states, their gradients and the deltas `(4 R + B) n`; for the LSTM the
//!   inputs, the four gate blocks (pre- and post-activation, and their gradient) and the cell and
//!   hidden states, `R m + (15 R + 3 B) n`; the readout's logits and their gradient `2 R' k` and the
//!   targets (`R' = R` when every step is scored, `B` when only the last one is);
//! - workspaces of `n x n` matrices: the composite `W`, its gradient and a scratch matrix, plus per
//!   parametrization the Cayley solves (3 matrices and an LU factor per geodesic factor), scoRNN's
//!   map (5), or expRNN's exponential and its Frechet derivative (22);
//!
//! and on the host: the initialization's f64 matrices (`4 n^2` or, for the LSTM, `8 n^2` doubles),
//! a training and an evaluation batch (`2 (L B m + L B)` floats), a checkpoint's copy of the
//! parameters and moments and its serialized bytes (`6 P` floats), and [`RUNTIME_BYTES`] for the
//! process itself and a loaded data set. On `--device cpu` and `emu` both parts live in host
//! memory. Each part gets [`HEADROOM_PERCENT`] more for buffers too small to list and allocator
//! rounding. Every product is checked: a size that overflows is an error naming the flags.
//!
//! The estimate is meant to be an upper bound within a small factor: measured against the heap a
//! CPU run really allocates (after the linear-algebra libraries' one-time per-thread workspaces,
//! which [`RUNTIME_BYTES`] covers), it is 1.1 to 1.5 times larger for Elman, LSTM, factorized and
//! expRNN models (`tests/cli_robustness.rs`, `memory_estimate_bounds_what_a_run_allocates`).

use crate::error::{Error, Result};
use crate::limits::{Available, MAX_DEVICE_ELEMENTS};
use crate::tasks::{TaskKind, TaskSpec, copy, mnist, ptb};
use crate::train::build::{ModelKind, ModelSpec};

/// Bytes allowed for the process itself, its libraries and a loaded data set (MNIST: 55 MB). The
/// CPU linear algebra (faer, gemm) keeps 35 to 70 MB of workspace per thread after first use.
pub const RUNTIME_BYTES: u64 = 256 << 20;

/// Added to each part of the estimate.
pub const HEADROOM_PERCENT: u64 = 10;

fn pad(v: u64) -> u64 {
    v.saturating_add(v / 100 * HEADROOM_PERCENT)
}

/// The shapes of a task that decide memory, known without loading its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskDims {
    /// Steps per sequence (the longest, for PTB).
    pub steps: usize,
    /// Inputs per step.
    pub input: usize,
    /// Outputs of the readout.
    pub outputs: usize,
    /// True when only the last step is scored.
    pub last_step_only: bool,
}

impl TaskDims {
    /// The dimensions of the task `spec` describes.
    pub fn of(spec: &TaskSpec) -> Result<Self> {
        let t = spec.seq_len.unwrap_or(spec.kind.default_seq_len());
        let dims = |steps, input, outputs, last_step_only| TaskDims { steps, input, outputs, last_step_only };
        Ok(match spec.kind {
            TaskKind::Copy => {
                let steps = t
                    .checked_add(2 * copy::SYMBOLS)
                    .ok_or_else(|| Error::invalid("--seq-len", t, "too large: the copy task adds 20 steps"))?;
                dims(steps, copy::INPUTS, copy::CLASSES, false)
            }
            TaskKind::Adding => dims(t, 2, 1, true),
            TaskKind::Mnist | TaskKind::Pmnist => dims(mnist::PIXELS, 1, mnist::CLASSES, true),
            TaskKind::MnistRows => dims(mnist::ROWS, mnist::COLS, mnist::CLASSES, true),
            TaskKind::Ptb => dims(t, ptb::VOCAB_SIZE, ptb::VOCAB_SIZE, false),
        })
    }
}

/// The estimate, in bytes, by part.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Estimate {
    /// Parameters, gradients and optimizer moments.
    pub parameters: u64,
    /// Activations kept for BPTT, and the readout's buffers.
    pub activations: u64,
    /// `n x n` workspaces of the parametrization.
    pub workspaces: u64,
    /// Host-side: initialization, batches, checkpoint copies, the process itself.
    pub host: u64,
    /// Elements of the largest single device buffer.
    pub largest_buffer: u64,
}

impl Estimate {
    /// Bytes on the device (everything but [`Estimate::host`]).
    pub fn device_bytes(&self) -> u64 {
        self.parameters.saturating_add(self.activations).saturating_add(self.workspaces)
    }
    /// Bytes in all.
    pub fn total(&self) -> u64 {
        self.device_bytes().saturating_add(self.host)
    }
}

/// Checked `u64` arithmetic whose overflow is an error naming the flags involved.
struct Sizes(&'static str);

impl Sizes {
    fn mul(&self, parts: &[u64]) -> Result<u64> {
        parts.iter().try_fold(1u64, |acc, &p| acc.checked_mul(p)).ok_or_else(|| self.overflow())
    }
    fn sum(&self, parts: &[u64]) -> Result<u64> {
        parts.iter().try_fold(0u64, |acc, &p| acc.checked_add(p)).ok_or_else(|| self.overflow())
    }
    fn overflow(&self) -> Error {
        Error::invalid(self.0, "(too large)", "the sizes these flags multiply to overflow 64 bits")
    }
}

/// Parameter elements of `model` for `dims`.
fn parameter_elements(model: &ModelSpec, d: &TaskDims, s: &Sizes) -> Result<u64> {
    let (n, m, k) = (model.hidden as u64, d.input as u64, d.outputs as u64);
    let nn = s.mul(&[n, n])?;
    if model.model == ModelKind::Lstm {
        // W_in [4n, m], W_h [4n, n], b [4n], peep [3n], W_o [k, n], b_o [k].
        return s.sum(&[s.mul(&[4, n, m])?, s.mul(&[4, nn])?, s.mul(&[7, n])?, s.mul(&[k, n])?, k]);
    }
    let transition = match model.model {
        ModelKind::Rnn | ModelKind::Orthogonal | ModelKind::Scornn => nn,
        ModelKind::Factorized => s.sum(&[s.mul(&[2, nn])?, n])?,
        ModelKind::Exprnn | ModelKind::Dtriv => s.mul(&[2, nn])?,
        ModelKind::Lstm => 0,
    };
    // W_in [n, m], b [n], W_o [k, n], b_o [k], an activation parameter (at most n).
    s.sum(&[s.mul(&[n, m])?, s.mul(&[2, n])?, s.mul(&[k, n])?, k, transition])
}

/// `n x n` workspace matrices of `model` (see the module documentation).
fn workspace_matrices(model: ModelKind) -> u64 {
    let cayley = 4; // the skew generator, two solves' operands, the LU factor
    3 + match model {
        ModelKind::Rnn | ModelKind::Lstm => 0,
        ModelKind::Orthogonal => cayley,
        ModelKind::Factorized => 2 + 2 * cayley,
        ModelKind::Scornn => 5,
        ModelKind::Exprnn | ModelKind::Dtriv => 22,
    }
}

/// The memory a run of `model` on a task of `dims` with batch `batch` needs.
pub fn estimate(model: &ModelSpec, dims: &TaskDims, batch: usize, checkpointing: bool) -> Result<Estimate> {
    let s = Sizes("--hidden/--batch/--seq-len");
    let f32b = 4u64;
    let (n, m, k, b) = (model.hidden as u64, dims.input as u64, dims.outputs as u64, batch as u64);
    let rows = s.mul(&[dims.steps as u64, b])?;
    let scored = if dims.last_step_only { b } else { rows };
    let p = parameter_elements(model, dims, &s)?;
    let lstm = model.model == ModelKind::Lstm;
    let (row_blocks, batch_blocks) = if lstm { (15, 3) } else { (4, 1) };
    let act = s.sum(&[
        s.mul(&[rows, m])?,
        s.mul(&[row_blocks, rows, n])?,
        s.mul(&[batch_blocks, b, n])?,
        s.mul(&[2, scored, k])?,
        s.mul(&[scored, k.max(1)])?,
    ])?;
    let nn = s.mul(&[n, n])?;
    let largest =
        [s.mul(&[rows, m])?, s.mul(&[if lstm { 4 } else { 1 }, rows, n])?, s.mul(&[scored, k])?, s.mul(&[4, nn])?]
            .into_iter()
            .max()
            .unwrap_or(0);
    let init_doubles = s.mul(&[if lstm { 8 } else { 4 }, nn])?;
    let batch_floats = s.mul(&[2, s.sum(&[s.mul(&[rows, m])?, rows])?])?;
    let checkpoint_floats = if checkpointing { s.mul(&[6, p])? } else { 0 };
    Ok(Estimate {
        parameters: pad(s.mul(&[4, p, f32b])?),
        activations: pad(s.mul(&[act, f32b])?),
        workspaces: pad(s.mul(&[workspace_matrices(model.model), nn, f32b])?),
        host: s.sum(&[
            pad(s.sum(&[
                s.mul(&[init_doubles, 8])?,
                s.mul(&[batch_floats, f32b])?,
                s.mul(&[checkpoint_floats, f32b])?,
            ])?),
            RUNTIME_BYTES,
        ])?,
        largest_buffer: largest,
    })
}

/// Where the device buffers live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Host memory (`--device cpu`).
    Host,
    /// Host memory, through the CUDA kernels' 32-bit indexing (`--device emu`).
    EmulatedDevice,
    /// A GPU's memory (`--device cuda`).
    Gpu,
}

fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// Checks `e` against the memory available: `host` for the host part (and, unless `placement` is
/// [`Placement::Gpu`], the device part), `device` for the device part on a GPU. `None` skips a
/// check that cannot be made. The error names the estimate, its largest part and the flags to lower.
pub fn check(e: &Estimate, placement: Placement, host: Option<&Available>, device: Option<&Available>) -> Result<()> {
    let parts = format!(
        "parameters with gradients and optimizer state {}, BPTT activations {}, n x n workspaces {}, host side {}",
        gib(e.parameters),
        gib(e.activations),
        gib(e.workspaces),
        gib(e.host)
    );
    let advice = if e.activations >= e.parameters.saturating_add(e.workspaces) {
        "lower --batch or --seq-len (activations grow with both), or --hidden"
    } else {
        "lower --hidden (parameters and workspaces grow with its square)"
    };
    if placement != Placement::Host && e.largest_buffer > MAX_DEVICE_ELEMENTS {
        return Err(Error::OutOfMemory(format!(
            "the run's largest buffer would hold {} elements, more than the CUDA kernels' 32-bit indexing allows \
             ({MAX_DEVICE_ELEMENTS}); {advice}",
            e.largest_buffer
        )));
    }
    let on_host = if placement == Placement::Gpu { e.host } else { e.total() };
    if let Some(a) = host
        && on_host > a.bytes
    {
        return Err(Error::OutOfMemory(format!(
            "this run needs about {} of host memory ({parts}), but {} are available ({}); {advice}",
            gib(on_host),
            gib(a.bytes),
            a.source
        )));
    }
    if placement == Placement::Gpu
        && let Some(a) = device
        && e.device_bytes() > a.bytes
    {
        return Err(Error::OutOfMemory(format!(
            "this run needs about {} of GPU memory ({parts}), but {} are free ({}); {advice}",
            gib(e.device_bytes()),
            gib(a.bytes),
            a.source
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_is_an_error_and_parts_scale_as_documented() {
        let spec = ModelSpec::of(ModelKind::Rnn, 8);
        let d = TaskDims { steps: 10, input: 3, outputs: 2, last_step_only: false };
        let e = estimate(&spec, &d, 5, false).unwrap();
        // P = 8*3 + 2*8 + 2*8 + 2 + 64 = 122; activations: 50*3 + 4*50*8 + 5*8 + 2*50*2 + 50*2.
        assert_eq!(e.parameters, pad(4 * 122 * 4));
        assert_eq!(e.activations, pad((150 + 1600 + 40 + 200 + 100) * 4));
        assert_eq!(e.workspaces, pad(3 * 64 * 4));
        let huge = ModelSpec::of(ModelKind::Rnn, usize::MAX / 2);
        let msg = estimate(&huge, &d, 5, false).unwrap_err().to_string();
        assert!(msg.contains("--hidden") && msg.contains("overflow"), "{msg}");
        let big = estimate(&ModelSpec::of(ModelKind::Rnn, 100_000), &d, 50, false).unwrap();
        let avail = Available { bytes: 8 << 30, source: "test".into() };
        let msg = check(&big, Placement::Host, Some(&avail), None).unwrap_err().to_string();
        assert!(msg.contains("--hidden") && msg.contains("GiB") && msg.contains("test"), "{msg}");
        let msg = check(&big, Placement::EmulatedDevice, None, None).unwrap_err().to_string();
        assert!(msg.contains("32-bit"), "{msg}");
    }
}
