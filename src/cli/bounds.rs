//! Value parsers that bound every numeric flag where it is parsed: a value out of range is a clap
//! error naming the flag and the range, before anything runs (exit code 2). The ranges are
//! [`ortho_rnn::limits`]'s; they keep every product of sizes far from overflowing.

use ortho_rnn::limits::{
    MAX_BATCH, MAX_BENCH_ITERS, MAX_HIDDEN, MAX_ITERS, MAX_SEQ_LEN, MAX_THREADS, MAX_TRAIN_EXAMPLES,
};

fn count(s: &str, min: usize, max: usize) -> Result<usize, String> {
    let v: u128 = s.trim().parse().map_err(|_| format!("expected a whole number between {min} and {max}"))?;
    if v < min as u128 || v > max as u128 {
        return Err(format!("must be between {min} and {max}"));
    }
    Ok(v as usize)
}

/// `--hidden`.
pub fn hidden(s: &str) -> Result<usize, String> {
    count(s, 1, MAX_HIDDEN)
}
/// `--seq-len`.
pub fn seq_len(s: &str) -> Result<usize, String> {
    count(s, 1, MAX_SEQ_LEN)
}
/// `--batch`.
pub fn batch(s: &str) -> Result<usize, String> {
    count(s, 1, MAX_BATCH)
}
/// `--iters`, `--epochs`, `--iters-per-epoch`, `--eval-every`, `--checkpoint-every`.
pub fn iters(s: &str) -> Result<usize, String> {
    count(s, 1, MAX_ITERS)
}
/// `bench --iters`.
pub fn bench_iters(s: &str) -> Result<usize, String> {
    count(s, 1, MAX_BENCH_ITERS)
}
/// `--max-train`.
pub fn max_train(s: &str) -> Result<usize, String> {
    count(s, 1, MAX_TRAIN_EXAMPLES)
}
/// `--neg` (checked against `--hidden` later).
pub fn neg(s: &str) -> Result<usize, String> {
    count(s, 0, MAX_HIDDEN)
}
/// `--threads`.
pub fn threads(s: &str) -> Result<usize, String> {
    count(s, 0, MAX_THREADS)
}

fn float(s: &str, ok: impl Fn(f64) -> bool, what: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("expected a number {what}"))?;
    if !ok(v) {
        return Err(format!("must be {what}"));
    }
    Ok(v)
}

/// `--lr`, `--clip`, `--eps`, `--gain`: positive and finite.
pub fn positive(s: &str) -> Result<f64, String> {
    float(s, |v| v.is_finite() && v > 0.0, "> 0 and finite")
}
/// `--geo-lr`, `--weight-decay`: finite and >= 0.
pub fn non_negative(s: &str) -> Result<f64, String> {
    float(s, |v| v.is_finite() && v >= 0.0, ">= 0 and finite")
}
/// `--momentum`, `--rho`, `--beta1`, `--beta2`: in [0, 1).
pub fn unit(s: &str) -> Result<f64, String> {
    float(s, |v| (0.0..1.0).contains(&v), "in [0, 1)")
}
/// `--prelu-slope`: finite.
pub fn finite(s: &str) -> Result<f64, String> {
    float(s, f64::is_finite, "that is finite")
}

/// The reason of an [`ortho_rnn::error::Error::InvalidArg`] (clap names the flag and value itself).
fn reason(e: ortho_rnn::error::Error) -> String {
    match e {
        ortho_rnn::error::Error::InvalidArg { reason, .. } => reason,
        e => e.to_string(),
    }
}
/// `--device` and each entry of `--devices`: `cpu`, `cuda`, `cuda:K`, `emu`.
pub fn device(s: &str) -> Result<ortho_rnn::device::DeviceKind, String> {
    ortho_rnn::device::DeviceKind::parse_for(s, "--device").map_err(reason)
}
/// `experiment --seeds`.
pub fn seeds(s: &str) -> Result<usize, String> {
    count(s, 1, ortho_rnn::limits::MAX_SEEDS)
}
/// `--jobs`.
pub fn jobs(s: &str) -> Result<usize, String> {
    count(s, 1, ortho_rnn::limits::MAX_JOBS)
}
/// `--shard K/N`.
pub fn shard(s: &str) -> Result<ortho_rnn::experiments::cluster::Shard, String> {
    ortho_rnn::experiments::cluster::Shard::parse(s).map_err(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(hidden("64"), Ok(64));
        assert!(hidden("0").unwrap_err().contains("between 1 and"));
        assert!(seq_len("18446744073709551615").unwrap_err().contains("between"));
        assert!(batch("99999999999999999999999999").is_err());
        assert!(iters("-1").unwrap_err().contains("whole number"));
        assert_eq!(threads("0"), Ok(0));
        assert!(positive("nan").is_err() && positive("inf").is_err() && positive("0").is_err());
        assert_eq!(positive("1e-8"), Ok(1e-8));
        assert!(unit("1").is_err() && unit("0.99").is_ok());
        assert!(finite("-inf").is_err() && finite("-0.5").is_ok());
    }
}
