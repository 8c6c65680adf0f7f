//! The files a training run writes, checked and locked before training starts.
//!
//! `--checkpoint` and `--metrics` must name files (not directories) whose directory exists or can
//! be created; they must differ from each other, including the names written beside them
//! (`<file>.tmp` for atomic replacement, `<file>.lock`), and `--metrics` must not be the checkpoint
//! being resumed. Each is then locked ([`crate::lock::Lock::file`]) for the whole run, so that a
//! second process writing the same file fails at once, naming the first.

use crate::error::{Error, Result};
use crate::lock::{Lock, lock_path_of_file};
use std::path::{Path, PathBuf};

/// `path` made absolute with its directory resolved (symbolic links, `..`), so that two spellings
/// of one file compare equal. The directory must exist.
fn normalized(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf()).join(name)
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// Checks one output file: a file name whose directory exists (created if missing).
fn check_file(flag: &'static str, path: &Path) -> Result<PathBuf> {
    if path.is_dir() {
        return Err(Error::invalid(flag, path.display(), "is a directory; give a file name inside it"));
    }
    if path.file_name().is_none() {
        return Err(Error::invalid(flag, path.display(), "does not name a file"));
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| {
        Error::invalid(flag, path.display(), format!("cannot create its directory {}: {e}", dir.display()))
    })?;
    Ok(normalized(path))
}

/// Checks `--checkpoint` and `--metrics` (and `--metrics` against `--resume`) and locks the two
/// files; the locks are released when the returned vector is dropped.
pub fn check_and_lock(checkpoint: Option<&Path>, metrics: Option<&Path>, resume: Option<&Path>) -> Result<Vec<Lock>> {
    let ck = checkpoint.map(|p| check_file("--checkpoint", p)).transpose()?;
    let me = metrics.map(|p| check_file("--metrics", p)).transpose()?;
    if let (Some(c), Some(m)) = (&ck, &me) {
        let family = |p: &Path| [p.to_path_buf(), with_suffix(p, ".tmp"), lock_path_of_file(p)];
        let (fc, fm) = (family(c), family(m));
        if let Some(clash) = fc.iter().find(|p| fm.contains(p)) {
            return Err(Error::invalid(
                "--metrics",
                m.display(),
                format!("--checkpoint and --metrics would both write {}; give each its own file", clash.display()),
            ));
        }
    }
    if let (Some(m), Some(r)) = (&me, resume)
        && r.is_file()
        && r.canonicalize().is_ok_and(|r| &r == m)
    {
        return Err(Error::invalid(
            "--metrics",
            m.display(),
            "is the checkpoint given to --resume; metrics would overwrite it",
        ));
    }
    let mut locks = Vec::new();
    if let Some(p) = checkpoint {
        locks.push(Lock::file(p, "--checkpoint")?);
    }
    if let Some(p) = metrics {
        locks.push(Lock::file(p, "--metrics")?);
    }
    Ok(locks)
}
