//! Fused CPU recurrence: forward and backward through all `T` steps.
//!
//! Batch rows are independent in both directions of the recurrence, so the batch is split into one
//! contiguous block of rows per thread **once per sequence**; each thread then runs all `T` steps of
//! its rows with single-threaded GEMMs and the activation applied while the step's output is still in
//! cache. No allocation and no synchronization happen inside the time loop. Results do not depend on
//! the split (nor, therefore, on the thread count): each row is computed by the same kernel either
//! way, and the gradient of the activation's parameter (PReLU slope, modReLU biases), a sum over
//! rows and steps, is not summed per chunk (which would add in an order set by the split) but
//! afterwards, in one pass over the whole batch in the order a single chunk uses.
//!
//! Forward, per step: `A_t[rows] += H_{t-1}[rows] W^T`, `H_t[rows] = phi(A_t[rows])`.
//! Backward, per step (from `T-1` down to 0): `dH_t[rows] += Delta_{t+1}[rows] W`,
//! `Delta_t[rows] = J_phi(A_t)^T dH_t[rows]`.

use super::{mat, matmul, ops};
use crate::backend::{Activation, SeqDims};
use crate::scalar::Scalar;
use faer::{MatMut, Par};

/// Hidden sizes from which each step's GEMM is split across threads (by columns, inside faer)
/// instead of splitting the batch: a `[B/threads, n] x [n, n]` product is too thin for the
/// micro-kernels once `n` is large, while the per-step synchronization is cheap next to the step.
const STEP_PAR_MIN_N: usize = 384;

/// Parallelism of each step's GEMM: all threads when the batch is not split (large `n`).
fn step_par(threads: usize, d: SeqDims) -> Par {
    if threads > 1 && d.n >= STEP_PAR_MIN_N { Par::rayon(threads) } else { Par::Seq }
}

/// Row ranges, one per thread, for a batch of `batch` rows (a single range when the steps' GEMMs
/// are parallel themselves, see [`step_par`]).
fn split(threads: usize, d: SeqDims) -> Vec<(usize, usize)> {
    let work = d.t * d.batch * d.n * d.n;
    let split_batch = threads > 1 && d.batch >= 16 && work >= (1 << 18) && d.n < STEP_PAR_MIN_N;
    let nt = if split_batch { threads.min(d.batch / 8) } else { 1 };
    let base = d.batch / nt;
    let extra = d.batch % nt;
    let mut out = Vec::with_capacity(nt);
    let mut r0 = 0;
    for i in 0..nt {
        let rows = base + usize::from(i < extra);
        out.push((r0, r0 + rows));
        r0 += rows;
    }
    out
}

/// Splits each `[B, n]` block of `data` into the row ranges of `bounds`: result `[chunk][block]`.
fn split_mut<'a, T>(data: &'a mut [T], bn: usize, n: usize, bounds: &[(usize, usize)]) -> Vec<Vec<&'a mut [T]>> {
    let mut per: Vec<Vec<&mut [T]>> = bounds.iter().map(|_| Vec::with_capacity(data.len() / bn.max(1))).collect();
    for block in data.chunks_exact_mut(bn) {
        let mut rest = block;
        for (ci, &(r0, r1)) in bounds.iter().enumerate() {
            let (head, tail) = rest.split_at_mut((r1 - r0) * n);
            per[ci].push(head);
            rest = tail;
        }
    }
    per
}

fn split_ref<'a, T>(data: &'a [T], bn: usize, n: usize, bounds: &[(usize, usize)]) -> Vec<Vec<&'a [T]>> {
    let mut per: Vec<Vec<&[T]>> = bounds.iter().map(|_| Vec::with_capacity(data.len() / bn.max(1))).collect();
    for block in data.chunks_exact(bn) {
        let mut rest = block;
        for (ci, &(r0, r1)) in bounds.iter().enumerate() {
            let (head, tail) = rest.split_at((r1 - r0) * n);
            per[ci].push(head);
            rest = tail;
        }
    }
    per
}

/// Runs `f` on every chunk, the chunks in parallel when there is more than one.
fn run_chunks<C: Send, R: Send>(chunks: Vec<C>, f: impl Fn(C) -> R + Sync) -> Vec<R> {
    if chunks.len() == 1 {
        return chunks.into_iter().map(f).collect();
    }
    let mut results: Vec<Option<R>> = chunks.iter().map(|_| None).collect();
    rayon::scope(|s| {
        for (slot, chunk) in results.iter_mut().zip(chunks) {
            let f = &f;
            s.spawn(move |_| *slot = Some(f(chunk)));
        }
    });
    results.into_iter().map(|r| r.expect("every chunk ran")).collect()
}

/// See the module docs. `pre` holds `X V^T + b` on entry; `h[0]` the initial state.
pub(super) fn forward<T: Scalar>(
    threads: usize,
    w: &[T],
    kind: Activation,
    param: &[T],
    pre: &mut [T],
    h: &mut [T],
    d: SeqDims,
) {
    let (bn, n) = (d.batch * d.n, d.n);
    if bn == 0 {
        return;
    }
    let bounds = split(threads, d);
    let pres = split_mut(pre, bn, n, &bounds);
    let hs = split_mut(h, bn, n, &bounds);
    let wt = mat(w, n, n, true);
    let par = step_par(threads, d);
    run_chunks(pres.into_iter().zip(hs).collect(), |(mut pre, mut h): (Vec<&mut [T]>, Vec<&mut [T]>)| {
        for t in 0..d.t {
            let rows = pre[t].len() / n;
            let (done, next) = h.split_at_mut(t + 1);
            let a = &mut *pre[t];
            matmul(
                MatMut::from_row_major_slice_mut(a, rows, n),
                mat(done[t], rows, n, false),
                wt,
                T::one(),
                T::one(),
                par,
            );
            ops::act_fwd(kind, param, a, next[0], n);
        }
    });
}

/// See the module docs. `dh` is used as workspace; `dparam` is accumulated.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward<T: Scalar>(
    threads: usize,
    w: &[T],
    kind: Activation,
    param: &[T],
    pre: &[T],
    h: &[T],
    dh: &mut [T],
    delta: &mut [T],
    dparam: &mut [T],
    d: SeqDims,
) {
    let (bn, n) = (d.batch * d.n, d.n);
    if bn == 0 {
        return;
    }
    let bounds = split(threads, d);
    let pres = split_ref(pre, bn, n, &bounds);
    let hs = split_ref(h, bn, n, &bounds);
    let dhs = split_mut(dh, bn, n, &bounds);
    let deltas = split_mut(delta, bn, n, &bounds);
    let wm = mat(w, n, n, false);
    let par = step_par(threads, d);
    let plen = dparam.len();
    // Several chunks: the parameter gradient is summed afterwards in one pass over the whole batch
    // (see the module docs), so each chunk accumulates none.
    let serial_param_grad = bounds.len() > 1 && plen > 0;
    let chunk_plen = if serial_param_grad { 0 } else { plen };
    let chunks: Vec<_> = pres.into_iter().zip(hs).zip(dhs.into_iter().zip(deltas)).collect();
    let grads = run_chunks(chunks, |((pre, h), (mut dh, mut delta))| {
        let mut dp = vec![T::zero(); chunk_plen];
        for t in (0..d.t).rev() {
            let rows = pre[t].len() / n;
            let (head, tail) = delta.split_at_mut(t + 1);
            if t + 1 < d.t {
                matmul(
                    MatMut::from_row_major_slice_mut(dh[t], rows, n),
                    mat(tail[0], rows, n, false),
                    wm,
                    T::one(),
                    T::one(),
                    par,
                );
            }
            ops::act_bwd(kind, param, pre[t], h[t + 1], dh[t], head[t], &mut dp, n);
        }
        dp
    });
    if serial_param_grad {
        // The same element order as one chunk over the whole batch: `Delta_t` is written again with
        // the values the chunks wrote (the same function of `A_t`, `H_t`, `dH_t`).
        let mut dp = vec![T::zero(); plen];
        for t in (0..d.t).rev() {
            let r = t * bn..(t + 1) * bn;
            ops::act_bwd(
                kind,
                param,
                &pre[r.clone()],
                &h[r.start + bn..r.end + bn],
                &dh[r.clone()],
                &mut delta[r],
                &mut dp,
                n,
            );
        }
        dparam.iter_mut().zip(dp).for_each(|(a, b)| *a += b);
        return;
    }
    for g in grads {
        dparam.iter_mut().zip(g).for_each(|(a, b)| *a += b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic pseudo-random sequence in (-scale, scale).
    fn fill(len: usize, seed: u64, scale: f64) -> Vec<f64> {
        let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                scale * ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0)
            })
            .collect()
    }

    /// Forward and backward of a PReLU recurrence written out with plain loops in f64.
    fn reference(w: &[f64], alpha: f64, pre: &[f64], h0: &[f64], dh_in: &[f64], d: SeqDims) -> [Vec<f64>; 3] {
        let (b, n) = (d.batch, d.n);
        let (mut a, mut h) = (pre.to_vec(), h0.to_vec());
        h.resize((d.t + 1) * b * n, 0.0);
        for t in 0..d.t {
            for r in 0..b {
                for i in 0..n {
                    let dot: f64 = (0..n).map(|j| h[(t * b + r) * n + j] * w[i * n + j]).sum();
                    let x = a[(t * b + r) * n + i] + dot;
                    a[(t * b + r) * n + i] = x;
                    h[((t + 1) * b + r) * n + i] = if x > 0.0 { x } else { alpha * x };
                }
            }
        }
        let (mut dh, mut delta, mut dalpha) = (dh_in.to_vec(), vec![0.0; d.t * b * n], 0.0);
        for t in (0..d.t).rev() {
            for r in 0..b {
                for j in 0..n {
                    if t + 1 < d.t {
                        dh[(t * b + r) * n + j] +=
                            (0..n).map(|i| delta[((t + 1) * b + r) * n + i] * w[i * n + j]).sum::<f64>();
                    }
                }
                for j in 0..n {
                    let (k, x) = ((t * b + r) * n + j, a[(t * b + r) * n + j]);
                    delta[k] = dh[k] * if x > 0.0 { 1.0 } else { alpha };
                    if x <= 0.0 {
                        dalpha += dh[k] * x;
                    }
                }
            }
        }
        [h, delta, vec![dalpha]]
    }

    /// Both ways of using threads (batch split below `STEP_PAR_MIN_N`, parallel step GEMMs from it)
    /// give the f64 reference's numbers, with one thread and with several.
    #[test]
    fn every_thread_layout_matches_the_reference() {
        for (n, batch) in [(24, 32), (STEP_PAR_MIN_N + 17, 3)] {
            let d = SeqDims { t: 3, batch, n };
            let w = fill(n * n, 1, 1.5 / (n as f64).sqrt());
            let pre = fill(d.t * batch * n, 2, 1.0);
            let h0 = fill(batch * n, 3, 1.0);
            let dh_in = fill(d.t * batch * n, 4, 1.0);
            let alpha = 0.3;
            let [h_ref, delta_ref, dalpha_ref] = reference(&w, alpha, &pre, &h0, &dh_in, d);
            for threads in [1, 3] {
                let f = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
                let (wf, param) = (f(&w), [alpha as f32]);
                let mut a = f(&pre);
                let mut h = f(&h0);
                h.resize((d.t + 1) * batch * n, 0.0);
                forward(threads, &wf, Activation::Prelu, &param, &mut a, &mut h, d);
                let (mut dh, mut delta, mut dp) = (f(&dh_in), vec![0f32; d.t * batch * n], [0f32]);
                backward(threads, &wf, Activation::Prelu, &param, &a, &h, &mut dh, &mut delta, &mut dp, d);
                for (name, got, want) in [
                    ("h", &h[..], &h_ref[..]),
                    ("delta", &delta[..], &delta_ref[..]),
                    ("dalpha", &dp[..], &dalpha_ref[..]),
                ] {
                    let scale = want.iter().fold(1.0f64, |m, &v| m.max(v.abs()));
                    let worst = got.iter().zip(want).map(|(&g, &w)| (g as f64 - w).abs()).fold(0.0, f64::max);
                    assert!(worst <= 2e-5 * scale, "n {n} threads {threads}: {name} off by {worst:e} (scale {scale})");
                }
            }
        }
    }

    /// The thread count changes nothing, bit for bit: the states, the deltas and the activation
    /// parameter's gradient (summed over the whole batch, not per chunk) of one thread and of a
    /// batch split into 2 and 3 chunks are equal. (Run with `--jobs N` on the CPU, an experiment
    /// gives each job a share of the threads, and its results must not depend on the schedule.)
    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let d = SeqDims { t: 12, batch: 32, n: 48 };
        assert!(split(2, d).len() == 2 && split(3, d).len() == 3, "the batch must be split for this test");
        let bn = d.batch * d.n;
        let w: Vec<f32> = fill(d.n * d.n, 5, 1.5 / (d.n as f64).sqrt()).iter().map(|&x| x as f32).collect();
        for (kind, param) in [(Activation::Prelu, vec![0.3f32]), (Activation::Modrelu, vec![-0.2f32; d.n])] {
            let run = |threads: usize| {
                let mut a: Vec<f32> = fill(d.t * bn, 6, 1.0).iter().map(|&x| x as f32).collect();
                let mut h: Vec<f32> = fill(bn, 7, 1.0).iter().map(|&x| x as f32).collect();
                h.resize((d.t + 1) * bn, 0.0);
                forward(threads, &w, kind, &param, &mut a, &mut h, d);
                let mut dh: Vec<f32> = fill(d.t * bn, 8, 1.0).iter().map(|&x| x as f32).collect();
                let (mut delta, mut dp) = (vec![0f32; d.t * bn], vec![0.5f32; param.len()]);
                backward(threads, &w, kind, &param, &a, &h, &mut dh, &mut delta, &mut dp, d);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
                (bits(&h), bits(&delta), bits(&dp))
            };
            let one = run(1);
            assert!(one.2.iter().any(|&b| f32::from_bits(b) != 0.5), "{kind:?}: the parameter gradient is zero");
            for threads in [2, 3] {
                let got = run(threads);
                assert!(got.0 == one.0, "{kind:?}, {threads} threads: h differs");
                assert!(got.1 == one.1, "{kind:?}, {threads} threads: delta differs");
                assert!(got.2 == one.2, "{kind:?}, {threads} threads: the parameter gradient differs");
            }
        }
    }
}
