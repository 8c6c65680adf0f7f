//! Optimizers: SGD (momentum, Nesterov), RMSprop, Adam, global-norm gradient clipping, weight
//! decay, and the geodesic (Cayley) step for parameters that live on the orthogonal group.
//!
//! Update rules follow PyTorch (`torch.optim`), so that runs compare with PyTorch references:
//! - SGD: `buf = mu buf + g`, `p -= lr (nesterov ? g + mu buf : buf)`.
//! - RMSprop: `v = rho v + (1 - rho) g^2`, `p -= lr g / (sqrt(v) + eps)` (rho 0.9 by default, as in
//!   the papers' Theano code; PyTorch's default is 0.99).
//! - Adam: `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`,
//!   `p -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)`.
//!
//! Weight decay through the optimizer is coupled L2 (`g += wd p`) on parameters marked for it (the
//! input and output matrices); the recurrent matrix gets it on its composite value instead
//! ([`crate::nn::regularize`]). Clipping rescales every gradient by `clip / ||g||` when the global norm over
//! all trained parameters exceeds `clip` (the papers use 100).
//!
//! Each parameter's learning rate is the base rate times its group multiplier
//! ([`crate::weights::Param::lr_mult`]); geodesic parameters use `geo_lr` instead.

/// The regularizers on `W` now live at [`crate::nn::regularize`] (they are loss terms of the
/// network); this path is kept for code written against it.
pub use crate::nn::regularize;

use crate::backend::{Backend, OptimRule, OptimStep, Slice, SliceMut, StepTensor, Tally, TallyValues};
use crate::error::{Error, Result};
use crate::linalg::CayleyStep;
use crate::weights::{Param, Update};

/// Optimizer hyperparameters.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OptimConfig {
    /// Rule for Euclidean parameters.
    pub rule: OptimRule,
    /// Base learning rate.
    pub lr: f64,
    /// Learning rate of geodesic steps (Cayley) on orthogonal parameters.
    pub geo_lr: f64,
    /// Global-norm clipping threshold.
    pub clip: Option<f64>,
    /// Coupled weight decay on parameters marked for it.
    pub weight_decay: f64,
}

impl OptimConfig {
    /// Checks the hyperparameters; the error names the flag.
    ///
    /// ```
    /// use ortho_rnn::prelude::*;
    /// let ok = OptimConfig { rule: OptimRule::Sgd { momentum: 0.9, nesterov: true }, lr: 0.1,
    ///                        geo_lr: 0.0, clip: Some(1.0), weight_decay: 0.0 };
    /// assert!(ok.validate().is_ok());
    /// let e = OptimConfig { lr: -1.0, ..ok }.validate().unwrap_err().to_string();
    /// assert!(e.contains("--lr"));
    /// ```
    pub fn validate(&self) -> Result<()> {
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::invalid("--lr", self.lr, "the learning rate must be a positive finite number"));
        }
        if !(self.geo_lr.is_finite() && self.geo_lr >= 0.0) {
            return Err(Error::invalid("--geo-lr", self.geo_lr, "must be finite and >= 0"));
        }
        if let Some(c) = self.clip
            && !(c.is_finite() && c > 0.0)
        {
            return Err(Error::invalid("--clip", c, "the clipping norm must be positive (omit the flag to disable)"));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(Error::invalid("--weight-decay", self.weight_decay, "must be finite and >= 0"));
        }
        let bad_eps = |e: f64| !(e.is_finite() && e > 0.0);
        match self.rule {
            OptimRule::Sgd { momentum, .. } if !(0.0..1.0).contains(&momentum) => {
                Err(Error::invalid("--momentum", momentum, "must be in [0, 1)"))
            }
            OptimRule::RmsProp { rho, eps } if !(0.0..1.0).contains(&rho) || bad_eps(eps) => Err(Error::invalid(
                "--rho/--eps",
                format!("{rho}/{eps}"),
                "rho must be in [0, 1) and eps finite and > 0",
            )),
            OptimRule::Adam { beta1, beta2, eps }
                if !(0.0..1.0).contains(&beta1) || !(0.0..1.0).contains(&beta2) || bad_eps(eps) =>
            {
                Err(Error::invalid(
                    "--beta1/--beta2/--eps",
                    format!("{beta1}/{beta2}/{eps}"),
                    "betas in [0, 1), eps finite and > 0",
                ))
            }
            _ => Ok(()),
        }
    }
}

/// What one optimizer step did.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepInfo {
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Whether the gradients were rescaled.
    pub clipped: bool,
}

/// One parameter's optimizer state on the host: (first moment or momentum, second moment).
pub type HostState<B> = (Vec<<B as Backend>::Elem>, Vec<<B as Backend>::Elem>);

/// Optimizer state for one model.
pub struct Optimizer<B: Backend> {
    cfg: OptimConfig,
    /// Per-parameter state buffers (momentum / second moment), same order as the model's parameters.
    states: Vec<(B::Buf, B::Buf)>,
    /// Geodesic-step workspaces (with drift guards), for the parameters updated by Cayley steps.
    cayley: Vec<Option<CayleyStep<B>>>,
    /// Steps taken.
    step: u64,
}

impl<B: Backend> Optimizer<B> {
    /// Allocates state for `params`.
    pub fn new(b: &B, cfg: OptimConfig, params: &[Param<B>]) -> Result<Self> {
        cfg.validate()?;
        let states = params.iter().map(|p| Ok((b.zeros(p.len())?, b.zeros(p.len())?))).collect::<Result<_>>()?;
        let mut cayley = Vec::with_capacity(params.len());
        for p in params {
            cayley.push(match p.update {
                Update::Geodesic => {
                    if p.shape.len() != 2 || p.shape[0] != p.shape[1] {
                        return Err(Error::shape("geodesic parameter", "a square matrix", format!("{:?}", p.shape)));
                    }
                    if cfg.geo_lr <= 0.0 {
                        return Err(Error::invalid(
                            "--geo-lr",
                            cfg.geo_lr,
                            format!("parameter {} moves by geodesic steps: set --geo-lr > 0 (e.g. 1e-3)", p.name),
                        ));
                    }
                    Some(CayleyStep::new(b, p.shape[0])?)
                }
                _ => None,
            });
        }
        Ok(Optimizer { cfg, states, cayley, step: 0 })
    }

    /// The hyperparameters.
    pub fn config(&self) -> &OptimConfig {
        &self.cfg
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// State buffers for checkpoints: `(param index, first, second)`.
    pub fn states(&self) -> &[(B::Buf, B::Buf)] {
        &self.states
    }

    /// Restores state from a checkpoint.
    pub fn restore(&mut self, b: &B, step: u64, states: Vec<HostState<B>>) -> Result<()> {
        if states.len() != self.states.len() {
            return Err(Error::shape("optimizer state", self.states.len(), states.len()));
        }
        for ((s1, s2), (h1, h2)) in self.states.iter_mut().zip(states) {
            b.write(SliceMut::all(s1), &h1)?;
            b.write(SliceMut::all(s2), &h2)?;
        }
        self.step = step;
        Ok(())
    }

    /// QR repairs made by the geodesic steps' drift guards so far.
    pub fn reorthogonalizations(&self) -> usize {
        self.cayley.iter().flatten().map(|c| c.reorthogonalizations()).sum()
    }

    /// Per-parameter geodesic counters `(steps, repairs)` for checkpoints (`None` for Euclidean ones).
    pub fn geodesic_counters(&self) -> Vec<Option<(usize, usize)>> {
        self.cayley.iter().map(|c| c.as_ref().map(|c| (c.steps(), c.reorthogonalizations()))).collect()
    }

    /// Restores geodesic counters saved by [`Optimizer::geodesic_counters`].
    pub fn restore_geodesic_counters(&mut self, counters: &[Option<(usize, usize)>]) {
        for (c, saved) in self.cayley.iter_mut().zip(counters) {
            if let (Some(c), Some((steps, reorth))) = (c.as_mut(), saved) {
                c.restore_counters(*steps, *reorth);
            }
        }
    }

    /// Global gradient norm over trained parameters.
    pub fn grad_norm(b: &B, params: &[Param<B>]) -> Result<f64> {
        let mut sq = 0.0;
        for p in params.iter().filter(|p| p.update != Update::Frozen) {
            sq += b.sum_sq(Slice::all(&p.grad))?;
        }
        Ok(sq.sqrt())
    }

    /// Clips and applies one update to every trained parameter, then reads the gradient norm back
    /// ([`Optimizer::queue_step`], one host synchronization, [`Optimizer::info`]).
    pub fn step(&mut self, b: &B, params: &mut [Param<B>]) -> Result<StepInfo> {
        self.queue_step(b, params)?;
        Self::info(&b.tally_read()?)
    }

    /// Queues clipping and the update of every trained parameter without waiting for the device: the
    /// Euclidean parameters in one multi-tensor step ([`Backend::clip_and_step`]: the global norm, the
    /// clipping scale and the updates computed on the device), then the geodesic steps. The norm is left
    /// in [`Tally::GradNorm`] for [`Optimizer::info`]. A non-finite norm updates nothing (the geodesic
    /// gradients are zeroed, so their Cayley steps leave the matrices as they are) and makes `info` fail.
    pub fn queue_step(&mut self, b: &B, params: &mut [Param<B>]) -> Result<()> {
        self.queue_euclidean(b, params)?;
        self.queue_geodesic(b, params)
    }

    /// The global-norm clipping and the Euclidean updates of [`Optimizer::queue_step`]: the same device
    /// work with the same arguments on every call (the step count and rates live in device memory), so
    /// a captured graph can replay it.
    pub fn queue_euclidean(&mut self, b: &B, params: &mut [Param<B>]) -> Result<()> {
        if params.len() != self.states.len() {
            return Err(Error::shape("optimizer parameters", self.states.len(), params.len()));
        }
        self.step += 1;
        b.tally_reset(Tally::GradNorm)?;
        let mut tensors = Vec::with_capacity(params.len());
        for (p, (s1, s2)) in params.iter_mut().zip(self.states.iter_mut()) {
            let step = match p.update {
                Update::Frozen => continue,
                Update::Geodesic => None,
                Update::Euclidean => Some(OptimStep {
                    rule: self.cfg.rule,
                    lr: self.cfg.lr * p.lr_mult,
                    weight_decay: if p.decay { self.cfg.weight_decay } else { 0.0 },
                    t: self.step,
                }),
            };
            tensors.push(StepTensor {
                param: SliceMut::all(&mut p.value),
                grad: SliceMut::all(&mut p.grad),
                s1: SliceMut::all(s1),
                s2: SliceMut::all(s2),
                step,
            });
        }
        b.clip_and_step(&mut tensors, self.cfg.clip)
    }

    /// The geodesic (Cayley) steps of [`Optimizer::queue_step`], on the gradients clipped by
    /// [`Optimizer::queue_euclidean`].
    pub fn queue_geodesic(&mut self, b: &B, params: &mut [Param<B>]) -> Result<()> {
        for (p, cayley) in params.iter_mut().zip(self.cayley.iter_mut()) {
            if p.update != Update::Geodesic {
                continue;
            }
            let Some(cs) = cayley.as_mut() else {
                return Err(Error::shape("optimizer", "a Cayley workspace for each geodesic parameter", "none"));
            };
            cs.step(b, SliceMut::all(&mut p.value), Slice::all(&p.grad), self.cfg.geo_lr)?;
        }
        Ok(())
    }

    /// Whether the optimizer's Euclidean part is all there is (no geodesic steps, whose drift checks
    /// read back on some steps): then a whole iteration can be one graph.
    pub fn has_geodesic(&self) -> bool {
        self.cayley.iter().any(Option::is_some)
    }

    /// Counts a step replayed by a graph (the device advanced its own step counter).
    pub fn note_replayed_step(&mut self) {
        self.step += 1;
    }

    /// Sets the step count (a capture that was abandoned counted a step that did not run).
    pub fn set_steps(&mut self, step: u64) {
        self.step = step;
    }

    /// What the step queued last did, from the tallies read back: the global gradient norm before
    /// clipping and whether it clipped. A non-finite norm is an error (nothing was updated).
    pub fn info(tallies: &TallyValues) -> Result<StepInfo> {
        let [sq, clipped, _, _] = tallies[Tally::GradNorm as usize];
        let grad_norm = sq.sqrt();
        if !grad_norm.is_finite() {
            return Err(Error::invalid("gradient", grad_norm, "the gradient norm is not finite"));
        }
        Ok(StepInfo { grad_norm, clipped: clipped > 0.0 })
    }
}
