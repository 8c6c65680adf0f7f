//! Metrics records: one JSON object per line, one line per evaluation.
//!
//! The schema is [`EvalRecord`]; optional fields are omitted when they do not apply. `ortho-rnn plot`
//! and the experiment tables read these files back.

use crate::backend::Precision;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::path::Path;

/// One evaluation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// Training iterations completed.
    pub iter: usize,
    /// Epochs completed (fractional), when the task has an epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<f64>,
    /// Wall-clock seconds since the run started (training time, excluding evaluation).
    pub seconds: f64,
    /// Evaluation loss (mean per scored step; natural log for cross-entropy, squared error for MSE).
    pub loss: f64,
    /// The arithmetic of the network's matrix products (`--precision`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<Precision>,
    /// Mean training loss since the previous record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_loss: Option<f64>,
    /// Evaluation accuracy, where it applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    /// Evaluation mean squared error (regression tasks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mse: Option<f64>,
    /// Bits per character (character-level language modelling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpc: Option<f64>,
    /// Singular values of the recurrent matrix: minimum, mean, standard deviation, maximum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sv_min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sv_mean: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sv_std: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sv_max: Option<f64>,
    /// `||U^T U - I||_max` for the factorized/orthogonal models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_u: Option<f64>,
    /// `||V^T V - I||_max` for the factorized model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_v: Option<f64>,
    /// Re-orthogonalizations performed so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reorth: Option<usize>,
    /// Trainable PReLU slope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prelu_slope: Option<f64>,
    /// `||dL/dh_t||` for `t = 1..T` (mean over the batch) on one training batch, with
    /// `--record-grad-norms`; the Figure 2 heatmap is built from these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_norms: Option<Vec<f64>>,
}

/// Appends records to a JSON-lines file, flushing after every record so a killed run keeps them.
pub struct MetricsWriter {
    file: std::io::BufWriter<std::fs::File>,
    path: std::path::PathBuf,
}

impl MetricsWriter {
    /// Creates (or, with `append`, continues) the file at `path`.
    pub fn create(path: &Path, append: bool) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(MetricsWriter { file: std::io::BufWriter::new(file), path: path.to_path_buf() })
    }

    /// Writes one record as a line.
    pub fn write(&mut self, rec: &EvalRecord) -> Result<()> {
        let line = serde_json::to_string(rec).map_err(|e| Error::bad_file(&self.path, e.to_string()))?;
        writeln!(self.file, "{line}").and_then(|_| self.file.flush()).map_err(|e| Error::io(&self.path, e))
    }
}

/// Reads every record of a metrics file; a malformed line is an error naming the line.
pub fn read_metrics(path: &Path) -> Result<Vec<EvalRecord>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| Error::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let rec = serde_json::from_str(&line)
            .map_err(|e| Error::bad_file(path, format!("line {}: not a metrics record: {e}", i + 1)))?;
        out.push(rec);
    }
    Ok(out)
}
