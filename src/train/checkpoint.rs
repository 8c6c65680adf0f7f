//! Checkpoints: safetensors files that PyTorch reads, written atomically, from which a run resumes
//! bit-identically on the CPU.
//!
//! # Tensors
//! - every model parameter under its own name (`W_in`, `b`, `W_o`, `b_o`, and per model: `W` for
//!   `rnn`/`orthogonal`; `U`, `V`, `p` (margin) or `s` (no margin) for `factorized`; `A` for
//!   `scornn`; `A`, `B` for `exprnn`/`dtriv`; `W_in`, `W_h`, `b`, `peep` for `lstm`; plus
//!   `prelu_slope` or `modrelu_bias` when the activation has a parameter), row-major, F32 (F64 for
//!   f64 models);
//! - optimizer state as `optim.<name>.0` and `optim.<name>.1` (momentum / first moment and second
//!   moment; zeros where the rule does not use them).
//!
//! `safetensors.torch.load_file("ckpt.safetensors")["W_o"]` gives the readout as a torch tensor.
//!
//! # Metadata (the safetensors header's string map)
//! `format` (`ortho-rnn/1`), `iter` (iterations completed), `seconds` (training time so far),
//! `optim_step`, `run` (the run specification as JSON: task, model, optimizer, batch, seed, ...),
//! `model_counters` and `geodesic_counters` (JSON), `model` (the model name).
//!
//! # Validation
//! [`load`] refuses integers that are not integers (`iter`, `optim_step`), counts out of range,
//! a negative or non-finite `seconds`, and non-finite tensor values; [`restore`] refuses counters
//! that do not fit the model and orthogonal factors (geodesic `U`, `V`, `W`; the expRNN/DTRIV base
//! `B`) farther than [`ORTHOGONALITY_TOL`] from orthogonal.
//!
//! # Atomicity
//! The file is written to `<path>.tmp`, flushed and fsynced, renamed over `<path>`, and the
//! directory is fsynced: a reader (or a resumed run) sees either the previous checkpoint or the new
//! one, never a partial file, whenever the writing process is killed.

use super::Trainer;
use crate::backend::{Backend, Slice};
use crate::error::{Error, Result};
use crate::nn::Update;
use crate::scalar::Scalar;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Format tag stored in every checkpoint.
pub const FORMAT: &str = "ortho-rnn/1";

/// What a checkpoint holds, on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// Iterations completed.
    pub iter: usize,
    /// Training seconds so far.
    pub seconds: f64,
    /// Optimizer steps taken.
    pub optim_step: u64,
    /// The run specification (JSON), as the caller stored it.
    pub run: String,
    /// Model name.
    pub model: String,
    /// Tensors by name: shape and values (widened to f64).
    pub tensors: HashMap<String, (Vec<usize>, Vec<f64>)>,
    /// Model counters (e.g. expRNN's base re-orthogonalizations).
    pub model_counters: Vec<(String, f64)>,
    /// Per-parameter geodesic counters `(steps, repairs)`.
    pub geodesic_counters: Vec<Option<(usize, usize)>>,
    /// The best evaluation before this checkpoint (metadata `best`; absent in older files).
    pub best: Option<super::best::BestEval>,
}

fn bytes_of<T: Scalar>(v: &[T]) -> Vec<u8> {
    bytemuck::cast_slice(v).to_vec()
}

fn dtype_of<T: Scalar>() -> Dtype {
    if T::NAME == "f64" { Dtype::F64 } else { Dtype::F32 }
}

/// Serializes the trainer's state with `run` (the run specification JSON) as metadata.
pub fn to_bytes<B: Backend>(t: &Trainer<'_, B>, run: &str) -> Result<Vec<u8>> {
    let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    let params = t.model.params();
    for (p, (s1, s2)) in params.iter().zip(t.opt.states()) {
        owned.push((p.name.clone(), p.shape.clone(), bytes_of(&t.b.download(p.v())?)));
        owned.push((format!("optim.{}.0", p.name), p.shape.clone(), bytes_of(&t.b.download(Slice::all(s1))?)));
        owned.push((format!("optim.{}.1", p.name), p.shape.clone(), bytes_of(&t.b.download(Slice::all(s2))?)));
    }
    let dtype = dtype_of::<B::Elem>();
    let views = owned
        .iter()
        .map(|(name, shape, data)| {
            let v = TensorView::new(dtype, shape.clone(), data)
                .map_err(|e| Error::bad_file("checkpoint", format!("tensor {name}: {e}")))?;
            Ok((name.clone(), v))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), FORMAT.to_string());
    meta.insert("iter".to_string(), t.iter.to_string());
    meta.insert("seconds".to_string(), format!("{:.6}", t.prior_seconds + t.train_seconds()));
    meta.insert("optim_step".to_string(), t.opt.steps().to_string());
    meta.insert("run".to_string(), run.to_string());
    meta.insert("model".to_string(), t.model.name());
    let json = |r: serde_json::Result<String>| r.map_err(|e| Error::bad_file("checkpoint", e.to_string()));
    meta.insert("model_counters".to_string(), json(serde_json::to_string(&t.model.counters()))?);
    meta.insert("geodesic_counters".to_string(), json(serde_json::to_string(&t.opt.geodesic_counters()))?);
    if let Some(best) = &t.best.best {
        meta.insert("best".to_string(), json(serde_json::to_string(best))?);
    }
    safetensors::serialize(views, Some(meta)).map_err(|e| Error::bad_file("checkpoint", e.to_string()))
}

/// Writes `bytes` to `path` atomically: temporary file, fsync, rename, directory fsync. On failure
/// the temporary file is removed and `path` is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    if path.is_dir() {
        return Err(Error::bad_file(path, "is a directory; expected a file name"));
    }
    let mut tmp = PathBuf::from(path);
    tmp.as_mut_os_string().push(".tmp");
    let written = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if let Ok(d) = std::fs::File::open(dir) {
        // Persist the rename; not all platforms can fsync a directory, which is not an error.
        let _ = d.sync_all();
    }
    Ok(())
}

/// Saves the trainer's state to `path` atomically; `run` is stored as given (the CLI stores the
/// JSON of its [`super::RunSpec`], which `--resume` rebuilds the run from).
///
/// ```
/// use ortho_rnn::prelude::*;
/// let (b, task) = (Cpu::<f32>::new(1), CopyTask::new(5, 0)?);
/// let optim = OptimConfig { rule: OptimRule::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 }, lr: 1e-3,
///                           geo_lr: 1e-3, clip: None, weight_decay: 0.0 };
/// let spec = ModelSpec::of(ModelKind::Orthogonal, 8);
/// let mut t = Trainer::new(&b, spec.build(&b, &task, 0)?, optim, &task, TrainConfig::new(2, 4))?;
/// t.run(|_, _| Ok(()))?;
/// let path = std::env::temp_dir().join(format!("ortho-rnn-doc-{}.safetensors", std::process::id()));
/// checkpoint::save(&path, &t, "my run")?;
///
/// // A fresh trainer (other initial weights) takes the saved state back.
/// let ck = checkpoint::load(&path)?;
/// assert_eq!((ck.iter, ck.run.as_str()), (2, "my run"));
/// let mut u = Trainer::new(&b, spec.build(&b, &task, 9)?, optim, &task, TrainConfig::new(2, 4))?;
/// checkpoint::restore(&mut u, &ck, &path)?;
/// assert_eq!(u.model.read(&b, "W")?, t.model.read(&b, "W")?);
/// std::fs::remove_file(&path).ok();
/// # Ok::<(), ortho_rnn::Error>(())
/// ```
pub fn save<B: Backend>(path: &Path, t: &Trainer<'_, B>, run: &str) -> Result<()> {
    write_atomic(path, &to_bytes(t, run)?)
}

/// Reads a checkpoint; every malformed case is an error naming the file and the problem.
pub fn load(path: &Path) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |why: String| Error::bad_file(path, why);
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(format!("not a safetensors file ({e}); truncated or corrupt?")))?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    let meta = header.metadata().clone().ok_or_else(|| bad("no metadata: not an ortho-rnn checkpoint".into()))?;
    let get = |k: &str| {
        meta.get(k).cloned().ok_or_else(|| bad(format!("metadata has no `{k}`: not an ortho-rnn checkpoint")))
    };
    let format = get("format")?;
    if format != FORMAT {
        return Err(bad(format!("format {format}, expected {FORMAT}")));
    }
    let count = |k: &str| -> Result<u64> {
        let v = get(k)?;
        v.trim().parse::<u64>().map_err(|_| bad(format!("metadata `{k}` is {v:?}, not a non-negative integer")))
    };
    let seconds = get("seconds")?;
    let seconds = seconds
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .ok_or_else(|| bad(format!("metadata `seconds` is {seconds:?}, not a finite number >= 0")))?;
    let mut tensors = HashMap::new();
    for (name, view) in st.tensors() {
        let data: Vec<f64> = match view.dtype() {
            Dtype::F32 => {
                view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect()
            }
            Dtype::F64 => {
                view.data().chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect()
            }
            d => return Err(bad(format!("tensor {name} has dtype {d:?}; expected F32 or F64"))),
        };
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(bad(format!(
                "tensor {name} holds a non-finite value ({}) at element {i}: the checkpoint is corrupt or was \
                 written by a run that had already diverged",
                data[i]
            )));
        }
        tensors.insert(name, (view.shape().to_vec(), data));
    }
    let parse = |k: &str| -> Result<serde_json::Value> {
        serde_json::from_str(&get(k)?).map_err(|e| bad(format!("metadata `{k}`: {e}")))
    };
    let iter = usize::try_from(count("iter")?).map_err(|_| bad("metadata `iter` is out of range".into()))?;
    if iter > crate::limits::MAX_ITERS {
        return Err(bad(format!(
            "metadata `iter` is {iter}, above the limit of {} iterations",
            crate::limits::MAX_ITERS
        )));
    }
    let optim_step = count("optim_step")?;
    if optim_step > iter as u64 {
        return Err(bad(format!("metadata `optim_step` is {optim_step}, more than the {iter} iterations done")));
    }
    Ok(Checkpoint {
        iter,
        seconds,
        optim_step,
        run: get("run")?,
        model: get("model")?,
        tensors,
        model_counters: serde_json::from_value(parse("model_counters")?)
            .map_err(|e| bad(format!("model_counters: {e}")))?,
        geodesic_counters: serde_json::from_value(parse("geodesic_counters")?)
            .map_err(|e| bad(format!("geodesic_counters: {e}")))?,
        best: match meta.get("best") {
            Some(text) => Some(serde_json::from_str(text).map_err(|e| bad(format!("metadata `best`: {e}")))?),
            None => None,
        },
    })
}

/// How far from orthogonal (`max|M^T M - I|`) a stored orthogonal factor may be. The trainer keeps
/// the drift under `32 eps` plus the growth between two checks (below `1e-5` in f32; see
/// [`crate::linalg::cayley::DriftGuard`]); a damaged matrix is off by `O(1)`.
pub const ORTHOGONALITY_TOL: f64 = 1e-3;

/// `max|M^T M - I|` of the row-major `n x n` matrix `data`.
pub fn orthogonality_drift(data: &[f64], n: usize) -> f64 {
    if data.len() != n * n {
        return f64::INFINITY;
    }
    let m = faer::Mat::<f64>::from_fn(n, n, |i, j| data[i * n + j]);
    let g = m.transpose() * &m;
    let mut worst = 0.0f64;
    for j in 0..n {
        for i in 0..n {
            let d = (g[(i, j)] - if i == j { 1.0 } else { 0.0 }).abs();
            worst = if d.is_nan() { f64::INFINITY } else { worst.max(d) };
        }
    }
    worst
}

/// Checks the stored counters against the trainer: one geodesic counter per parameter, present
/// exactly for the geodesic ones, `repairs <= steps <= iter`; finite, non-negative model counters.
fn check_counters<B: Backend>(t: &Trainer<'_, B>, ck: &Checkpoint, path: &Path) -> Result<()> {
    let bad = |why: String| Error::bad_file(path, why);
    let want = t.opt.geodesic_counters();
    if ck.geodesic_counters.len() != want.len()
        || ck.geodesic_counters.iter().zip(&want).any(|(a, b)| a.is_some() != b.is_some())
    {
        return Err(bad(format!(
            "metadata `geodesic_counters` has {} entries ({} geodesic), but the model has {} parameters ({} geodesic)",
            ck.geodesic_counters.len(),
            ck.geodesic_counters.iter().flatten().count(),
            want.len(),
            want.iter().flatten().count()
        )));
    }
    if let Some((steps, repairs)) = ck.geodesic_counters.iter().flatten().find(|(s, r)| r > s || *s > ck.iter) {
        return Err(bad(format!(
            "metadata `geodesic_counters` holds {steps} steps with {repairs} repairs after {} iterations",
            ck.iter
        )));
    }
    if let Some((name, v)) = ck.model_counters.iter().find(|(_, v)| !(v.is_finite() && *v >= 0.0)) {
        return Err(bad(format!("metadata `model_counters` has {name} = {v}; counts are finite and >= 0")));
    }
    Ok(())
}

/// Loads a checkpoint's state into a trainer built from the same run specification.
pub fn restore<B: Backend>(t: &mut Trainer<'_, B>, ck: &Checkpoint, path: &Path) -> Result<()> {
    let bad = |why: String| Error::bad_file(path, why);
    if ck.model != t.model.name() {
        return Err(bad(format!("checkpoint of model {}, but the run builds {}", ck.model, t.model.name())));
    }
    let conv = |v: &[f64]| v.iter().map(|&x| B::Elem::of(x)).collect::<Vec<_>>();
    check_counters(t, ck, path)?;
    for p in t.model.params() {
        let orthogonal = p.update == Update::Geodesic || (p.name == "B" && p.update == Update::Frozen);
        if let (true, Some((shape, data))) = (orthogonal, ck.tensors.get(&p.name))
            && let [n, m] = shape[..]
            && n == m
        {
            let drift = orthogonality_drift(data, n);
            if drift > ORTHOGONALITY_TOL {
                return Err(bad(format!(
                    "tensor {} must be orthogonal, but max|M^T M - I| = {drift:.3e} (tolerance {ORTHOGONALITY_TOL:e}): \
                     the checkpoint is corrupt",
                    p.name
                )));
            }
        }
    }
    let mut states = Vec::new();
    for p in t.model.params_mut() {
        let want = &p.shape;
        let take = |name: &str| -> Result<&Vec<f64>> {
            let (shape, data) = ck.tensors.get(name).ok_or_else(|| bad(format!("missing tensor {name}")))?;
            if shape != want {
                return Err(bad(format!("tensor {name} has shape {shape:?}, the model needs {want:?}")));
            }
            Ok(data)
        };
        let value = conv(take(&p.name)?);
        t.b.write(crate::backend::SliceMut::all(&mut p.value), &value)?;
        states.push((conv(take(&format!("optim.{}.0", p.name))?), conv(take(&format!("optim.{}.1", p.name))?)));
    }
    t.opt.restore(&t.b, ck.optim_step, states)?;
    t.opt.restore_geodesic_counters(&ck.geodesic_counters);
    t.model.set_counters(&ck.model_counters);
    t.best.best = ck.best;
    t.model.refresh()?;
    t.iter = ck.iter;
    t.prior_seconds = ck.seconds;
    Ok(())
}
