//! Trajectory dumps (`ortho-rnn train --dump-trajectory DIR`): everything a reference
//! implementation needs to replay the first `N` iterations of a run step by step, and what ortho-rnn
//! computed in them.
//!
//! Iterations are numbered `i = 1..=N`: iteration `i` draws training batch `i - 1`, computes the loss
//! on it, clips, updates, and runs the model's housekeeping (DTRIV base changes). The directory holds:
//!
//! - `run.json`: `{"format", "run" (the [`RunSpec`]), "dtype", "iters", "params_every", "version"}`;
//! - `init.safetensors`: every parameter before iteration 1, under its checkpoint name, F64;
//! - `batches.safetensors`: per iteration `i`, `x.{i}` (`[T, B, input]`, F32) or, when every input
//!   row is one-hot, `x_index.{i}` (`[T, B]`, I32: the hot column), and `y.{i}` (the targets, F32);
//! - `trajectory.safetensors`: `loss`, `reg` (regularizer terms), `grad_norm` (global norm before
//!   clipping), `clipped` (1 or 0), each `[N]` F64; `param_iters` (`[K]`, the iterations after which
//!   parameters were stored: every `params_every`-th, the first three and the last) and `after.{name}`
//!   (`[K, shape...]`, F64, each parameter after those iterations' updates and housekeeping).
//!
//! `tools/torch_replay.py` reads the first three and writes `reference.safetensors` with the same
//! tensors; `tests/trajectory.rs` compares ortho-rnn with its committed outputs.
//!
//! All files are written atomically ([`write_atomic`]) once the `N`-th iteration is recorded, or by
//! [`Recorder::finish`] when the run ends earlier.

use super::RunSpec;
use super::checkpoint::write_atomic;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::nn::{BatchStats, Param};
use crate::optim::StepInfo;
use crate::scalar::Scalar;
use crate::tasks::Batch;
use safetensors::tensor::{Dtype, TensorView};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Format tag of `run.json`.
pub const FORMAT: &str = "ortho-rnn-trajectory/1";

/// What to dump.
#[derive(Clone, Debug, PartialEq)]
pub struct DumpConfig {
    /// Output directory (created).
    pub dir: PathBuf,
    /// Iterations to record (the first `iters` of the run).
    pub iters: usize,
    /// Store parameters after every this-many iterations (and after iterations 1-3 and the last).
    pub params_every: usize,
}

impl DumpConfig {
    /// Checks the counts.
    pub fn validate(&self) -> Result<()> {
        if self.iters == 0 {
            return Err(Error::invalid("--dump-iters", 0, "record at least one iteration"));
        }
        if self.params_every == 0 {
            return Err(Error::invalid("--dump-params-every", 0, "must be at least 1"));
        }
        Ok(())
    }
}

/// One owned tensor: name, shape, F64 values.
type Owned = (String, Vec<usize>, Vec<f64>);

/// Collects a run's trajectory and writes it.
pub struct Recorder {
    cfg: DumpConfig,
    run: String,
    dtype: &'static str,
    init: Vec<Owned>,
    batches: Vec<(String, Dtype, Vec<usize>, Vec<u8>)>,
    loss: Vec<f64>,
    reg: Vec<f64>,
    grad_norm: Vec<f64>,
    clipped: Vec<f64>,
    param_iters: Vec<f64>,
    after: Vec<(String, Vec<usize>, Vec<f64>)>,
    written: bool,
}

fn host<B: Backend>(b: &B, p: &Param<B>) -> Result<Vec<f64>> {
    Ok(b.download(p.v())?.iter().map(|v| v.f64()).collect())
}

/// The hot column of every row of `x` (`rows x width`), if every row is one-hot.
fn one_hot_columns(x: &[f32], width: usize) -> Option<Vec<i32>> {
    x.chunks_exact(width)
        .map(|row| {
            let hot = row.iter().position(|&v| v == 1.0)?;
            row.iter().enumerate().all(|(j, &v)| if j == hot { v == 1.0 } else { v == 0.0 }).then_some(hot as i32)
        })
        .collect()
}

impl Recorder {
    /// Starts a dump of a run at its initial parameters (`params`, before iteration 1).
    pub fn new<B: Backend>(b: &B, cfg: DumpConfig, run: &RunSpec, params: &[Param<B>]) -> Result<Self> {
        cfg.validate()?;
        let init = params.iter().map(|p| Ok((p.name.clone(), p.shape.clone(), host(b, p)?))).collect::<Result<_>>()?;
        let run = serde_json::to_string(run).map_err(|e| Error::invalid("run", "specification", e.to_string()))?;
        Ok(Recorder {
            cfg,
            run,
            dtype: B::Elem::NAME,
            init,
            batches: Vec::new(),
            loss: Vec::new(),
            reg: Vec::new(),
            grad_norm: Vec::new(),
            clipped: Vec::new(),
            param_iters: Vec::new(),
            after: Vec::new(),
            written: false,
        })
    }

    /// The output directory.
    pub fn dir(&self) -> &Path {
        &self.cfg.dir
    }

    /// Iterations recorded so far.
    pub fn recorded(&self) -> usize {
        self.loss.len()
    }

    fn stores_params(&self, iter: usize) -> bool {
        iter <= 3 || iter == self.cfg.iters || iter.is_multiple_of(self.cfg.params_every)
    }

    /// Records iteration `iter` (1-based): its batch, statistics and step, and the parameters after
    /// the update. Writes the files after the last iteration to record; ignores later iterations.
    pub fn record<B: Backend>(
        &mut self,
        b: &B,
        iter: usize,
        batch: &Batch,
        stats: &BatchStats,
        step: StepInfo,
        params: &[Param<B>],
    ) -> Result<()> {
        if self.written || iter > self.cfg.iters {
            return Ok(());
        }
        if iter != self.loss.len() + 1 {
            return Err(Error::invalid(
                "--dump-trajectory",
                iter,
                format!("iterations must be recorded in order from 1 (expected {})", self.loss.len() + 1),
            ));
        }
        let (t, bs) = (batch.t, batch.batch);
        match one_hot_columns(&batch.x, batch.input_dim) {
            Some(idx) => self.batches.push((
                format!("x_index.{iter}"),
                Dtype::I32,
                vec![t, bs],
                bytemuck::cast_slice(&idx).to_vec(),
            )),
            None => self.batches.push((
                format!("x.{iter}"),
                Dtype::F32,
                vec![t, bs, batch.input_dim],
                bytemuck::cast_slice(&batch.x).to_vec(),
            )),
        }
        let y_shape = if batch.y.len() == t * bs { vec![t, bs] } else { vec![batch.y.len()] };
        self.batches.push((format!("y.{iter}"), Dtype::F32, y_shape, bytemuck::cast_slice(&batch.y).to_vec()));
        self.loss.push(stats.loss);
        self.reg.push(stats.reg);
        self.grad_norm.push(step.grad_norm);
        self.clipped.push(if step.clipped { 1.0 } else { 0.0 });
        if self.stores_params(iter) {
            self.param_iters.push(iter as f64);
            for p in params {
                let values = host(b, p)?;
                match self.after.iter_mut().find(|(n, _, _)| *n == p.name) {
                    Some((_, _, all)) => all.extend(values),
                    None => self.after.push((p.name.clone(), p.shape.clone(), values)),
                }
            }
        }
        if iter == self.cfg.iters {
            self.write()?;
        }
        Ok(())
    }

    /// Writes what was recorded, if not written yet (a run that ended before `iters`).
    pub fn finish(&mut self) -> Result<()> {
        if self.written || self.loss.is_empty() { Ok(()) } else { self.write() }
    }

    fn metadata(&self) -> HashMap<String, String> {
        let mut m = HashMap::new();
        m.insert("format".into(), FORMAT.into());
        m.insert("run".into(), self.run.clone());
        m.insert("dtype".into(), self.dtype.into());
        m.insert("iters".into(), self.loss.len().to_string());
        m
    }

    fn write(&mut self) -> Result<()> {
        let dir = &self.cfg.dir;
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let run: serde_json::Value =
            serde_json::from_str(&self.run).map_err(|e| Error::invalid("run", "specification", e.to_string()))?;
        let json = serde_json::json!({
            "format": FORMAT,
            "run": run,
            "dtype": self.dtype,
            "iters": self.loss.len(),
            "params_every": self.cfg.params_every,
            "version": env!("CARGO_PKG_VERSION"),
        });
        let mut text = serde_json::to_string_pretty(&json).map_err(|e| Error::bad_file(dir, e.to_string()))?;
        text.push('\n');
        write_atomic(&dir.join("run.json"), text.as_bytes())?;

        let meta = self.metadata();
        let f64_tensors = |list: Vec<Owned>| -> Vec<(String, Dtype, Vec<usize>, Vec<u8>)> {
            list.into_iter().map(|(n, s, v)| (n, Dtype::F64, s, bytemuck::cast_slice(&v).to_vec())).collect()
        };
        write_tensors(&dir.join("init.safetensors"), &f64_tensors(self.init.clone()), &meta)?;
        write_tensors(&dir.join("batches.safetensors"), &self.batches, &meta)?;
        let n = self.loss.len();
        let k = self.param_iters.len();
        let mut traj: Vec<Owned> = vec![
            ("loss".into(), vec![n], self.loss.clone()),
            ("reg".into(), vec![n], self.reg.clone()),
            ("grad_norm".into(), vec![n], self.grad_norm.clone()),
            ("clipped".into(), vec![n], self.clipped.clone()),
            ("param_iters".into(), vec![k], self.param_iters.clone()),
        ];
        for (name, shape, values) in &self.after {
            let mut s = vec![k];
            s.extend(shape);
            traj.push((format!("after.{name}"), s, values.clone()));
        }
        write_tensors(&dir.join("trajectory.safetensors"), &f64_tensors(traj), &meta)?;
        self.written = true;
        Ok(())
    }
}

/// Serializes `tensors` with `meta` into `path`, atomically.
fn write_tensors(
    path: &Path,
    tensors: &[(String, Dtype, Vec<usize>, Vec<u8>)],
    meta: &HashMap<String, String>,
) -> Result<()> {
    let views = tensors
        .iter()
        .map(|(name, dtype, shape, data)| {
            let v = TensorView::new(*dtype, shape.clone(), data)
                .map_err(|e| Error::bad_file(path, format!("tensor {name}: {e}")))?;
            Ok((name.clone(), v))
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes = safetensors::serialize(views, Some(meta.clone())).map_err(|e| Error::bad_file(path, e.to_string()))?;
    write_atomic(path, &bytes)
}

/// A safetensors file read back as F64 tensors by name (I32 and F32 widened), with its metadata.
pub struct Tensors {
    pub tensors: HashMap<String, (Vec<usize>, Vec<f64>)>,
    pub metadata: HashMap<String, String>,
}

impl Tensors {
    /// Reads `path`; every malformed case is an error naming the file.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let bad = |why: String| Error::bad_file(path, why);
        let st =
            safetensors::SafeTensors::deserialize(&bytes).map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
        let metadata = header.metadata().clone().unwrap_or_default();
        let mut tensors = HashMap::new();
        for (name, view) in st.tensors() {
            let d = view.data();
            let values: Vec<f64> = match view.dtype() {
                Dtype::F64 => d
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .collect(),
                Dtype::F32 => d.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect(),
                Dtype::I32 => d.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect(),
                other => return Err(bad(format!("tensor {name} has dtype {other:?}; expected F64, F32 or I32"))),
            };
            tensors.insert(name, (view.shape().to_vec(), values));
        }
        Ok(Tensors { tensors, metadata })
    }

    /// The tensor `name`, or an error naming the file.
    pub fn get(&self, path: &Path, name: &str) -> Result<&(Vec<usize>, Vec<f64>)> {
        self.tensors.get(name).ok_or_else(|| Error::bad_file(path, format!("has no tensor `{name}`")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_hot_rows_are_detected() {
        assert_eq!(one_hot_columns(&[0.0, 1.0, 0.0, 1.0, 0.0, 0.0], 3), Some(vec![1, 0]));
        assert_eq!(one_hot_columns(&[0.0, 1.0, 1.0], 3), None);
        assert_eq!(one_hot_columns(&[0.0, 0.5, 0.0], 3), None);
        assert_eq!(one_hot_columns(&[0.0, 0.0, 0.0], 3), None);
    }
}
