//! `Backend` for `Cuda<D>`: every op as one or a few kernel launches.

use super::driver::{Arg, Driver};
use super::lu::CudaLu;
use super::reduce::blocks_1d;
use super::{Cuda, CudaBuf, GemmLaunch, THREADS, act_code};
use crate::backend::{
    Act, Activation, Backend, Epilogue, Gemm, LossStats, MapOp, OptimRule, OptimStep, Precision, SeqDims, Slice,
    SliceMut, StepTensor, Tally, TallyValues, check_act, check_lincomb, check_lstm_bwd, check_lstm_fwd,
};
use crate::error::{Error, Result};

fn p<D: Driver>(s: &Slice<Cuda<D>>) -> Arg {
    Arg::Ptr(Cuda::ptr(s))
}
fn pm<D: Driver>(s: &SliceMut<Cuda<D>>) -> Arg {
    Arg::Ptr(Cuda::ptr_mut(s))
}
fn n64(n: usize) -> Arg {
    Arg::I64(n as i64)
}

impl<D: Driver> Backend for Cuda<D> {
    type Elem = f32;
    type Buf = CudaBuf<D>;
    type Lu = CudaLu<D>;

    fn name(&self) -> String {
        self.drv.name()
    }
    fn gemm_precision(&self) -> Precision {
        self.precision
    }
    fn synchronize(&self) -> Result<()> {
        self.drv.synchronize()
    }
    fn profile(&self) -> Option<crate::backend::profile::Profile> {
        Some(Cuda::profile(self))
    }

    fn zeros(&self, len: usize) -> Result<CudaBuf<D>> {
        let ptr = self.drv.alloc(4 * len)?;
        let buf = CudaBuf { ptr, len, drv: self.drv.clone() };
        self.drv.memset_zero(ptr, 4 * len)?;
        Ok(buf)
    }
    fn upload(&self, host: &[f32]) -> Result<CudaBuf<D>> {
        let ptr = self.drv.alloc(4 * host.len())?;
        let buf = CudaBuf { ptr, len: host.len(), drv: self.drv.clone() };
        self.drv.htod(ptr, bytemuck::cast_slice(host))?;
        Ok(buf)
    }
    fn download(&self, src: Slice<Self>) -> Result<Vec<f32>> {
        src.check("download", src.len)?;
        let mut out = vec![0f32; src.len];
        self.drv.dtoh(bytemuck::cast_slice_mut(&mut out), Cuda::ptr(&src))?;
        Ok(out)
    }
    fn write(&self, dst: SliceMut<Self>, host: &[f32]) -> Result<()> {
        dst.check("write", host.len())?;
        self.drv.htod(Cuda::ptr_mut(&dst), bytemuck::cast_slice(host))
    }
    fn copy(&self, src: Slice<Self>, dst: SliceMut<Self>) -> Result<()> {
        src.check("copy(src)", src.len)?;
        dst.check("copy(dst)", src.len)?;
        self.drv.dtod(Cuda::ptr_mut(&dst), Cuda::ptr(&src), 4 * src.len)
    }

    fn gemm(
        &self,
        g: &Gemm<f32>,
        a: Slice<Self>,
        b: Slice<Self>,
        c: SliceMut<Self>,
        epi: Epilogue<Self>,
    ) -> Result<()> {
        let (ea, eb, ec) = g.extents();
        a.check("gemm(A)", ea)?;
        b.check("gemm(B)", eb)?;
        c.check("gemm(C)", ec)?;
        self.work(g.flops(), 4.0 * (ea + eb + 2 * ec) as f64);
        let mut l =
            GemmLaunch::dense(g.m, g.n, g.k, Cuda::ptr(&a), g.trans_a, Cuda::ptr(&b), g.trans_b, Cuda::ptr_mut(&c));
        (l.batch, l.sab, l.sbb, l.scb) = (g.batch, g.stride_a as i64, g.stride_b as i64, g.stride_c as i64);
        (l.alpha, l.beta) = (g.alpha, g.beta);
        l.precision = if g.allow_reduced { self.precision } else { Precision::Fp32 };
        if let Some(bias) = &epi.bias {
            bias.check("gemm(bias)", g.n)?;
            l.bias = Cuda::ptr(bias);
        }
        if let Some((act, out)) = &epi.act {
            out.check("gemm(act out)", ec)?;
            check_act(act, g.m * g.n, g.n)?;
            l.act = Some(act.kind);
            l.act_param = act.param.as_ref().map_or(0, Cuda::ptr);
            l.act_out = Cuda::ptr_mut(out);
        }
        self.launch_gemm(&l)
    }

    fn fill(&self, x: SliceMut<Self>, v: f32) -> Result<()> {
        x.check("fill", x.len)?;
        self.launch_1d("elementwise", "fill_f32", x.len, &[n64(x.len), Arg::F32(v), pm(&x)])
    }
    fn scale(&self, x: SliceMut<Self>, s: f32) -> Result<()> {
        x.check("scale", x.len)?;
        self.launch_1d("elementwise", "scale_f32", x.len, &[n64(x.len), Arg::F32(s), pm(&x)])
    }
    fn axpby(&self, alpha: f32, x: Slice<Self>, beta: f32, y: SliceMut<Self>) -> Result<()> {
        x.check("axpby(x)", x.len)?;
        y.check("axpby(y)", x.len)?;
        self.launch_1d("elementwise", "axpby_f32", x.len, &[n64(x.len), Arg::F32(alpha), p(&x), Arg::F32(beta), pm(&y)])
    }
    fn add_diag(&self, x: SliceMut<Self>, n: usize, v: f32) -> Result<()> {
        x.check("add_diag", n * n)?;
        self.launch_1d("elementwise", "add_diag_f32", n, &[Arg::I32(n as i32), Arg::F32(v), pm(&x)])
    }
    fn lincomb(&self, n: usize, terms: &[(f32, Slice<Self>)], d: f32, out: SliceMut<Self>) -> Result<()> {
        check_lincomb(n, terms, &out)?;
        // The kernel takes up to four terms (a null pointer for an unused one); longer sums add
        // the rest with axpby.
        let mut args = vec![Arg::I32(n as i32)];
        for k in 0..4 {
            match terms.get(k) {
                Some((c, x)) => args.extend([Arg::F32(*c), p(x)]),
                None => args.extend([Arg::F32(0.0), Arg::Ptr(0)]),
            }
        }
        args.extend([Arg::F32(d), pm(&out)]);
        let mut out = out;
        self.launch_1d("elementwise", "lincomb_f32", n * n, &args)?;
        for (c, x) in terms.iter().skip(4) {
            self.axpby(*c, *x, 1.0, out.rb())?;
        }
        Ok(())
    }
    fn skew(&self, x: Slice<Self>, n: usize, alpha: f32, out: SliceMut<Self>) -> Result<()> {
        x.check("skew(x)", n * n)?;
        out.check("skew(out)", n * n)?;
        self.launch_1d("elementwise", "skew_f32", n * n, &[Arg::I32(n as i32), Arg::F32(alpha), p(&x), pm(&out)])
    }
    fn transpose(&self, x: Slice<Self>, rows: usize, cols: usize, out: SliceMut<Self>) -> Result<()> {
        x.check("transpose(x)", rows * cols)?;
        out.check("transpose(out)", rows * cols)?;
        let grid = (cols.div_ceil(32).max(1) as u32, rows.div_ceil(32).max(1) as u32, 1);
        let args = [Arg::I32(rows as i32), Arg::I32(cols as i32), p(&x), pm(&out)];
        self.launch("elementwise", "transpose_f32", grid, (32, 8, 1), &args)
    }
    fn scale_cols(&self, x: Slice<Self>, s: Slice<Self>, rows: usize, cols: usize, out: SliceMut<Self>) -> Result<()> {
        x.check("scale_cols(x)", rows * cols)?;
        s.check("scale_cols(s)", cols)?;
        out.check("scale_cols(out)", rows * cols)?;
        let args = [Arg::I32(rows as i32), Arg::I32(cols as i32), p(&x), p(&s), pm(&out)];
        self.launch_1d("elementwise", "scale_cols_f32", rows * cols, &args)
    }
    fn map(&self, op: MapOp, x: Slice<Self>, y: SliceMut<Self>) -> Result<()> {
        y.check("map(y)", x.len)?;
        match op {
            MapOp::Margin { m } => {
                self.launch_1d("activation", "margin_fwd_f32", x.len, &[n64(x.len), Arg::F32(m as f32), p(&x), pm(&y)])
            }
        }
    }
    fn map_bwd(&self, op: MapOp, x: Slice<Self>, dy: Slice<Self>, dx: SliceMut<Self>) -> Result<()> {
        dy.check("map_bwd(dy)", x.len)?;
        dx.check("map_bwd(dx)", x.len)?;
        match op {
            MapOp::Margin { m } => {
                let args = [n64(x.len), Arg::F32(m as f32), p(&x), p(&dy), pm(&dx)];
                self.launch_1d("activation", "margin_bwd_f32", x.len, &args)
            }
        }
    }

    fn act_fwd(&self, act: Act<Self>, a: Slice<Self>, h: SliceMut<Self>, cols: usize) -> Result<()> {
        check_act(&act, a.len, cols)?;
        h.check("act_fwd(h)", a.len)?;
        self.work(a.len as f64, 8.0 * a.len as f64);
        let param = act.param.as_ref().map_or(Arg::Ptr(0), p);
        let args = [n64(a.len), Arg::I32(cols as i32), Arg::I32(act_code(act.kind)), p(&a), param, pm(&h)];
        self.launch_1d("activation", "act_fwd_f32", a.len, &args)
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
        if let Some(d) = &dparam {
            d.check("act_bwd(dparam)", act.kind.param_len(cols))?;
        }
        self.work(2.0 * a.len as f64, 16.0 * a.len as f64);
        if let (Some(d), Some(prm)) = (&dparam, &act.param)
            && matches!(act.kind, Activation::Prelu | Activation::Modrelu)
        {
            let (ap, hp, dhp, pp) = (Cuda::ptr(&a), Cuda::ptr(&h), Cuda::ptr(&dh), Cuda::ptr(prm));
            return self.act_bwd_param(
                act.kind,
                a.len / cols,
                cols,
                ap,
                hp,
                dhp,
                pp,
                Cuda::ptr_mut(&da),
                Cuda::ptr_mut(d),
            );
        }
        let param = act.param.as_ref().map_or(Arg::Ptr(0), p);
        let args =
            [n64(a.len), Arg::I32(cols as i32), Arg::I32(act_code(act.kind)), p(&a), p(&h), p(&dh), param, pm(&da)];
        self.launch_1d("activation", "act_bwd_f32", a.len, &args)
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
        let rows = check_lstm_fwd(&z, &peep, &c, &gates, &h, n)?;
        let args = [Arg::I32(rows as i32), Arg::I32(n as i32), p(&z), p(&peep), pm(&c), pm(&gates), pm(&h)];
        self.launch_1d("lstm", "lstm_fwd_f32", rows * n, &args)
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
        let rows = check_lstm_bwd(&gates, &c_prev, &c, &peep, &dh, &dc, &dz, &dpeep, n)?;
        let args = [
            Arg::I32(rows as i32),
            Arg::I32(n as i32),
            p(&gates),
            p(&c_prev),
            p(&c),
            p(&peep),
            p(&dh),
            pm(&dc),
            pm(&dz),
            pm(&dpeep),
        ];
        self.launch("lstm", "lstm_bwd_f32", (n.div_ceil(32) as u32, 1, 1), (32, 8, 1), &args)
    }

    fn softmax_xent(
        &self,
        logits: Slice<Self>,
        targets: Slice<Self>,
        grad: SliceMut<Self>,
        classes: usize,
        scale: f32,
    ) -> Result<LossStats> {
        let rows = logits.len / classes.max(1);
        logits.check("softmax_xent(logits)", rows * classes)?;
        targets.check("softmax_xent(targets)", rows)?;
        grad.check("softmax_xent(grad)", rows * classes)?;
        self.work(5.0 * (rows * classes) as f64, 4.0 * (2 * rows * classes + rows) as f64);
        let ptrs = (Cuda::ptr(&logits), Cuda::ptr(&targets), Cuda::ptr_mut(&grad));
        let [sum, correct, count, invalid] = self.fixed_sum::<4>(Self::softmax_blocks(rows), |part| {
            self.launch_softmax_xent(ptrs, rows, classes, scale, part)
        })?;
        if invalid > 0.0 {
            return Err(Error::invalid(
                "target class",
                format!("{invalid} rows"),
                format!("targets must be integers in [0, {classes}) or negative"),
            ));
        }
        Ok(LossStats { sum, correct: correct.round() as usize, count: count.round() as usize })
    }
    fn mse(&self, pred: Slice<Self>, target: Slice<Self>, grad: SliceMut<Self>, scale: f32) -> Result<LossStats> {
        target.check("mse(target)", pred.len)?;
        grad.check("mse(grad)", pred.len)?;
        let ptrs = (Cuda::ptr(&pred), Cuda::ptr(&target), Cuda::ptr_mut(&grad));
        let [sum] = self.fixed_sum::<1>(blocks_1d(pred.len), |part| self.launch_mse(ptrs, pred.len, scale, part))?;
        Ok(LossStats { sum, correct: 0, count: pred.len })
    }

    fn sum_sq(&self, x: Slice<Self>) -> Result<f64> {
        x.check("sum_sq", x.len)?;
        self.work(2.0 * x.len as f64, 4.0 * x.len as f64);
        let blocks = blocks_1d(x.len);
        let [s] = self.fixed_sum::<1>(blocks, |part| {
            self.launch(
                "reduce",
                "sum_sq_f32",
                (blocks as u32, 1, 1),
                (THREADS, 1, 1),
                &[n64(x.len), p(&x), Arg::Ptr(part)],
            )
        })?;
        Ok(s)
    }
    fn max_abs(&self, x: Slice<Self>) -> Result<f64> {
        x.check("max_abs", x.len)?;
        self.with_max(|acc| self.launch_1d("reduce", "max_abs_f32", x.len, &[n64(x.len), p(&x), Arg::Ptr(acc)]))
    }
    fn norm1(&self, x: Slice<Self>, n: usize) -> Result<f64> {
        x.check("norm1", n * n)?;
        self.with_max(|acc| {
            let grid = (n.div_ceil(256).max(1) as u32, 1, 1);
            self.launch("reduce", "norm1_f32", grid, (256, 1, 1), &[Arg::I32(n as i32), p(&x), Arg::Ptr(acc)])
        })
    }
    fn col_sum(&self, x: Slice<Self>, rows: usize, cols: usize, beta: f32, out: SliceMut<Self>) -> Result<()> {
        x.check("col_sum(x)", rows * cols)?;
        out.check("col_sum(out)", cols)?;
        self.work((rows * cols) as f64, 4.0 * (rows * cols + 2 * cols) as f64);
        let args = [Arg::I32(rows as i32), Arg::I32(cols as i32), p(&x), Arg::F32(beta), pm(&out)];
        self.launch("reduce", "col_sum_f32", (cols.div_ceil(32).max(1) as u32, 1, 1), (32, 8, 1), &args)
    }
    fn col_dot(&self, a: Slice<Self>, b: Slice<Self>, rows: usize, cols: usize, out: SliceMut<Self>) -> Result<()> {
        a.check("col_dot(a)", rows * cols)?;
        b.check("col_dot(b)", rows * cols)?;
        out.check("col_dot(out)", cols)?;
        let args = [Arg::I32(rows as i32), Arg::I32(cols as i32), p(&a), p(&b), pm(&out)];
        self.launch("reduce", "col_dot_f32", (cols.div_ceil(32).max(1) as u32, 1, 1), (32, 8, 1), &args)
    }

    fn lu_new(&self, n: usize) -> Result<CudaLu<D>> {
        self.lu_new_dev(n)
    }
    fn lu_factor_into(&self, a: Slice<Self>, lu: &mut CudaLu<D>) -> Result<()> {
        a.check("lu_factor", lu.n() * lu.n())?;
        let n = lu.n();
        self.work(2.0 * (n * n * n) as f64 / 3.0, 8.0 * (n * n) as f64);
        self.lu_factor_dev(Cuda::ptr(&a), lu)
    }
    fn lu_status(&self, lu: &CudaLu<D>) -> Result<()> {
        self.lu_status_dev(lu)
    }
    fn lu_solve(&self, lu: &CudaLu<D>, b: SliceMut<Self>, nrhs: usize, transpose: bool) -> Result<()> {
        b.check("lu_solve", lu.n() * nrhs)?;
        self.work(2.0 * (lu.n() * lu.n() * nrhs) as f64, 4.0 * (lu.n() * lu.n() + 2 * lu.n() * nrhs) as f64);
        self.lu_solve_dev(lu, Cuda::ptr_mut(&b), nrhs, transpose)
    }

    fn optim_step(
        &self,
        step: &OptimStep,
        param: SliceMut<Self>,
        grad: Slice<Self>,
        s1: SliceMut<Self>,
        s2: SliceMut<Self>,
    ) -> Result<()> {
        let n = param.len;
        param.check("optim_step(param)", n)?;
        grad.check("optim_step(grad)", n)?;
        s1.check("optim_step(s1)", n)?;
        s2.check("optim_step(s2)", n)?;
        self.work(8.0 * n as f64, 4.0 * 7.0 * n as f64);
        let (lr, wd) = (Arg::F32(step.lr as f32), Arg::F32(step.weight_decay as f32));
        match step.rule {
            OptimRule::Sgd { momentum, nesterov } => {
                let args = [
                    n64(n),
                    lr,
                    Arg::F32(momentum as f32),
                    Arg::I32(nesterov as i32),
                    wd,
                    pm(&param),
                    p(&grad),
                    pm(&s1),
                ];
                self.launch_1d("optim", "sgd_f32", n, &args)
            }
            OptimRule::RmsProp { rho, eps } => {
                let args = [n64(n), lr, Arg::F32(rho as f32), Arg::F32(eps as f32), wd, pm(&param), p(&grad), pm(&s1)];
                self.launch_1d("optim", "rmsprop_f32", n, &args)
            }
            OptimRule::Adam { beta1, beta2, eps } => {
                let t = step.t.max(1) as i32;
                let bc1 = (1.0 - beta1.powi(t)) as f32;
                let bc2 = (1.0 - beta2.powi(t)).sqrt() as f32;
                let args = [
                    n64(n),
                    lr,
                    Arg::F32(beta1 as f32),
                    Arg::F32(beta2 as f32),
                    Arg::F32(eps as f32),
                    wd,
                    Arg::F32(bc1),
                    Arg::F32(bc2),
                    pm(&param),
                    p(&grad),
                    pm(&s1),
                    pm(&s2),
                ];
                self.launch_1d("optim", "adam_f32", n, &args)
            }
        }
    }

    /// The persistent cooperative kernel where it fits, else one GEMM launch per step with the
    /// activation fused into its epilogue (see `recurrent.rs`).
    fn recurrent_forward(
        &self,
        w: Slice<Self>,
        act: Act<Self>,
        pre: SliceMut<Self>,
        h: SliceMut<Self>,
        d: SeqDims,
    ) -> Result<()> {
        self.recurrence_forward(w, act, pre, h, d)
    }

    /// The persistent cooperative kernel where it fits, else one GEMM launch per step with the
    /// activation's backward in the epilogue (see `recurrent.rs`).
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
        self.recurrence_backward(w, act, pre, h, dh, delta, dparam, d)
    }

    fn path_notes(&self) -> Vec<(String, String)> {
        Cuda::path_notes(self)
    }

    fn tally_reset(&self, slot: Tally) -> Result<()> {
        self.tally_reset_dev(slot)
    }
    fn tally_read(&self) -> Result<TallyValues> {
        self.tally_read_dev()
    }
    fn softmax_xent_tally(
        &self,
        logits: Slice<Self>,
        targets: Slice<Self>,
        grad: SliceMut<Self>,
        classes: usize,
        scale: f32,
        slot: Tally,
    ) -> Result<()> {
        let rows = logits.len / classes.max(1);
        logits.check("softmax_xent(logits)", rows * classes)?;
        targets.check("softmax_xent(targets)", rows)?;
        grad.check("softmax_xent(grad)", rows * classes)?;
        self.work(5.0 * (rows * classes) as f64, 4.0 * (2 * rows * classes + rows) as f64);
        self.softmax_xent_into(
            (Cuda::ptr(&logits), Cuda::ptr(&targets), Cuda::ptr_mut(&grad)),
            rows,
            classes,
            scale,
            slot,
        )
    }
    fn mse_tally(
        &self,
        pred: Slice<Self>,
        target: Slice<Self>,
        grad: SliceMut<Self>,
        scale: f32,
        slot: Tally,
    ) -> Result<()> {
        target.check("mse(target)", pred.len)?;
        grad.check("mse(grad)", pred.len)?;
        self.mse_into((Cuda::ptr(&pred), Cuda::ptr(&target), Cuda::ptr_mut(&grad)), pred.len, scale, slot)
    }
    fn clip_and_step(&self, tensors: &mut [StepTensor<'_, Self>], clip: Option<f64>) -> Result<()> {
        self.clip_and_step_dev(tensors, clip)
    }
    fn capture(&self, f: &mut dyn FnMut() -> Result<()>) -> Result<Option<u64>> {
        self.capture_dev(f).map(Some)
    }
    fn replay(&self, graph: u64) -> Result<()> {
        self.replay_dev(graph)
    }
    fn drop_graph(&self, graph: u64) {
        self.drop_graph_dev(graph)
    }
}
