//! Exclusive locks on a directory or a file, held by one process at a time.
//!
//! A lock is a small file, `<dir>/.ortho-rnn.lock` for a directory or `<file>.lock` beside a file,
//! holding one JSON record: the holder's pid, host name, boot id, process start time, a random
//! nonce and the time it was taken. [`Lock::directory`] and [`Lock::file`] take it or fail with
//! [`Error::Locked`], which names the holder's pid and host; dropping the [`Lock`] releases it.
//!
//! # How it is taken
//! The record is written to a private temporary file that is then *hard-linked* to the lock name:
//! `link(2)` fails when the name exists, atomically, on local file systems and on NFS (where
//! `O_EXCL` was not always honoured), so of two processes starting together exactly one wins. A
//! file system without hard links falls back to `O_CREAT | O_EXCL` (`create_new`).
//!
//! # Stale locks
//! A process killed with `SIGKILL` leaves its lock behind. A lock whose record names *this* host
//! (same host name and boot id) is stale when its pid no longer runs, or runs with another start
//! time (the pid was reused); it is then taken over: renamed to a private name, checked to be the
//! record that was judged stale, and deleted, after which the lock is taken as usual.
//!
//! # Limits
//! - Liveness is read from `/proc/<pid>` (Linux). Where there is no `/proc`, a lock is never judged
//!   stale: the error names the lock file to delete once the holder is known to be gone.
//! - A lock taken on *another* host (a shared file system) cannot be checked from here: it is
//!   reported, never taken over. Hosts are told apart by host name and boot id, so two machines
//!   must not share both; nor should two containers with one host name and separate pid
//!   namespaces write the same directory (each would judge the other's pid dead).
//! - The lock is advisory: it keeps out other ortho-rnn processes, not other programs.
//! - Taking over a stale lock is safe against another process doing the same; a third process
//!   racing both within the same few microseconds can, in the worst case, see the lock released.
//! - A record being written by the `O_EXCL` fallback is briefly empty; an unreadable record
//!   younger than [`UNREADABLE_GRACE`] is waited for, an older one is reported with its path.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The lock file inside a locked directory.
pub const DIR_LOCK_NAME: &str = ".ortho-rnn.lock";
/// The suffix of a file's lock (`metrics.jsonl` -> `metrics.jsonl.lock`).
pub const FILE_LOCK_SUFFIX: &str = ".lock";
/// How long an unreadable lock record is taken to be one still being written.
pub const UNREADABLE_GRACE: Duration = Duration::from_secs(5);

/// What a lock file records about its holder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    /// `/proc/sys/kernel/random/boot_id` (empty where there is none).
    #[serde(default)]
    pub boot_id: String,
    /// The process start time in clock ticks after boot (`/proc/<pid>/stat` field 22), to tell a
    /// reused pid from the holder.
    #[serde(default)]
    pub start: Option<u64>,
    /// Random, so that two records are never equal by accident.
    pub nonce: u64,
    /// Seconds since the Unix epoch when the lock was taken.
    pub since: u64,
}

impl Holder {
    /// The record of this process.
    pub fn this_process() -> Self {
        let pid = std::process::id();
        Holder {
            pid,
            host: host_name(),
            boot_id: boot_id(),
            start: process_start(pid),
            nonce: nonce(),
            since: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        }
    }

    /// True when the record names this machine.
    fn is_local(&self) -> bool {
        self.host == host_name() && self.boot_id == boot_id()
    }

    /// True when the holder runs on this machine and is certainly gone.
    pub fn is_stale(&self) -> bool {
        if !self.is_local() || !Path::new("/proc/self").is_dir() {
            return false;
        }
        if self.pid == std::process::id() && self.start == process_start(self.pid) {
            return false;
        }
        match (process_start(self.pid), self.start) {
            (None, _) => !Path::new(&format!("/proc/{}", self.pid)).exists(),
            (Some(now), Some(then)) => now != then,
            (Some(_), None) => false,
        }
    }
}

/// An exclusive lock; released (its file deleted) when dropped.
#[derive(Debug)]
pub struct Lock {
    path: PathBuf,
    holder: Holder,
}

impl Lock {
    /// Locks directory `dir` (which must exist) through `dir/.ortho-rnn.lock`. `flag` names the
    /// command-line flag that chose the directory, for the error message.
    pub fn directory(dir: &Path, flag: &'static str) -> Result<Lock> {
        if !dir.is_dir() {
            return Err(Error::invalid(flag, dir.display(), "not a directory, so it cannot be locked"));
        }
        Lock::acquire(dir.join(DIR_LOCK_NAME), dir, flag)
    }

    /// Locks file `file` (which need not exist; its directory must) through `<file>.lock`.
    pub fn file(file: &Path, flag: &'static str) -> Result<Lock> {
        Lock::acquire(lock_path_of_file(file), file, flag)
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This lock's record.
    pub fn holder(&self) -> &Holder {
        &self.holder
    }

    fn acquire(path: PathBuf, what: &Path, flag: &'static str) -> Result<Lock> {
        let holder = Holder::this_process();
        let text = serde_json::to_string(&holder).map_err(|e| Error::bad_file(&path, e.to_string()))?;
        let deadline = std::time::Instant::now() + UNREADABLE_GRACE + Duration::from_secs(1);
        loop {
            if create_exclusive(&path, text.as_bytes())? {
                return Ok(Lock { path, holder });
            }
            match read_holder(&path) {
                Ok(Some(h)) if h.is_stale() => take_over(&path, &h)?,
                Ok(Some(h)) => {
                    return Err(Error::Locked {
                        what: what.to_path_buf(),
                        flag,
                        pid: h.pid,
                        host: h.host.clone(),
                        lock: path.clone(),
                        hint: if h.is_local() {
                            "wait for it to finish, or stop it".to_string()
                        } else {
                            format!("it runs on another machine; if it is gone, delete {} by hand", path.display())
                        },
                    });
                }
                Ok(None) => {} // Released between the two steps: try again.
                Err(age) if age < UNREADABLE_GRACE && std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(_) => {
                    return Err(Error::bad_file(
                        &path,
                        format!(
                            "lock file of {} ({flag}) holds no readable record; if no other ortho-rnn process \
                             uses it, delete the lock file",
                            what.display()
                        ),
                    ));
                }
            }
            if std::time::Instant::now() > deadline {
                return Err(Error::bad_file(&path, "the lock file keeps changing; try again".to_string()));
            }
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Delete the file only while it still holds our record.
        if let Ok(Some(h)) = read_holder(&self.path)
            && h == self.holder
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The lock file of `file`: `<file>.lock`.
pub fn lock_path_of_file(file: &Path) -> PathBuf {
    let mut p = file.as_os_str().to_os_string();
    p.push(FILE_LOCK_SUFFIX);
    PathBuf::from(p)
}

/// Creates `path` holding `bytes` unless it exists; `Ok(false)` when it exists.
fn create_exclusive(path: &Path, bytes: &[u8]) -> Result<bool> {
    let tmp = private_name(path, "new");
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(&tmp, e));
    }
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(_) => {
            // No hard links here (some network or FUSE file systems): O_EXCL instead.
            match std::fs::OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(mut f) => {
                    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(|e| Error::io(path, e))?;
                    Ok(true)
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(Error::io(path, e)),
            }
        }
    }
}

/// The record in `path`: `Ok(None)` when there is no file, `Err(age)` when it does not parse.
fn read_holder(path: &Path) -> std::result::Result<Option<Holder>, Duration> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|_| {
            std::fs::metadata(path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .unwrap_or(Duration::ZERO)
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(_) => Err(Duration::MAX),
    }
}

/// Removes the stale lock at `path` whose record is `stale`, without removing a fresh one that
/// another process put there in the meantime.
fn take_over(path: &Path, stale: &Holder) -> Result<()> {
    let grave = private_name(path, "stale");
    match std::fs::rename(path, &grave) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()), // someone else took it over
        Err(e) => return Err(Error::io(path, e)),
    }
    match read_holder(&grave) {
        Ok(Some(h)) if h == *stale => {}
        _ => {
            // We moved a lock that is not the stale one: put it back unless the name is taken again.
            let _ = std::fs::hard_link(&grave, path);
        }
    }
    let _ = std::fs::remove_file(&grave);
    Ok(())
}

/// `<path>.<what>.<pid>.<nonce>`: a name no other process uses.
fn private_name(path: &Path, what: &str) -> PathBuf {
    let mut p = path.as_os_str().to_os_string();
    p.push(format!(".{what}.{}.{:x}", std::process::id(), nonce()));
    PathBuf::from(p)
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// This machine's host name.
pub fn host_name() -> String {
    read_trimmed("/proc/sys/kernel/hostname")
        .or_else(|| read_trimmed("/etc/hostname"))
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "unknown-host".to_string())
}

fn boot_id() -> String {
    read_trimmed("/proc/sys/kernel/random/boot_id").unwrap_or_default()
}

/// Field 22 of `/proc/<pid>/stat` (start time in clock ticks after boot).
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn nonce() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.write_u32(std::process::id());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ortho-rnn-lock-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn second_lock_fails_naming_the_holder_and_drop_releases() {
        let d = scratch("second");
        let first = Lock::directory(&d, "--out").unwrap();
        let e = Lock::directory(&d, "--out").unwrap_err().to_string();
        assert!(e.contains(&format!("pid {}", std::process::id())) && e.contains(&host_name()), "{e}");
        assert!(e.contains("--out"), "{e}");
        drop(first);
        assert!(!d.join(DIR_LOCK_NAME).exists());
        let again = Lock::directory(&d, "--out").unwrap();
        assert!(again.path().exists());
    }

    #[test]
    fn a_dead_local_holder_is_taken_over_and_a_remote_one_is_not() {
        let d = scratch("stale");
        let file = d.join("metrics.jsonl");
        // A pid that cannot exist (above the kernel's pid_max of at most 2^22).
        let dead = Holder { pid: 4_194_304 + 17, start: Some(1), ..Holder::this_process() };
        std::fs::write(lock_path_of_file(&file), serde_json::to_string(&dead).unwrap()).unwrap();
        let lock = Lock::file(&file, "--metrics").unwrap();
        assert_eq!(lock.holder().pid, std::process::id());
        drop(lock);
        let remote = Holder { host: "elsewhere".into(), ..dead };
        std::fs::write(lock_path_of_file(&file), serde_json::to_string(&remote).unwrap()).unwrap();
        let e = Lock::file(&file, "--metrics").unwrap_err().to_string();
        assert!(e.contains("elsewhere") && e.contains("another machine"), "{e}");
    }
}
