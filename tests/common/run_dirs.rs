//! Shared by the tests that write output directories (`experiments.rs`, `slurm.rs`, `cli_robustness.rs`,
//! `plots.rs`):
//! fresh scratch directories, their cleanup (`ORTHO_RNN_KEEP_RUNS=1` keeps them), and running
//! `ortho-rnn`.
#![allow(dead_code)] // each test crate uses what it needs

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A new empty directory under the temp dir, named after `prefix`, this process and `name`.
pub fn scratch(prefix: &str, name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("ortho-rnn-{prefix}-{}-{n}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Removes `dir`, unless `ORTHO_RNN_KEEP_RUNS` is set (then says where it is).
pub fn cleanup(dir: &Path) {
    if std::env::var_os("ORTHO_RNN_KEEP_RUNS").is_none() {
        let _ = std::fs::remove_dir_all(dir);
    } else {
        eprintln!("kept {}", dir.display());
    }
}

/// Runs the `ortho-rnn` binary with `args`.
pub fn ortho_rnn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ortho-rnn")).args(args).output().expect("the binary runs")
}
