//! The GEMM launcher: strided operands, batches, and the fused epilogue.

use super::driver::{Arg, DevPtr, Driver};
use super::{Cuda, act_code};
use crate::backend::Activation;
use crate::error::Result;

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
}

impl GemmLaunch {
    /// A plain row-major product `C = alpha op(A) op(B) + beta C` with contiguous operands.
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
        }
    }
}

impl<D: Driver> Cuda<D> {
    /// Launches the GEMM kernel; the tile variant is chosen from the shape.
    pub(crate) fn launch_gemm(&self, g: &GemmLaunch) -> Result<()> {
        if g.m == 0 || g.n == 0 || g.batch == 0 {
            return Ok(());
        }
        let (kernel, tile) = if g.m >= 128 && g.n >= 128 { ("gemm_f32", 128) } else { ("gemm_small_f32", 32) };
        let grid = (g.n.div_ceil(tile) as u32, g.m.div_ceil(tile) as u32, g.batch as u32);
        let i = |v: i64| Arg::I32(v as i32);
        let args = [
            Arg::I32(g.m as i32),
            Arg::I32(g.n as i32),
            Arg::I32(g.k as i32),
            Arg::Ptr(g.a),
            Arg::I64(g.sab),
            i(g.sar),
            i(g.sac),
            Arg::Ptr(g.b),
            Arg::I64(g.sbb),
            i(g.sbr),
            i(g.sbc),
            Arg::Ptr(g.c),
            Arg::I64(g.scb),
            i(g.ldc),
            Arg::F32(g.alpha),
            Arg::F32(g.beta),
            Arg::Ptr(g.bias),
            Arg::I32(g.act.map_or(-1, act_code)),
            Arg::Ptr(g.act_param),
            Arg::Ptr(g.act_out),
            Arg::Ptr(g.pre),
            Arg::Ptr(g.hval),
        ];
        self.launch("gemm", kernel, grid, (256, 1, 1), &args)
    }
}
