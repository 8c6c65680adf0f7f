//! Progress display: an indicatif bar on a terminal, plain lines otherwise.

use super::metrics::EvalRecord;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A bar when stderr is a terminal, plain lines otherwise.
    Auto,
    /// One plain line per evaluation on stderr.
    Lines,
    /// Nothing.
    Quiet,
}

/// The display of one run.
pub struct Progress {
    bar: Option<ProgressBar>,
    lines: bool,
}

impl Progress {
    /// Starts a display for `total` iterations, `done` of them already completed.
    pub fn new(mode: Mode, total: usize, done: usize) -> Self {
        let tty = std::io::stderr().is_terminal();
        match mode {
            Mode::Auto if tty => {
                let bar = ProgressBar::new(total as u64);
                let style = ProgressStyle::with_template(
                    "{bar:30.cyan/blue} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar());
                bar.set_style(style);
                bar.set_position(done as u64);
                Progress { bar: Some(bar), lines: false }
            }
            Mode::Auto | Mode::Lines => Progress { bar: None, lines: true },
            Mode::Quiet => Progress { bar: None, lines: false },
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
        if let Some(bar) = &self.bar {
            bar.println(line);
        } else if self.lines {
            eprintln!("{line}");
        }
    }

    /// Clears the bar.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
