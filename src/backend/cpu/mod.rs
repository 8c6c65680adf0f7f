//! The CPU backend: f32 for training, f64 for gradient checks.
//!
//! GEMM is faer's `matmul` (its SIMD kernels, single-threaded on small shapes where a second
//! thread only adds overhead, rayon above a size threshold); LU is faer's partial-pivot LU.
//! The recurrence is overridden by a fused loop (`recurrent.rs`) that splits the batch across
//! threads once per sequence, so the per-step path has no allocation and no thread synchronization.

/// The fast `tanh`/`exp` now live at [`crate::fastmath`] (below [`crate::scalar`]); this path is kept.
pub use crate::fastmath;
pub mod ops;
mod recurrent;

use super::{
    Act, Backend, DeviceBuf, Epilogue, Gemm, LossStats, MapOp, OptimStep, SeqDims, Slice, SliceMut, check_act,
    check_lincomb, check_lstm_bwd, check_lstm_fwd, check_recurrent_bwd, check_recurrent_fwd,
};
use crate::error::{Error, Result};
use crate::scalar::Scalar;
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::lu::partial_pivoting as lu_pp;
use faer::{Accum, Mat, MatMut, MatRef, Par};
use std::marker::PhantomData;

/// A host buffer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CpuBuf<T>(pub Vec<T>);

impl<T: Scalar> DeviceBuf for CpuBuf<T> {
    fn len(&self) -> usize {
        self.0.len()
    }
}

/// The CPU backend over element type `T` (`f32` or `f64`).
#[derive(Clone, Debug)]
pub struct Cpu<T> {
    threads: usize,
    /// The per-iteration readback slots (see [`crate::backend::Tally`]); kept on the host.
    tallies: std::sync::Arc<std::sync::Mutex<crate::backend::TallyValues>>,
    _t: PhantomData<T>,
}

impl<T> Default for Cpu<T> {
    fn default() -> Self {
        Cpu::new(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
    }
}

impl<T> Cpu<T> {
    /// A backend that uses up to `threads` threads for large GEMMs and the batch-split recurrence.
    pub fn new(threads: usize) -> Self {
        Cpu { threads: threads.max(1), tallies: Default::default(), _t: PhantomData }
    }
    /// [`Cpu::new`], or with 0 [`Cpu::default`] (every core): what `--threads` means.
    pub fn with_threads(threads: usize) -> Self {
        if threads == 0 { Cpu::default() } else { Cpu::new(threads) }
    }
    /// Threads this backend uses.
    pub fn threads(&self) -> usize {
        self.threads
    }
    /// Parallelism for a product of `m * n * k` multiply-adds: sequential below ~4M, where the
    /// measured gain of a second thread on this kind of machine is negative.
    fn par_for(&self, macs: usize) -> Par {
        if self.threads > 1 && macs >= (1 << 22) { Par::rayon(self.threads) } else { Par::Seq }
    }
}

fn view<T>(s: Slice<'_, Cpu<T>>) -> &[T]
where
    Cpu<T>: Backend<Buf = CpuBuf<T>>,
{
    &s.buf.0[s.off..s.off + s.len]
}

fn view_mut<T>(s: SliceMut<'_, Cpu<T>>) -> &mut [T]
where
    Cpu<T>: Backend<Buf = CpuBuf<T>>,
{
    &mut s.buf.0[s.off..s.off + s.len]
}

/// A row-major `[rows, cols]` matrix view of `data` (transposed when `trans`: `data` holds `[cols, rows]`).
pub(crate) fn mat<T: Scalar>(data: &[T], rows: usize, cols: usize, trans: bool) -> MatRef<'_, T> {
    if trans {
        MatRef::from_row_major_slice(data, cols, rows).transpose()
    } else {
        MatRef::from_row_major_slice(data, rows, cols)
    }
}

/// `C = alpha A B + beta C` on faer views.
pub(crate) fn matmul<T: Scalar>(c: MatMut<'_, T>, a: MatRef<'_, T>, b: MatRef<'_, T>, alpha: T, beta: T, par: Par) {
    let mut c = c;
    if beta == T::zero() {
        faer::linalg::matmul::matmul(c, Accum::Replace, a, b, alpha, par);
    } else {
        if beta != T::one() {
            for j in 0..c.ncols() {
                for i in 0..c.nrows() {
                    c[(i, j)] *= beta;
                }
            }
        }
        faer::linalg::matmul::matmul(c, Accum::Add, a, b, alpha, par);
    }
}

/// An LU factorization `P A = L U` held on the host: `L` (unit lower) and `U` share one
/// column-major matrix, as LAPACK stores them.
pub struct CpuLu<T: Scalar> {
    lu: Mat<T>,
    perm: Vec<usize>,
    perm_inv: Vec<usize>,
    n: usize,
    par: Par,
    status: LuStatus,
}

/// What the last factorization into a workspace found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LuStatus {
    /// Nothing factored yet.
    Empty,
    /// Every pivot nonzero and finite.
    Regular,
    /// The first zero or non-finite pivot's column.
    Singular(usize),
}

impl LuStatus {
    /// `Ok` for a regular factorization, else the error [`Backend::lu_status`] reports.
    pub(crate) fn check(self) -> Result<()> {
        match self {
            LuStatus::Regular => Ok(()),
            LuStatus::Singular(index) => Err(Error::Singular { op: "lu_factor", index }),
            LuStatus::Empty => Err(Error::invalid(
                "LU workspace",
                "empty",
                "it holds no factorization yet: call lu_factor_into before lu_solve or lu_status",
            )),
        }
    }
}

impl<T: Scalar> Backend for Cpu<T> {
    type Elem = T;
    type Buf = CpuBuf<T>;
    type Lu = CpuLu<T>;

    fn name(&self) -> String {
        format!("cpu ({} threads, {})", self.threads, T::NAME)
    }

    fn zeros(&self, len: usize) -> Result<CpuBuf<T>> {
        Ok(CpuBuf(vec![T::zero(); len]))
    }
    fn upload(&self, host: &[T]) -> Result<CpuBuf<T>> {
        Ok(CpuBuf(host.to_vec()))
    }
    fn download(&self, src: Slice<Self>) -> Result<Vec<T>> {
        src.check("download", src.len)?;
        Ok(view(src).to_vec())
    }
    fn write(&self, dst: SliceMut<Self>, host: &[T]) -> Result<()> {
        dst.check("write", host.len())?;
        view_mut(dst).copy_from_slice(host);
        Ok(())
    }
    fn copy(&self, src: Slice<Self>, dst: SliceMut<Self>) -> Result<()> {
        src.check("copy(src)", src.len)?;
        dst.check("copy(dst)", src.len)?;
        view_mut(dst).copy_from_slice(view(src));
        Ok(())
    }

    fn gemm(&self, g: &Gemm<T>, a: Slice<Self>, b: Slice<Self>, c: SliceMut<Self>, epi: Epilogue<Self>) -> Result<()> {
        let (ea, eb, ec) = g.extents();
        a.check("gemm(A)", ea)?;
        b.check("gemm(B)", eb)?;
        c.check("gemm(C)", ec)?;
        if let Some(bias) = &epi.bias {
            bias.check("gemm(bias)", g.n)?;
        }
        if let Some((act, out)) = &epi.act {
            out.check("gemm(act out)", ec)?;
            check_act(act, g.m * g.n, g.n)?;
        }
        let (av, bv, cv) = (view(a), view(b), view_mut(c));
        let par = self.par_for(g.m * g.n * g.k);
        for i in 0..g.batch {
            let ai = &av[i * g.stride_a..i * g.stride_a + g.m * g.k];
            let bi = &bv[i * g.stride_b..i * g.stride_b + g.k * g.n];
            let ci = &mut cv[i * g.stride_c..i * g.stride_c + g.m * g.n];
            let cm = MatMut::from_row_major_slice_mut(ci, g.m, g.n);
            if g.k == 0 {
                ci.iter_mut().for_each(|v| *v *= g.beta);
            } else {
                matmul(cm, mat(ai, g.m, g.k, g.trans_a), mat(bi, g.k, g.n, g.trans_b), g.alpha, g.beta, par);
            }
        }
        // The epilogue touches the batch's matrices only, not the gaps between them.
        let mats = |i: usize| i * g.stride_c..i * g.stride_c + g.m * g.n;
        if g.m * g.n == 0 {
            return Ok(());
        }
        if let Some(bias) = epi.bias {
            let bias = view(bias);
            for i in 0..g.batch {
                for row in cv[mats(i)].chunks_exact_mut(g.n) {
                    row.iter_mut().zip(bias).for_each(|(v, &b)| *v += b);
                }
            }
        }
        if let Some((act, out)) = epi.act {
            let param = act.param.map(view).unwrap_or(&[]);
            let out = view_mut(out);
            for i in 0..g.batch {
                ops::act_fwd(act.kind, param, &cv[mats(i)], &mut out[mats(i)], g.n);
            }
        }
        Ok(())
    }

    fn fill(&self, x: SliceMut<Self>, v: T) -> Result<()> {
        x.check("fill", x.len)?;
        view_mut(x).iter_mut().for_each(|e| *e = v);
        Ok(())
    }
    fn scale(&self, x: SliceMut<Self>, s: T) -> Result<()> {
        x.check("scale", x.len)?;
        view_mut(x).iter_mut().for_each(|e| *e *= s);
        Ok(())
    }
    fn axpby(&self, alpha: T, x: Slice<Self>, beta: T, y: SliceMut<Self>) -> Result<()> {
        x.check("axpby(x)", x.len)?;
        y.check("axpby(y)", x.len)?;
        let y = view_mut(y);
        if beta == T::zero() {
            y.iter_mut().zip(view(x)).for_each(|(y, &x)| *y = alpha * x);
        } else {
            y.iter_mut().zip(view(x)).for_each(|(y, &x)| *y = alpha * x + beta * *y);
        }
        Ok(())
    }
    fn add_diag(&self, x: SliceMut<Self>, n: usize, v: T) -> Result<()> {
        x.check("add_diag", n * n)?;
        let x = view_mut(x);
        (0..n).for_each(|i| x[i * n + i] += v);
        Ok(())
    }
    fn lincomb(&self, n: usize, terms: &[(T, Slice<Self>)], d: T, out: SliceMut<Self>) -> Result<()> {
        check_lincomb(n, terms, &out)?;
        let xs: Vec<(T, &[T])> = terms.iter().map(|(c, x)| (*c, view(*x))).collect();
        for (i, row) in view_mut(out).chunks_exact_mut(n.max(1)).enumerate() {
            match xs.first() {
                Some(&(c, x)) => row.iter_mut().zip(&x[i * n..]).for_each(|(o, &v)| *o = c * v),
                None => row.iter_mut().for_each(|o| *o = T::zero()),
            }
            for &(c, x) in xs.iter().skip(1) {
                row.iter_mut().zip(&x[i * n..]).for_each(|(o, &v)| *o += c * v);
            }
            row[i] += d;
        }
        Ok(())
    }
    fn skew(&self, x: Slice<Self>, n: usize, alpha: T, out: SliceMut<Self>) -> Result<()> {
        x.check("skew(x)", n * n)?;
        out.check("skew(out)", n * n)?;
        let (x, o) = (view(x), view_mut(out));
        for i in 0..n {
            for j in 0..n {
                o[i * n + j] = alpha * (x[i * n + j] - x[j * n + i]);
            }
        }
        Ok(())
    }
    fn transpose(&self, x: Slice<Self>, rows: usize, cols: usize, out: SliceMut<Self>) -> Result<()> {
        x.check("transpose(x)", rows * cols)?;
        out.check("transpose(out)", rows * cols)?;
        let (x, o) = (view(x), view_mut(out));
        for i in 0..rows {
            for j in 0..cols {
                o[j * rows + i] = x[i * cols + j];
            }
        }
        Ok(())
    }
    fn scale_cols(&self, x: Slice<Self>, s: Slice<Self>, rows: usize, cols: usize, out: SliceMut<Self>) -> Result<()> {
        x.check("scale_cols(x)", rows * cols)?;
        s.check("scale_cols(s)", cols)?;
        out.check("scale_cols(out)", rows * cols)?;
        let (x, s, o) = (view(x), view(s), view_mut(out));
        for (ro, rx) in o.chunks_exact_mut(cols).zip(x.chunks_exact(cols)) {
            ro.iter_mut().zip(rx).zip(s).for_each(|((o, &x), &s)| *o = x * s);
        }
        Ok(())
    }
    fn map(&self, op: MapOp, x: Slice<Self>, y: SliceMut<Self>) -> Result<()> {
        y.check("map(y)", x.len)?;
        ops::map(op, view(x), view_mut(y));
        Ok(())
    }
    fn map_bwd(&self, op: MapOp, x: Slice<Self>, dy: Slice<Self>, dx: SliceMut<Self>) -> Result<()> {
        dy.check("map_bwd(dy)", x.len)?;
        dx.check("map_bwd(dx)", x.len)?;
        ops::map_bwd(op, view(x), view(dy), view_mut(dx));
        Ok(())
    }

    fn act_fwd(&self, act: Act<Self>, a: Slice<Self>, h: SliceMut<Self>, cols: usize) -> Result<()> {
        check_act(&act, a.len, cols)?;
        h.check("act_fwd(h)", a.len)?;
        ops::act_fwd(act.kind, act.param.map(view).unwrap_or(&[]), view(a), view_mut(h), cols);
        Ok(())
    }
    fn act_bwd(
        &self,
        act: Act<Self>,
        a: Slice<Self>,
        h: Slice<Self>,
        dh: Slice<Self>,
        da: SliceMut<Self>,
        dparam: Option<SliceMut<Self>>,
        cols: usize,
    ) -> Result<()> {
        check_act(&act, a.len, cols)?;
        h.check("act_bwd(h)", a.len)?;
        dh.check("act_bwd(dh)", a.len)?;
        da.check("act_bwd(da)", a.len)?;
        if let Some(dp) = &dparam {
            dp.check("act_bwd(dparam)", act.kind.param_len(cols))?;
        }
        let dp: &mut [T] = match dparam {
            Some(d) => view_mut(d),
            None => &mut [],
        };
        ops::act_bwd(act.kind, act.param.map(view).unwrap_or(&[]), view(a), view(h), view(dh), view_mut(da), dp, cols);
        Ok(())
    }

    fn lstm_fwd(
        &self,
        z: Slice<Self>,
        peep: Slice<Self>,
        c: SliceMut<Self>,
        gates: SliceMut<Self>,
        h: SliceMut<Self>,
        n: usize,
    ) -> Result<()> {
        check_lstm_fwd(&z, &peep, &c, &gates, &h, n)?;
        ops::lstm_fwd(view(z), view(peep), view_mut(c), view_mut(gates), view_mut(h), n);
        Ok(())
    }
    fn lstm_bwd(
        &self,
        gates: Slice<Self>,
        c_prev: Slice<Self>,
        c: Slice<Self>,
        peep: Slice<Self>,
        dh: Slice<Self>,
        dc: SliceMut<Self>,
        dz: SliceMut<Self>,
        dpeep: SliceMut<Self>,
        n: usize,
    ) -> Result<()> {
        check_lstm_bwd(&gates, &c_prev, &c, &peep, &dh, &dc, &dz, &dpeep, n)?;
        ops::lstm_bwd(
            view(gates),
            view(c_prev),
            view(c),
            view(peep),
            view(dh),
            view_mut(dc),
            view_mut(dz),
            view_mut(dpeep),
            n,
        );
        Ok(())
    }

    fn softmax_xent(
        &self,
        logits: Slice<Self>,
        targets: Slice<Self>,
        grad: SliceMut<Self>,
        classes: usize,
        scale: T,
    ) -> Result<LossStats> {
        let rows = logits.len / classes.max(1);
        logits.check("softmax_xent(logits)", rows * classes)?;
        targets.check("softmax_xent(targets)", rows)?;
        grad.check("softmax_xent(grad)", rows * classes)?;
        let t = view(targets);
        // Any negative target ignores its row; NaN and non-integers are errors.
        if let Some(bad) = t
            .iter()
            .find(|&&v| v.f64().is_nan() || (v.f64() >= 0.0 && (v.f64() >= classes as f64 || v.f64().fract() != 0.0)))
        {
            return Err(Error::invalid(
                "target class",
                bad,
                format!("must be an integer in [0, {classes}) or negative"),
            ));
        }
        Ok(ops::softmax_xent(view(logits), t, view_mut(grad), classes, scale))
    }
    fn mse(&self, pred: Slice<Self>, target: Slice<Self>, grad: SliceMut<Self>, scale: T) -> Result<LossStats> {
        target.check("mse(target)", pred.len)?;
        grad.check("mse(grad)", pred.len)?;
        Ok(ops::mse(view(pred), view(target), view_mut(grad), scale))
    }

    fn tally_reset(&self, slot: crate::backend::Tally) -> Result<()> {
        self.tallies.lock().unwrap_or_else(std::sync::PoisonError::into_inner)[slot as usize] = [0.0; 4];
        Ok(())
    }
    fn tally_add(&self, slot: crate::backend::Tally, v: [f64; 4]) -> Result<()> {
        let mut t = self.tallies.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (a, b) in t[slot as usize].iter_mut().zip(v) {
            *a += b;
        }
        Ok(())
    }
    fn tally_read(&self) -> Result<crate::backend::TallyValues> {
        Ok(*self.tallies.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    fn sum_sq(&self, x: Slice<Self>) -> Result<f64> {
        x.check("sum_sq", x.len)?;
        Ok(view(x).iter().map(|&v| v.f64() * v.f64()).sum())
    }
    fn max_abs(&self, x: Slice<Self>) -> Result<f64> {
        x.check("max_abs", x.len)?;
        // NaN propagates (f64::max would skip it and hide a diverged matrix).
        Ok(view(x)
            .iter()
            .map(|&v| v.f64().abs())
            .fold(0.0, |m, v| if v.is_nan() || m.is_nan() { f64::NAN } else { m.max(v) }))
    }
    fn norm1(&self, x: Slice<Self>, n: usize) -> Result<f64> {
        x.check("norm1", n * n)?;
        Ok(ops::norm1(view(x), n))
    }
    fn col_sum(&self, x: Slice<Self>, rows: usize, cols: usize, beta: T, out: SliceMut<Self>) -> Result<()> {
        x.check("col_sum(x)", rows * cols)?;
        out.check("col_sum(out)", cols)?;
        let o = view_mut(out);
        o.iter_mut().for_each(|v| *v *= beta);
        for row in view(x).chunks_exact(cols) {
            o.iter_mut().zip(row).for_each(|(o, &x)| *o += x);
        }
        Ok(())
    }
    fn col_dot(&self, a: Slice<Self>, b: Slice<Self>, rows: usize, cols: usize, out: SliceMut<Self>) -> Result<()> {
        a.check("col_dot(a)", rows * cols)?;
        b.check("col_dot(b)", rows * cols)?;
        out.check("col_dot(out)", cols)?;
        let o = view_mut(out);
        o.iter_mut().for_each(|v| *v = T::zero());
        for (ra, rb) in view(a).chunks_exact(cols).zip(view(b).chunks_exact(cols)) {
            o.iter_mut().zip(ra.iter().zip(rb)).for_each(|(o, (&x, &y))| *o += x * y);
        }
        Ok(())
    }

    fn lu_new(&self, n: usize) -> Result<CpuLu<T>> {
        // Measured: a second thread slows the factorization down below n ~ 300.
        let par = self.par_for(n * n * n / 8);
        let (perm, perm_inv) = (vec![0usize; n], vec![0usize; n]);
        Ok(CpuLu { lu: Mat::zeros(n, n), perm, perm_inv, n, par, status: LuStatus::Empty })
    }
    fn lu_factor_into(&self, a: Slice<Self>, lu: &mut CpuLu<T>) -> Result<()> {
        let n = lu.n;
        a.check("lu_factor", n * n)?;
        let src = view(a);
        lu.lu.as_mut().copy_from(MatRef::from_row_major_slice(src, n, n));
        let params = Default::default();
        let req = lu_pp::factor::lu_in_place_scratch::<usize, T>(n, n, lu.par, params);
        let mut mem = MemBuffer::new(req);
        let stack = MemStack::new(&mut mem);
        lu_pp::factor::lu_in_place(lu.lu.as_mut(), &mut lu.perm, &mut lu.perm_inv, lu.par, stack, params);
        let f = &lu.lu;
        lu.status = match (0..n).find(|&i| f[(i, i)] == T::zero() || !f[(i, i)].is_finite()) {
            Some(index) => LuStatus::Singular(index),
            None => LuStatus::Regular,
        };
        Ok(())
    }
    fn lu_status(&self, lu: &CpuLu<T>) -> Result<()> {
        lu.status.check()
    }
    fn lu_solve(&self, lu: &CpuLu<T>, b: SliceMut<Self>, nrhs: usize, transpose: bool) -> Result<()> {
        b.check("lu_solve", lu.n * nrhs)?;
        if lu.status != LuStatus::Regular {
            view_mut(b).iter_mut().for_each(|v| *v = <T as num_traits::Float>::nan());
            return Ok(());
        }
        let rhs = MatMut::from_row_major_slice_mut(view_mut(b), lu.n, nrhs);
        let f = lu.lu.as_ref();
        // SAFETY: `perm` and `perm_inv` are the mutually inverse permutation written by `lu_in_place`.
        let perm = unsafe { faer::perm::PermRef::new_unchecked(&lu.perm, &lu.perm_inv, lu.n) };
        let req = lu_pp::solve::solve_in_place_scratch::<usize, T>(lu.n, nrhs, lu.par);
        let mut mem = MemBuffer::new(req);
        let stack = MemStack::new(&mut mem);
        if transpose {
            lu_pp::solve::solve_transpose_in_place(f, f, perm, rhs, lu.par, stack);
        } else {
            lu_pp::solve::solve_in_place(f, f, perm, rhs, lu.par, stack);
        }
        Ok(())
    }

    fn optim_step(
        &self,
        step: &OptimStep,
        param: SliceMut<Self>,
        grad: Slice<Self>,
        s1: SliceMut<Self>,
        s2: SliceMut<Self>,
    ) -> Result<()> {
        grad.check("optim_step(grad)", param.len)?;
        s1.check("optim_step(s1)", param.len)?;
        s2.check("optim_step(s2)", param.len)?;
        param.check("optim_step(param)", param.len)?;
        ops::optim_step(step, view_mut(param), view(grad), view_mut(s1), view_mut(s2));
        Ok(())
    }

    fn recurrent_forward(
        &self,
        w: Slice<Self>,
        act: Act<Self>,
        pre: SliceMut<Self>,
        h: SliceMut<Self>,
        d: SeqDims,
    ) -> Result<()> {
        check_recurrent_fwd(&w, &act, &pre, &h, d)?;
        let param = act.param.map(view).unwrap_or(&[]);
        recurrent::forward(self.threads, view(w), act.kind, param, view_mut(pre), view_mut(h), d);
        Ok(())
    }

    fn recurrent_backward(
        &self,
        w: Slice<Self>,
        act: Act<Self>,
        pre: Slice<Self>,
        h: Slice<Self>,
        dh: SliceMut<Self>,
        delta: SliceMut<Self>,
        dparam: Option<SliceMut<Self>>,
        d: SeqDims,
    ) -> Result<()> {
        check_recurrent_bwd(&w, &act, &pre, &h, &dh, &delta, dparam.as_ref(), d)?;
        let param = act.param.map(view).unwrap_or(&[]);
        let dp: &mut [T] = match dparam {
            Some(x) => view_mut(x),
            None => &mut [],
        };
        recurrent::backward(
            self.threads,
            view(w),
            act.kind,
            param,
            view(pre),
            view(h),
            view_mut(dh),
            view_mut(delta),
            dp,
            d,
        );
        Ok(())
    }
}
