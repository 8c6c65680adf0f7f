//! From a model specification (what the CLI flags say) to a trainable [`Model`] on any backend.

use crate::backend::{Activation, Backend};
use crate::error::{Error, Result};
use crate::nn::Model;
use crate::nn::init::{self, RecurrentInit};
use crate::nn::lstm::Lstm;
use crate::nn::rnn::{Rnn, RnnConfig};
use crate::optim::regularize::Regularizers;
use crate::param::free::Free;
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
    /// The LSTM baseline (peepholes, forget bias 1, orthogonal recurrent blocks).
    Lstm,
}

impl ModelKind {
    /// The CLI name.
    pub fn as_str(&self) -> &'static str {
        match self {
            ModelKind::Rnn => "rnn",
            ModelKind::Lstm => "lstm",
        }
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
        }
    }
}

impl ModelSpec {
    /// Checks the combination of flags.
    pub fn validate(&self) -> Result<()> {
        if self.hidden == 0 {
            return Err(Error::invalid("--hidden", 0, "the hidden size must be at least 1"));
        }
        if !(self.gain > 0.0 && self.gain.is_finite()) {
            return Err(Error::invalid("--gain", self.gain, "the gain must be a positive finite number"));
        }
        self.regs.validate()
    }

    /// Builds the model for `task` on backend `b`, initialized from `seed`.
    pub fn build<B: Backend>(&self, b: &B, task: &dyn Task, seed: u64) -> Result<Box<dyn Model<B>>> {
        self.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_0F1A_17AB);
        let n = self.hidden;
        let cfg = RnnConfig {
            input: task.input_dim(),
            hidden: n,
            loss: task.loss(),
            acc_last: task.accuracy_last_steps(),
            activation: self.activation,
            prelu_slope: self.prelu_slope,
            prelu_trainable: self.prelu_trainable,
            regs: self.regs,
        };
        if self.model == ModelKind::Lstm {
            let r = &self.regs;
            if r.soft_orth > 0.0 || r.spectrum_prior > 0.0 || r.gain_orth.is_some() {
                return Err(Error::Inapplicable {
                    flag: "--reg",
                    context: "--model lstm".into(),
                    hint: "the regularizers act on a single recurrent matrix W; use an RNN model".into(),
                });
            }
            let lstm = Lstm::new(b, task.input_dim(), n, task.loss(), task.accuracy_last_steps(), &mut rng)?;
            return Ok(Box::new(lstm));
        }
        cfg.validate()?;
        match self.model {
            ModelKind::Rnn => {
                let w0 = init::recurrent(&mut rng, self.init, n, self.gain)?;
                let tp = Free::params(b, n, &w0)?;
                Ok(Box::new(Rnn::new(b, cfg, &mut rng, Box::new(Free), tp)?))
            }
            ModelKind::Lstm => unreachable!("handled above"),
        }
    }
}
