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
//!
//! # Leases (locks of experiment runs)
//! A lock taken with [`Lock::directory_leased`] records a lease of `L` seconds and is kept fresh
//! by a background thread of the holder, which sets the lock file's modification time to now
//! every `L / 10` seconds ([`LEASE_REFRESH`] at most). Such a lock held on another host is stale
//! once its file has not been refreshed for `L` seconds: the holder died with its machine, or was
//! killed with `SIGKILL`, or lost the file system. This is what lets a requeued or preempted Slurm
//! task on another node take over a run whose node died. `L` must exceed the refresh period plus
//! the clock skew between the hosts and the file system's attribute caching (NFS: `acregmax`,
//! 60 s by default); [`RUN_LEASE`] is 10 minutes. Locks without a lease (`--checkpoint`,
//! `--metrics`, older records) are never judged stale from another host.
//!
//! # Termination signals
//! [`release_on_termination`] makes `SIGTERM`, `SIGINT` and `SIGHUP` (`scancel`, Slurm's
//! preemption, Ctrl-C, a closed terminal) delete every lock this process holds and exit with
//! `128 + signal`, so a run stopped that way leaves no lock behind. Files are written atomically,
//! so stopping between any two writes is as safe as `kill -9`.

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
/// The lease of an experiment run's lock (see the module docs).
pub const RUN_LEASE: Duration = Duration::from_secs(600);
/// The longest time between two refreshes of a leased lock.
pub const LEASE_REFRESH: Duration = Duration::from_secs(30);

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
    /// The lease in seconds, for locks the holder keeps fresh ([`Lock::directory_leased`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_s: Option<u64>,
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
            lease_s: None,
        }
    }

    /// True when the lock in `path`, holding this record, may be taken over: its holder is certainly
    /// gone ([`Holder::is_stale`]), or it is leased, held on another host and not refreshed for
    /// longer than its lease.
    pub fn is_stale_at(&self, path: &Path) -> bool {
        if self.is_local() {
            return self.is_stale();
        }
        match (self.lease_s, age(path)) {
            (Some(lease), Some(age)) => age > Duration::from_secs(lease),
            _ => false,
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
        Lock::acquire(dir.join(DIR_LOCK_NAME), dir, flag, None)
    }

    /// Locks file `file` (which need not exist; its directory must) through `<file>.lock`.
    pub fn file(file: &Path, flag: &'static str) -> Result<Lock> {
        Lock::acquire(lock_path_of_file(file), file, flag, None)
    }

    /// Locks directory `dir` like [`Lock::directory`], with a lease of `lease` that a background
    /// thread of this process keeps fresh while the lock is held (see the module docs).
    pub fn directory_leased(dir: &Path, flag: &'static str, lease: Duration) -> Result<Lock> {
        if !dir.is_dir() {
            return Err(Error::invalid(flag, dir.display(), "not a directory, so it cannot be locked"));
        }
        let lock = Lock::acquire(dir.join(DIR_LOCK_NAME), dir, flag, Some(lease.as_secs().max(1)))?;
        start_refresher();
        Ok(lock)
    }

    /// Like [`Lock::directory`], but a lock held by another process is waited for, up to `patience`
    /// (for locks that are held briefly); the error after that names the holder.
    pub fn directory_waiting(dir: &Path, flag: &'static str, patience: Duration) -> Result<Lock> {
        let deadline = std::time::Instant::now() + patience;
        loop {
            match Lock::directory(dir, flag) {
                Err(Error::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                other => return other,
            }
        }
    }

    /// Sets the lock file's modification time to now (a leased lock's heartbeat). Does nothing
    /// when the file no longer holds this lock's record.
    pub fn refresh(&self) -> Result<()> {
        refresh_file(&self.path, &self.holder)
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This lock's record.
    pub fn holder(&self) -> &Holder {
        &self.holder
    }

    fn acquire(path: PathBuf, what: &Path, flag: &'static str, lease_s: Option<u64>) -> Result<Lock> {
        let holder = Holder { lease_s, ..Holder::this_process() };
        let text = serde_json::to_string(&holder).map_err(|e| Error::bad_file(&path, e.to_string()))?;
        let deadline = std::time::Instant::now() + UNREADABLE_GRACE + Duration::from_secs(1);
        loop {
            if create_exclusive(&path, text.as_bytes())? {
                held().push((path.clone(), holder.clone()));
                return Ok(Lock { path, holder });
            }
            match read_holder(&path) {
                Ok(Some(h)) if h.is_stale_at(&path) => take_over(&path, &h)?,
                Ok(Some(h)) => {
                    return Err(Error::Locked {
                        what: what.to_path_buf(),
                        flag,
                        pid: h.pid,
                        host: h.host.clone(),
                        lock: path.clone(),
                        hint: if h.is_local() {
                            "wait for it to finish, or stop it".to_string()
                        } else if let Some(lease) = h.lease_s {
                            format!(
                                "it runs on another machine; should it be gone, its lock expires {lease} s after its \
                                 last refresh"
                            )
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
        let mut held = held();
        held.retain(|(_, h)| *h != self.holder);
        release_file(&self.path, &self.holder);
    }
}

/// Deletes the lock file `path` only while it still holds `holder`'s record.
fn release_file(path: &Path, holder: &Holder) {
    if let Ok(Some(h)) = read_holder(path)
        && h == *holder
    {
        let _ = std::fs::remove_file(path);
    }
}

/// Every lock this process holds (for the refresher and the termination handler).
fn held() -> std::sync::MutexGuard<'static, Vec<(PathBuf, Holder)>> {
    static HELD: std::sync::Mutex<Vec<(PathBuf, Holder)>> = std::sync::Mutex::new(Vec::new());
    HELD.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long ago the file at `path` was modified (`None` when that cannot be read).
fn age(path: &Path) -> Option<Duration> {
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok()?;
    Some(SystemTime::now().duration_since(modified).unwrap_or(Duration::ZERO))
}

fn refresh_file(path: &Path, holder: &Holder) -> Result<()> {
    match read_holder(path) {
        Ok(Some(h)) if h == *holder => {}
        _ => return Ok(()),
    }
    let f = std::fs::OpenOptions::new().append(true).open(path).map_err(|e| Error::io(path, e))?;
    f.set_modified(SystemTime::now()).map_err(|e| Error::io(path, e))
}

/// Starts (once per process) the thread that refreshes every leased lock this process holds.
fn start_refresher() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        let _ = std::thread::Builder::new().name("ortho-rnn-lease".into()).spawn(|| {
            loop {
                let leased: Vec<(PathBuf, Holder)> =
                    held().iter().filter(|(_, h)| h.lease_s.is_some()).cloned().collect();
                let mut period = LEASE_REFRESH;
                for (path, h) in &leased {
                    let _ = refresh_file(path, h);
                    period = period.min(Duration::from_secs(h.lease_s.unwrap_or(1) / 10).max(Duration::from_secs(1)));
                }
                std::thread::sleep(period);
            }
        });
    });
}

/// Deletes every lock this process holds (each only while it still holds this process's record).
pub fn release_all() {
    let all: Vec<(PathBuf, Holder)> = std::mem::take(&mut *held());
    for (path, h) in &all {
        release_file(path, h);
    }
}

/// Makes `SIGTERM`, `SIGINT` and `SIGHUP` release every lock of this process and exit with
/// `128 + signal` (see the module docs). Call it before any other thread starts: the signals are
/// blocked in the calling thread (and so in every thread it starts later) and received by a thread
/// of their own. Idempotent; does nothing where the signals cannot be blocked.
pub fn release_on_termination() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        // SAFETY: plain libc calls on a zeroed, then initialized, signal set owned by this frame.
        let set = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
                libc::sigaddset(&mut set, sig);
            }
            if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
                return;
            }
            set
        };
        let spawned = std::thread::Builder::new().name("ortho-rnn-signals".into()).spawn(move || {
            let mut sig: libc::c_int = 0;
            // SAFETY: `set` is an initialized signal set; `sig` is a valid out pointer.
            if unsafe { libc::sigwait(&set, &mut sig) } == 0 {
                release_all();
                eprintln!(
                    "ortho-rnn: stopped by signal {sig}; locks released (the runs resume from their checkpoints)"
                );
                std::process::exit(128 + sig);
            }
        });
        if spawned.is_err() {
            // No thread to receive them: unblock, so that the signals stop the process as usual.
            // SAFETY: as above.
            unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
        }
    });
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

    #[test]
    fn a_remote_leased_lock_expires_after_its_lease_and_a_held_one_is_refreshed() {
        let d = scratch("lease");
        let remote = Holder { host: "elsewhere".into(), lease_s: Some(60), ..Holder::this_process() };
        let path = d.join(DIR_LOCK_NAME);
        std::fs::write(&path, serde_json::to_string(&remote).unwrap()).unwrap();
        // Refreshed just now: held.
        let e = Lock::directory(&d, "run").unwrap_err().to_string();
        assert!(e.contains("elsewhere") && e.contains("60 s after its last refresh"), "{e}");
        // Not refreshed for longer than its lease: taken over.
        let old = SystemTime::now() - Duration::from_secs(61);
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().set_modified(old).unwrap();
        let lock = Lock::directory_leased(&d, "run", Duration::from_secs(600)).unwrap();
        assert_eq!(lock.holder().lease_s, Some(600));
        assert_eq!(lock.holder().pid, std::process::id());
        // Our own refresh moves the modification time forward.
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().set_modified(old).unwrap();
        lock.refresh().unwrap();
        assert!(age(&path).unwrap() < Duration::from_secs(30));
        drop(lock);
        assert!(!path.exists());
    }
}
