//! The crate's one error type.
//!
//! Every variant names the problem and, where there is one, the fix. Nothing a user's input reaches
//! panics: flags, data files, checkpoints and device requests all come back as an [`Error`].

use std::path::PathBuf;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in ortho-rnn.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A buffer or matrix had the wrong size for the operation.
    #[error("shape mismatch in {op}: expected {expected}, got {got}")]
    Shape { op: &'static str, expected: String, got: String },

    /// A hyperparameter or flag value that cannot work.
    #[error("invalid value for {name}: {value} ({reason})")]
    InvalidArg { name: &'static str, value: String, reason: String },

    /// A flag was given that the chosen model or task does not use.
    #[error("{flag} does not apply to {context}: {hint}")]
    Inapplicable { flag: &'static str, context: String, hint: String },

    /// An LU factorization met an exactly zero pivot.
    #[error("matrix is singular: zero pivot at column {index} in {op}")]
    Singular { op: &'static str, index: usize },

    /// Training produced a NaN or an infinity.
    #[error(
        "non-finite loss ({value}) at iteration {iter}; the last finite loss was {last_finite}. \
         Lower --lr (or --geo-lr), set --clip, or check the data"
    )]
    NonFiniteLoss { iter: usize, value: f64, last_finite: String },

    /// A data or checkpoint file is malformed.
    #[error("{}: {reason}", path.display())]
    BadFile { path: PathBuf, reason: String },

    /// An I/O error, with the file it happened on.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A device (CUDA, NVRTC) is unavailable or failed.
    #[error("device error: {0}")]
    Device(String),

    /// A CUDA kernel failed to compile.
    #[error("kernel compile error in {file}: {log}")]
    KernelCompile { file: String, log: String },

    /// Another process holds the lock on a directory or file this run would write.
    #[error(
        "{} ({flag}) is in use by ortho-rnn pid {pid} on host {host} (lock file {}); {hint}",
        what.display(),
        lock.display()
    )]
    Locked { what: PathBuf, flag: &'static str, pid: u32, host: String, lock: PathBuf, hint: String },

    /// The run would need more memory than the machine (or the GPU) has available.
    #[error("{0}")]
    OutOfMemory(String),

    /// Training finished, but its loss diverged (see `--allow-divergence`).
    #[error("the run diverged: {0}")]
    Diverged(String),

    /// A requested feature exists in the design but is not available in this build or configuration.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

impl Error {
    /// Builds an [`Error::InvalidArg`].
    pub fn invalid(name: &'static str, value: impl ToString, reason: impl Into<String>) -> Self {
        Error::InvalidArg { name, value: value.to_string(), reason: reason.into() }
    }

    /// Builds an [`Error::Shape`].
    pub fn shape(op: &'static str, expected: impl ToString, got: impl ToString) -> Self {
        Error::Shape { op, expected: expected.to_string(), got: got.to_string() }
    }

    /// Builds an [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// Builds an [`Error::BadFile`] for `path`.
    pub fn bad_file(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::BadFile { path: path.into(), reason: reason.into() }
    }
}
