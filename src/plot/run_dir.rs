//! `ortho-rnn plot RUN_DIR`: find a directory's metrics files and draw everything they support.
//!
//! Conventions for `RUN_DIR`:
//!
//! - every `RUN_DIR/*.jsonl` is one run, labelled by its file stem; `RUN_DIR/metrics.jsonl` (a
//!   single run's directory) is labelled by the directory's own name;
//! - every subdirectory `RUN_DIR/<name>/metrics.jsonl` is one run of a sweep, labelled `<name>`;
//! - hidden entries and the output folder `RUN_DIR/plots/` are ignored.
//!
//! Runs are ordered by label with numbers compared by value (`m=0.001 < m=0.01 < m=1`, `T200 <
//! T1000`), so a sweep's legend reads in order. Into `RUN_DIR/plots/` go `loss`, and each of
//! `train_loss`, `accuracy`, `mse` and `bpc` that some run records (all runs on one figure, or, when
//! the runs' `config.json` files give several sequence lengths, one figure per length named
//! `T<len>_<metric>`); and for
//! each run with the fields, `<label>_singular_values` and `<label>_grad_norms` (the label made safe
//! for a file name).

use super::curves::{CurveOptions, Metric, plot_curves};
use super::heatmap::{HeatmapOptions, plot_grad_norm_heatmap};
use super::spectrum::{SpectrumOptions, plot_singular_values};
use crate::error::{Error, Result};
use crate::train::metrics::{EvalRecord, read_metrics_tolerant};
use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The subdirectory of a run directory that [`plot_run_dir`] writes into.
pub const PLOTS_SUBDIR: &str = "plots";

/// The metrics file a sweep's run subdirectory holds.
const RUN_FILE: &str = "metrics.jsonl";

/// Draws every figure the metrics files in `run_dir` support into `run_dir/plots/` and returns the
/// paths written (SVG and PNG of each figure).
///
/// Errors: `run_dir` unreadable, no metrics file found (the message says where it looked), a
/// malformed line (from [`read_metrics_tolerant`], naming file and line), or files with no records
/// at all. An incomplete last line (a run killed while writing it) is skipped; use
/// [`plot_run_dir_with_warnings`] to be told.
pub fn plot_run_dir(run_dir: &Path) -> Result<Vec<PathBuf>> {
    plot_run_dir_with_warnings(run_dir).map(|(files, _)| files)
}

/// [`plot_run_dir`], also returning one warning per skipped incomplete last line.
pub fn plot_run_dir_with_warnings(run_dir: &Path) -> Result<(Vec<PathBuf>, Vec<String>)> {
    let found = find_metrics_files(run_dir)?;
    if found.is_empty() {
        return Err(Error::bad_file(
            run_dir,
            format!("no metrics files found: looked for {0}/*.jsonl and {0}/*/{RUN_FILE}", run_dir.display()),
        ));
    }
    let mut runs: Vec<(String, Vec<EvalRecord>)> = Vec::with_capacity(found.len());
    let mut lengths: Vec<Option<usize>> = Vec::with_capacity(found.len());
    let mut warnings = Vec::new();
    for (label, path) in &found {
        lengths.push(sequence_length(path));
        let read = read_metrics_tolerant(path)?;
        if let Some(line) = read.truncated_last_line {
            warnings.push(format!(
                "{}: skipped line {line}, an incomplete last record (the run was stopped, or the disk filled, \
                 while writing it)",
                path.display()
            ));
        }
        runs.push((label.clone(), read.records));
    }
    if runs.iter().all(|(_, r)| r.is_empty()) {
        let files: Vec<String> = found.iter().map(|(_, p)| p.display().to_string()).collect();
        return Err(Error::bad_file(run_dir, format!("the metrics files hold no records: {}", files.join(", "))));
    }

    let out = run_dir.join(PLOTS_SUBDIR);
    let dir_name = directory_label(run_dir);
    let mut written = Vec::new();
    // One chart per sequence length when the runs have several (a sweep over T).
    let distinct: BTreeSet<Option<usize>> = lengths.iter().copied().collect();
    for t in &distinct {
        let part: Vec<(String, Vec<EvalRecord>)> =
            runs.iter().zip(&lengths).filter(|(_, l)| *l == t).map(|(r, _)| r.clone()).collect();
        let (prefix, title) = match (distinct.len() > 1, t) {
            (false, _) => (String::new(), dir_name.clone()),
            (true, Some(t)) => (format!("T{t}_"), format!("{dir_name}, T = {t}")),
            (true, None) => ("T_unknown_".to_string(), format!("{dir_name}, T not recorded")),
        };
        for metric in Metric::ALL {
            let has = part.iter().any(|(_, recs)| recs.iter().any(|r| metric.value(r).is_some_and(f64::is_finite)));
            if has {
                let title = format!("{title}: {}", metric.axis_label());
                let stem = format!("{prefix}{}", metric.name());
                written.extend(plot_curves(&part, metric, &out, &stem, &title, &CurveOptions::default())?);
            }
        }
    }
    let mut stems_used = std::collections::HashSet::new();
    for (i, (label, recs)) in runs.iter().enumerate() {
        let mut slug = file_slug(label, i);
        while !stems_used.insert(slug.clone()) {
            slug.push('_');
        }
        let has_sv = recs.iter().any(|r| [r.sv_min, r.sv_mean, r.sv_max].iter().flatten().any(|v| v.is_finite()));
        if has_sv {
            let title = format!("{label}: singular values");
            let stem = format!("{slug}_singular_values");
            written.extend(plot_singular_values(recs, &out, &stem, &title, &SpectrumOptions::default())?);
        }
        let has_grads = recs.iter().filter_map(|r| r.grad_norms.as_ref()).flatten().any(|v| v.is_finite() && *v > 0.0);
        if has_grads {
            let title = format!("{label}: gradient norm per time step");
            let stem = format!("{slug}_grad_norms");
            written.extend(plot_grad_norm_heatmap(recs, &out, &stem, &title, &HeatmapOptions::default())?);
        }
    }
    Ok((written, warnings))
}

/// The sequence length `T` of the run whose metrics file is `metrics`, from the `config.json` an
/// experiment writes beside it (`config.job.task.seq_len`, or the task's default); `None` when
/// there is no such file or it does not say.
fn sequence_length(metrics: &Path) -> Option<usize> {
    let text = std::fs::read_to_string(metrics.parent()?.join("config.json")).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    let task = value.get("config")?.get("job")?.get("task")?;
    match task.get("seq_len").and_then(serde_json::Value::as_u64) {
        Some(t) => usize::try_from(t).ok(),
        None => {
            let kind: crate::tasks::TaskKind = serde_json::from_value(task.get("kind")?.clone()).ok()?;
            Some(kind.default_seq_len())
        }
    }
}

/// The (label, path) of every metrics file under the conventions above, in label order.
fn find_metrics_files(run_dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let entries = std::fs::read_dir(run_dir).map_err(|e| Error::io(run_dir, e))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(run_dir, e))?;
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            let file = path.join(RUN_FILE);
            if name != PLOTS_SUBDIR && file.is_file() {
                found.push((name, file));
            }
        } else if path.extension().is_some_and(|e| e == "jsonl") && path.is_file() {
            let label = if name == RUN_FILE {
                directory_label(run_dir)
            } else {
                path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or(name)
            };
            found.push((label, path));
        }
    }
    found.sort_by(|a, b| natural_cmp(&a.0, &b.0).then_with(|| a.1.cmp(&b.1)));
    // Two entries can share a label (`a.jsonl` and `a/metrics.jsonl`): number the later ones.
    for i in 1..found.len() {
        if found[..i].iter().any(|(l, _)| *l == found[i].0) {
            found[i].0 = format!("{} ({})", found[i].0, i + 1);
        }
    }
    Ok(found)
}

/// The directory's own name (resolving `.` and `..`), or `run` when it has none.
fn directory_label(dir: &Path) -> String {
    let named = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    named(dir).or_else(|| dir.canonicalize().ok().as_deref().and_then(named)).unwrap_or_else(|| "run".to_string())
}

/// `label` reduced to characters safe in a file name; `run<i>` when nothing is left.
fn file_slug(label: &str, i: usize) -> String {
    let slug: String = label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' })
        .collect();
    let slug = slug.trim_start_matches('.').to_string();
    if slug.is_empty() { format!("run{i}") } else { slug }
}

/// A piece of a label for natural ordering.
#[derive(Debug, PartialEq)]
enum Chunk<'a> {
    Num(f64),
    Text(&'a str),
}

fn chunks(s: &str) -> Vec<Chunk<'_>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        if b[i].is_ascii_digit() {
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_digit() {
                i += 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
            }
            out.push(Chunk::Num(s[start..i].parse().unwrap_or(f64::INFINITY)));
        } else {
            while i < b.len() && !b[i].is_ascii_digit() {
                i += 1;
            }
            out.push(Chunk::Text(&s[start..i]));
        }
    }
    out
}

/// Orders labels with embedded numbers compared by value.
fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(&cb) {
        let o = match (x, y) {
            (Chunk::Num(p), Chunk::Num(q)) => p.total_cmp(q),
            (Chunk::Text(p), Chunk::Text(q)) => p.cmp(q),
            (Chunk::Num(_), Chunk::Text(_)) => Ordering::Less,
            (Chunk::Text(_), Chunk::Num(_)) => Ordering::Greater,
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    ca.len().cmp(&cb.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_sort_by_their_numbers() {
        let mut v = vec!["m=1", "no_margin", "m=0.01", "m=0.1", "m=0", "m=0.001", "m=10"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["m=0", "m=0.001", "m=0.01", "m=0.1", "m=1", "m=10", "no_margin"]);
        let mut t = vec!["T1000", "T200", "T10000", "T500"];
        t.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(t, ["T200", "T500", "T1000", "T10000"]);
    }

    #[test]
    fn slugs_are_file_names() {
        assert_eq!(file_slug("m=0.01", 0), "m_0.01");
        assert_eq!(file_slug("../x y", 3), "_x_y");
        assert_eq!(file_slug("..", 3), "run3");
    }
}
