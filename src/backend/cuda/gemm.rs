//! The GEMM launcher: strided operands, batches, the fused epilogue, and the precision, tile and
//! split-K choice of [`super::gemm_plan`]. With split-K, the blocks' partial products go to the
//! [`Slot::SplitK`] workspace and `gemm_splitk_reduce_f32` sums them in a fixed order and applies the
//! epilogue, so every result is deterministic.

use super::driver::{Arg, DevPtr, Driver};
use super::gemm_plan::{GemmPlan, GemmShape, Layout, plan};
use super::{Cuda, Slot, THREADS, act_code};
use crate::backend::{Activation, Precision};
use crate::error::{Error, Result};

/// One launch of the GEMM kernel family, in the kernel's stride convention:
/// `op(A)(i, k) = A[b sab + i sar + k sac]`, `op(B)(k, j) = B[b sbb + k sbr + j sbc]`,
/// `C(i, j) = C[b scb + i ldc + j]`.
#[derive(Clone, Copy, Debug)]
pub struct GemmLaunch {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub batch: usize,
    pub a: DevPtr,
    pub sab: i64,
    pub sar: i64,
    pub sac: i64,
    pub b: DevPtr,
    pub sbb: i64,
    pub sbr: i64,
    pub sbc: i64,
    pub c: DevPtr,
    pub scb: i64,
    pub ldc: i64,
    pub alpha: f32,
    pub beta: f32,
    pub bias: DevPtr,
    pub act: Option<Activation>,
    pub act_param: DevPtr,
    pub act_out: DevPtr,
    pub pre: DevPtr,
    pub hval: DevPtr,
    /// The arithmetic: `Fp32` (the SIMT kernels; the default) or a tensor-core precision.
    pub precision: Precision,
}

impl GemmLaunch {
    /// A plain row-major product `C = alpha op(A) op(B) + beta C` with contiguous operands, in f32.
    #[allow(clippy::too_many_arguments)]
    pub fn dense(m: usize, n: usize, k: usize, a: DevPtr, ta: bool, b: DevPtr, tb: bool, c: DevPtr) -> Self {
        let (sar, sac) = if ta { (1, m as i64) } else { (k as i64, 1) };
        let (sbr, sbc) = if tb { (1, k as i64) } else { (n as i64, 1) };
        GemmLaunch {
            m,
            n,
            k,
            batch: 1,
            a,
            sab: (m * k) as i64,
            sar,
            sac,
            b,
            sbb: (k * n) as i64,
            sbr,
            sbc,
            c,
            scb: (m * n) as i64,
            ldc: n as i64,
            alpha: 1.0,
            beta: 0.0,
            bias: 0,
            act: None,
            act_param: 0,
            act_out: 0,
            pre: 0,
            hval: 0,
            precision: Precision::Fp32,
        }
    }

    /// What the planner sees of this launch.
    pub fn shape(&self) -> GemmShape {
        GemmShape {
            m: self.m,
            n: self.n,
            k: self.k,
            batch: self.batch,
            a: Layout::of(self.sar, self.sac),
            b: Layout::of(self.sbc, self.sbr),
            precision: self.precision,
        }
    }
}

fn i32_arg(what: &'static str, v: i64) -> Result<Arg> {
    i32::try_from(v)
        .map(Arg::I32)
        .map_err(|_| Error::invalid(what, v, "GEMM dimensions and row strides must fit in 32 bits"))
}

impl<D: Driver> Cuda<D> {
    /// Launches the GEMM (and, with split-K, its reduction) as [`plan`] chooses from the shape, the
    /// operand layouts, the precision and the device's SM count.
    pub(crate) fn launch_gemm(&self, g: &GemmLaunch) -> Result<()> {
        if g.m == 0 || g.n == 0 || g.batch == 0 {
            return Ok(());
        }
        if g.batch > 65535 {
            return Err(Error::invalid("GEMM batch", g.batch, "at most 65535 matrices per launch"));
        }
        let shape = g.shape();
        let p = plan(&shape, self.attrs().sm_count);
        if p.grid.1 > 65535 {
            return Err(Error::invalid("GEMM rows", g.m, format!("at most {} rows per launch", 65535 * p.tile.bm)));
        }
        if p.splits > 1 {
            let ws = self.scratch(Slot::SplitK, 4 * p.workspace_floats(&shape))?;
            self.launch_main(g, &p, ws.ptr())?;
            self.launch_reduce(g, &p, ws.ptr())
        } else {
            self.launch_main(g, &p, 0)
        }
    }

    /// The GEMM kernel of plan `p`; `part` != 0: raw partial products to the split-K workspace.
    fn launch_main(&self, g: &GemmLaunch, p: &GemmPlan, part: DevPtr) -> Result<()> {
        let args = [
            i32_arg("GEMM m", g.m as i64)?,
            i32_arg("GEMM n", g.n as i64)?,
            i32_arg("GEMM k", g.k as i64)?,
            Arg::Ptr(g.a),
            Arg::I64(g.sab),
            i32_arg("GEMM stride", g.sar)?,
            i32_arg("GEMM stride", g.sac)?,
            Arg::Ptr(g.b),
            Arg::I64(g.sbb),
            i32_arg("GEMM stride", g.sbr)?,
            i32_arg("GEMM stride", g.sbc)?,
            Arg::Ptr(g.c),
            Arg::I64(g.scb),
            i32_arg("GEMM ldc", g.ldc)?,
            Arg::F32(g.alpha),
            Arg::F32(g.beta),
            Arg::Ptr(g.bias),
            Arg::I32(g.act.map_or(-1, act_code)),
            Arg::Ptr(g.act_param),
            Arg::Ptr(g.act_out),
            Arg::Ptr(g.pre),
            Arg::Ptr(g.hval),
            Arg::I32(g.batch as i32),
            i32_arg("GEMM k chunk", p.kchunk as i64)?,
            Arg::Ptr(part),
        ];
        let grid = (p.grid.0 as u32, p.grid.1 as u32, p.grid.2 as u32);
        self.launch(p.family, p.kernel, grid, (p.tile.threads, 1, 1), &args).map_err(|e| match e {
            Error::KernelCompile { file, log } if p.family == "gemm_tc" => Error::KernelCompile {
                file,
                log: format!(
                    "{log}\n(the tensor-core kernels of --precision tf32/bf16 include <mma.h>, which needs crt/mma.h \
                     from a CUDA toolkit or the nvidia-cuda-nvcc-cu12 wheel; --precision fp32 does not)"
                ),
            },
            e => e,
        })
    }

    /// The fixed-order split-K sum and the epilogue.
    fn launch_reduce(&self, g: &GemmLaunch, p: &GemmPlan, part: DevPtr) -> Result<()> {
        let args = [
            Arg::I32(g.m as i32),
            Arg::I32(g.n as i32),
            Arg::I32(g.batch as i32),
            Arg::I32(p.splits as i32),
            Arg::Ptr(part),
            Arg::Ptr(g.c),
            Arg::I64(g.scb),
            Arg::I32(g.ldc as i32),
            Arg::F32(g.alpha),
            Arg::F32(g.beta),
            Arg::Ptr(g.bias),
            Arg::I32(g.act.map_or(-1, act_code)),
            Arg::Ptr(g.act_param),
            Arg::Ptr(g.act_out),
            Arg::Ptr(g.pre),
            Arg::Ptr(g.hval),
        ];
        let pairs = g.batch * g.m * g.n.div_ceil(2);
        let blocks = pairs.div_ceil(THREADS as usize).clamp(1, 4096) as u32;
        self.launch("gemm", "gemm_splitk_reduce_f32", (blocks, 1, 1), (THREADS, 1, 1), &args)
    }
}
