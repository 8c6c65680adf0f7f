//! Spreading a sweep over machines: shards of a plan and Slurm job arrays.
//!
//! A sweep's runs are independent and each writes only into its own subdirectory of the output
//! directory, so N processes (on N machines sharing a filesystem) can run one [`Shard`] each:
//! shard `K/N` takes the runs whose plan index `i` has `i mod N = K - 1`. Round-robin rather than
//! contiguous blocks, because plans list runs grouped by size (a panel of long sequences after a
//! panel of short ones) and contiguous shards would give one machine all the long runs.
//!
//! [`SlurmJob`] writes the two batch scripts a cluster needs: an array job with one task per shard
//! (`--shard $((SLURM_ARRAY_TASK_ID + 1))/N`) and a report job that runs after the whole array
//! (`--dependency=afterany:ARRAY`) and rebuilds `results.md`, `results.csv` and the plots from the
//! runs that are complete. A preempted or requeued array task is safe: finished runs are skipped and
//! interrupted ones resume from their checkpoints.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// The `k`-th of `n` disjoint, deterministic subsets of a plan's runs (`1 <= k <= n`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub k: usize,
    pub n: usize,
}

impl Shard {
    /// The whole plan.
    pub const ALL: Shard = Shard { k: 1, n: 1 };

    /// Parses `K/N` (`--shard 2/4`).
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why: &str| Error::invalid("--shard", s, format!("{why}; write K/N with 1 <= K <= N, e.g. 2/4"));
        let (k, n) = s.split_once('/').ok_or_else(|| bad("no `/`"))?;
        let k: usize = k.trim().parse().map_err(|_| bad("K is not a whole number"))?;
        let n: usize = n.trim().parse().map_err(|_| bad("N is not a whole number"))?;
        if n == 0 || n > 100_000 {
            return Err(bad("N must be between 1 and 100000"));
        }
        if k == 0 || k > n {
            return Err(bad("K must be between 1 and N"));
        }
        Ok(Shard { k, n })
    }

    /// Whether the run at plan index `i` belongs to this shard.
    pub fn selects(self, i: usize) -> bool {
        i % self.n == self.k - 1
    }

    /// The plan indices of `runs` runs that belong to this shard, in plan order.
    pub fn indices(self, runs: usize) -> Vec<usize> {
        (0..runs).filter(|&i| self.selects(i)).collect()
    }
}

impl Default for Shard {
    fn default() -> Self {
        Shard::ALL
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.k, self.n)
    }
}

/// What to ask Slurm for (`sbatch` options; `None` leaves the cluster's default).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SlurmOptions {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--account`.
    pub account: Option<String>,
    /// `--gpus-per-task` (GPUs for each array task).
    pub gpus_per_task: Option<u32>,
    /// `--cpus-per-task`.
    pub cpus_per_task: Option<u32>,
    /// `--mem` (e.g. `16G`).
    pub mem: Option<String>,
    /// `--time` of each array task, `HH:MM:SS` or `D-HH:MM:SS`.
    pub time: Option<String>,
    /// At most this many array tasks at once (`--array=0-(N-1)%M`).
    pub max_parallel: Option<usize>,
    /// Further `#SBATCH` lines, verbatim (e.g. `--qos=long`).
    pub extra: Vec<String>,
}

impl SlurmOptions {
    /// Checks the values that go into `#SBATCH` lines (a newline would inject a line).
    pub fn validate(&self) -> Result<()> {
        let text = [&self.partition, &self.account, &self.mem, &self.time];
        for v in text.into_iter().flatten().chain(self.extra.iter()) {
            if v.is_empty() || v.contains(['\n', '\r']) {
                return Err(Error::invalid("--slurm option", v, "must be non-empty and on one line"));
            }
        }
        if let Some(t) = &self.time
            && !valid_time(t)
        {
            return Err(Error::invalid("--time", t, "write HH:MM:SS, MM:SS or D-HH:MM:SS (e.g. 04:00:00)"));
        }
        for e in &self.extra {
            if !e.starts_with("--") {
                return Err(Error::invalid("--sbatch", e, "pass sbatch options in their long form, e.g. --qos=long"));
            }
        }
        if self.gpus_per_task == Some(0) || self.cpus_per_task == Some(0) || self.max_parallel == Some(0) {
            return Err(Error::invalid("--slurm option", 0, "counts must be at least 1"));
        }
        Ok(())
    }

    fn directives(&self) -> Vec<String> {
        let mut d = Vec::new();
        let mut opt = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                d.push(format!("--{k}={v}"));
            }
        };
        opt("partition", self.partition.clone());
        opt("account", self.account.clone());
        opt("gpus-per-task", self.gpus_per_task.map(|g| g.to_string()));
        opt("cpus-per-task", self.cpus_per_task.map(|c| c.to_string()));
        opt("mem", self.mem.clone());
        opt("time", self.time.clone());
        d.extend(self.extra.iter().cloned());
        d
    }
}

/// `HH:MM:SS`, `MM:SS`, `MM`, `D-HH`, `D-HH:MM` or `D-HH:MM:SS` (what sbatch's `--time` takes).
fn valid_time(t: &str) -> bool {
    let (days, rest) = match t.split_once('-') {
        Some((d, r)) => (Some(d), r),
        None => (None, t),
    };
    let num = |s: &str| !s.is_empty() && s.len() <= 6 && s.chars().all(|c| c.is_ascii_digit());
    if days.is_some_and(|d| !num(d)) {
        return false;
    }
    let parts: Vec<&str> = rest.split(':').collect();
    !parts.is_empty() && parts.len() <= 3 && parts.iter().all(|p| num(p))
}

/// The two batch scripts of a sharded sweep on Slurm.
#[derive(Clone, Debug, PartialEq)]
pub struct SlurmJob {
    /// Experiment name.
    pub experiment: String,
    /// Shards (array tasks).
    pub shards: usize,
    /// `ortho-rnn` as the compute nodes run it (an absolute path on the shared filesystem).
    pub binary: PathBuf,
    /// The experiment's arguments other than `--shard`, `--out` and the Slurm flags
    /// (`--quick`, `--data DIR`, `--device cuda`, ...), as separate words.
    pub args: Vec<String>,
    /// The output directory (absolute, on the shared filesystem).
    pub out: PathBuf,
    /// Working directory of the jobs.
    pub workdir: PathBuf,
    pub options: SlurmOptions,
}

/// Quotes a word for a POSIX shell (single quotes; nothing inside is expanded).
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// File names of the scripts inside the output directory.
pub const ARRAY_SCRIPT: &str = "slurm-array.sbatch";
pub const REPORT_SCRIPT: &str = "slurm-report.sbatch";
/// Where Slurm writes the jobs' output, inside the output directory.
pub const SLURM_LOG_DIR: &str = "slurm-logs";

impl SlurmJob {
    fn command(&self, extra: &[String]) -> String {
        let mut words =
            vec![shell_quote(&self.binary.to_string_lossy()), "experiment".into(), shell_quote(&self.experiment)];
        words.extend(self.args.iter().map(|a| shell_quote(a)));
        words.push("--out".into());
        words.push(shell_quote(&self.out.to_string_lossy()));
        words.extend(extra.iter().cloned());
        words.join(" ")
    }

    fn header(&self, name: &str, log: &str) -> String {
        let mut s = String::from("#!/bin/bash\n");
        s.push_str(&format!("#SBATCH --job-name={}\n", shell_quote(name)));
        s.push_str(&format!(
            "#SBATCH --output={}\n",
            shell_quote(&self.out.join(SLURM_LOG_DIR).join(log).to_string_lossy())
        ));
        s.push_str(&format!("#SBATCH --chdir={}\n", shell_quote(&self.workdir.to_string_lossy())));
        s
    }

    /// The array job: one task per shard.
    pub fn array_script(&self) -> String {
        let mut s = self.header(&format!("ortho-{}", self.experiment), "%A_%a.out");
        let mut array = format!("0-{}", self.shards.saturating_sub(1));
        if let Some(m) = self.options.max_parallel {
            array.push_str(&format!("%{m}"));
        }
        s.push_str(&format!("#SBATCH --array={array}\n"));
        s.push_str("#SBATCH --ntasks=1\n");
        // A preempted task is requeued and resumes its runs from their checkpoints.
        s.push_str("#SBATCH --requeue\n");
        for d in self.options.directives() {
            s.push_str(&format!("#SBATCH {d}\n"));
        }
        s.push_str("set -euo pipefail\n");
        s.push_str(&format!(
            "# Shard K of {n}: the runs whose plan index i has i mod {n} = K - 1 (finished runs are skipped,\n\
             # interrupted ones resume from their checkpoints, so a requeued task is safe).\n",
            n = self.shards
        ));
        let shard = format!("--shard \"$((SLURM_ARRAY_TASK_ID + 1))/{}\" --no-report --quiet", self.shards);
        s.push_str(&format!("exec {}\n", self.command(&[shard])));
        s
    }

    /// The report job: rebuilds the results from whatever runs are complete.
    pub fn report_script(&self) -> String {
        let mut s = self.header(&format!("ortho-{}-report", self.experiment), "report_%j.out");
        s.push_str("#SBATCH --ntasks=1\n");
        for (k, v) in [("partition", &self.options.partition), ("account", &self.options.account)] {
            if let Some(v) = v {
                s.push_str(&format!("#SBATCH --{k}={v}\n"));
            }
        }
        s.push_str("set -euo pipefail\n");
        s.push_str(&format!("exec {}\n", self.command(&["--report".to_string()])));
        s
    }

    /// Writes both scripts into the output directory (atomically) and the log folder; returns their paths.
    pub fn write(&self) -> Result<(PathBuf, PathBuf)> {
        self.options.validate()?;
        if self.shards == 0 {
            return Err(Error::invalid("--shards", 0, "a job array needs at least one shard"));
        }
        let logs = self.out.join(SLURM_LOG_DIR);
        std::fs::create_dir_all(&logs).map_err(|e| Error::io(&logs, e))?;
        let array = self.out.join(ARRAY_SCRIPT);
        let report = self.out.join(REPORT_SCRIPT);
        crate::train::checkpoint::write_atomic(&array, self.array_script().as_bytes())?;
        crate::train::checkpoint::write_atomic(&report, self.report_script().as_bytes())?;
        Ok((array, report))
    }
}

/// The commands that submit the two scripts, the report job depending on the whole array.
pub fn submit_commands(array: &Path, report: &Path) -> String {
    format!(
        "array=$(sbatch --parsable {}) && sbatch --dependency=afterany:${{array%%;*}} {}",
        shell_quote(&array.to_string_lossy()),
        shell_quote(&report.to_string_lossy())
    )
}

/// Submits the scripts with `sbatch`; returns the job ids `(array, report)`.
pub fn submit(array: &Path, report: &Path) -> Result<(String, String)> {
    let run = |args: &[&str]| -> Result<String> {
        let out = std::process::Command::new("sbatch").args(args).output().map_err(|e| {
            Error::invalid("--submit", "sbatch", format!("could not run sbatch ({e}); is Slurm installed and on PATH?"))
        })?;
        if !out.status.success() {
            return Err(Error::invalid(
                "--submit",
                "sbatch",
                format!("sbatch failed: {}", String::from_utf8_lossy(&out.stderr).trim()),
            ));
        }
        // `--parsable` prints `JOBID` or `JOBID;CLUSTER`.
        let text = String::from_utf8_lossy(&out.stdout);
        let id = text.trim().split(';').next().unwrap_or("").to_string();
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
            return Err(Error::invalid("--submit", text.trim(), "sbatch did not print a job id"));
        }
        Ok(id)
    };
    let array_id = run(&["--parsable", &array.to_string_lossy()])?;
    let dep = format!("--dependency=afterany:{array_id}");
    let report_id = run(&["--parsable", &dep, &report.to_string_lossy()])?;
    Ok((array_id, report_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_plan() {
        for n in 1..7 {
            let mut seen = vec![0; 23];
            for k in 1..=n {
                for i in (Shard { k, n }).indices(23) {
                    seen[i] += 1;
                }
            }
            assert!(seen.iter().all(|&c| c == 1), "n = {n}: {seen:?}");
        }
        assert_eq!(Shard { k: 2, n: 3 }.indices(8), vec![1, 4, 7]);
    }

    #[test]
    fn shard_parsing() {
        assert_eq!(Shard::parse("2/4").unwrap(), Shard { k: 2, n: 4 });
        for bad in ["0/4", "5/4", "4", "a/b", "1/0", "-1/2", "1/200000", ""] {
            let e = Shard::parse(bad).unwrap_err().to_string();
            assert!(e.contains("--shard"), "{bad}: {e}");
        }
    }

    #[test]
    fn times() {
        for ok in ["04:00:00", "30", "10:00", "1-00", "2-12:00:00"] {
            assert!(valid_time(ok), "{ok}");
        }
        for bad in ["", "4h", "1:2:3:4", "-1", "a-01:00"] {
            assert!(!valid_time(bad), "{bad}");
        }
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("runs/copy"), "runs/copy");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
    }

    #[test]
    fn scripts() {
        let job = SlurmJob {
            experiment: "copy-margins".into(),
            shards: 4,
            binary: "/opt/bin/ortho-rnn".into(),
            args: vec!["--quick".into(), "--device".into(), "cuda".into()],
            out: "/shared/runs/copy".into(),
            workdir: "/shared".into(),
            options: SlurmOptions {
                partition: Some("gpu".into()),
                gpus_per_task: Some(1),
                time: Some("04:00:00".into()),
                max_parallel: Some(2),
                ..Default::default()
            },
        };
        let a = job.array_script();
        assert!(a.contains("#SBATCH --array=0-3%2\n"), "{a}");
        assert!(a.contains("#SBATCH --partition=gpu\n#SBATCH --gpus-per-task=1\n#SBATCH --time=04:00:00\n"), "{a}");
        assert!(a.contains(
            "exec /opt/bin/ortho-rnn experiment copy-margins --quick --device cuda --out /shared/runs/copy \
             --shard \"$((SLURM_ARRAY_TASK_ID + 1))/4\""
        ));
        let r = job.report_script();
        assert!(r.contains("--out /shared/runs/copy --report\n"), "{r}");
        assert!(!r.contains("--array"));
        let mut bad = job.options.clone();
        bad.partition = Some("gpu\n#SBATCH --evil".into());
        assert!(bad.validate().is_err());
    }
}
