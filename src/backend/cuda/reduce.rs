//! Fixed-order reductions: every sum the CUDA backend forms over many blocks is written as
//! per-block partials to the [`Slot::Reduce`] workspace and then added in a fixed order by one
//! kernel (`kernels/reduce.cu`), never with float atomics. The result depends on the data and the
//! grid (which depends on the shape and the device's SM count), not on which block finishes first,
//! so two runs on one device give the same bits, as on the CPU backend.

use super::driver::{Arg, DevPtr, Driver};
use super::{Cuda, Slot, THREADS};
use crate::backend::Activation;
use crate::error::Result;

/// Blocks of a 1-D grid-stride launch over `n` elements (what [`Cuda::launch_1d`] uses).
pub(crate) fn blocks_1d(n: usize) -> usize {
    n.div_ceil(THREADS as usize).clamp(1, 4096)
}

impl<D: Driver> Cuda<D> {
    /// Gives `f` room for `parts` partial results of `N` doubles each (part `b` at `8 N b` bytes),
    /// then adds them over `b` in order (into the zeroed accumulator) and returns the `N` totals to
    /// the host.
    pub(crate) fn fixed_sum<const N: usize>(
        &self,
        parts: usize,
        f: impl FnOnce(DevPtr) -> Result<()>,
    ) -> Result<[f64; N]> {
        let part = self.scratch(Slot::Reduce, 8 * N * parts.max(1))?;
        let p = part.ptr();
        self.with_acc::<N>(|acc| {
            f(p)?;
            self.add_partials(p, parts, N, acc)
        })
    }

    /// Adds `width` sums over `parts` partials (part `b` at `8 width b` bytes) to the `width` doubles
    /// at `out`, in a fixed order.
    pub(crate) fn add_partials(&self, part: DevPtr, parts: usize, width: usize, out: DevPtr) -> Result<()> {
        let args = [Arg::I32(parts as i32), Arg::I32(width as i32), Arg::Ptr(part), Arg::Ptr(out), Arg::Ptr(0)];
        self.launch("reduce", "reduce_partials_f64", (1, 1, 1), (256, 1, 1), &args)
    }

    /// Blocks of the softmax cross-entropy kernel over `rows` rows (8 rows per block).
    pub(crate) fn softmax_blocks(rows: usize) -> usize {
        rows.div_ceil(8).max(1)
    }

    /// The softmax cross-entropy kernel (`kernels/loss.cu`) over `(logits, targets, grad)`, writing
    /// each block's four totals to `part` ([`Self::softmax_blocks`] blocks).
    pub(crate) fn launch_softmax_xent(
        &self,
        (logits, targets, grad): (DevPtr, DevPtr, DevPtr),
        rows: usize,
        classes: usize,
        scale: f32,
        part: DevPtr,
    ) -> Result<()> {
        let args = [
            Arg::I32(rows as i32),
            Arg::I32(classes as i32),
            Arg::Ptr(logits),
            Arg::Ptr(targets),
            Arg::Ptr(grad),
            Arg::F32(scale),
            Arg::Ptr(part),
        ];
        let blocks = Self::softmax_blocks(rows) as u32;
        self.launch("loss", "softmax_xent_f32", (blocks, 1, 1), (256, 1, 1), &args)
    }

    /// The MSE kernel over `(pred, target, grad)` of `len` elements, writing each block's squared-error
    /// sum to `part` ([`blocks_1d`] blocks).
    pub(crate) fn launch_mse(
        &self,
        (pred, target, grad): (DevPtr, DevPtr, DevPtr),
        len: usize,
        scale: f32,
        part: DevPtr,
    ) -> Result<()> {
        let args =
            [Arg::I64(len as i64), Arg::Ptr(pred), Arg::Ptr(target), Arg::Ptr(grad), Arg::F32(scale), Arg::Ptr(part)];
        self.launch_1d("loss", "mse_f32", len, &args)
    }

    /// `da = J^T dh` and the activation parameter's gradient added to `dparam` (PReLU slope,
    /// modReLU bias) over a `[rows, cols]` batch, in a fixed order: row chunks sized so that about
    /// two blocks run per SM, per-chunk column partials, then one ordered pass over the chunks.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn act_bwd_param(
        &self,
        kind: Activation,
        rows: usize,
        cols: usize,
        a: DevPtr,
        h: DevPtr,
        dh: DevPtr,
        param: DevPtr,
        da: DevPtr,
        dparam: DevPtr,
    ) -> Result<()> {
        let tiles = cols.div_ceil(32).max(1);
        let want = (2 * self.attrs().sm_count as usize).div_ceil(tiles).max(1);
        let rows_per_chunk = rows.div_ceil(want).max(8).next_multiple_of(8);
        let chunks = rows.div_ceil(rows_per_chunk).max(1);
        let part = self.scratch(Slot::Reduce, 8 * chunks * cols)?;
        let args = [
            Arg::I32(rows as i32),
            Arg::I32(cols as i32),
            Arg::I32(rows_per_chunk as i32),
            Arg::I32(super::act_code(kind)),
            Arg::Ptr(a),
            Arg::Ptr(h),
            Arg::Ptr(dh),
            Arg::Ptr(param),
            Arg::Ptr(da),
            Arg::Ptr(part.ptr()),
        ];
        self.launch("activation", "act_bwd_param_f32", (tiles as u32, chunks as u32, 1), (32, 8, 1), &args)?;
        if kind == Activation::Modrelu {
            let args = [Arg::I32(chunks as i32), Arg::I32(cols as i32), Arg::Ptr(part.ptr()), Arg::Ptr(dparam)];
            self.launch_1d("reduce", "add_col_partials_f32", cols, &args)
        } else {
            let args =
                [Arg::I32((chunks * cols) as i32), Arg::I32(1), Arg::Ptr(part.ptr()), Arg::Ptr(0), Arg::Ptr(dparam)];
            self.launch("reduce", "reduce_partials_f64", (1, 1, 1), (256, 1, 1), &args)
        }
    }
}
