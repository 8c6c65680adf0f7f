//! Kernel, tile and split-K choice of the CUDA GEMM (`kernels/gemm.cu`, `kernels/gemm_tc.cu`), as a
//! pure function of the product's shape, its operands' layouts, the precision and the device's SM count.
//!
//! A product of `T = batch ceil(M / BM) ceil(N / BN)` output tiles launches `T s` blocks, where `s`
//! splits the `k` range into chunks of `kchunk` (a multiple of 16). With `s > 1` the blocks write raw
//! partial products to a workspace of `s batch M N` floats and a second kernel sums them in the fixed
//! order `0, 1, ..., s - 1` and applies the epilogue, so the result is deterministic.
//!
//! Rules (`S` = SM count):
//! - TF32 / BF16 (products marked reduced-precision-tolerant, each operand contiguous along one of its
//!   dimensions): the 64 x 64 tensor-core tile; `s = min(ceil(S / T), k / 128, 32)` when `2 T <= S`
//!   (fewer tiles than would keep half the SMs busy).
//! - FP32: the 128 x 64 tile (`gemm_f32`, 3 blocks per SM) when `M >= 96`, `N >= 48` and it reaches at
//!   least `S / 2` blocks with `s <= k / 256`; otherwise the 32 x 32 tile (`gemm_small_f32`) with
//!   `s <= k / 128`.
//! - `s <= 32`, the workspace at most [`WORKSPACE_MAX_BYTES`], and `batch s <= 65535` (the grid's z).
//!
//! The chunk minimums keep each split at 8 or more k slices of 16, so the pipeline is not all
//! prologue and the partial traffic (`8 M N s` bytes) stays below the operand traffic.

use crate::backend::Precision;

/// Largest split-K workspace a plan may ask for.
pub const WORKSPACE_MAX_BYTES: usize = 64 << 20;
/// Most k splits of one product.
pub const SPLIT_MAX: usize = 32;
/// Every split-K chunk is a multiple of this (the tensor-core and small SIMT k slice).
pub const CHUNK_ALIGN: usize = 16;

/// How an operand is laid out along its two dimensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Contiguous along `k` (A stored `[M, K]`; B stored `[N, K]`, i.e. transposed).
    KContiguous,
    /// Contiguous along its other dimension (A stored `[K, M]`; B stored `[K, N]`).
    OuterContiguous,
    /// Neither stride is 1 (only the SIMT kernels take it).
    Strided,
}

impl Layout {
    /// The layout of an operand with strides `(outer, k)`: `(sar, sac)` for A, `(sbc, sbr)` for B.
    pub fn of(outer_stride: i64, k_stride: i64) -> Self {
        if k_stride == 1 {
            Layout::KContiguous
        } else if outer_stride == 1 {
            Layout::OuterContiguous
        } else {
            Layout::Strided
        }
    }
}

/// What the planner needs to know about a product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmShape {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub batch: usize,
    pub a: Layout,
    pub b: Layout,
    /// The precision the product is computed in (`Fp32` unless the backend's reduced precision applies).
    pub precision: Precision,
}

/// One output tile shape of a kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    pub bm: usize,
    pub bn: usize,
    pub bk: usize,
    pub threads: u32,
}

/// The tensor-core tile (kernels/gemm_tc.cu).
pub const TC_TILE: Tile = Tile { bm: 64, bn: 64, bk: 16, threads: 128 };
/// The large SIMT tile (`gemm_f32`).
pub const SIMT_TILE: Tile = Tile { bm: 128, bn: 64, bk: 8, threads: 256 };
/// The small SIMT tile (`gemm_small_f32`).
pub const SIMT_SMALL_TILE: Tile = Tile { bm: 32, bn: 32, bk: 16, threads: 128 };

/// A launch plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmPlan {
    /// Kernel family (`gemm` or `gemm_tc`).
    pub family: &'static str,
    /// Entry point.
    pub kernel: &'static str,
    pub tile: Tile,
    /// Output tiles (over the batch), per split.
    pub tiles: usize,
    /// k splits (1: no split-K, the kernel applies the epilogue itself).
    pub splits: usize,
    /// k range of one split (at least `k`, or 1, without split-K).
    pub kchunk: usize,
    /// Grid of the main kernel: `(ceil(N / BN), ceil(M / BM), batch * splits)`.
    pub grid: (usize, usize, usize),
}

impl GemmPlan {
    /// Blocks of the main kernel.
    pub fn blocks(&self) -> usize {
        self.grid.0 * self.grid.1 * self.grid.2
    }
    /// Floats of split-K workspace (0 without split-K).
    pub fn workspace_floats(&self, shape: &GemmShape) -> usize {
        if self.splits > 1 { self.splits * shape.batch * shape.m * shape.n } else { 0 }
    }
}

const TC_KERNELS: [[&str; 4]; 2] = [
    ["gemm_tf32_nn", "gemm_tf32_nt", "gemm_tf32_tn", "gemm_tf32_tt"],
    ["gemm_bf16_nn", "gemm_bf16_nt", "gemm_bf16_tn", "gemm_bf16_tt"],
];

/// `(splits, kchunk)` for `tiles` output tiles: as many splits as fill `sm` SMs, each at least `kmin`
/// long, within [`SPLIT_MAX`], the workspace bound and the grid's z limit.
fn split_k(shape: &GemmShape, tiles: usize, kmin: usize, sm: usize) -> (usize, usize) {
    let k = shape.k;
    let unsplit = (1, k.max(1));
    if tiles == 0 || 2 * tiles > sm || k < 2 * kmin {
        return unsplit;
    }
    let plane = shape.batch.max(1) * shape.m * shape.n * 4;
    let by_ws = WORKSPACE_MAX_BYTES / plane.max(1);
    let by_grid = 65535 / shape.batch.max(1);
    let want = sm.div_ceil(tiles).min(k / kmin).min(SPLIT_MAX).min(by_ws).min(by_grid);
    if want < 2 {
        return unsplit;
    }
    let kchunk = k.div_ceil(want).next_multiple_of(CHUNK_ALIGN);
    (k.div_ceil(kchunk), kchunk)
}

fn tiles_of(shape: &GemmShape, t: Tile) -> (usize, usize, usize) {
    let (gx, gy) = (shape.n.div_ceil(t.bn), shape.m.div_ceil(t.bm));
    (gx, gy, gx * gy * shape.batch)
}

fn plan_with(
    shape: &GemmShape,
    family: &'static str,
    kernel: &'static str,
    tile: Tile,
    kmin: usize,
    sm: usize,
) -> GemmPlan {
    let (gx, gy, tiles) = tiles_of(shape, tile);
    let (splits, kchunk) = split_k(shape, tiles, kmin, sm);
    GemmPlan { family, kernel, tile, tiles, splits, kchunk, grid: (gx, gy, shape.batch * splits) }
}

/// The plan for `shape` on a device of `sm_count` SMs (see the module docs).
pub fn plan(shape: &GemmShape, sm_count: u32) -> GemmPlan {
    let sm = sm_count.max(1) as usize;
    let tc_layout = |l: Layout| match l {
        Layout::KContiguous => Some(0),
        Layout::OuterContiguous => Some(1),
        Layout::Strided => None,
    };
    // Entry point suffix: A "n" = k contiguous, "t" = m contiguous; B "n" = n contiguous, "t" = k contiguous.
    let tc = match (shape.precision, tc_layout(shape.a), tc_layout(shape.b)) {
        (Precision::Tf32, Some(a), Some(b)) => Some((0, a, 1 - b)),
        (Precision::Bf16, Some(a), Some(b)) => Some((1, a, 1 - b)),
        _ => None,
    };
    if let Some((p, a, b)) = tc {
        return plan_with(shape, "gemm_tc", TC_KERNELS[p][2 * a + b], TC_TILE, 128, sm);
    }
    // The large tile, unless a quarter of it or more would be padding (thin products: the readout,
    // dW_o, dW_in) or it would not reach half the SMs.
    let fits = 4 * shape.m >= 3 * SIMT_TILE.bm && 4 * shape.n >= 3 * SIMT_TILE.bn;
    let large = plan_with(shape, "gemm", "gemm_f32", SIMT_TILE, 256, sm);
    if fits && 2 * large.blocks() >= sm {
        return large;
    }
    plan_with(shape, "gemm", "gemm_small_f32", SIMT_SMALL_TILE, 128, sm)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(m: usize, n: usize, k: usize, a: Layout, b: Layout, precision: Precision) -> GemmShape {
        GemmShape { m, n, k, batch: 1, a, b, precision }
    }
    use Layout::{KContiguous as KC, OuterContiguous as OC, Strided};

    /// Every plan covers the product: the grid covers M and N, the splits cover k exactly once with
    /// chunks aligned to 16, and the limits hold.
    fn covers(s: &GemmShape, p: &GemmPlan) {
        assert!(p.grid.0 * p.tile.bn >= s.n && p.grid.1 * p.tile.bm >= s.m, "{s:?} {p:?}");
        assert_eq!(p.grid.2, s.batch * p.splits);
        if p.splits > 1 {
            assert_eq!(p.kchunk % CHUNK_ALIGN, 0);
            assert!(p.kchunk * (p.splits - 1) < s.k && p.kchunk * p.splits >= s.k, "{s:?} {p:?}");
            assert!(p.splits <= SPLIT_MAX && p.workspace_floats(s) * 4 <= WORKSPACE_MAX_BYTES);
        } else {
            assert!(p.kchunk >= s.k);
        }
    }

    #[test]
    fn training_shapes_fill_a_132_sm_device() {
        let f = Precision::Fp32;
        // (M, N, K, blocks at least with FP32, with TF32 / BF16): per-step products at n = 1000, n x n
        // products, the long-K weight gradients (dW, dW_o, dW_in), the input projection and the
        // readout of T*B = 6000 rows. The tensor-core tile is 64 x 64, so the thin products get fewer.
        for &(m, n, k, fp32_min, tc_min) in &[
            (50, 1000, 1000, 132, 100),
            (128, 1000, 1000, 128, 132),
            (1000, 1000, 1000, 128, 132),
            (500, 500, 500, 132, 132),
            (128, 128, 6000, 132, 128),
            (128, 128, 128_000, 132, 128),
            (1000, 1000, 16_000, 128, 132),
            (10, 128, 6000, 128, 64),
            (10, 1000, 6000, 132, 132),
            (6000, 128, 10, 94, 132),
            (6000, 9, 128, 132, 94),
        ] {
            for (a, b) in [(KC, KC), (KC, OC), (OC, OC), (OC, KC)] {
                for p in Precision::ALL {
                    let s = shape(m, n, k, a, b, p);
                    let plan = plan(&s, 132);
                    covers(&s, &plan);
                    let (family, at_least) = if p == f { ("gemm", fp32_min) } else { ("gemm_tc", tc_min) };
                    assert_eq!(plan.family, family);
                    assert!(plan.blocks() >= at_least, "{s:?}: {plan:?}");
                }
            }
        }
    }

    #[test]
    fn kernels_follow_precision_and_layouts() {
        let p = |a, b, prec| plan(&shape(256, 256, 256, a, b, prec), 132).kernel;
        assert_eq!(p(KC, OC, Precision::Tf32), "gemm_tf32_nn");
        assert_eq!(p(KC, KC, Precision::Tf32), "gemm_tf32_nt");
        assert_eq!(p(OC, OC, Precision::Bf16), "gemm_bf16_tn");
        assert_eq!(p(OC, KC, Precision::Bf16), "gemm_bf16_tt");
        // Strided operands and f32 take the SIMT kernels.
        assert_eq!(plan(&shape(256, 256, 256, Strided, KC, Precision::Tf32), 132).family, "gemm");
        assert_eq!(p(KC, OC, Precision::Fp32), "gemm_small_f32");
        assert_eq!(plan(&shape(1024, 1024, 64, KC, OC, Precision::Fp32), 132).kernel, "gemm_f32");
        assert_eq!(Layout::of(7, 1), KC);
        assert_eq!(Layout::of(1, 7), OC);
        assert_eq!(Layout::of(3, 7), Strided);
    }

    #[test]
    fn split_k_only_where_k_is_long_and_tiles_are_few() {
        // Short k, or enough tiles: no split.
        for (m, n, k) in [(50, 128, 128), (4, 6, 0), (1000, 1000, 1000), (3000, 3000, 100_000)] {
            let s = shape(m, n, k, KC, OC, Precision::Fp32);
            let p = plan(&s, 132);
            covers(&s, &p);
            if (m, n) != (50, 128) {
                assert_eq!(p.splits, 1, "{s:?} {p:?}");
            }
        }
        // dW at hidden 128 over T*B = 128k rows: one 32 x 32 tile column per SM slice, 32 splits at most.
        let s = shape(128, 128, 128_000, OC, OC, Precision::Fp32);
        let p = plan(&s, 132);
        covers(&s, &p);
        assert_eq!((p.kernel, p.splits), ("gemm_small_f32", 9));
        // Fewer SMs, fewer splits; the workspace bound caps huge outputs.
        let p8 = plan(&s, 8);
        assert!(p8.splits < p.splits && p8.blocks() >= 8, "{p8:?}");
        let big = shape(4000, 4000, 1 << 20, OC, OC, Precision::Fp32);
        let pb = plan(&GemmShape { batch: 1, ..big }, 132);
        covers(&big, &pb);
        // Batched products keep the grid's z within 65535.
        let many = GemmShape { batch: 40_000, ..shape(8, 8, 100_000, KC, OC, Precision::Fp32) };
        let pm = plan(&many, 132);
        covers(&many, &pm);
        assert!(pm.grid.2 <= 65535);
    }
}
