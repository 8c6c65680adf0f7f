//! The recurrence over all `T` steps on the CUDA backend: a persistent cooperative kernel
//! (`kernels/recurrent.cu`) when the grid can be co-resident and `W` fits on chip, else one GEMM launch per
//! step with the activation (forward) or its backward (BPTT) fused into the epilogue.
//!
//! Forward: `a_t = pre_t + H_t W^T`, `H_{t+1} = phi(a_t)`. Backward: `G_t = dH_t + Delta_{t+1} W` (kept in
//! `dH`), `Delta_t = J_phi(a_t)^T G_t`, and the activation's parameter gradient (PReLU slope, modReLU bias)
//! added to `dparam` in a fixed order (no float atomics on the persistent path).
//!
//! # Plan of the persistent kernel
//! Each block of 256 threads owns `r` hidden units (`r` a power of two, so that every thread keeps one unit
//! for the parameter gradient; even for OPLU, whose pairs must stay in one block) and keeps their `r (n + 1)`
//! floats of `W` in static shared memory (46 KiB at most) for all `T` steps. `r` is the smallest power of two
//! with `ceil(n / r)` blocks co-resident, i.e. at most `sm_count` times the kernel's occupancy per SM
//! ([`Driver::max_active_blocks_per_sm`]), raised towards `B r >= 256` (a thread per output at least) as
//! far as the slice fits in shared memory. When no `r` fits
//! (large `n`), when `B > 256` (per-step GEMMs fill the device), or when told so
//! ([`Cuda::set_recurrence`]), the per-step path runs instead; [`Cuda::path_notes`] says which ran and why.

use super::driver::{Arg, Driver, LaunchDims, PackedArgs};
use super::{Cuda, GemmLaunch, Slot, act_code};
use crate::backend::{Act, Activation, SeqDims, Slice, SliceMut, check_recurrent_bwd, check_recurrent_fwd};
use crate::error::{Error, Result};

/// Threads per block of the persistent kernels (`REC_THREADS` in `kernels/recurrent.cu`).
const THREADS: usize = 256;
/// Floats of the shared `W` slice (`REC_WS_MAX`).
const WS_MAX: usize = 11776;
/// Static shared memory of a persistent block in bytes: the slice and the 256-double reduction buffer.
const SHARED_BYTES: usize = 4 * WS_MAX + 8 * THREADS;
/// Largest batch the persistent path takes.
const MAX_BATCH: usize = 256;

/// Which implementation of the recurrence the CUDA backend uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecurrenceMode {
    /// The persistent kernel where it fits, else per-step launches.
    #[default]
    Auto,
    /// Per-step launches always.
    PerStep,
}

/// A persistent launch: `r` units per block, `blocks` blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Plan {
    r: usize,
    blocks: usize,
}

impl<D: Driver> Cuda<D> {
    /// Chooses the recurrence's implementation (tests and benchmarks compare both).
    pub fn set_recurrence(&self, mode: RecurrenceMode) {
        *self.ext.rec_mode.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = mode;
    }

    /// What the last recurrence ops ran (`"recurrent_forward"`, `"recurrent_backward"` -> path and why).
    pub fn path_notes(&self) -> Vec<(String, String)> {
        self.ext
            .notes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn note(&self, op: &str, what: String) {
        self.ext.notes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(op.to_string(), what);
    }

    /// The persistent launch for `d` and `kind`, or why there is none.
    fn plan(&self, kernel: &str, d: SeqDims, kind: Activation) -> std::result::Result<Plan, String> {
        if *self.ext.rec_mode.lock().unwrap_or_else(std::sync::PoisonError::into_inner) == RecurrenceMode::PerStep {
            return Err("per-step launches requested".into());
        }
        if d.batch > MAX_BATCH {
            return Err(format!("batch {} > {MAX_BATCH}: per-step GEMMs fill the device", d.batch));
        }
        let a = self.attrs();
        let per_sm = self
            .drv
            .max_active_blocks_per_sm("recurrent", kernel, THREADS as u32, SHARED_BYTES)
            .map_err(|e| format!("occupancy query failed: {e}"))?;
        let max_blocks = a.sm_count as usize * per_sm as usize;
        if max_blocks == 0 {
            return Err("the kernel does not fit on an SM".into());
        }
        let even = if kind == Activation::Oplu { 2 } else { 1 };
        // Preferred: a thread per output at least (B r >= 256); needed: the grid co-resident; possible:
        // the slice fits in shared memory.
        let r_min = THREADS.div_ceil(d.batch).next_power_of_two().max(even);
        let r_need = d.n.div_ceil(max_blocks).next_power_of_two().max(even);
        let r_fit = (1..=THREADS.trailing_zeros())
            .map(|e| 1usize << e)
            .chain(std::iter::once(1))
            .filter(|&r| r >= even && r * (d.n + 1) <= WS_MAX)
            .max()
            .unwrap_or(0);
        let r_cap = d.n.next_power_of_two().max(even);
        let r = r_need.max(r_min.min(r_fit)).min(r_cap);
        if r_fit == 0 || r > r_fit {
            return Err(format!(
                "W does not fit on chip: {} co-resident blocks ({} SMs x {per_sm}) would need {r} units of {} floats \
                 each, over the {WS_MAX} floats of shared memory per block",
                max_blocks,
                a.sm_count,
                d.n + 1
            ));
        }
        let blocks = d.n.div_ceil(r);
        if blocks > max_blocks {
            return Err(format!("{blocks} blocks cannot be co-resident ({} SMs x {per_sm})", a.sm_count));
        }
        Ok(Plan { r, blocks })
    }

    fn launch_persistent(&self, kernel: &str, plan: Plan, args: &[Arg]) -> Result<()> {
        let mut packed = PackedArgs::new(args);
        let mut ptrs = packed.pointers();
        let dims = LaunchDims { grid: (plan.blocks as u32, 1, 1), block: (THREADS as u32, 1, 1) };
        // SAFETY: the arguments follow the kernel's signature in recurrent.cu (checked under emu by the
        // trampolines and by the parity tests), and every pointer comes from a view checked against its
        // buffer for the sizes the kernel touches (`T B n`, `(T + 1) B n`, `n n`, the parameter length).
        unsafe { self.drv.launch_cooperative("recurrent", kernel, dims, &mut ptrs, packed.sizes()) }
    }

    /// [`crate::backend::Backend::recurrent_forward`].
    pub(crate) fn recurrence_forward(
        &self,
        w: Slice<Self>,
        act: Act<Self>,
        pre: SliceMut<Self>,
        h: SliceMut<Self>,
        d: SeqDims,
    ) -> Result<()> {
        check_sizes(d)?;
        check_recurrent_fwd(&w, &act, &pre, &h, d)?;
        let bn = d.batch * d.n;
        if d.t == 0 || bn == 0 {
            return Ok(());
        }
        let flops = 2.0 * (d.t * bn * d.n) as f64;
        self.work(flops, 4.0 * (3 * d.t * bn + d.n * d.n) as f64);
        let (wp, pp, hp) = (Cuda::ptr(&w), Cuda::ptr_mut(&pre), Cuda::ptr_mut(&h));
        let param = act.param.as_ref().map_or(0, Cuda::ptr);
        match self.plan("rnn_fwd_persist_f32", d, act.kind) {
            Ok(plan) => {
                self.note("recurrent_forward", persistent_note(plan, d));
                self.drv.counters().update(|c| c.grid_barriers += d.t as u64);
                let args = [
                    Arg::I32(d.t as i32),
                    Arg::I32(d.batch as i32),
                    Arg::I32(d.n as i32),
                    Arg::I32(plan.r as i32),
                    Arg::I32(act_code(act.kind)),
                    Arg::Ptr(wp),
                    Arg::Ptr(param),
                    Arg::Ptr(pp),
                    Arg::Ptr(hp),
                ];
                self.launch_persistent("rnn_fwd_persist_f32", plan, &args)
            }
            Err(why) => {
                self.note("recurrent_forward", format!("per-step ({} GEMM launches; {why})", d.t));
                for t in 0..d.t {
                    let at = |base: u64, blk: usize| base + 4 * (blk * bn) as u64;
                    let mut g = GemmLaunch::dense(d.batch, d.n, d.n, at(hp, t), false, wp, true, at(pp, t));
                    g.precision = self.precision;
                    g.beta = 1.0;
                    g.act = Some(act.kind);
                    g.act_param = param;
                    g.act_out = at(hp, t + 1);
                    self.launch_gemm(&g)?;
                }
                Ok(())
            }
        }
    }

    /// [`crate::backend::Backend::recurrent_backward`].
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn recurrence_backward(
        &self,
        w: Slice<Self>,
        act: Act<Self>,
        pre: Slice<Self>,
        h: Slice<Self>,
        dh: SliceMut<Self>,
        mut delta: SliceMut<Self>,
        dparam: Option<SliceMut<Self>>,
        d: SeqDims,
    ) -> Result<()> {
        check_sizes(d)?;
        check_recurrent_bwd(&w, &act, &pre, &h, &dh, &delta, dparam.as_ref(), d)?;
        let bn = d.batch * d.n;
        if d.t == 0 || bn == 0 {
            return Ok(());
        }
        let flops = 2.0 * ((d.t - 1) * bn * d.n) as f64;
        self.work(flops, 4.0 * (5 * d.t * bn + d.n * d.n) as f64);
        let (wp, pp, hp, dhp, dp) =
            (Cuda::ptr(&w), Cuda::ptr(&pre), Cuda::ptr(&h), Cuda::ptr_mut(&dh), Cuda::ptr_mut(&delta));
        let param = act.param.as_ref().map_or(0, Cuda::ptr);
        match self.plan("rnn_bwd_persist_f32", d, act.kind) {
            Ok(plan) => {
                self.note("recurrent_backward", persistent_note(plan, d));
                let has_grad = dparam.is_some() && act.kind.param_len(d.n) > 0;
                let extra = (has_grad && act.kind == Activation::Prelu) as u64;
                self.drv.counters().update(|c| c.grid_barriers += d.t as u64 + extra);
                let partial = self.scratch(Slot::Recurrent, 8 * plan.blocks)?;
                let args = [
                    Arg::I32(d.t as i32),
                    Arg::I32(d.batch as i32),
                    Arg::I32(d.n as i32),
                    Arg::I32(plan.r as i32),
                    Arg::I32(act_code(act.kind)),
                    Arg::Ptr(wp),
                    Arg::Ptr(param),
                    Arg::Ptr(pp),
                    Arg::Ptr(hp),
                    Arg::Ptr(dhp),
                    Arg::Ptr(dp),
                    Arg::Ptr(dparam.as_ref().map_or(0, Cuda::ptr_mut)),
                    Arg::Ptr(partial.ptr()),
                ];
                self.launch_persistent("rnn_bwd_persist_f32", plan, &args)
            }
            Err(why) => {
                self.note("recurrent_backward", format!("per-step ({} GEMM launches; {why})", d.t));
                let at = |base: u64, blk: usize| base + 4 * (blk * bn) as u64;
                for t in (0..d.t).rev() {
                    // K = 0 on the last step: the product vanishes and the epilogue alone forms delta_{T-1}.
                    let k = if t + 1 < d.t { d.n } else { 0 };
                    let src = if t + 1 < d.t { at(dp, t + 1) } else { dp };
                    let mut g = GemmLaunch::dense(d.batch, d.n, k, src, false, wp, false, at(dhp, t));
                    g.precision = self.precision;
                    g.beta = 1.0;
                    g.act = Some(act.kind);
                    g.act_param = param;
                    g.act_out = at(dp, t);
                    g.pre = at(pp, t);
                    g.hval = at(hp, t + 1);
                    self.launch_gemm(&g)?;
                }
                if let Some(dparam) = dparam {
                    // dh now holds dL/dh_t for every step; one pass accumulates the parameter gradient
                    // (and rewrites delta with the same values).
                    let h_out = h.sub(bn, d.t * bn);
                    crate::backend::Backend::act_bwd(
                        self,
                        act,
                        pre,
                        h_out,
                        dh.as_ref(),
                        delta.rb(),
                        Some(dparam),
                        d.n,
                    )?;
                }
                Ok(())
            }
        }
    }
}

fn persistent_note(plan: Plan, d: SeqDims) -> String {
    format!(
        "persistent (one cooperative launch: {} blocks x {} units x {THREADS} threads, W slice on chip, {} grid barriers)",
        plan.blocks, plan.r, d.t
    )
}

/// Error for a recurrence whose shape the kernels cannot index with 32-bit sizes.
pub(crate) fn check_sizes(d: SeqDims) -> Result<()> {
    let elems = (d.t + 1).checked_mul(d.batch).and_then(|v| v.checked_mul(d.n));
    match elems {
        Some(_) if d.n <= i32::MAX as usize && d.batch <= i32::MAX as usize && d.t <= i32::MAX as usize => Ok(()),
        _ => Err(Error::shape("recurrence", "T, B and n below 2^31", format!("{d:?}"))),
    }
}
