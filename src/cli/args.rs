//! Command-line arguments shared by `train`, `bench` and `experiment`.

use super::bounds;
use clap::{Args, ValueEnum};
use ortho_rnn::backend::{Activation, OptimRule};
use ortho_rnn::device::DeviceKind;
use ortho_rnn::error::{Error, Result};
use ortho_rnn::nn::init::{DenseInit, RecurrentInit};
use ortho_rnn::optim::OptimConfig;
use ortho_rnn::optim::regularize::Regularizers;
use ortho_rnn::param::factorized::Spectrum;
use ortho_rnn::train::build::{ModelKind, ModelSpec};

/// Activation names on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ActArg {
    Tanh,
    Relu,
    Prelu,
    Oplu,
    Modrelu,
    Identity,
    /// Alias of identity: a linear RNN.
    Linear,
}

impl From<ActArg> for Activation {
    fn from(a: ActArg) -> Self {
        match a {
            ActArg::Tanh => Activation::Tanh,
            ActArg::Relu => Activation::Relu,
            ActArg::Prelu => Activation::Prelu,
            ActArg::Oplu => Activation::Oplu,
            ActArg::Modrelu => Activation::Modrelu,
            ActArg::Identity | ActArg::Linear => Activation::Identity,
        }
    }
}

/// Optimizer names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OptArg {
    Sgd,
    Rmsprop,
    Adam,
}

/// Model flags.
#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// Network.
    #[arg(long, value_enum, default_value = "factorized")]
    pub model: ModelKind,
    /// Hidden units.
    #[arg(long, default_value_t = 128, value_parser = bounds::hidden)]
    pub hidden: usize,
    /// Transition nonlinearity [default: tanh].
    #[arg(long, value_enum)]
    pub activation: Option<ActArg>,
    /// PReLU: initial slope (the paper's 0.7).
    #[arg(long, default_value_t = 0.7, allow_negative_numbers = true, value_parser = bounds::finite)]
    pub prelu_slope: f64,
    /// PReLU: keep the slope fixed instead of training it.
    #[arg(long)]
    pub prelu_fixed: bool,
    /// Initialization of the recurrent matrix [default: orthogonal; cayley for scornn, exprnn, dtriv].
    #[arg(long, value_enum)]
    pub init: Option<RecurrentInit>,
    /// Factorized: spectral margin m (singular values in [1 - m, 1 + m]; 0: orthogonal), or `none`
    /// to train the singular values directly [default: 1].
    #[arg(long, allow_hyphen_values = true)]
    pub margin: Option<String>,
    /// scoRNN: number of -1 entries in D [default: hidden / 2].
    #[arg(long, value_parser = bounds::neg)]
    pub neg: Option<usize>,
    /// DTRIV: change the base every K steps, or `inf` (expRNN) [default: 100].
    #[arg(long = "k", alias = "K")]
    pub k: Option<String>,
    /// Gain g multiplying the orthogonal or identity initialization.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true, value_parser = bounds::positive)]
    pub gain: f64,
    /// Regularizer, repeatable: soft-orth=LAMBDA, spectrum-prior=LAMBDA, gain-orth=LAMBDA,g=GAIN
    /// [default: none].
    #[arg(long = "reg", value_name = "SPEC")]
    pub regs: Vec<String>,
    /// Weight decay (on the composite recurrent matrix and the input/output matrices).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true, value_parser = bounds::non_negative)]
    pub weight_decay: f64,
    /// Initialization of the input matrix W_in (he-normal: the expRNN/DTRIV code's; torch-default:
    /// torch.nn.Linear's).
    #[arg(long, value_enum, default_value = "glorot-normal")]
    pub init_in: DenseInit,
    /// Initialization of the readout matrix W_o.
    #[arg(long, value_enum, default_value = "glorot-normal")]
    pub init_out: DenseInit,
}

/// Optimizer flags.
#[derive(Args, Clone, Debug)]
pub struct OptimArgs {
    /// Optimizer for Euclidean parameters.
    #[arg(long, value_enum, default_value = "rmsprop")]
    pub optimizer: OptArg,
    /// Learning rate.
    #[arg(long, default_value_t = 1e-3, allow_negative_numbers = true, value_parser = bounds::positive)]
    pub lr: f64,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true, value_parser = bounds::unit)]
    pub momentum: f64,
    /// SGD: Nesterov momentum.
    #[arg(long)]
    pub nesterov: bool,
    /// RMSprop decay rate.
    #[arg(long, default_value_t = 0.9, allow_negative_numbers = true, value_parser = bounds::unit)]
    pub rho: f64,
    /// Adam betas.
    #[arg(long, default_value_t = 0.9, allow_negative_numbers = true, value_parser = bounds::unit)]
    pub beta1: f64,
    #[arg(long, default_value_t = 0.999, allow_negative_numbers = true, value_parser = bounds::unit)]
    pub beta2: f64,
    /// Denominator epsilon of RMSprop and Adam.
    #[arg(long, default_value_t = 1e-8, allow_negative_numbers = true, value_parser = bounds::positive)]
    pub eps: f64,
    /// Global-norm gradient clipping (the papers use 100) [default: none: no clipping].
    #[arg(long, allow_negative_numbers = true, value_parser = bounds::positive)]
    pub clip: Option<f64>,
    /// Learning rate of the geodesic (Cayley) steps of factorized and orthogonal models [default: 1e-3].
    #[arg(long, allow_negative_numbers = true, value_parser = bounds::non_negative)]
    pub geo_lr: Option<f64>,
}

impl OptimArgs {
    /// The optimizer configuration (`weight_decay` comes from the model flags).
    pub fn config(&self, spec: &ModelSpec) -> Result<OptimConfig> {
        let weight_decay = spec.regs.weight_decay;
        let geo_lr = match (self.geo_lr, spec.model.geodesic()) {
            (Some(g), true) => g,
            (None, true) => 1e-3,
            (None, false) => 0.0,
            (Some(_), false) => {
                return Err(Error::Inapplicable {
                    flag: "--geo-lr",
                    context: format!("--model {}", spec.model.as_str()),
                    hint: "geodesic steps move the orthogonal factors of --model factorized and orthogonal".into(),
                });
            }
        };
        let rule = match self.optimizer {
            OptArg::Sgd => OptimRule::Sgd { momentum: self.momentum, nesterov: self.nesterov },
            OptArg::Rmsprop => OptimRule::RmsProp { rho: self.rho, eps: self.eps },
            OptArg::Adam => OptimRule::Adam { beta1: self.beta1, beta2: self.beta2, eps: self.eps },
        };
        if self.nesterov && !(self.optimizer == OptArg::Sgd && self.momentum > 0.0) {
            return Err(Error::Inapplicable {
                flag: "--nesterov",
                context: format!("--optimizer {:?} --momentum {}", self.optimizer, self.momentum).to_lowercase(),
                hint: "Nesterov momentum needs --optimizer sgd with --momentum > 0".into(),
            });
        }
        let cfg = OptimConfig { rule, lr: self.lr, geo_lr, clip: self.clip, weight_decay };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Device flags.
#[derive(Args, Clone, Debug)]
pub struct DeviceArgs {
    /// Backend: cpu, cuda (GPU 0), cuda:K (GPU K) or emu (`ortho-rnn devices` lists what this machine
    /// offers and numbers the GPUs).
    #[arg(long, default_value = "cpu", value_parser = bounds::device)]
    pub device: DeviceKind,
    /// CPU threads (0: every core).
    #[arg(long, default_value_t = 0, value_parser = bounds::threads)]
    pub threads: usize,
}

/// Parses `--reg` specifications.
pub fn parse_regs(specs: &[String], weight_decay: f64) -> Result<Regularizers> {
    let mut r = Regularizers { weight_decay, ..Default::default() };
    for spec in specs {
        let bad = |why: &str| Error::invalid("--reg", spec, why.to_string());
        let mut parts = spec.split(',');
        let head = parts.next().unwrap_or_default();
        let (name, value) = head.split_once('=').ok_or_else(|| bad("expected NAME=LAMBDA, e.g. soft-orth=1e-3"))?;
        let lambda: f64 = value.trim().parse().map_err(|_| bad("the strength is not a number"))?;
        let rest: Vec<&str> = parts.collect();
        match name.trim() {
            "soft-orth" if rest.is_empty() => r.soft_orth = lambda,
            "spectrum-prior" if rest.is_empty() => r.spectrum_prior = lambda,
            "gain-orth" => {
                let mut g = 1.0;
                for kv in rest {
                    match kv.split_once('=') {
                        Some(("g", v)) => g = v.trim().parse().map_err(|_| bad("the gain g is not a number"))?,
                        _ => return Err(bad("gain-orth takes one option, g=GAIN")),
                    }
                }
                r.gain_orth = Some((lambda, g));
            }
            "soft-orth" | "spectrum-prior" => return Err(bad("this regularizer takes no options")),
            _ => return Err(bad("unknown regularizer; use soft-orth, spectrum-prior or gain-orth")),
        }
    }
    r.validate()?;
    Ok(r)
}

impl ModelArgs {
    /// The model specification.
    pub fn spec(&self) -> Result<ModelSpec> {
        let m = self.model;
        if self.activation.is_some() && m == ModelKind::Lstm {
            return Err(Error::Inapplicable {
                flag: "--activation",
                context: "--model lstm".into(),
                hint: "the LSTM's gates have fixed nonlinearities".into(),
            });
        }
        let margin = match self.margin.as_deref().map(str::trim) {
            None if m == ModelKind::Factorized => Some(1.0),
            None | Some("none") => None,
            Some(v) => {
                Some(v.parse::<f64>().map_err(|_| Error::invalid("--margin", v, "expected a number >= 0 or `none`"))?)
            }
        };
        if self.margin.is_some() && m != ModelKind::Factorized {
            return Err(Error::Inapplicable {
                flag: "--margin",
                context: format!("--model {}", m.as_str()),
                hint: "the spectral margin belongs to --model factorized".into(),
            });
        }
        let k = match self.k.as_deref().map(str::trim) {
            None => (m == ModelKind::Dtriv).then_some(100),
            Some("inf") => None,
            Some(v) => {
                Some(v.parse::<usize>().map_err(|_| Error::invalid("--k", v, "expected a positive integer or `inf`"))?)
            }
        };
        if self.k.is_some() && m != ModelKind::Dtriv {
            return Err(Error::Inapplicable {
                flag: "--k",
                context: format!("--model {}", m.as_str()),
                hint: "the base-change period belongs to --model dtriv (exprnn never changes its base)".into(),
            });
        }
        let spec = ModelSpec {
            model: m,
            hidden: self.hidden,
            activation: self.activation.unwrap_or(ActArg::Tanh).into(),
            init: self.init.unwrap_or(m.default_init()),
            gain: self.gain,
            prelu_slope: self.prelu_slope,
            prelu_trainable: !self.prelu_fixed,
            regs: parse_regs(&self.regs, self.weight_decay)?,
            spectrum: Spectrum::from_margin(margin)?,
            neg: self.neg,
            k,
            init_in: self.init_in,
            init_out: self.init_out,
        };
        if self.prelu_fixed && spec.activation != Activation::Prelu {
            return Err(Error::Inapplicable {
                flag: "--prelu-fixed",
                context: format!("--activation {:?}", spec.activation).to_lowercase(),
                hint: "it only applies with --activation prelu".into(),
            });
        }
        spec.validate()?;
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regularizer_specs() {
        let r = parse_regs(&["soft-orth=1e-3".into(), "gain-orth=2e-3,g=1.05".into()], 0.0).unwrap();
        assert_eq!(r.soft_orth, 1e-3);
        assert_eq!(r.gain_orth, Some((2e-3, 1.05)));
        for bad in ["soft-orth", "soft-orth=x", "nope=1", "gain-orth=1,h=2", "gain-orth=1,g=0", "soft-orth=-1"] {
            assert!(parse_regs(&[bad.into()], 0.0).is_err(), "{bad} should be rejected");
        }
    }
}
