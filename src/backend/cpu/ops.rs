//! Element-wise maps, activations, losses, reductions and optimizer updates on host slices.
//!
//! These are the CPU backend's implementations and, at the same time, the reference that every CUDA
//! kernel is checked against (under `emu` and on real GPUs). They are written for clarity first; the
//! hot ones (activations) are simple enough for the compiler to vectorize.

use crate::backend::{Activation, LossStats, MapOp, OptimRule, OptimStep};
use crate::scalar::Scalar;

/// Defines `pub fn $name` that runs `$imp` compiled for AVX2+FMA when the CPU has them and for the
/// baseline target otherwise (the body is `#[inline(always)]`, so each copy is vectorized for its
/// instruction set).
macro_rules! multiversion {
    ($(#[$m:meta])* pub fn $name:ident<T: Scalar>($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $imp:ident) => {
        $(#[$m])*
        pub fn $name<T: Scalar>($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn wide<T: Scalar>($($arg: $ty),*) $(-> $ret)? {
                    $imp($($arg),*)
                }
                if super::fastmath::dispatch() {
                    // SAFETY: the CPU supports AVX2 and FMA (checked by `dispatch`).
                    return unsafe { wide($($arg),*) };
                }
            }
            $imp($($arg),*)
        }
    };
}

multiversion!(
    /// `h = phi(a)` over rows of width `cols`. `param`: PReLU slope `[1]` or modReLU bias `[cols]`.
    pub fn act_fwd<T: Scalar>(kind: Activation, param: &[T], a: &[T], h: &mut [T], cols: usize) => act_fwd_impl
);
multiversion!(
    /// `da = J_phi(a)^T dh`; parameter gradients are added to `dparam` (which may be empty when the
    /// parameter is not trained).
    pub fn act_bwd<T: Scalar>(
        kind: Activation,
        param: &[T],
        a: &[T],
        h: &[T],
        dh: &[T],
        da: &mut [T],
        dparam: &mut [T],
        cols: usize,
    ) => act_bwd_impl
);
multiversion!(
    /// Softmax cross-entropy; see [`crate::backend::Backend::softmax_xent`].
    pub fn softmax_xent<T: Scalar>(logits: &[T], targets: &[T], grad: &mut [T], classes: usize, scale: T) -> LossStats => softmax_xent_impl
);
multiversion!(
    /// LSTM cell forward (see [`crate::backend::Backend::lstm_fwd`]); `c` holds `[c_prev; c_t]`.
    pub fn lstm_fwd<T: Scalar>(z: &[T], peep: &[T], c: &mut [T], gates: &mut [T], h: &mut [T], n: usize) => lstm_fwd_impl
);
multiversion!(
    /// LSTM cell backward (see [`crate::backend::Backend::lstm_bwd`]).
    pub fn lstm_bwd<T: Scalar>(
        gates: &[T],
        c_prev: &[T],
        c: &[T],
        peep: &[T],
        dh: &[T],
        dc: &mut [T],
        dz: &mut [T],
        dpeep: &mut [T],
        n: usize,
    ) => lstm_bwd_impl
);

#[inline(always)]
fn c<T: Scalar>(x: f64) -> T {
    T::of(x)
}

#[inline(always)]
fn sigmoid<T: Scalar>(x: T) -> T {
    x.sigmoid()
}

#[inline(always)]
fn act_fwd_impl<T: Scalar>(kind: Activation, param: &[T], a: &[T], h: &mut [T], cols: usize) {
    debug_assert_eq!(a.len(), h.len());
    match kind {
        Activation::Tanh => a.iter().zip(h.iter_mut()).for_each(|(&x, y)| *y = x.tanh_fast()),
        Activation::Relu => a.iter().zip(h.iter_mut()).for_each(|(&x, y)| *y = x.max(T::zero())),
        Activation::Identity => h.copy_from_slice(a),
        Activation::Prelu => {
            let alpha = param[0];
            a.iter().zip(h.iter_mut()).for_each(|(&x, y)| *y = if x > T::zero() { x } else { alpha * x });
        }
        Activation::Modrelu => {
            for (ra, rh) in a.chunks_exact(cols).zip(h.chunks_exact_mut(cols)) {
                for ((&x, y), &b) in ra.iter().zip(rh.iter_mut()).zip(param) {
                    let m = x.abs() + b;
                    *y = if m > T::zero() { sign(x) * m } else { T::zero() };
                }
            }
        }
        Activation::Oplu => {
            for (pa, ph) in a.chunks_exact(2).zip(h.chunks_exact_mut(2)) {
                let (x0, x1) = (pa[0], pa[1]);
                if x0 >= x1 {
                    ph[0] = x0;
                    ph[1] = x1;
                } else {
                    ph[0] = x1;
                    ph[1] = x0;
                }
            }
        }
    }
}

#[inline(always)]
fn sign<T: Scalar>(x: T) -> T {
    if x > T::zero() {
        T::one()
    } else if x < T::zero() {
        -T::one()
    } else {
        T::zero()
    }
}

#[inline(always)]
fn act_bwd_impl<T: Scalar>(
    kind: Activation,
    param: &[T],
    a: &[T],
    h: &[T],
    dh: &[T],
    da: &mut [T],
    dparam: &mut [T],
    cols: usize,
) {
    match kind {
        Activation::Tanh => {
            for ((&y, &g), d) in h.iter().zip(dh).zip(da.iter_mut()) {
                *d = g * (T::one() - y * y);
            }
        }
        Activation::Relu => {
            for ((&x, &g), d) in a.iter().zip(dh).zip(da.iter_mut()) {
                *d = if x > T::zero() { g } else { T::zero() };
            }
        }
        Activation::Identity => da.copy_from_slice(dh),
        Activation::Prelu => {
            let alpha = param[0];
            let mut ds = T::zero();
            for ((&x, &g), d) in a.iter().zip(dh).zip(da.iter_mut()) {
                if x > T::zero() {
                    *d = g;
                } else {
                    *d = alpha * g;
                    ds += g * x;
                }
            }
            if let Some(p) = dparam.first_mut() {
                *p += ds;
            }
        }
        Activation::Modrelu => {
            for (r, (ra, rg)) in a.chunks_exact(cols).zip(dh.chunks_exact(cols)).enumerate() {
                let rd = &mut da[r * cols..(r + 1) * cols];
                for j in 0..cols {
                    let (x, g) = (ra[j], rg[j]);
                    if x.abs() + param[j] > T::zero() {
                        rd[j] = g;
                        if !dparam.is_empty() {
                            dparam[j] += g * sign(x);
                        }
                    } else {
                        rd[j] = T::zero();
                    }
                }
            }
        }
        Activation::Oplu => {
            for ((pa, pg), pd) in a.chunks_exact(2).zip(dh.chunks_exact(2)).zip(da.chunks_exact_mut(2)) {
                if pa[0] >= pa[1] {
                    pd[0] = pg[0];
                    pd[1] = pg[1];
                } else {
                    pd[0] = pg[1];
                    pd[1] = pg[0];
                }
            }
        }
    }
}

/// `y = f(x)`.
pub fn map<T: Scalar>(op: MapOp, x: &[T], y: &mut [T]) {
    match op {
        MapOp::Margin { m } => {
            let (two_m, one, half) = (c::<T>(2.0 * m), T::one(), c::<T>(0.5));
            x.iter().zip(y.iter_mut()).for_each(|(&p, s)| *s = two_m * (sigmoid(p) - half) + one);
        }
    }
}

/// `dx = f'(x) dy`.
pub fn map_bwd<T: Scalar>(op: MapOp, x: &[T], dy: &[T], dx: &mut [T]) {
    match op {
        MapOp::Margin { m } => {
            let two_m = c::<T>(2.0 * m);
            for ((&p, &g), d) in x.iter().zip(dy).zip(dx.iter_mut()) {
                let s = sigmoid(p);
                *d = g * two_m * s * (T::one() - s);
            }
        }
    }
}

#[inline(always)]
fn softmax_xent_impl<T: Scalar>(logits: &[T], targets: &[T], grad: &mut [T], classes: usize, scale: T) -> LossStats {
    let mut st = LossStats::default();
    for ((row, &tgt), g) in logits.chunks_exact(classes).zip(targets).zip(grad.chunks_exact_mut(classes)) {
        if tgt < T::zero() {
            g.iter_mut().for_each(|v| *v = T::zero());
            continue;
        }
        let target = tgt.f64() as usize;
        let (mut arg, mut mx) = (0, row[0]);
        for (j, &v) in row.iter().enumerate() {
            if v > mx {
                mx = v;
                arg = j;
            }
        }
        let mut z = T::zero();
        for (gj, &v) in g.iter_mut().zip(row) {
            *gj = (v - mx).exp_fast();
            z += *gj;
        }
        let inv = T::one() / z;
        for gj in g.iter_mut() {
            *gj = *gj * inv * scale;
        }
        g[target] -= scale;
        st.sum += (z.ln() + mx - row[target]).f64();
        st.correct += usize::from(arg == target);
        st.count += 1;
    }
    st
}

/// Squared error; see [`crate::backend::Backend::mse`].
pub fn mse<T: Scalar>(pred: &[T], target: &[T], grad: &mut [T], scale: T) -> LossStats {
    let mut sum = 0.0;
    let two = c::<T>(2.0) * scale;
    for ((&p, &y), g) in pred.iter().zip(target).zip(grad.iter_mut()) {
        let e = p - y;
        sum += (e * e).f64();
        *g = two * e;
    }
    LossStats { sum, correct: 0, count: pred.len() }
}

/// Largest absolute column sum of an `n x n` row-major matrix.
pub fn norm1<T: Scalar>(x: &[T], n: usize) -> f64 {
    let mut cols = vec![0.0f64; n];
    for row in x.chunks_exact(n) {
        for (s, &v) in cols.iter_mut().zip(row) {
            *s += v.f64().abs();
        }
    }
    // NaN propagates (f64::max would skip it).
    cols.into_iter().fold(0.0, |m, v| if v.is_nan() || m.is_nan() { f64::NAN } else { m.max(v) })
}

/// One optimizer update (PyTorch formulas).
pub fn optim_step<T: Scalar>(step: &OptimStep, p: &mut [T], g: &[T], s1: &mut [T], s2: &mut [T]) {
    let lr = c::<T>(step.lr);
    let wd = c::<T>(step.weight_decay);
    let grad = |i: usize, p: &[T]| if step.weight_decay != 0.0 { g[i] + wd * p[i] } else { g[i] };
    match step.rule {
        OptimRule::Sgd { momentum, nesterov } => {
            let mu = c::<T>(momentum);
            for i in 0..p.len() {
                let gi = grad(i, p);
                if momentum == 0.0 {
                    p[i] -= lr * gi;
                } else {
                    s1[i] = mu * s1[i] + gi;
                    let d = if nesterov { gi + mu * s1[i] } else { s1[i] };
                    p[i] -= lr * d;
                }
            }
        }
        OptimRule::RmsProp { rho, eps } => {
            let (rho, one_m, eps) = (c::<T>(rho), c::<T>(1.0 - rho), c::<T>(eps));
            for i in 0..p.len() {
                let gi = grad(i, p);
                s1[i] = rho * s1[i] + one_m * gi * gi;
                p[i] -= lr * gi / (s1[i].sqrt() + eps);
            }
        }
        OptimRule::Adam { beta1, beta2, eps } => {
            let t = step.t.max(1) as i32;
            let bc1 = c::<T>(1.0 - beta1.powi(t));
            let bc2 = c::<T>((1.0 - beta2.powi(t)).sqrt());
            let (b1, b2, eps) = (c::<T>(beta1), c::<T>(beta2), c::<T>(eps));
            let (omb1, omb2) = (T::one() - b1, T::one() - b2);
            for i in 0..p.len() {
                let gi = grad(i, p);
                s1[i] = b1 * s1[i] + omb1 * gi;
                s2[i] = b2 * s2[i] + omb2 * gi * gi;
                let denom = s2[i].sqrt() / bc2 + eps;
                p[i] -= lr * (s1[i] / bc1) / denom;
            }
        }
    }
}

#[inline(always)]
fn lstm_fwd_impl<T: Scalar>(z: &[T], peep: &[T], c: &mut [T], gates: &mut [T], h: &mut [T], n: usize) {
    let (wci, wcf, wco) = (&peep[..n], &peep[n..2 * n], &peep[2 * n..]);
    let (c_prev, c) = c.split_at_mut(c.len() / 2);
    for (r, zr) in z.chunks_exact(4 * n).enumerate() {
        let gr = &mut gates[r * 4 * n..(r + 1) * 4 * n];
        for j in 0..n {
            let cp = c_prev[r * n + j];
            let i = sigmoid(zr[j] + wci[j] * cp);
            let f = sigmoid(zr[n + j] + wcf[j] * cp);
            let g = zr[2 * n + j].tanh_fast();
            let cc = f * cp + i * g;
            let o = sigmoid(zr[3 * n + j] + wco[j] * cc);
            gr[j] = i;
            gr[n + j] = f;
            gr[2 * n + j] = g;
            gr[3 * n + j] = o;
            c[r * n + j] = cc;
            h[r * n + j] = o * cc.tanh_fast();
        }
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn lstm_bwd_impl<T: Scalar>(
    gates: &[T],
    c_prev: &[T],
    c: &[T],
    peep: &[T],
    dh: &[T],
    dc: &mut [T],
    dz: &mut [T],
    dpeep: &mut [T],
    n: usize,
) {
    let (wci, wcf, wco) = (&peep[..n], &peep[n..2 * n], &peep[2 * n..]);
    let one = T::one();
    for (r, gr) in gates.chunks_exact(4 * n).enumerate() {
        let dzr = &mut dz[r * 4 * n..(r + 1) * 4 * n];
        for j in 0..n {
            let k = r * n + j;
            let (i, f, g, o) = (gr[j], gr[n + j], gr[2 * n + j], gr[3 * n + j]);
            let (cp, cc) = (c_prev[k], c[k]);
            let tc = cc.tanh_fast();
            let da_o = dh[k] * tc * o * (one - o);
            let dct = dc[k] + dh[k] * o * (one - tc * tc) + da_o * wco[j];
            let da_i = dct * g * i * (one - i);
            let da_f = dct * cp * f * (one - f);
            dzr[j] = da_i;
            dzr[n + j] = da_f;
            dzr[2 * n + j] = dct * i * (one - g * g);
            dzr[3 * n + j] = da_o;
            dc[k] = dct * f + da_i * wci[j] + da_f * wcf[j];
            dpeep[j] += da_i * cp;
            dpeep[n + j] += da_f * cp;
            dpeep[2 * n + j] += da_o * cc;
        }
    }
}
