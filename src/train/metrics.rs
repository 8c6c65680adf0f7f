//! Metrics records: one JSON object per line, one line per evaluation.
//!
//! The schema is [`EvalRecord`]; optional fields are omitted when they do not apply, and a
//! non-finite number is written as `null` (JSON has no NaN), read back as NaN. `ortho-rnn plot`
//! and the experiment tables read these files back with [`read_metrics_tolerant`]: a last line
//! without its newline (a run killed, or a disk that filled, while writing it) is skipped and
//! reported, any other malformed line is an error. On resume, [`truncate_after`] drops the records
//! written after the checkpoint, atomically, so that no evaluation appears twice.

use crate::backend::Precision;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
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
    #[serde(deserialize_with = "nan_if_null")]
    pub seconds: f64,
    /// Evaluation loss (mean per scored step; natural log for cross-entropy, squared error for MSE).
    #[serde(deserialize_with = "nan_if_null")]
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
    /// Instabilities detected since the previous record ([`super::spikes`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spikes: Vec<super::spikes::Spike>,
}

/// Reads a number written by `serde_json`, which writes NaN and infinities as `null`.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
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
        let mut line = serde_json::to_string(rec).map_err(|e| Error::bad_file(&self.path, e.to_string()))?;
        line.push('\n');
        // One write of the whole line, so that a record is either complete or a truncated last line.
        self.file.write_all(line.as_bytes()).and_then(|_| self.file.flush()).map_err(|e| Error::io(&self.path, e))
    }
}

/// Reads every record of a metrics file; a malformed line, the last one included, is an error
/// naming the line.
pub fn read_metrics(path: &Path) -> Result<Vec<EvalRecord>> {
    let read = read_metrics_tolerant(path)?;
    match read.truncated_last_line {
        Some(n) => Err(Error::bad_file(path, format!("line {n}: incomplete last line (no newline, not a record)"))),
        None => Ok(read.records),
    }
}

/// The records of a metrics file read by [`read_metrics_tolerant`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricsRead {
    pub records: Vec<EvalRecord>,
    /// The 1-based number of a last line that has no newline and does not parse, skipped.
    pub truncated_last_line: Option<usize>,
}

/// Reads every record of a metrics file, skipping an incomplete last line (no trailing newline and
/// not a record: the writer stopped in the middle of it). Any other malformed line is an error
/// naming the line.
pub fn read_metrics_tolerant(path: &Path) -> Result<MetricsRead> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let complete = bytes.ends_with(b"\n");
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    let mut out = MetricsRead::default();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(rec) => out.records.push(rec),
            Err(_) if i + 1 == lines.len() && !complete => out.truncated_last_line = Some(i + 1),
            Err(e) => {
                return Err(Error::bad_file(path, format!("line {}: not a metrics record: {e}", i + 1)));
            }
        }
    }
    Ok(out)
}

/// Keeps the complete records of `path` up to iteration `iter` (a checkpoint's) and drops the
/// rest, rewriting the file atomically; a missing file is left missing.
pub fn truncate_after(path: &Path, iter: usize) -> Result<()> {
    let text = match std::fs::read(path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(path, e)),
    };
    let mut kept = String::new();
    for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
        if serde_json::from_str::<EvalRecord>(line).is_ok_and(|r| r.iter <= iter) {
            kept.push_str(line);
        }
    }
    super::checkpoint::write_atomic(path, kept.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_last_line_is_skipped_and_resume_truncation_keeps_complete_early_records() {
        let dir = std::env::temp_dir().join(format!("ortho-rnn-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("m.jsonl");
        let rec =
            |i: usize, loss: f64| serde_json::to_string(&EvalRecord { iter: i, loss, ..Default::default() }).unwrap();
        let text = format!("{}\n{}\n{}\n{}", rec(10, 1.0), rec(20, f64::NAN), rec(30, 0.5), &rec(40, 0.4)[..9]);
        std::fs::write(&p, &text).unwrap();
        let r = read_metrics_tolerant(&p).unwrap();
        assert_eq!(r.records.len(), 3);
        assert!(r.records[1].loss.is_nan(), "null reads back as NaN");
        assert_eq!(r.truncated_last_line, Some(4));
        assert!(read_metrics(&p).unwrap_err().to_string().contains("line 4"));
        std::fs::write(&p, format!("{}\nnot json\n{}\n", rec(10, 1.0), rec(20, 1.0))).unwrap();
        assert!(read_metrics_tolerant(&p).unwrap_err().to_string().contains("line 2"));
        std::fs::write(&p, &text).unwrap();
        truncate_after(&p, 20).unwrap();
        let r = read_metrics_tolerant(&p).unwrap();
        assert_eq!(r.records.iter().map(|r| r.iter).collect::<Vec<_>>(), [10, 20]);
        assert_eq!(r.truncated_last_line, None);
    }
}
