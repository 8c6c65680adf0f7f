//! Several seeds per cell (`experiment NAME --seeds N`).
//!
//! A *cell* is a row of a results table: the runs of a plan that share a group and a label. With `N`
//! seeds every training run of the plan is repeated with seeds `1..=N` ([`replicate`]): the seed
//! sets the initialization and, for the synthetic tasks (copy, adding), the data stream; file-backed
//! tasks keep one data order (their data sets are loaded once per distinct task). Seed 1 keeps the
//! run's directory name, so adding seeds to a finished sweep only runs the new ones; seed `k > 1`
//! runs in `<name>_seed<k>`. Timing runs are not repeated.
//!
//! Tables report each measure's median over the cell's runs with the range `[min, max]`
//! ([`median_range`]); plots draw the median curve with a band from the minimum to the maximum.

use super::spec::Job;
use super::{Plan, Run, Size};
use crate::error::{Error, Result};
use crate::tasks::TaskKind;

impl Size {
    /// Runs per cell when `--seeds` is not given: 1 for smoke (CI), 3 for quick, 5 for full.
    pub fn default_seeds(self) -> usize {
        match self {
            Size::Smoke => 1,
            Size::Quick => 3,
            Size::Full => 5,
        }
    }
}

/// Repeats every training run of `plan` with seeds `1..=seeds` (see the module docs).
pub fn replicate(plan: &mut Plan, seeds: usize) -> Result<()> {
    if seeds == 0 {
        return Err(Error::invalid("--seeds", 0, "run each cell at least once"));
    }
    if seeds > crate::limits::MAX_SEEDS {
        return Err(Error::invalid("--seeds", seeds, format!("at most {} runs per cell", crate::limits::MAX_SEEDS)));
    }
    let mut out = Vec::with_capacity(plan.runs.len() * seeds);
    for run in plan.runs.drain(..) {
        let Job::Train(base) = &run.config.job else {
            out.push(run);
            continue;
        };
        for k in 1..=seeds as u64 {
            let mut r: Run = run.clone();
            if k > 1 {
                r.config.name = format!("{}_seed{k}", run.config.name);
                let mut t = base.clone();
                t.seed = base.seed + (k - 1);
                if matches!(t.task.kind, TaskKind::Copy | TaskKind::Adding) {
                    t.task.seed = base.task.seed + (k - 1);
                }
                r.config.job = Job::Train(t);
            }
            out.push(r);
        }
    }
    plan.runs = out;
    Ok(())
}

/// The runs of `rows` grouped into cells by label, in first-appearance order.
pub fn cells<'a, T>(rows: &[&'a T], label: impl Fn(&T) -> &str) -> Vec<Vec<&'a T>> {
    let mut out: Vec<Vec<&'a T>> = Vec::new();
    for &r in rows {
        match out.iter_mut().find(|c| label(c[0]) == label(r)) {
            Some(c) => c.push(r),
            None => out.push(vec![r]),
        }
    }
    out
}

/// Median and range `(median, min, max)` of finite values (`None` when there are none). An even
/// count takes the mean of the two middle values.
pub fn median_range(values: &[f64]) -> Option<(f64, f64, f64)> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 { v[n / 2] } else { 0.5 * (v[n / 2 - 1] + v[n / 2]) };
    Some((median, v[0], v[n - 1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ranges() {
        assert_eq!(median_range(&[3.0, 1.0, 2.0]), Some((2.0, 1.0, 3.0)));
        assert_eq!(median_range(&[4.0, 1.0, 2.0, 10.0]), Some((3.0, 1.0, 10.0)));
        assert_eq!(median_range(&[f64::NAN, 5.0]), Some((5.0, 5.0, 5.0)));
        assert_eq!(median_range(&[]), None);
        assert_eq!(median_range(&[1.0, f64::INFINITY, f64::INFINITY]), Some((f64::INFINITY, 1.0, f64::INFINITY)));
    }

    #[test]
    fn cells_keep_order() {
        let rows = ["a", "b", "a", "c", "b"];
        let refs: Vec<&&str> = rows.iter().collect();
        let c = cells(&refs, |s| s);
        assert_eq!(c.iter().map(|c| c.len()).collect::<Vec<_>>(), vec![2, 2, 1]);
    }
}
