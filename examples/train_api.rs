//! Training through the library API alone: build a factorized RNN (W = U diag(s) V^T with a
//! spectral margin), run forward and backward on batches, step the optimizer (geodesic steps for U
//! and V), and read and set weights.
//!
//! `cargo run --release --example train_api`

use ortho_rnn::backend::cpu::Cpu;
use ortho_rnn::backend::{Backend, OptimRule, Slice};
use ortho_rnn::nn::Pass;
use ortho_rnn::optim::{OptimConfig, Optimizer};
use ortho_rnn::param::factorized::Spectrum;
use ortho_rnn::tasks::{Task, copy::CopyTask};
use ortho_rnn::train::build::{ModelKind, ModelSpec};

fn main() -> ortho_rnn::Result<()> {
    let b = Cpu::<f32>::default();
    let task = CopyTask::new(20, 7)?;

    // A model: the spec picks the parametrization; `build` sizes it for the task.
    let mut spec = ModelSpec::of(ModelKind::Factorized, 64);
    spec.spectrum = Spectrum::Margin(0.5);
    let mut model = spec.build(&b, &task, 7)?;
    let params: Vec<_> = model.params().iter().map(|p| format!("{} {:?}", p.name, p.shape)).collect();
    println!("parameters: {}", params.join(", "));

    // The optimizer: RMSprop on Euclidean parameters, Cayley steps on U and V.
    let cfg = OptimConfig {
        rule: OptimRule::RmsProp { rho: 0.9, eps: 1e-8 },
        lr: 1e-3,
        geo_lr: 1e-3,
        clip: Some(100.0),
        weight_decay: 0.0,
    };
    let mut opt = Optimizer::new(&b, cfg, model.params())?;

    for iter in 0..600 {
        let batch = task.train_batch(iter, 32)?;
        let stats = model.run(&batch, Pass::Train)?; // forward + backward: gradients are in params()
        let info = opt.step(&b, model.params_mut())?;
        model.after_update(iter + 1)?;
        if (iter + 1) % 100 == 0 {
            let eval = model.run(&task.eval_batch(0, 250)?, Pass::Eval)?;
            println!(
                "iter {:4}  train loss {:.4}  eval loss {:.4} (baseline {:.4})  accuracy {:.3}  |grad| {:.3}",
                iter + 1,
                stats.loss,
                eval.loss,
                task.baseline().loss,
                eval.accuracy().unwrap_or(0.0),
                info.grad_norm
            );
        }
    }

    // Reading weights: the spectrum parameter p, and its gradient.
    let p = model.read(&b, "p")?;
    let grad = b.download(Slice::all(&model.param("p")?.grad))?;
    println!("p[..4] = {:?}, dL/dp[..4] = {:?}", &p[..4], &grad[..4]);

    // Setting weights: zero the readout bias, then evaluate again.
    let zeros = vec![0.0f32; model.param("b_o")?.len()];
    model.write(&b, "b_o", &zeros)?;
    let eval = model.run(&task.eval_batch(0, 250)?, Pass::Eval)?;
    println!("after zeroing b_o: eval loss {:.4}", eval.loss);

    // Diagnostics: singular values of W stay within the margin [0.5, 1.5].
    let d = model.diagnostics()?;
    let (lo, hi) = d.singular_values.iter().fold((f64::MAX, 0.0f64), |(l, h), &s| (l.min(s), h.max(s)));
    println!("singular values of W in [{lo:.4}, {hi:.4}]; drift of U {:.2e}", d.drift_u.unwrap_or(0.0));
    Ok(())
}
