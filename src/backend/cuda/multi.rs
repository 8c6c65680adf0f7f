//! The per-iteration readback (tallies), the multi-tensor optimizer step and graph capture on the CUDA
//! backend.
//!
//! Graphs: [`Cuda::capture_dev`] records what a closure queues through the driver; the work the launch
//! code counts while recording (flops, bytes, grid barriers) is set aside and added again by every
//! replay, since a replay runs no launch code.
//!
//! Tallies: three slots of four doubles in one device allocation made with the backend; loss kernels
//! accumulate into a slot, `tally_reset` zeroes one (a queued memset, so it can be captured), and
//! `tally_read` copies all 96 bytes to the host: the one synchronization of a training iteration.
//!
//! The multi-tensor step (`kernels/optim.cu`: `multi_sumsq_f32`, `multi_step_f32`) takes a table of
//! [`OptimTensor`] entries in device memory: pointers, lengths, offsets in the concatenation, learning
//! rate, weight decay, and whether to update or only clip. The table and Adam's step counter live on the
//! device; the table is uploaded only when the tensors or rates change, and the counter only when the
//! host's step count disagrees with it (first step, a restored checkpoint), so a captured graph of the
//! step stays valid from one iteration to the next.

use super::driver::{Arg, DevPtr, Driver, GraphId};
use super::{Cuda, DevAlloc, Slot, THREADS};
use crate::backend::profile::Profile;
use crate::backend::{OptimRule, StepTensor, Tally, TallyValues, clip_and_step_composed};
use crate::error::{Error, Result};

/// Entries the kernels' shared-memory table holds (`OPTIM_MAX_TENSORS`).
const MAX_TENSORS: usize = 64;
/// Blocks of the multi-tensor kernels at most (a fixed grid per total length: a fixed summation order).
const MAX_BLOCKS: usize = 1024;

/// One entry of the device table; mirrors `struct OptimTensor` in `kernels/optim.cu` (64 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
struct OptimTensor {
    p: u64,
    g: u64,
    s1: u64,
    s2: u64,
    n: i64,
    offset: i64,
    lr: f32,
    wd: f32,
    update: i32,
    pad: i32,
}

const _: () = assert!(size_of::<OptimTensor>() == 64);

/// The device table and step counter of the last multi-tensor step.
pub(crate) struct MultiPlan<D: Driver> {
    table: DevAlloc<D>,
    host: Vec<OptimTensor>,
    step: DevAlloc<D>,
    /// What the device counter holds after the work queued so far (as far as the host knows).
    shadow_step: Option<u64>,
}

/// The device allocations behind the tallies and the multi-tensor plan.
pub(crate) struct MultiState<D: Driver> {
    pub tallies: DevAlloc<D>,
    pub plan: Option<MultiPlan<D>>,
    /// The counted work of each captured graph.
    pub graph_work: std::collections::HashMap<u64, Profile>,
}

impl<D: Driver> MultiState<D> {
    pub fn new(drv: &std::sync::Arc<D>) -> Result<Self> {
        Ok(MultiState { tallies: DevAlloc::new(drv, 96)?, plan: None, graph_work: Default::default() })
    }
}

fn rule_args(rule: OptimRule) -> (i32, f32, f32, f32, i32) {
    match rule {
        OptimRule::Sgd { momentum, nesterov } => (0, momentum as f32, 0.0, 0.0, nesterov as i32),
        OptimRule::RmsProp { rho, eps } => (1, rho as f32, 0.0, eps as f32, 0),
        OptimRule::Adam { beta1, beta2, eps } => (2, beta1 as f32, beta2 as f32, eps as f32, 0),
    }
}

impl<D: Driver> Cuda<D> {
    pub(crate) fn capture_dev(&self, f: &mut dyn FnMut() -> Result<()>) -> Result<u64> {
        let before = self.drv.counters().snapshot();
        self.drv.begin_capture()?;
        let r = f();
        let g = self.drv.end_capture();
        let work = self.drv.counters().snapshot().since(&before);
        self.drv.counters().update(|c| *c = c.since(&work));
        r?;
        let g = g?.0;
        self.multi().graph_work.insert(g, work);
        Ok(g)
    }

    pub(crate) fn replay_dev(&self, graph: u64) -> Result<()> {
        self.drv.replay(GraphId(graph))?;
        let work = self.multi().graph_work.get(&graph).copied().unwrap_or_default();
        self.drv.counters().update(|c| *c = c.plus(&work));
        Ok(())
    }

    pub(crate) fn drop_graph_dev(&self, graph: u64) {
        self.multi().graph_work.remove(&graph);
        self.drv.destroy_graph(GraphId(graph));
    }

    fn multi(&self) -> std::sync::MutexGuard<'_, MultiState<D>> {
        self.ext.multi.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The device address of a tally slot.
    fn tally_ptr(&self, slot: Tally) -> DevPtr {
        self.multi().tallies.ptr + 32 * slot as u64
    }

    pub(crate) fn tally_reset_dev(&self, slot: Tally) -> Result<()> {
        self.drv.memset_zero(self.tally_ptr(slot), 32)
    }

    pub(crate) fn tally_read_dev(&self) -> Result<TallyValues> {
        let mut bytes = [0u8; 96];
        self.drv.dtoh(&mut bytes, self.multi().tallies.ptr)?;
        let mut out = [[0.0; 4]; 3];
        for (i, c) in bytes.chunks_exact(8).enumerate() {
            out[i / 4][i % 4] = f64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
        }
        for slot in [Tally::Loss, Tally::LossTail] {
            let invalid = out[slot as usize][3];
            if invalid > 0.0 {
                return Err(Error::invalid(
                    "target class",
                    format!("{invalid} rows"),
                    "targets must be integers in [0, classes) or negative",
                ));
            }
        }
        Ok(out)
    }

    /// The softmax cross-entropy kernel with its totals added to `slot`: per-block partials in
    /// [`Slot::Reduce`], then one fixed-order pass (no float atomics, so the bits do not depend on
    /// which block finishes first).
    pub(crate) fn softmax_xent_into(
        &self,
        args: (DevPtr, DevPtr, DevPtr),
        rows: usize,
        classes: usize,
        scale: f32,
        slot: Tally,
    ) -> Result<()> {
        let blocks = Self::softmax_blocks(rows);
        let part = self.scratch(Slot::Reduce, 8 * 4 * blocks)?;
        self.launch_softmax_xent(args, rows, classes, scale, part.ptr())?;
        self.add_partials(part.ptr(), blocks, 4, self.tally_ptr(slot))
    }

    /// The MSE kernel with its squared-error sum added to `slot` (first value only), in a fixed order.
    pub(crate) fn mse_into(&self, args: (DevPtr, DevPtr, DevPtr), len: usize, scale: f32, slot: Tally) -> Result<()> {
        let blocks = super::reduce::blocks_1d(len);
        let part = self.scratch(Slot::Reduce, 8 * blocks)?;
        self.launch_mse(args, len, scale, part.ptr())?;
        self.add_partials(part.ptr(), blocks, 1, self.tally_ptr(slot))
    }

    /// [`crate::backend::Backend::clip_and_step`]: two launches for every tensor (see the module docs).
    pub(crate) fn clip_and_step_dev(&self, tensors: &mut [StepTensor<'_, Self>], clip: Option<f64>) -> Result<()> {
        let rules: Vec<OptimRule> = tensors.iter().filter_map(|t| t.step.map(|s| s.rule)).collect();
        if tensors.is_empty() || tensors.len() > MAX_TENSORS || rules.windows(2).any(|w| w[0] != w[1]) {
            return clip_and_step_composed(self, tensors, clip);
        }
        let rule = rules.first().copied().unwrap_or(OptimRule::Sgd { momentum: 0.0, nesterov: false });
        let t = tensors.iter().filter_map(|t| t.step.map(|s| s.t)).max().unwrap_or(1).max(1);
        let mut host = Vec::with_capacity(tensors.len());
        let mut total = 0usize;
        for x in tensors.iter() {
            let n = x.param.len;
            x.param.check("clip_and_step(param)", n)?;
            x.grad.check("clip_and_step(grad)", n)?;
            x.s1.check("clip_and_step(s1)", n)?;
            x.s2.check("clip_and_step(s2)", n)?;
            host.push(OptimTensor {
                p: Cuda::ptr_mut(&x.param),
                g: Cuda::ptr_mut(&x.grad),
                s1: Cuda::ptr_mut(&x.s1),
                s2: Cuda::ptr_mut(&x.s2),
                n: n as i64,
                offset: total as i64,
                lr: x.step.map_or(0.0, |s| s.lr as f32),
                wd: x.step.map_or(0.0, |s| s.weight_decay as f32),
                update: x.step.is_some() as i32,
                pad: 0,
            });
            total += n;
        }
        if total == 0 {
            return self.tally_reset_dev(Tally::GradNorm);
        }
        let blocks = total.div_ceil(THREADS as usize).clamp(1, MAX_BLOCKS);
        self.work(10.0 * total as f64, 4.0 * 6.0 * total as f64);
        let mut st = self.multi();
        if st.plan.is_none() {
            st.plan = Some(MultiPlan {
                table: DevAlloc::new(&self.drv, MAX_TENSORS * size_of::<OptimTensor>())?,
                host: Vec::new(),
                step: DevAlloc::new(&self.drv, 8)?,
                shadow_step: None,
            });
        }
        let tally = st.tallies.ptr + 32 * Tally::GradNorm as u64;
        let plan = st.plan.as_mut().ok_or_else(|| Error::Device("multi-tensor plan missing".into()))?;
        if plan.host != host {
            self.drv.htod(plan.table.ptr, bytemuck::cast_slice(&host))?;
            plan.host = host;
        }
        if plan.shadow_step != Some(t - 1) {
            self.drv.htod(plan.step.ptr, &((t - 1) as i64).to_le_bytes())?;
        }
        plan.shadow_step = Some(t);
        let (table, step) = (plan.table.ptr, plan.step.ptr);
        drop(st);
        let partial = self.scratch(Slot::Optim, 8 * blocks)?;
        let count = Arg::I32(tensors.len() as i32);
        let grid = (blocks as u32, 1, 1);
        let sum_args = [count, Arg::Ptr(table), Arg::I64(total as i64), Arg::Ptr(partial.ptr()), Arg::Ptr(step)];
        self.launch("optim", "multi_sumsq_f32", grid, (THREADS, 1, 1), &sum_args)?;
        let (code, h0, h1, h2, k0) = rule_args(rule);
        let step_args = [
            count,
            Arg::Ptr(table),
            Arg::I64(total as i64),
            Arg::Ptr(partial.ptr()),
            Arg::I32(blocks as i32),
            Arg::Ptr(step),
            Arg::F64(clip.unwrap_or(0.0)),
            Arg::I32(code),
            Arg::F32(h0),
            Arg::F32(h1),
            Arg::F32(h2),
            Arg::I32(k0),
            Arg::Ptr(tally),
        ];
        self.launch("optim", "multi_step_f32", grid, (THREADS, 1, 1), &step_args)
    }
}
