//! The LSTM baseline of Vorontsov et al.: peephole connections, forget-gate bias 1, orthogonal
//! initialization of each gate's recurrent block.
//!
//! Gates in the order `(i, f, g, o)`; with `z_t = W_x x_t + W_h h_{t-1} + b`:
//! `i = sigmoid(z_i + w_ci c_{t-1})`, `f = sigmoid(z_f + w_cf c_{t-1})`, `g = tanh(z_g)`,
//! `c_t = f c_{t-1} + i g`, `o = sigmoid(z_o + w_co c_t)`, `h_t = o tanh(c_t)`.
//! The input projection of all steps is one GEMM; per step, one GEMM `h_{t-1} W_h^T` and the
//! pointwise cell ([`Backend::lstm_fwd`]). BPTT runs the cell backward per step with one GEMM
//! `dz_t W_h` for `dL/dh_{t-1}`; `dW_h`, `dW_x` and `db` are one GEMM or reduction each over the
//! stacked steps.
//!
//! Parameters: `W_in [4n, in]`, `W_h [4n, n]`, `b [4n]`, `peep [3n]`, `W_o [out, n]`, `b_o [out]`.

use super::head::{Head, HeadWs};
use super::init;
use super::{BatchStats, Diagnostics, Model, Param, Pass, Update};
use crate::backend::{Backend, DeviceBuf, Epilogue, Gemm, Slice, SliceMut};
use crate::error::{Error, Result};
use crate::scalar::Scalar;
use crate::tasks::{Batch, LossKind};
use rand_chacha::ChaCha8Rng;

const WIN: usize = 0;
const WH: usize = 1;
const BIAS: usize = 2;
const PEEP: usize = 3;
const WO: usize = 4;
const BO: usize = 5;

struct Workspace<B: Backend> {
    rows: usize,
    x: B::Buf,
    z: B::Buf,
    gates: B::Buf,
    h: B::Buf,
    c: B::Buf,
    dh: B::Buf,
    dz: B::Buf,
    dc: B::Buf,
    head: HeadWs<B>,
}

/// An LSTM with peepholes and a linear readout.
pub struct Lstm<B: Backend> {
    b: B,
    input: usize,
    n: usize,
    head: Head,
    params: Vec<Param<B>>,
    ws: Option<Workspace<B>>,
}

impl<B: Backend> Lstm<B> {
    /// An LSTM of width `n` for inputs of width `input`, scored by `loss`; `W_in` and `W_o` start
    /// from `dense.0` and `dense.1`.
    pub fn new(
        b: &B,
        input: usize,
        n: usize,
        loss: LossKind,
        acc_last: Option<usize>,
        dense: (init::DenseInit, init::DenseInit),
        rng: &mut ChaCha8Rng,
    ) -> Result<Self> {
        if n == 0 {
            return Err(Error::invalid("--hidden", 0, "the hidden size must be at least 1"));
        }
        let out = loss.outputs();
        let mut wh = vec![0.0; 4 * n * n];
        for gate in 0..4 {
            wh[gate * n * n..(gate + 1) * n * n].copy_from_slice(&init::orthogonal(rng, n));
        }
        let mut bias = vec![0.0; 4 * n];
        bias[n..2 * n].iter_mut().for_each(|v| *v = 1.0);
        let params = vec![
            Param::new(b, "W_in", &[4 * n, input], &dense.0.sample(rng, 4 * n, input), Update::Euclidean)?.with_decay(),
            Param::new(b, "W_h", &[4 * n, n], &wh, Update::Euclidean)?.with_decay(),
            Param::new(b, "b", &[4 * n], &bias, Update::Euclidean)?,
            Param::new(b, "peep", &[3 * n], &vec![0.0; 3 * n], Update::Euclidean)?,
            Param::new(b, "W_o", &[out, n], &dense.1.sample(rng, out, n), Update::Euclidean)?.with_decay(),
            Param::new(b, "b_o", &[out], &vec![0.0; out], Update::Euclidean)?,
        ];
        Ok(Lstm { b: b.clone(), input, n, head: Head { hidden: n, loss, acc_last }, params, ws: None })
    }

    fn ensure_workspace(&mut self, t: usize, batch: usize) -> Result<()> {
        let rows = t * batch;
        if self.ws.as_ref().is_some_and(|w| w.rows >= rows && w.head.targets.len() >= self.head.target_len(t, batch)) {
            return Ok(());
        }
        let (b, n) = (&self.b, self.n);
        self.ws = Some(Workspace {
            rows,
            x: b.zeros(rows * self.input)?,
            z: b.zeros(rows * 4 * n)?,
            gates: b.zeros(rows * 4 * n)?,
            h: b.zeros((rows + batch) * n)?,
            c: b.zeros((rows + batch) * n)?,
            dh: b.zeros(rows * n)?,
            dz: b.zeros(rows * 4 * n)?,
            dc: b.zeros(batch * n)?,
            head: self.head.workspace(b, t, batch)?,
        });
        Ok(())
    }
}

impl<B: Backend> Model<B> for Lstm<B> {
    fn name(&self) -> String {
        "lstm".into()
    }
    fn hidden(&self) -> usize {
        self.n
    }
    fn params(&self) -> &[Param<B>] {
        &self.params
    }
    fn params_mut(&mut self) -> &mut [Param<B>] {
        &mut self.params
    }

    fn run(&mut self, batch: &Batch, pass: Pass) -> Result<BatchStats> {
        if batch.input_dim != self.input || batch.x.len() != batch.t * batch.batch * batch.input_dim {
            return Err(Error::shape(
                "batch inputs",
                format!("[{}, {}, {}]", batch.t, batch.batch, self.input),
                batch.x.len(),
            ));
        }
        if batch.t == 0 || batch.batch == 0 {
            return Err(Error::invalid("batch", format!("T={} B={}", batch.t, batch.batch), "empty batch"));
        }
        let (t, bs, n, inp) = (batch.t, batch.batch, self.n, self.input);
        self.ensure_workspace(t, bs)?;
        let b = self.b.clone();
        let zero = B::Elem::ZERO;
        let (rows, bn) = (t * bs, bs * n);
        let ws = self.ws.as_mut().ok_or_else(|| Error::Device("workspace missing".into()))?;
        let xh: Vec<B::Elem> = batch.x.iter().map(|&v| B::Elem::of(v as f64)).collect();
        b.write(SliceMut::all(&mut ws.x).sub(0, rows * inp), &xh)?;
        let counted = self.head.upload_targets(&b, batch, &mut ws.head)?;
        let x = Slice::<B>::all(&ws.x).sub(0, rows * inp);
        let p = &self.params;

        let mut z = SliceMut::<B>::all(&mut ws.z).sub(0, rows * 4 * n);
        let epi = Epilogue { bias: Some(p[BIAS].v()), act: None };
        b.gemm(&Gemm::new(rows, 4 * n, inp).tb().reduced_ok(), x, p[WIN].v(), z.rb(), epi)?;
        let mut h = SliceMut::<B>::all(&mut ws.h).sub(0, rows * n + bn);
        let mut c = SliceMut::<B>::all(&mut ws.c).sub(0, rows * n + bn);
        let mut gates = SliceMut::<B>::all(&mut ws.gates).sub(0, rows * 4 * n);
        b.fill(h.rb().sub(0, bn), zero)?;
        b.fill(c.rb().sub(0, bn), zero)?;
        let step = Gemm::new(bs, 4 * n, n).tb().beta(B::Elem::ONE).reduced_ok();
        for s in 0..t {
            b.gemm(&step, h.as_ref().sub(s * bn, bn), p[WH].v(), z.rb().sub(s * 4 * bn, 4 * bn), Epilogue::none())?;
            b.lstm_fwd(
                z.as_ref().sub(s * 4 * bn, 4 * bn),
                p[PEEP].v(),
                c.rb().sub(s * bn, 2 * bn),
                gates.rb().sub(s * 4 * bn, 4 * bn),
                h.rb().sub((s + 1) * bn, bn),
                n,
            )?;
        }
        let h_out = h.as_ref().sub(bn, rows * n);
        let (wo, bo) = (self.params[WO].v(), self.params[BO].v());
        if pass == Pass::Eval {
            return self.head.run(&b, wo, bo, h_out, &mut ws.head, counted, t, bs, None);
        }
        let mut dh = SliceMut::<B>::all(&mut ws.dh).sub(0, rows * n);
        let (left, right) = self.params.split_at_mut(BO);
        let (wo_p, bo_p) = (&mut left[WO], &mut right[0]);
        let grads = Some((SliceMut::all(&mut wo_p.grad), SliceMut::all(&mut bo_p.grad), dh.rb()));
        let stats = self.head.run(
            &b,
            Slice::all(&wo_p.value),
            Slice::all(&bo_p.value),
            h_out,
            &mut ws.head,
            counted,
            t,
            bs,
            grads,
        )?;

        let mut dz = SliceMut::<B>::all(&mut ws.dz).sub(0, rows * 4 * n);
        let mut dc = SliceMut::<B>::all(&mut ws.dc).sub(0, bn);
        b.fill(dc.rb(), zero)?;
        let (before, from_peep) = self.params.split_at_mut(PEEP);
        let pp = &mut from_peep[0];
        b.fill(SliceMut::all(&mut pp.grad), zero)?;
        let (peep_v, mut peep_g) = (Slice::<B>::all(&pp.value), SliceMut::<B>::all(&mut pp.grad));
        let wh = Slice::<B>::all(&before[WH].value);
        let back = Gemm::new(bs, n, 4 * n).beta(B::Elem::ONE).reduced_ok();
        for s in (0..t).rev() {
            if s + 1 < t {
                b.gemm(
                    &back,
                    dz.as_ref().sub((s + 1) * 4 * bn, 4 * bn),
                    wh,
                    dh.rb().sub(s * bn, bn),
                    Epilogue::none(),
                )?;
            }
            b.lstm_bwd(
                gates.as_ref().sub(s * 4 * bn, 4 * bn),
                c.as_ref().sub(s * bn, bn),
                c.as_ref().sub((s + 1) * bn, bn),
                peep_v,
                dh.as_ref().sub(s * bn, bn),
                dc.rb(),
                dz.rb().sub(s * 4 * bn, 4 * bn),
                peep_g.rb(),
                n,
            )?;
        }
        let dz = dz.as_ref();
        let hprev = h.as_ref().sub(0, rows * n);
        b.gemm(
            &Gemm::new(4 * n, n, rows).ta().reduced_ok(),
            dz,
            hprev,
            SliceMut::all(&mut self.params[WH].grad),
            Epilogue::none(),
        )?;
        b.gemm(
            &Gemm::new(4 * n, inp, rows).ta().reduced_ok(),
            dz,
            x,
            SliceMut::all(&mut self.params[WIN].grad),
            Epilogue::none(),
        )?;
        b.col_sum(dz, rows, 4 * n, zero, SliceMut::all(&mut self.params[BIAS].grad))?;
        Ok(stats)
    }

    fn after_update(&mut self, _step: usize) -> Result<()> {
        Ok(())
    }

    /// Singular values of the cell-candidate block `W_hc` of the recurrent matrix.
    fn diagnostics(&mut self) -> Result<Diagnostics> {
        let n = self.n;
        let whc = Slice::<B>::all(&self.params[WH].value).sub(2 * n * n, n * n);
        Ok(Diagnostics { singular_values: super::rnn::singular_values(&self.b, whc, n)?, ..Default::default() })
    }
}
