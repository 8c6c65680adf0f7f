//! A task defined outside the crate through the public `Task` trait, trained with a factorized RNN
//! (`W = U diag(s) V^T`, singular values held in `[0.9, 1.1]`), then `W`'s singular values printed.
//!
//! `cargo run --example custom_task`

use ortho_rnn::prelude::*;

/// Recall: one of 4 symbols (one-hot) arrives at step 0, then `t - 1` blank steps; the network
/// names the symbol at the last step.
struct Recall {
    t: usize,
}

impl Recall {
    fn batch(&self, seed: u64, batch: usize) -> Batch {
        let mut x = vec![0.0; self.t * batch * 4]; // time-major: [t, batch, 4]
        let mut y = vec![0.0; batch]; // one class id per row, scored at the last step
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        for (row, target) in y.iter_mut().enumerate() {
            state ^= state << 13; // xorshift64
            state ^= state >> 7;
            state ^= state << 17;
            let symbol = (state >> 32) as usize % 4;
            x[row * 4 + symbol] = 1.0;
            *target = symbol as f32;
        }
        Batch { t: self.t, batch, input_dim: 4, x, y }
    }
}

impl Task for Recall {
    fn name(&self) -> String {
        "recall".into()
    }
    fn input_dim(&self) -> usize {
        4
    }
    fn loss(&self) -> LossKind {
        LossKind::XentLastStep { classes: 4 }
    }
    fn seq_len(&self) -> usize {
        self.t
    }
    fn train_batch(&self, iter: usize, batch: usize) -> Result<Batch> {
        Ok(self.batch(1_000 + iter as u64, batch))
    }
    fn eval_batches(&self, _batch: usize) -> usize {
        1
    }
    fn eval_batch(&self, i: usize, batch: usize) -> Result<Batch> {
        Ok(self.batch(i as u64, batch))
    }
    fn baseline(&self) -> Baseline {
        Baseline { loss: 4f64.ln(), accuracy: Some(0.25), what: "a uniform guess" }
    }
}

fn main() -> Result<()> {
    let b = Cpu::<f32>::default();
    let task = Recall { t: 20 };
    let spec = ModelSpec { spectrum: Spectrum::Margin(0.1), ..ModelSpec::of(ModelKind::Factorized, 16) };
    let model = spec.build(&b, &task, 0)?;
    let rule = OptimRule::RmsProp { rho: 0.9, eps: 1e-8 };
    let optim = OptimConfig { rule, lr: 1e-2, geo_lr: 1e-3, clip: Some(10.0), weight_decay: 0.0 };
    let cfg = TrainConfig { eval_every: 100, ..TrainConfig::new(300, 64) };
    let mut trainer = Trainer::new(&b, model, optim, &task, cfg)?;
    let summary = trainer.run(|_, rec| {
        println!("iter {:3}  eval loss {:.4}  accuracy {:.3}", rec.iter, rec.loss, rec.accuracy.unwrap_or(0.0));
        Ok(())
    })?;
    println!("baseline {:.4} ({}); final loss {:.4}", summary.baseline, task.baseline().what, summary.loss);
    let w = trainer.model.recurrent_matrix()?;
    let s = singular_values_host(&w, 16)?;
    println!("singular values of W: {}", s.iter().map(|v| format!("{v:.4}")).collect::<Vec<_>>().join(" "));
    Ok(())
}
