//! Progress display: an indicatif bar on a terminal, plain lines otherwise.
//!
//! Several runs at once (`experiment --jobs N`) each show on a [`JobLine`]: a line of its own in
//! an indicatif `MultiProgress` on a terminal, or plain lines prefixed with the job's name.

use super::metrics::EvalRecord;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

/// How progress is shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A bar when stderr is a terminal, plain lines otherwise.
    Auto,
    /// One plain line per evaluation on stderr.
    Lines,
    /// Nothing.
    Quiet,
    /// On the line of one of several concurrent jobs.
    Job(JobLine),
}

/// The display line of one concurrent job: a bar of a `MultiProgress` (reused by each run of the
/// job), or, without one, plain lines on stderr starting with `prefix`.
#[derive(Clone, Debug)]
pub struct JobLine {
    /// `[job 2 cuda:1] copy_t5_m0`, say.
    pub prefix: String,
    pub bar: Option<ProgressBar>,
}

impl PartialEq for JobLine {
    fn eq(&self, other: &Self) -> bool {
        self.prefix == other.prefix && self.bar.is_some() == other.bar.is_some()
    }
}
impl Eq for JobLine {}

/// `n` and `noun`, plural unless `n` is 1: `"1 iteration"`, `"2000 iterations"`.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

/// The bar style of a job line.
pub fn job_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix} {bar:24.cyan/blue} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// The display of one run.
pub struct Progress {
    bar: Option<ProgressBar>,
    lines: bool,
    /// Starts each plain line; `Some` on a job line (whose bar is not cleared at the end).
    prefix: Option<String>,
}

impl Progress {
    /// Starts a display for `total` iterations, `done` of them already completed.
    pub fn new(mode: Mode, total: usize, done: usize) -> Self {
        let tty = std::io::stderr().is_terminal();
        match mode {
            Mode::Job(line) => match line.bar {
                Some(bar) => {
                    bar.set_length(total as u64);
                    bar.set_position(done as u64);
                    bar.set_prefix(line.prefix.clone());
                    bar.set_message("");
                    bar.reset_eta();
                    Progress { bar: Some(bar), lines: false, prefix: Some(line.prefix) }
                }
                None => Progress { bar: None, lines: true, prefix: Some(line.prefix) },
            },
            Mode::Auto if tty => {
                let bar = ProgressBar::new(total as u64);
                let style = ProgressStyle::with_template(
                    "{bar:30.cyan/blue} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar());
                bar.set_style(style);
                bar.set_position(done as u64);
                Progress { bar: Some(bar), lines: false, prefix: None }
            }
            Mode::Auto | Mode::Lines => Progress { bar: None, lines: true, prefix: None },
            Mode::Quiet => Progress { bar: None, lines: false, prefix: None },
        }
    }

    /// After each iteration.
    pub fn tick(&mut self, iter: usize, loss: f64) {
        if let Some(bar) = &self.bar {
            bar.set_position(iter as u64);
            if iter.is_multiple_of(10) {
                bar.set_message(format!("train loss {loss:.4}"));
            }
        }
    }

    /// After each evaluation.
    pub fn eval(&mut self, rec: &EvalRecord, baseline: f64) {
        let mut line = format!("iter {:>7}  loss {:.5} (baseline {:.5})", rec.iter, rec.loss, baseline);
        if let Some(a) = rec.accuracy {
            line.push_str(&format!("  acc {:.4}", a));
        }
        if let Some(b) = rec.bpc {
            line.push_str(&format!("  bpc {:.4}", b));
        }
        line.push_str(&format!("  {:.1}s", rec.seconds));
        match (&self.bar, &self.prefix) {
            // A job's line shows the latest evaluation instead of printing above all the bars.
            (Some(bar), Some(_)) => bar.set_message(line.split_whitespace().collect::<Vec<_>>().join(" ")),
            (Some(bar), None) => bar.println(line),
            (None, Some(p)) if self.lines => eprintln!("{p} {line}"),
            (None, _) if self.lines => eprintln!("{line}"),
            _ => {}
        }
    }

    /// Clears the bar (a job's bar stays for its next run).
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take()
            && self.prefix.is_none()
        {
            bar.finish_and_clear();
        }
    }
}
