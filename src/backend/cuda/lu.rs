//! LU with partial pivoting and triangular solves on the device (`kernels/lu.cu`), with no
//! allocation and no host readback inside a factorization or a solve.
//!
//! # Factorization `P A = L U`
//! Panels of `NB <= 32` columns. Per panel: a single-block panel kernel (the panel in registers, a
//! warp-shuffle arg-max per column and one barrier per column; it exports `L11^{-1}` and the moved
//! rows), a many-block row kernel (the row interchanges applied to every other column and
//! `U12 = L11^{-1} P A12`, 32 columns per block, so that this bandwidth- and FMA-bound work is spread
//! over the SMs instead of serialized on the panel's one), and one GEMM `A22 -= L21 U12` through
//! [`Cuda::launch_gemm`]. After the last panel, one launch inverts every `32 x 32` diagonal block of
//! `L` and `U` for the solves. At `n = 1000`: 32 panels, 32 row launches, 31 GEMMs and one
//! inversion, 96 launches (the previous kernels: 126, two allocations and a blocking readback).
//!
//! The panel kernel holds `rows = n - k0` rows in registers, `R` per thread of at most 512 threads:
//! `NB = 32` up to 1024 rows, then narrower panels (16 columns to 2048 rows, 8 to 4096, 4 to 8192,
//! 2 to 16384); larger matrices are refused with an error naming the limit.
//!
//! # Singularity
//! The first column whose pivot is zero or not finite stays in a status word on the device (in the
//! factorization object): [`Cuda::lu_status_dev`] reads it when asked (a synchronization), and every
//! solve kernel reads it and writes NaN instead of a solution, so a singular factorization in a
//! training step turns into the non-finite loss or drift the trainer already reports.
//!
//! # Solves
//! `A X = B`: `Y = P B` (one gather), `L` forward in place on `Y`, then `U` backward from `Y` into
//! `B`. `A^T X = B` (`A^T = U^T L^T P`): `U^T` forward in place on `B`, `L^T` backward from `B` into
//! `Y`, then `B = P^T Y` (one scatter). Each triangle is split into leaves of up to [`LEAF`] rows: a
//! leaf kernel solves a leaf with the inverted `32 x 32` diagonal blocks (8 right-hand-side columns
//! per block) and one GEMM applies the leaf to every row after it. `Y` is the [`Slot::Lu`]
//! workspace. At `n = 1000`: 4 leaves and 3 GEMMs per triangle plus the gather or scatter, 15
//! launches (the previous kernels: 127).

use super::driver::{Arg, DevPtr, Driver};
use super::{Cuda, DevAlloc, GemmLaunch, Slot};
use crate::error::{Error, Result};

/// Rows of a triangular-solve leaf (a multiple of 32).
pub const LEAF: usize = 256;
/// Most threads of the panel kernel.
const PANEL_THREADS: usize = 512;
/// Right-hand-side columns per block of the leaf kernel (`LU_SC` in `lu.cu`).
const LEAF_COLS: usize = 8;
/// Ints of the panel kernel's export (`LU_INFO_INTS` in `lu.cu`, rounded up).
const INFO_INTS: usize = 128;
/// Columns per block of the row kernel (`LU_CHUNK`).
const ROW_CHUNK: usize = 32;
/// Status word of a workspace that holds no factorization yet.
const EMPTY: i32 = i32::MIN;

/// `(panel width, rows per thread, kernel)`, narrowest rows-per-thread first.
const PANELS: [(usize, usize, &str); 6] = [
    (32, 1, "lu_panel_32x1_f32"),
    (32, 2, "lu_panel_32x2_f32"),
    (16, 4, "lu_panel_16x4_f32"),
    (8, 8, "lu_panel_8x8_f32"),
    (4, 16, "lu_panel_4x16_f32"),
    (2, 32, "lu_panel_2x32_f32"),
];

/// An LU factorization workspace on the device: the factors, the row permutation and status word,
/// and the inverted diagonal blocks; allocated once by [`Cuda::lu_new_dev`].
pub struct CudaLu<D: Driver> {
    a: DevAlloc<D>,
    /// `perm[0..n]`, then the status word at `perm[n]`.
    ints: DevAlloc<D>,
    /// `invL` blocks (`ceil(n / 32)` of `32 x 32`), then the `invU` blocks.
    inv: DevAlloc<D>,
    /// What the panel kernel hands the row kernel: [`INFO_INTS`] ints, then `L11^{-1}` (`32 x 32`).
    info: DevAlloc<D>,
    n: usize,
    /// Most threads the panel kernel may use (512; tests lower it to reach every panel variant).
    panel_threads: usize,
}

fn at(base: DevPtr, elems: usize) -> DevPtr {
    base + 4 * elems as u64
}

/// The panel variant for `rows` rows with at most `max_threads` threads: `(width, kernel, threads)`.
fn panel_config(rows: usize, max_threads: usize) -> Option<(usize, &'static str, u32)> {
    let (nb, r, kernel) = PANELS.iter().copied().find(|&(_, r, _)| rows <= r * max_threads)?;
    let threads = rows.div_ceil(r).div_ceil(32).max(1) * 32;
    Some((nb, kernel, threads as u32))
}

/// The largest order the factorization supports.
pub const MAX_N: usize = 32 * PANEL_THREADS;

impl<D: Driver> Cuda<D> {
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

    /// A workspace for `n x n` factorizations (the only allocations of the device LU).
    pub(crate) fn lu_new_dev(&self, n: usize) -> Result<CudaLu<D>> {
        if n > MAX_N {
            return Err(Error::invalid(
                "LU order",
                n,
                format!("the CUDA LU factors matrices of order up to {MAX_N}; use --device cpu for larger ones"),
            ));
        }
        let blocks = n.div_ceil(32);
        let a = DevAlloc::new(&self.drv, 4 * n * n)?;
        let ints = DevAlloc::new(&self.drv, 4 * (n + 1))?;
        self.drv.htod(at(ints.ptr, n), &EMPTY.to_le_bytes())?;
        let inv = DevAlloc::new(&self.drv, 4 * 2 * 1024 * blocks)?;
        let info = DevAlloc::new(&self.drv, 4 * (INFO_INTS + 1024))?;
        Ok(CudaLu { a, ints, inv, info, n, panel_threads: PANEL_THREADS })
    }

    /// Factors the `n x n` matrix at `src` into `lu`: launches only.
    pub(crate) fn lu_factor_dev(&self, src: DevPtr, lu: &mut CudaLu<D>) -> Result<()> {
        let n = lu.n;
        if n == 0 {
            return self.drv.htod(lu.ints.ptr, &0i32.to_le_bytes());
        }
        self.drv.dtod(lu.a.ptr, src, 4 * n * n)?;
        let (p, perm, status) = (lu.a.ptr, lu.ints.ptr, at(lu.ints.ptr, n));
        let (info, info_li) = (lu.info.ptr, at(lu.info.ptr, INFO_INTS));
        let mut k0 = 0;
        while k0 < n {
            let rows = n - k0;
            let (nb, kernel, threads) = panel_config(rows, lu.panel_threads).ok_or_else(|| {
                Error::invalid("LU order", n, format!("the CUDA LU factors matrices of order up to {MAX_N}"))
            })?;
            let kb = nb.min(rows);
            let args = [
                Arg::I32(n as i32),
                Arg::I32(k0 as i32),
                Arg::I32(kb as i32),
                Arg::Ptr(p),
                Arg::Ptr(perm),
                Arg::Ptr(status),
                Arg::Ptr(info),
                Arg::Ptr(info_li),
            ];
            self.launch("lu", kernel, (1, 1, 1), (threads, 1, 1), &args)?;
            let rest = rows - kb;
            let right = rest.div_ceil(ROW_CHUNK);
            let blocks = right + k0.div_ceil(ROW_CHUNK);
            let args = [
                Arg::I32(n as i32),
                Arg::I32(k0 as i32),
                Arg::I32(kb as i32),
                Arg::I32(right as i32),
                Arg::Ptr(p),
                Arg::Ptr(info),
                Arg::Ptr(info_li),
            ];
            self.launch("lu", "lu_rows_f32", (blocks as u32, 1, 1), (256, 1, 1), &args)?;
            if rest > 0 {
                let (l21, u12, a22) =
                    (at(p, (k0 + kb) * n + k0), at(p, k0 * n + k0 + kb), at(p, (k0 + kb) * n + k0 + kb));
                self.gemm_update(rest, rest, kb, l21, n as i64, 1, u12, n as i64, a22, n as i64)?;
            }
            k0 += kb;
        }
        let blocks = n.div_ceil(32);
        let (inv_l, inv_u) = (lu.inv.ptr, at(lu.inv.ptr, 1024 * blocks));
        let args = [Arg::I32(n as i32), Arg::Ptr(p), Arg::Ptr(inv_l), Arg::Ptr(inv_u)];
        self.launch("lu", "lu_inv_diag_f32", (blocks as u32, 1, 1), (64, 1, 1), &args)
    }

    /// Reads the status word (waits for the factorization).
    pub(crate) fn lu_status_dev(&self, lu: &CudaLu<D>) -> Result<()> {
        let mut bytes = [0u8; 4];
        self.drv.dtoh(&mut bytes, at(lu.ints.ptr, lu.n))?;
        match i32::from_le_bytes(bytes) {
            0 => Ok(()),
            EMPTY => Err(Error::invalid(
                "LU workspace",
                "empty",
                "it holds no factorization yet: call lu_factor_into before lu_solve or lu_status",
            )),
            i => Err(Error::Singular { op: "lu_factor", index: (i - 1).max(0) as usize }),
        }
    }

    /// Solves one triangle of `lu` for `nrhs` columns: `lower` (forward) or upper (backward),
    /// `trans`: the transposed factor (so `L^T` is upper and `U^T` lower). Reads `src`, writes
    /// `dst` (equal for in place); the GEMM updates go to `src`, whose unsolved rows they touch.
    #[allow(clippy::too_many_arguments)]
    fn triangle(&self, lu: &CudaLu<D>, use_l: bool, trans: bool, src: DevPtr, dst: DevPtr, nrhs: usize) -> Result<()> {
        let (n, a) = (lu.n, lu.a.ptr);
        let lower = use_l != trans;
        let blocks = n.div_ceil(32);
        let inv = if use_l { lu.inv.ptr } else { at(lu.inv.ptr, 1024 * blocks) };
        // T(i, l) = a[i t_row + l t_col]; transposed factors read a by columns.
        let (t_row, t_col) = if trans { (1i64, n as i64) } else { (n as i64, 1i64) };
        let (d_row, d_col) = if trans { (1, 32) } else { (32, 1) };
        let elem = |i: usize, l: usize| at(a, (i as i64 * t_row + l as i64 * t_col) as usize);
        let leaves = n.div_ceil(LEAF);
        let grid = (nrhs.div_ceil(LEAF_COLS) as u32, 1, 1);
        let status = at(lu.ints.ptr, n);
        for s in 0..leaves {
            let leaf = if lower { s } else { leaves - 1 - s };
            let r0 = leaf * LEAF;
            let m = LEAF.min(n - r0);
            let args = [
                Arg::I32(m as i32),
                Arg::I32(nrhs as i32),
                Arg::Ptr(elem(r0, r0)),
                Arg::I32(t_row as i32),
                Arg::I32(t_col as i32),
                Arg::Ptr(at(inv, 1024 * (r0 / 32))),
                Arg::I32(d_row),
                Arg::I32(d_col),
                Arg::Ptr(at(src, r0 * nrhs)),
                Arg::Ptr(at(dst, r0 * nrhs)),
                Arg::I32(lower as i32),
                Arg::Ptr(status),
            ];
            self.launch("lu", "trsm_leaf_f32", grid, (256, 1, 1), &args)?;
            let x = at(dst, r0 * nrhs);
            let r = nrhs as i64;
            if lower && r0 + m < n {
                let below = n - r0 - m;
                self.gemm_update(below, nrhs, m, elem(r0 + m, r0), t_row, t_col, x, r, at(src, (r0 + m) * nrhs), r)?;
            } else if !lower && r0 > 0 {
                self.gemm_update(r0, nrhs, m, elem(0, r0), t_row, t_col, x, r, src, r)?;
            }
        }
        Ok(())
    }

    fn permute(&self, kernel: &str, lu: &CudaLu<D>, from: DevPtr, to: DevPtr, nrhs: usize) -> Result<()> {
        let args = [Arg::I32(lu.n as i32), Arg::I32(nrhs as i32), Arg::Ptr(from), Arg::Ptr(lu.ints.ptr), Arg::Ptr(to)];
        self.launch_1d("lu", kernel, lu.n * nrhs, &args)
    }

    /// Solves `A X = B` (or `A^T X = B`) in place for `B` at `b`: launches only.
    pub(crate) fn lu_solve_dev(&self, lu: &CudaLu<D>, b: DevPtr, nrhs: usize, transpose: bool) -> Result<()> {
        if lu.n == 0 || nrhs == 0 {
            return Ok(());
        }
        let work = self.scratch(Slot::Lu, 4 * lu.n * nrhs)?;
        let y = work.ptr();
        if !transpose {
            self.permute("lu_gather_f32", lu, b, y, nrhs)?;
            self.triangle(lu, true, false, y, y, nrhs)?;
            self.triangle(lu, false, false, y, b, nrhs)
        } else {
            self.triangle(lu, false, true, b, b, nrhs)?;
            self.triangle(lu, true, true, b, y, nrhs)?;
            self.permute("lu_scatter_f32", lu, y, b, nrhs)
        }
    }
}

impl<D: Driver> CudaLu<D> {
    /// Order of the factored matrix.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Caps the panel kernel's threads (a multiple of 32, at least 32), so that tests reach the
    /// narrow-panel variants with small matrices.
    #[cfg(test)]
    fn with_panel_threads(mut self, threads: usize) -> Self {
        self.panel_threads = threads.max(32) / 32 * 32;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::Cpu;
    use crate::backend::cuda::emu::{EmuDriver, ResumeOrder};
    use crate::backend::{Backend, Slice, SliceMut};
    use rand::{RngExt, SeedableRng};

    #[test]
    fn panel_variants_follow_the_row_count() {
        assert_eq!(panel_config(1, 512), Some((32, "lu_panel_32x1_f32", 32)));
        assert_eq!(panel_config(512, 512), Some((32, "lu_panel_32x1_f32", 512)));
        assert_eq!(panel_config(1000, 512), Some((32, "lu_panel_32x2_f32", 512)));
        assert_eq!(panel_config(1025, 512), Some((16, "lu_panel_16x4_f32", 288)));
        assert_eq!(panel_config(MAX_N, 512), Some((2, "lu_panel_2x32_f32", 512)));
        assert_eq!(panel_config(MAX_N + 1, 512), None);
    }

    /// With the panel kernel capped at 32 threads, small matrices go through every panel variant
    /// (n = 520: 2 columns per panel first, then 4, 8, 16, 32 with two rows per thread, then one).
    /// Backward error of `A X = B` and `A^T X = B` within `4 (sqrt(n) + 1) u`, as in the parity
    /// tests (partial pivoting is backward stable; a wrong pivot or permutation fails by far), and
    /// the solution within `n u 1e4` of an f64 reference (random matrices: condition below 1e4).
    #[test]
    fn narrow_panels_solve_like_the_reference() {
        let r = Cpu::<f64>::new(1);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for (n, orders) in [(130usize, &ResumeOrder::TEST_SET[..2]), (300, &ResumeOrder::TEST_SET[2..3]), (520, &[])] {
            let orders: Vec<ResumeOrder> = if orders.is_empty() { vec![ResumeOrder::InOrder] } else { orders.to_vec() };
            let a: Vec<f32> = (0..n * n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let nrhs = 3;
            let b: Vec<f32> = (0..n * nrhs).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let wide = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
            let rlu = r.lu_factor(Slice::all(&r.upload(&wide(&a)).unwrap()), n).unwrap();
            for order in orders {
                let dev = Cuda::new(EmuDriver::with_order(order)).unwrap();
                let mut lu = dev.lu_new(n).unwrap().with_panel_threads(32);
                dev.lu_factor_into(Slice::all(&dev.upload(&a).unwrap()), &mut lu).unwrap();
                dev.lu_status(&lu).unwrap();
                for transpose in [false, true] {
                    let mut x = dev.upload(&b).unwrap();
                    dev.lu_solve(&lu, SliceMut::all(&mut x), nrhs, transpose).unwrap();
                    let x = dev.download(Slice::all(&x)).unwrap();
                    let mut want = r.upload(&wide(&b)).unwrap();
                    r.lu_solve(&rlu, SliceMut::all(&mut want), nrhs, transpose).unwrap();
                    let want = r.download(Slice::all(&want)).unwrap();
                    let op = |i: usize, k: usize| if transpose { a[k * n + i] } else { a[i * n + k] } as f64;
                    let (mut res, mut a_inf) = (0.0f64, 0.0f64);
                    for i in 0..n {
                        a_inf = a_inf.max((0..n).map(|k| op(i, k).abs()).sum());
                        for c in 0..nrhs {
                            let ax: f64 = (0..n).map(|k| op(i, k) * x[k * nrhs + c] as f64).sum();
                            res = res.max((b[i * nrhs + c] as f64 - ax).abs());
                        }
                    }
                    let x_max = x.iter().fold(0.0f64, |m, v| m.max(v.abs() as f64));
                    let backward = res / (a_inf * x_max);
                    let bound = 4.0 * ((n as f64).sqrt() + 1.0) * 6e-8;
                    assert!(backward <= bound, "n={n} {order} transpose={transpose}: backward error {backward:.2e}");
                    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                    let err = x.iter().zip(&want).fold(0.0f64, |m, (&g, w)| m.max((g as f64 - w).abs()));
                    let tol = n as f64 * 6e-8 * 1e4 * scale;
                    assert!(err <= tol, "n={n} {order} transpose={transpose}: error {err:.2e} > {tol:.2e}");
                }
            }
        }
    }
}
