//! Blocked LU with partial pivoting and triangular solves on the device (`kernels/lu.cu`).
//!
//! Factorization of `P A = L U` in panels of [`NB`] columns: the panel kernel pivots and factors the
//! panel, the swap kernel applies its row swaps to the other columns, the TRSM kernel forms
//! `U12 = L11^-1 A12`, and the GEMM kernel updates the trailing matrix `A22 -= L21 U12`.
//! Solves use the same split: a small triangular kernel on each diagonal block and a GEMM for the
//! rest. `A^T X = B` uses `A^T = U^T L^T P`, reading `L` and `U` through transposed strides.

use super::driver::{Arg, DevPtr, Driver};
use super::{Cuda, DevAlloc, GemmLaunch, Slot, THREADS};
use crate::error::{Error, Result};

/// Panel width.
pub const NB: usize = 32;

/// An LU factorization held on the device.
pub struct CudaLu<D: Driver> {
    a: DevAlloc<D>,
    piv: DevAlloc<D>,
    n: usize,
}

fn at(base: DevPtr, elems: usize) -> DevPtr {
    base + 4 * elems as u64
}

impl<D: Driver> Cuda<D> {
    fn cols_grid(cols: usize) -> (u32, u32, u32) {
        (cols.div_ceil(THREADS as usize).max(1) as u32, 1, 1)
    }

    /// Strided update `C -= A B` used by factor and solve.
    #[allow(clippy::too_many_arguments)]
    fn gemm_update(
        &self,
        m: usize,
        n: usize,
        k: usize,
        a: DevPtr,
        sar: i64,
        sac: i64,
        b: DevPtr,
        ldb: i64,
        c: DevPtr,
        ldc: i64,
    ) -> Result<()> {
        let mut g = GemmLaunch::dense(m, n, k, a, false, b, false, c);
        (g.sar, g.sac, g.sbr, g.sbc, g.ldc) = (sar, sac, ldb, 1, ldc);
        (g.alpha, g.beta) = (-1.0, 1.0);
        self.launch_gemm(&g)
    }

    pub(crate) fn lu_factor_dev(&self, src: DevPtr, n: usize) -> Result<CudaLu<D>> {
        let a = DevAlloc::new(&self.drv, 4 * n * n)?;
        self.drv.dtod(a.ptr, src, 4 * n * n)?;
        let piv = DevAlloc::new(&self.drv, 4 * n.max(1))?;
        // The status word lives in the workspace arena: no allocation for it per factorization.
        let info = self.scratch(Slot::Lu, 4)?;
        self.drv.memset_zero(info.ptr(), 4)?;
        let (ni, p) = (n as i32, a.ptr);
        for k0 in (0..n).step_by(NB) {
            let kb = NB.min(n - k0);
            let args = [
                Arg::I32(ni),
                Arg::I32(k0 as i32),
                Arg::I32(kb as i32),
                Arg::Ptr(p),
                Arg::Ptr(piv.ptr),
                Arg::Ptr(info.ptr()),
            ];
            self.launch("lu", "lu_panel_f32", (1, 1, 1), (256, 1, 1), &args)?;
            let args = [Arg::I32(ni), Arg::I32(k0 as i32), Arg::I32(kb as i32), Arg::Ptr(p), Arg::Ptr(piv.ptr)];
            self.launch("lu", "lu_swap_f32", Self::cols_grid(n), (THREADS, 1, 1), &args)?;
            let rest = n - k0 - kb;
            if rest > 0 {
                let args = [Arg::I32(ni), Arg::I32(k0 as i32), Arg::I32(kb as i32), Arg::Ptr(p)];
                self.launch("lu", "lu_trsm_f32", Self::cols_grid(rest), (THREADS, 1, 1), &args)?;
                let (l21, u12, a22) =
                    (at(p, (k0 + kb) * n + k0), at(p, k0 * n + k0 + kb), at(p, (k0 + kb) * n + k0 + kb));
                self.gemm_update(rest, rest, kb, l21, n as i64, 1, u12, n as i64, a22, n as i64)?;
            }
        }
        let mut bytes = [0u8; 4];
        self.drv.dtoh(&mut bytes, info.ptr())?;
        drop(info);
        let info = i32::from_le_bytes(bytes);
        if info != 0 {
            return Err(Error::Singular { op: "lu_factor", index: (info - 1) as usize });
        }
        Ok(CudaLu { a, piv, n })
    }

    fn trsm_block(
        &self,
        kb: usize,
        nrhs: usize,
        t: DevPtr,
        t_row: i64,
        t_col: i64,
        x: DevPtr,
        lower: bool,
        unit: bool,
    ) -> Result<()> {
        let args = [
            Arg::I32(kb as i32),
            Arg::I32(nrhs as i32),
            Arg::Ptr(t),
            Arg::I32(t_row as i32),
            Arg::I32(t_col as i32),
            Arg::Ptr(x),
            Arg::I32(nrhs as i32),
            Arg::I32(lower as i32),
            Arg::I32(unit as i32),
        ];
        self.launch("lu", "trsm_block_f32", Self::cols_grid(nrhs), (THREADS, 1, 1), &args)
    }

    fn apply_piv(&self, lu: &CudaLu<D>, b: DevPtr, nrhs: usize, reverse: bool) -> Result<()> {
        let args =
            [Arg::I32(lu.n as i32), Arg::I32(nrhs as i32), Arg::Ptr(b), Arg::Ptr(lu.piv.ptr), Arg::I32(reverse as i32)];
        self.launch("lu", "lu_apply_piv_f32", Self::cols_grid(nrhs), (THREADS, 1, 1), &args)
    }

    pub(crate) fn lu_solve_dev(&self, lu: &CudaLu<D>, b: DevPtr, nrhs: usize, transpose: bool) -> Result<()> {
        let (n, a) = (lu.n, lu.a.ptr);
        let (ni, r) = (n as i64, nrhs as i64);
        let starts: Vec<usize> = (0..n).step_by(NB).collect();
        if !transpose {
            // P B, then L (unit lower, forward), then U (upper, backward).
            self.apply_piv(lu, b, nrhs, false)?;
            for &k0 in &starts {
                let kb = NB.min(n - k0);
                self.trsm_block(kb, nrhs, at(a, k0 * n + k0), ni, 1, at(b, k0 * nrhs), true, true)?;
                let below = n - k0 - kb;
                if below > 0 {
                    self.gemm_update(
                        below,
                        nrhs,
                        kb,
                        at(a, (k0 + kb) * n + k0),
                        ni,
                        1,
                        at(b, k0 * nrhs),
                        r,
                        at(b, (k0 + kb) * nrhs),
                        r,
                    )?;
                }
            }
            for &k0 in starts.iter().rev() {
                let kb = NB.min(n - k0);
                self.trsm_block(kb, nrhs, at(a, k0 * n + k0), ni, 1, at(b, k0 * nrhs), false, false)?;
                if k0 > 0 {
                    self.gemm_update(k0, nrhs, kb, at(a, k0), ni, 1, at(b, k0 * nrhs), r, b, r)?;
                }
            }
        } else {
            // U^T (lower, forward), then L^T (unit upper, backward), then P^T.
            for &k0 in &starts {
                let kb = NB.min(n - k0);
                self.trsm_block(kb, nrhs, at(a, k0 * n + k0), 1, ni, at(b, k0 * nrhs), true, false)?;
                let below = n - k0 - kb;
                if below > 0 {
                    self.gemm_update(
                        below,
                        nrhs,
                        kb,
                        at(a, k0 * n + k0 + kb),
                        1,
                        ni,
                        at(b, k0 * nrhs),
                        r,
                        at(b, (k0 + kb) * nrhs),
                        r,
                    )?;
                }
            }
            for &k0 in starts.iter().rev() {
                let kb = NB.min(n - k0);
                self.trsm_block(kb, nrhs, at(a, k0 * n + k0), 1, ni, at(b, k0 * nrhs), false, true)?;
                if k0 > 0 {
                    self.gemm_update(k0, nrhs, kb, at(a, k0 * n), 1, ni, at(b, k0 * nrhs), r, b, r)?;
                }
            }
            self.apply_piv(lu, b, nrhs, true)?;
        }
        Ok(())
    }
}

impl<D: Driver> CudaLu<D> {
    /// Order of the factored matrix.
    pub fn n(&self) -> usize {
        self.n
    }
}
