//! From a model specification (what the CLI flags say) to a trainable [`Model`] on any backend.

use crate::backend::{Activation, Backend};
use crate::error::{Error, Result};
use crate::nn::Model;
use crate::nn::init::{self, DenseInit, RecurrentInit};
use crate::nn::lstm::Lstm;
use crate::nn::regularize::Regularizers;
use crate::nn::rnn::{Rnn, RnnConfig};
use crate::param::Transition;
use crate::param::exprnn::ExpRnn;
use crate::param::factorized::{Factorized, Spectrum};
use crate::param::free::Free;
use crate::param::orthogonal::Orthogonal;
use crate::param::scornn::Scornn;
use crate::tasks::Task;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Which network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Elman RNN with a free recurrent matrix.
    Rnn,
    /// `W = U diag(s) V^T`, U and V moved by geodesic steps, s within a spectral margin (Vorontsov et al.).
    Factorized,
    /// W kept orthogonal by geodesic (Cayley) steps.
    Orthogonal,
    /// `W = (I + A)^-1 (I - A) D`, A skew (Helfrich et al.).
    Scornn,
    /// `W = B exp(A)`, A skew, B fixed (Lezcano-Casado and Martinez-Rubio).
    Exprnn,
    /// Dynamic trivialization DTRIV-K: like exprnn, with B <- B exp(A), A <- 0 every K steps.
    Dtriv,
    /// The LSTM baseline (peepholes, forget bias 1, orthogonal recurrent blocks).
    Lstm,
}

impl ModelKind {
    /// The CLI name.
    ///
    /// ```
    /// use ortho_rnn::prelude::*;
    /// assert_eq!(ModelKind::Factorized.as_str(), "factorized");
    /// assert!(ModelKind::Factorized.geodesic() && ModelKind::Exprnn.skew());
    /// ```
    pub fn as_str(&self) -> &'static str {
        match self {
            ModelKind::Rnn => "rnn",
            ModelKind::Factorized => "factorized",
            ModelKind::Orthogonal => "orthogonal",
            ModelKind::Scornn => "scornn",
            ModelKind::Exprnn => "exprnn",
            ModelKind::Dtriv => "dtriv",
            ModelKind::Lstm => "lstm",
        }
    }
    /// Whether the model moves parameters by geodesic steps (and so uses `--geo-lr`).
    pub fn geodesic(&self) -> bool {
        matches!(self, ModelKind::Factorized | ModelKind::Orthogonal)
    }
    /// Whether the recurrent matrix comes from a skew matrix `A` (Cayley or exponential map).
    pub fn skew(&self) -> bool {
        matches!(self, ModelKind::Scornn | ModelKind::Exprnn | ModelKind::Dtriv)
    }
    /// The default initialization of the recurrent matrix.
    pub fn default_init(&self) -> RecurrentInit {
        if self.skew() { RecurrentInit::Cayley } else { RecurrentInit::Orthogonal }
    }
}

/// Everything needed to build a model (besides the task's input and output widths).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub model: ModelKind,
    pub hidden: usize,
    pub activation: Activation,
    pub init: RecurrentInit,
    pub gain: f64,
    /// PReLU initial slope and whether it trains.
    pub prelu_slope: f64,
    pub prelu_trainable: bool,
    pub regs: Regularizers,
    /// Factorized: the spectrum's parametrization (margin).
    pub spectrum: Spectrum,
    /// scoRNN: number of -1 entries of D (`None`: half the hidden size, rounded down).
    pub neg: Option<usize>,
    /// DTRIV: base-change period (`None`: never, i.e. expRNN).
    pub k: Option<usize>,
    /// Initialization of the input matrix `W_in` (`--init-in`).
    #[serde(default)]
    pub init_in: DenseInit,
    /// Initialization of the readout `W_o` (`--init-out`).
    #[serde(default)]
    pub init_out: DenseInit,
}

impl Default for ModelSpec {
    fn default() -> Self {
        ModelSpec {
            model: ModelKind::Rnn,
            hidden: 128,
            activation: Activation::Tanh,
            init: RecurrentInit::Orthogonal,
            gain: 1.0,
            prelu_slope: 0.7,
            prelu_trainable: true,
            regs: Regularizers::default(),
            spectrum: Spectrum::Free,
            neg: None,
            k: None,
            init_in: DenseInit::GlorotNormal,
            init_out: DenseInit::GlorotNormal,
        }
    }
}

fn inapplicable(flag: &'static str, model: ModelKind, hint: &str) -> Error {
    Error::Inapplicable { flag, context: format!("--model {}", model.as_str()), hint: hint.into() }
}

impl ModelSpec {
    /// A specification of `model` with its defaults (init, spectrum, K); change fields with struct
    /// update syntax.
    ///
    /// ```
    /// use ortho_rnn::prelude::*;
    /// let spec = ModelSpec { activation: Activation::Relu, ..ModelSpec::of(ModelKind::Dtriv, 32) };
    /// assert_eq!((spec.hidden, spec.k, spec.init), (32, Some(100), RecurrentInit::Cayley));
    /// ```
    pub fn of(model: ModelKind, hidden: usize) -> Self {
        ModelSpec {
            model,
            hidden,
            init: model.default_init(),
            k: (model == ModelKind::Dtriv).then_some(100),
            ..Default::default()
        }
    }

    /// Checks the combination of flags; the error names the flag and the fix.
    ///
    /// ```
    /// use ortho_rnn::prelude::*;
    /// let spec = ModelSpec { spectrum: Spectrum::Margin(0.1), ..ModelSpec::of(ModelKind::Exprnn, 8) };
    /// let e = spec.validate().unwrap_err().to_string();
    /// assert!(e.contains("--margin") && e.contains("factorized"));
    /// ```
    pub fn validate(&self) -> Result<()> {
        let m = self.model;
        if self.hidden == 0 {
            return Err(Error::invalid("--hidden", 0, "the hidden size must be at least 1"));
        }
        if !(self.gain > 0.0 && self.gain.is_finite()) {
            return Err(Error::invalid("--gain", self.gain, "the gain must be a positive finite number"));
        }
        if self.gain != 1.0 && m != ModelKind::Rnn {
            return Err(inapplicable("--gain", m, "the gain scales the free recurrent matrix of --model rnn"));
        }
        if let Some(neg) = self.neg {
            if m != ModelKind::Scornn {
                return Err(inapplicable("--neg", m, "the -1 entries of D belong to --model scornn"));
            }
            if neg > self.hidden {
                return Err(Error::invalid("--neg", neg, format!("must be in [0, {}] (the hidden size)", self.hidden)));
            }
        }
        if self.k == Some(0) {
            return Err(Error::invalid("--k", 0, "the base changes every K steps: K must be at least 1 (or inf)"));
        }
        if self.k.is_some() && m != ModelKind::Dtriv {
            return Err(inapplicable("--k", m, "the base-change period belongs to --model dtriv"));
        }
        if self.spectrum != Spectrum::Free && m != ModelKind::Factorized {
            return Err(inapplicable("--margin", m, "the spectral margin belongs to --model factorized"));
        }
        if self.regs.spectrum_prior > 0.0 && m != ModelKind::Factorized {
            return Err(inapplicable(
                "--reg spectrum-prior",
                m,
                "the prior acts on the spectrum s of --model factorized",
            ));
        }
        if m == ModelKind::Lstm {
            let r = &self.regs;
            if r.soft_orth > 0.0 || r.gain_orth.is_some() {
                return Err(inapplicable(
                    "--reg",
                    m,
                    "the orthogonality penalties act on one recurrent matrix W; use an RNN model",
                ));
            }
        }
        let init_ok = match m {
            ModelKind::Rnn => self.init != RecurrentInit::Cayley,
            ModelKind::Factorized | ModelKind::Orthogonal => {
                matches!(self.init, RecurrentInit::Orthogonal | RecurrentInit::Identity | RecurrentInit::Henaff)
                    || (m == ModelKind::Factorized
                        && self.init == RecurrentInit::Glorot
                        && self.spectrum == Spectrum::Free)
            }
            ModelKind::Scornn | ModelKind::Exprnn | ModelKind::Dtriv => {
                matches!(self.init, RecurrentInit::Cayley | RecurrentInit::Henaff | RecurrentInit::Identity)
            }
            ModelKind::Lstm => self.init == RecurrentInit::Orthogonal,
        };
        if !init_ok {
            let hint = match m {
                ModelKind::Rnn => "use orthogonal, glorot, identity or henaff",
                ModelKind::Factorized => {
                    "U and V start orthogonal: orthogonal, identity or henaff; or glorot with --margin none \
                     (U, s and V from the SVD of a Glorot-normal matrix)"
                }
                ModelKind::Orthogonal => "the matrix must start orthogonal: orthogonal, identity or henaff",
                ModelKind::Lstm => "the LSTM's recurrent blocks start orthogonal",
                _ => "the skew parameter A takes cayley, henaff or identity (A = 0)",
            };
            return Err(Error::invalid(
                "--init",
                format!("{:?}", self.init).to_lowercase(),
                format!("not for --model {}: {hint}", m.as_str()),
            ));
        }
        self.regs.validate()
    }

    /// Builds the model for `task` on backend `b`, initialized from `seed` (the same seed gives the
    /// same weights).
    ///
    /// ```
    /// use ortho_rnn::prelude::*;
    /// let (b, task) = (Cpu::<f32>::new(1), AddingTask::new(10, 0)?);
    /// let model = ModelSpec::of(ModelKind::Scornn, 8).build(&b, &task, 1)?;
    /// let names: Vec<&str> = model.params().iter().map(|p| p.name.as_str()).collect();
    /// assert_eq!(names, ["W_in", "b", "W_o", "b_o", "A"]);
    /// # Ok::<(), ortho_rnn::Error>(())
    /// ```
    pub fn build<B: Backend>(&self, b: &B, task: &dyn Task, seed: u64) -> Result<Box<dyn Model<B>>> {
        self.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_0F1A_17AB);
        let n = self.hidden;
        if self.model == ModelKind::Lstm {
            let dense = (self.init_in, self.init_out);
            let lstm = Lstm::new(b, task.input_dim(), n, task.loss(), task.accuracy_last_steps(), dense, &mut rng)?;
            return Ok(Box::new(lstm));
        }
        let cfg = RnnConfig {
            input: task.input_dim(),
            hidden: n,
            loss: task.loss(),
            acc_last: task.accuracy_last_steps(),
            activation: self.activation,
            prelu_slope: self.prelu_slope,
            prelu_trainable: self.prelu_trainable,
            regs: self.regs,
            init_in: self.init_in,
            init_out: self.init_out,
        };
        cfg.validate()?;
        let (transition, params): (Box<dyn Transition<B>>, _) = match self.model {
            ModelKind::Rnn => {
                let w0 = init::recurrent(&mut rng, self.init, n, self.gain)?;
                (Box::new(Free), Free::params(b, n, &w0)?)
            }
            ModelKind::Orthogonal => {
                let w0 = init::recurrent(&mut rng, self.init, n, 1.0)?;
                let (t, p) = Orthogonal::new(b, n, &w0)?;
                (Box::new(t), p)
            }
            ModelKind::Factorized => {
                let (u0, s0, v0) = if self.init == RecurrentInit::Glorot {
                    // W0 = U diag(s) V^T, the SVD of a Glorot-normal matrix (validated: --margin none).
                    let w0 = init::recurrent(&mut rng, RecurrentInit::Glorot, n, self.gain)?;
                    let (u0, s0, v0) = crate::linalg::svd::svd(&w0, n)?;
                    (u0, Some(s0), v0)
                } else {
                    let u0 = init::recurrent(&mut rng, self.init, n, 1.0)?;
                    (u0, None, init::recurrent(&mut rng, self.init, n, 1.0)?)
                };
                let prior = self.regs.spectrum_prior;
                let (t, p) = Factorized::new(b, n, self.spectrum, prior, &u0, &v0, s0.as_deref())?;
                (Box::new(t), p)
            }
            ModelKind::Scornn => {
                let a0 = init::skew(&mut rng, self.init, n)?;
                let (t, p) = Scornn::new(b, n, self.neg.unwrap_or(n / 2), &a0)?;
                (Box::new(t), p)
            }
            ModelKind::Exprnn | ModelKind::Dtriv => {
                let a0 = init::skew(&mut rng, self.init, n)?;
                let b0 = init::recurrent(&mut rng, RecurrentInit::Identity, n, 1.0)?;
                let k = if self.model == ModelKind::Exprnn { None } else { self.k };
                let (t, p) = ExpRnn::new(b, n, k, self.model == ModelKind::Dtriv, &a0, &b0)?;
                (Box::new(t), p)
            }
            ModelKind::Lstm => unreachable!("built above"),
        };
        Ok(Box::new(Rnn::new(b, cfg, &mut rng, transition, params)?))
    }
}
