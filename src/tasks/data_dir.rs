//! The data directory of a file-backed task (`--data`), checked before its files are looked for,
//! so that a missing, unreadable or mistyped directory is reported as what it is rather than as
//! "no such file in this directory".

use crate::error::{Error, Result};
use std::path::Path;

/// Checks that `dir` exists, is a directory, and can be listed; `holds` says what it should hold
/// and `hint` where to get it.
pub fn check(dir: &Path, holds: &str, hint: &str) -> Result<()> {
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::invalid(
                "--data",
                dir.display(),
                format!("this directory does not exist (it should hold {holds}); {hint}"),
            ));
        }
        Err(e) => return Err(Error::invalid("--data", dir.display(), format!("cannot be read: {e}"))),
    };
    if !meta.is_dir() {
        return Err(Error::invalid(
            "--data",
            dir.display(),
            format!("is a file; --data names the directory holding {holds}"),
        ));
    }
    std::fs::read_dir(dir)
        .map(|_| ())
        .map_err(|e| Error::invalid("--data", dir.display(), format!("the directory cannot be listed: {e}")))
}
