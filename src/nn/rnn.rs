//! The Elman RNN over a parametrized transition, with back-propagation through time.
//!
//! Forward (rows are batch elements): `A = X V^T + b` for all `T` steps in one GEMM, then
//! `H_t = phi(H_{t-1} W^T + A_t)` through [`Backend::recurrent_forward`], then the readout.
//!
//! Backward: `delta_t = phi'(a_t) * (dL/dh_t + W^T delta_{t+1})` through
//! [`Backend::recurrent_backward`]; then one GEMM each over the stacked steps:
//! `dW = sum_t delta_t h_{t-1}^T = Delta^T H_{0..T-1}`, `dV = Delta^T X`, `db = sum_t delta_t`.
//! Regularizers add to `dW`, and the transition maps `dW` to its own parameters.
//!
//! Parameter order: `W_in [n, in]` (the input matrix `V` of the formulas), `b [n]`, `W_o [out, n]`, `b_o [out]`, the activation's parameter
//! (`prelu_slope [1]` or `modrelu_bias [n]`) if it has one, then the transition's parameters.

use super::head::{Head, HeadWs};
use super::init;
use super::regularize::Regularizers;
use super::{BatchStats, Diagnostics, Model, Param, Pass, StageKey, Update};
use crate::backend::{Act, Activation, Backend, DeviceBuf, Epilogue, Gemm, SeqDims, Slice, SliceMut, TallyValues};
use crate::error::{Error, Result};
use crate::param::Transition;
use crate::scalar::Scalar;
use crate::tasks::{Batch, LossKind};
use rand_chacha::ChaCha8Rng;

/// Shape and activation of an Elman RNN.
#[derive(Clone, Debug, PartialEq)]
pub struct RnnConfig {
    /// Input width.
    pub input: usize,
    /// Hidden width `n`.
    pub hidden: usize,
    /// Loss and output width.
    pub loss: LossKind,
    /// Accuracy over the last this-many steps only.
    pub acc_last: Option<usize>,
    /// Transition nonlinearity.
    pub activation: Activation,
    /// PReLU: initial slope (paper: 0.7) and whether it is trained.
    pub prelu_slope: f64,
    pub prelu_trainable: bool,
    /// Regularizers on the composite `W`.
    pub regs: Regularizers,
    /// Initialization of the input matrix `W_in` and of the readout `W_o`.
    pub init_in: init::DenseInit,
    pub init_out: init::DenseInit,
}

impl RnnConfig {
    /// Checks the configuration.
    pub fn validate(&self) -> Result<()> {
        if self.hidden == 0 {
            return Err(Error::invalid("--hidden", 0, "the hidden size must be at least 1"));
        }
        if self.activation == Activation::Oplu && !self.hidden.is_multiple_of(2) {
            return Err(Error::invalid(
                "--hidden",
                self.hidden,
                "OPLU pairs hidden units, so --hidden must be even with --activation oplu",
            ));
        }
        if self.activation == Activation::Prelu && !self.prelu_slope.is_finite() {
            return Err(Error::invalid("--prelu-slope", self.prelu_slope, "must be finite"));
        }
        self.regs.validate()
    }
}

/// Buffers for one batch shape (capacity in `T * B` rows; smaller batches use a prefix).
struct Workspace<B: Backend> {
    rows: usize,
    x: B::Buf,
    pre: B::Buf,
    h: B::Buf,
    dh: B::Buf,
    delta: B::Buf,
    head: HeadWs<B>,
}

/// An Elman RNN whose recurrent matrix comes from a [`Transition`].
pub struct Rnn<B: Backend> {
    b: B,
    cfg: RnnConfig,
    head: Head,
    params: Vec<Param<B>>,
    first_transition: usize,
    act_param: Option<usize>,
    transition: Box<dyn Transition<B>>,
    w: B::Buf,
    dw: B::Buf,
    scratch: B::Buf,
    ws: Option<Workspace<B>>,
    w_stale: bool,
    last_dims: Option<(usize, usize)>,
    record_norms: bool,
    norms: Option<Vec<f64>>,
    /// The pass staged or queued last: its batch shape and counted targets, and the regularizers' loss.
    staged: Option<StageKey>,
    pending_reg: f64,
}

const WIN: usize = 0;
const BIAS: usize = 1;
const WO: usize = 2;
const BO: usize = 3;

impl<B: Backend> Rnn<B> {
    /// Builds the network. `transition_params` come from the transition's own constructor.
    pub fn new(
        b: &B,
        cfg: RnnConfig,
        rng: &mut ChaCha8Rng,
        transition: Box<dyn Transition<B>>,
        transition_params: Vec<Param<B>>,
    ) -> Result<Self> {
        cfg.validate()?;
        let (n, inp, out) = (cfg.hidden, cfg.input, cfg.loss.outputs());
        let mut params = vec![
            Param::new(b, "W_in", &[n, inp], &cfg.init_in.sample(rng, n, inp), Update::Euclidean)?.with_decay(),
            Param::new(b, "b", &[n], &vec![0.0; n], Update::Euclidean)?,
            Param::new(b, "W_o", &[out, n], &cfg.init_out.sample(rng, out, n), Update::Euclidean)?.with_decay(),
            Param::new(b, "b_o", &[out], &vec![0.0; out], Update::Euclidean)?,
        ];
        let act_param = match cfg.activation {
            Activation::Prelu => {
                let upd = if cfg.prelu_trainable { Update::Euclidean } else { Update::Frozen };
                params.push(Param::new(b, "prelu_slope", &[1], &[cfg.prelu_slope], upd)?);
                Some(params.len() - 1)
            }
            Activation::Modrelu => {
                params.push(Param::new(b, "modrelu_bias", &[n], &init::modrelu_bias(rng, n), Update::Euclidean)?);
                Some(params.len() - 1)
            }
            _ => None,
        };
        let first_transition = params.len();
        params.extend(transition_params);
        let head = Head { hidden: n, loss: cfg.loss, acc_last: cfg.acc_last };
        Ok(Rnn {
            b: b.clone(),
            head,
            params,
            first_transition,
            act_param,
            transition,
            w: b.zeros(n * n)?,
            dw: b.zeros(n * n)?,
            scratch: b.zeros(n * n)?,
            ws: None,
            w_stale: true,
            last_dims: None,
            record_norms: false,
            norms: None,
            staged: None,
            pending_reg: 0.0,
            cfg,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RnnConfig {
        &self.cfg
    }

    /// The hidden state `h_T` of every batch row after the last [`Model::run`], `[B, n]`.
    pub fn last_hidden(&self) -> Result<Vec<B::Elem>> {
        let (Some((t, bs)), Some(ws)) = (self.last_dims, self.ws.as_ref()) else {
            return Err(Error::invalid("last_hidden", "none", "run a batch first"));
        };
        let bn = bs * self.cfg.hidden;
        self.b.download(Slice::all(&ws.h).sub(t * bn, bn))
    }

    fn ensure_w(&mut self) -> Result<()> {
        if self.w_stale {
            let (_, tp) = self.params.split_at(self.first_transition);
            self.transition.build(&self.b, tp, SliceMut::all(&mut self.w))?;
            self.w_stale = false;
        }
        Ok(())
    }

    fn ensure_workspace(&mut self, t: usize, batch: usize) -> Result<()> {
        let rows = t * batch;
        if self.ws.as_ref().is_some_and(|w| w.rows >= rows && w.head.targets.len() >= self.head.target_len(t, batch)) {
            return Ok(());
        }
        let (b, n) = (&self.b, self.cfg.hidden);
        self.ws = Some(Workspace {
            rows,
            x: b.zeros(rows * self.cfg.input)?,
            pre: b.zeros(rows * n)?,
            h: b.zeros(rows * n + batch * n)?,
            dh: b.zeros(rows * n)?,
            delta: b.zeros(rows * n)?,
            head: self.head.workspace(b, t, batch)?,
        });
        Ok(())
    }

    fn check_batch(&self, batch: &Batch) -> Result<()> {
        if batch.input_dim != self.cfg.input {
            return Err(Error::shape("batch input width", self.cfg.input, batch.input_dim));
        }
        if batch.x.len() != batch.t * batch.batch * batch.input_dim {
            return Err(Error::shape("batch inputs", batch.t * batch.batch * batch.input_dim, batch.x.len()));
        }
        if batch.t == 0 || batch.batch == 0 {
            return Err(Error::invalid("batch", format!("T={} B={}", batch.t, batch.batch), "empty batch"));
        }
        Ok(())
    }
}

impl<B: Backend> Model<B> for Rnn<B> {
    fn name(&self) -> String {
        self.transition.name()
    }
    fn hidden(&self) -> usize {
        self.cfg.hidden
    }
    fn params(&self) -> &[Param<B>] {
        &self.params
    }
    fn params_mut(&mut self) -> &mut [Param<B>] {
        self.w_stale = true;
        &mut self.params
    }

    fn run(&mut self, batch: &Batch, pass: Pass) -> Result<BatchStats> {
        self.queue(batch, pass)?;
        let v = self.b.tally_read()?;
        self.stats(&v)
    }

    fn queue(&mut self, batch: &Batch, pass: Pass) -> Result<bool> {
        self.stage(batch)?;
        self.queue_launches(pass)?;
        Ok(true)
    }

    fn stats(&mut self, tallies: &TallyValues) -> Result<BatchStats> {
        let k = self.staged.ok_or_else(|| Error::invalid("stats", "none", "queue a batch first"))?;
        let mut st = self.head.stats(tallies, k.t, k.batch);
        st.reg = self.pending_reg;
        Ok(st)
    }

    fn stage(&mut self, batch: &Batch) -> Result<Option<StageKey>> {
        self.check_batch(batch)?;
        let (t, bs, inp) = (batch.t, batch.batch, self.cfg.input);
        self.ensure_workspace(t, bs)?;
        let b = self.b.clone();
        let ws = self.ws.as_mut().ok_or_else(|| Error::Device("workspace missing".into()))?;
        let x_host: Vec<B::Elem> = batch.x.iter().map(|&v| B::Elem::of(v as f64)).collect();
        b.write(SliceMut::all(&mut ws.x).sub(0, t * bs * inp), &x_host)?;
        let counted = self.head.upload_targets(&b, batch, &mut ws.head)?;
        let key = StageKey { t, batch: bs, counted };
        self.staged = Some(key);
        Ok(Some(key))
    }

    fn graph_safe(&self) -> bool {
        !self.record_norms && self.cfg.regs.graph_safe() && self.transition.graph_safe()
    }

    fn queue_launches(&mut self, pass: Pass) -> Result<()> {
        let k = self.staged.ok_or_else(|| Error::invalid("queue", "none", "stage a batch first"))?;
        self.ensure_w()?;
        let (t, bs, n, inp) = (k.t, k.batch, self.cfg.hidden, self.cfg.input);
        let counted = k.counted;
        let b = self.b.clone();
        let zero = B::Elem::ZERO;
        let (rows, bn) = (t * bs, bs * n);
        self.last_dims = Some((t, bs));
        self.pending_reg = 0.0;
        let ws = self.ws.as_mut().ok_or_else(|| Error::Device("workspace missing".into()))?;
        let x = Slice::<B>::all(&ws.x).sub(0, rows * inp);

        // A = X V^T + b over all steps; H_0 = 0; the recurrence.
        let epi = Epilogue { bias: Some(self.params[BIAS].v()), act: None };
        let mut pre = SliceMut::<B>::all(&mut ws.pre).sub(0, rows * n);
        b.gemm(&Gemm::new(rows, n, inp).tb().reduced_ok(), x, self.params[WIN].v(), pre.rb(), epi)?;
        let mut h = SliceMut::<B>::all(&mut ws.h).sub(0, rows * n + bn);
        b.fill(h.rb().sub(0, bn), zero)?;
        let act = Act { kind: self.cfg.activation, param: self.act_param.map(|i| self.params[i].v()) };
        let w = Slice::<B>::all(&self.w);
        let dims = SeqDims { t, batch: bs, n };
        b.recurrent_forward(w, act, pre.rb(), h.rb(), dims)?;

        let h_out = h.as_ref().sub(bn, rows * n);
        if pass == Pass::Eval {
            let (wo, bo) = (self.params[WO].v(), self.params[BO].v());
            return self.head.queue(&b, wo, bo, h_out, &mut ws.head, counted, t, bs, None);
        }

        // Readout and loss, with dL/dh into dh.
        let mut dh = SliceMut::<B>::all(&mut ws.dh).sub(0, rows * n);
        let (wo_p, bo_p) = two(&mut self.params, WO, BO);
        let grads = Some((SliceMut::all(&mut wo_p.grad), SliceMut::all(&mut bo_p.grad), dh.rb()));
        let (wo, bo) = (Slice::all(&wo_p.value), Slice::all(&bo_p.value));
        self.head.queue(&b, wo, bo, h_out, &mut ws.head, counted, t, bs, grads)?;

        // BPTT: delta_t for every step, the activation parameter's gradient accumulated.
        let mut delta = SliceMut::<B>::all(&mut ws.delta).sub(0, rows * n);
        let (act_val, dparam) = match self.act_param {
            Some(i) => {
                let p = &mut self.params[i];
                b.fill(SliceMut::all(&mut p.grad), zero)?;
                (Some(Slice::all(&p.value)), Some(SliceMut::all(&mut p.grad)))
            }
            None => (None, None),
        };
        let act = Act { kind: self.cfg.activation, param: act_val };
        b.recurrent_backward(w, act, pre.as_ref(), h.as_ref(), dh.rb(), delta.rb(), dparam, dims)?;
        if self.record_norms {
            let host = b.download(dh.as_ref())?;
            self.norms = Some(
                host.chunks_exact(bn)
                    .map(|blk| {
                        blk.chunks_exact(n)
                            .map(|r| r.iter().map(|v| v.f64() * v.f64()).sum::<f64>().sqrt())
                            .sum::<f64>()
                            / bs as f64
                    })
                    .collect(),
            );
        }
        let delta = delta.as_ref();
        let hprev = h.as_ref().sub(0, rows * n);
        b.gemm(&Gemm::new(n, n, rows).ta().reduced_ok(), delta, hprev, SliceMut::all(&mut self.dw), Epilogue::none())?;
        b.gemm(
            &Gemm::new(n, inp, rows).ta().reduced_ok(),
            delta,
            x,
            SliceMut::all(&mut self.params[WIN].grad),
            Epilogue::none(),
        )?;
        b.col_sum(delta, rows, n, zero, SliceMut::all(&mut self.params[BIAS].grad))?;

        // Regularizers on the composite W, then the transition's backward map.
        let mut reg = self.cfg.regs.apply(&b, w, SliceMut::all(&mut self.dw), n, &mut self.scratch)?;
        let (_, tp) = self.params.split_at_mut(self.first_transition);
        reg += self.transition.backward(&b, tp, w, Slice::all(&self.dw))?;
        self.pending_reg = reg;
        Ok(())
    }

    fn after_update(&mut self, step: usize) -> Result<()> {
        let (_, tp) = self.params.split_at_mut(self.first_transition);
        self.transition.after_update(&self.b, tp, step)?;
        self.w_stale = true;
        Ok(())
    }

    fn recurrent_matrix(&mut self) -> Result<Vec<f64>> {
        self.ensure_w()?;
        Ok(self.b.download(Slice::all(&self.w))?.iter().map(|x| x.f64()).collect())
    }

    fn diagnostics(&mut self) -> Result<Diagnostics> {
        self.ensure_w()?;
        let n = self.cfg.hidden;
        let mut d =
            Diagnostics { singular_values: singular_values(&self.b, Slice::all(&self.w), n)?, ..Default::default() };
        if let (Some(i), Activation::Prelu) = (self.act_param, self.cfg.activation)
            && self.cfg.prelu_trainable
        {
            d.prelu_slope = Some(self.b.download(self.params[i].v())?[0].f64());
        }
        let (_, tp) = self.params.split_at(self.first_transition);
        self.transition.diagnostics(&self.b, tp, &mut d)?;
        Ok(d)
    }

    fn grad_norms(&mut self) -> Result<Option<Vec<f64>>> {
        Ok(self.norms.take())
    }
    fn record_grad_norms(&mut self, on: bool) {
        self.record_norms = on;
    }
    fn refresh(&mut self) -> Result<()> {
        self.w_stale = true;
        Ok(())
    }
    fn counters(&self) -> Vec<(String, f64)> {
        self.transition.counters()
    }
    fn set_counters(&mut self, c: &[(String, f64)]) {
        self.transition.set_counters(c);
    }
}

/// Mutable references to two distinct parameters, `i < j`.
fn two<B: Backend>(p: &mut [Param<B>], i: usize, j: usize) -> (&mut Param<B>, &mut Param<B>) {
    let (left, right) = p.split_at_mut(j);
    (&mut left[i], &mut right[0])
}

/// Singular values of an `n x n` matrix on the backend (host SVD, for diagnostics).
pub use crate::linalg::singular_values;
