//! The device contract: every numerical operation the engine performs goes through [`Backend`].
//!
//! Everything above this module (cells, parametrizations, optimizers, the trainer) is generic over a
//! backend and never branches on the device. Two levels live on the trait:
//!
//! 1. **Primitives**: GEMM with a fused epilogue, activations and their Jacobian-vector products,
//!    losses, reductions, LU factor/solve, optimizer updates.
//! 2. **Sequence ops**: [`Backend::recurrent_forward`] and [`Backend::recurrent_backward`] over all
//!    `T` steps, with default implementations composed from the primitives. A backend overrides them
//!    with a fused loop (the CPU backend splits the batch across threads for the whole sequence).
//!
//! # Layout
//! Buffers are flat arrays of [`Backend::Elem`]. Matrices are **row-major and contiguous**; a batch of
//! hidden states `H_t` is `[B, n]`, and a sequence is time-major `[T, B, n]`. The recurrence is
//! `H_t = phi(H_{t-1} W^T + X_t V^T + b)` (column-vector convention: `h_t = phi(W h_{t-1} + V x_t + b)`).
//!
//! Views ([`Slice`], [`SliceMut`]) are `(buffer, offset, len)` triples; every op checks them against the
//! buffer's length and returns [`Error::Shape`](crate::Error) rather than reading out of bounds.

pub mod cpu;
pub mod cuda;
pub mod precision;
pub mod profile;

pub use precision::Precision;

use crate::error::{Error, Result};
use crate::scalar::Scalar;
use serde::{Deserialize, Serialize};

/// A device buffer: knows its length in elements.
pub trait DeviceBuf: Send + Sync {
    /// Number of elements.
    fn len(&self) -> usize;
    /// True when the buffer holds no elements.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A read-only window `[off, off + len)` of a device buffer.
pub struct Slice<'a, B: Backend> {
    /// The buffer.
    pub buf: &'a B::Buf,
    /// First element.
    pub off: usize,
    /// Number of elements.
    pub len: usize,
}

impl<B: Backend> Clone for Slice<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: Backend> Copy for Slice<'_, B> {}

impl<'a, B: Backend> Slice<'a, B> {
    /// The whole buffer.
    pub fn all(buf: &'a B::Buf) -> Self {
        Slice { buf, off: 0, len: buf.len() }
    }
    /// A sub-window relative to this one. Panics if it does not fit (an internal invariant: shapes are
    /// validated where models are built).
    pub fn sub(self, off: usize, len: usize) -> Self {
        assert!(off + len <= self.len, "sub-slice [{off}, {}) outside a view of length {}", off + len, self.len);
        Slice { buf: self.buf, off: self.off + off, len }
    }
    /// Checks that the view lies inside its buffer and has `expected` elements.
    pub fn check(&self, op: &'static str, expected: usize) -> Result<()> {
        check_view(op, self.off, self.len, self.buf.len(), expected)
    }
}

/// A writable window `[off, off + len)` of a device buffer.
pub struct SliceMut<'a, B: Backend> {
    /// The buffer.
    pub buf: &'a mut B::Buf,
    /// First element.
    pub off: usize,
    /// Number of elements.
    pub len: usize,
}

impl<'a, B: Backend> SliceMut<'a, B> {
    /// The whole buffer.
    pub fn all(buf: &'a mut B::Buf) -> Self {
        let len = buf.len();
        SliceMut { buf, off: 0, len }
    }
    /// A sub-window relative to this one (consumes the view). Panics if it does not fit.
    pub fn sub(self, off: usize, len: usize) -> Self {
        assert!(off + len <= self.len, "sub-slice [{off}, {}) outside a view of length {}", off + len, self.len);
        SliceMut { buf: self.buf, off: self.off + off, len }
    }
    /// A shorter-lived writable view of the same window.
    pub fn rb(&mut self) -> SliceMut<'_, B> {
        SliceMut { buf: self.buf, off: self.off, len: self.len }
    }
    /// A read-only view of the same window.
    pub fn as_ref(&self) -> Slice<'_, B> {
        Slice { buf: self.buf, off: self.off, len: self.len }
    }
    /// Checks that the view lies inside its buffer and has `expected` elements.
    pub fn check(&self, op: &'static str, expected: usize) -> Result<()> {
        check_view(op, self.off, self.len, self.buf.len(), expected)
    }
}

fn check_view(op: &'static str, off: usize, len: usize, buf_len: usize, expected: usize) -> Result<()> {
    if len != expected {
        return Err(Error::shape(op, format!("{expected} elements"), format!("{len}")));
    }
    if off.checked_add(len).is_none_or(|end| end > buf_len) {
        return Err(Error::shape(
            op,
            format!("a view inside a buffer of {buf_len}"),
            format!("[{off}, {})", off + len),
        ));
    }
    Ok(())
}

/// Transition nonlinearities `phi`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// `tanh(x)`.
    Tanh,
    /// `max(x, 0)`.
    Relu,
    /// `max(x, 0) + alpha * min(x, 0)`; `alpha` is a one-element parameter buffer.
    Prelu,
    /// Orthogonal permutation linear unit: pairs `(x_{2i}, x_{2i+1}) -> (max, min)`; needs an even width.
    Oplu,
    /// `sign(x) * relu(|x| + b_j)` with a per-unit bias `b` (parameter buffer of the layer's width).
    Modrelu,
    /// `x` (a linear RNN).
    Identity,
}

impl Activation {
    /// Length of the parameter buffer this activation needs for a layer of width `n`.
    pub fn param_len(self, n: usize) -> usize {
        match self {
            Activation::Prelu => 1,
            Activation::Modrelu => n,
            _ => 0,
        }
    }
    /// Every activation, for tests and sweeps.
    pub const ALL: [Activation; 6] = [
        Activation::Tanh,
        Activation::Relu,
        Activation::Prelu,
        Activation::Oplu,
        Activation::Modrelu,
        Activation::Identity,
    ];
}

/// An activation together with its parameter buffer (PReLU slope, modReLU bias) where it has one.
pub struct Act<'a, B: Backend> {
    /// Which function.
    pub kind: Activation,
    /// Its parameters; `None` for parameter-free activations.
    pub param: Option<Slice<'a, B>>,
}

impl<B: Backend> Clone for Act<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: Backend> Copy for Act<'_, B> {}

/// `C = alpha * op(A) op(B) + beta * C`, row-major, optionally batched with element strides.
///
/// `op(A)` is `[m, k]` (stored `[k, m]` when `trans_a`), `op(B)` is `[k, n]` (stored `[n, k]` when
/// `trans_b`), `C` is `[m, n]`. With `batch > 1`, matrix `i` starts at `i * stride_*` in its view.
/// `allow_reduced`: the backend may compute this product in its reduced [`Precision`] (see there for
/// which products are marked).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gemm<T> {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub trans_a: bool,
    pub trans_b: bool,
    pub alpha: T,
    pub beta: T,
    pub batch: usize,
    pub stride_a: usize,
    pub stride_b: usize,
    pub stride_c: usize,
    pub allow_reduced: bool,
}

impl<T: Scalar> Gemm<T> {
    /// `C = op(A) op(B)` (alpha 1, beta 0, one matrix).
    pub fn new(m: usize, n: usize, k: usize) -> Self {
        Gemm {
            m,
            n,
            k,
            trans_a: false,
            trans_b: false,
            alpha: T::one(),
            beta: T::zero(),
            batch: 1,
            stride_a: m * k,
            stride_b: k * n,
            stride_c: m * n,
            allow_reduced: false,
        }
    }
    /// Lets the backend use its reduced [`Precision`] for this product (the network's products).
    pub fn reduced_ok(mut self) -> Self {
        self.allow_reduced = true;
        self
    }
    /// Transposes `A`.
    pub fn ta(mut self) -> Self {
        self.trans_a = true;
        self
    }
    /// Transposes `B`.
    pub fn tb(mut self) -> Self {
        self.trans_b = true;
        self
    }
    /// Sets alpha.
    pub fn alpha(mut self, alpha: T) -> Self {
        self.alpha = alpha;
        self
    }
    /// Sets beta (1 accumulates into C).
    pub fn beta(mut self, beta: T) -> Self {
        self.beta = beta;
        self
    }
    /// Number of elements each operand view must hold.
    pub fn extents(&self) -> (usize, usize, usize) {
        let ext = |stride: usize, one: usize| if self.batch == 0 { 0 } else { stride * (self.batch - 1) + one };
        (ext(self.stride_a, self.m * self.k), ext(self.stride_b, self.k * self.n), ext(self.stride_c, self.m * self.n))
    }
    /// Floating-point operations.
    pub fn flops(&self) -> f64 {
        2.0 * (self.m * self.n * self.k * self.batch) as f64
    }
}

/// What a GEMM does to `C` after the product: add a bias row (length `n`) to every row, then write
/// `act(C)` to a second output. `C` keeps the pre-activation, which the backward pass needs.
pub struct Epilogue<'a, B: Backend> {
    /// Bias of length `n`, added to every row of `C`.
    pub bias: Option<Slice<'a, B>>,
    /// Activation and the `[m, n]` view receiving `act(C)`.
    pub act: Option<(Act<'a, B>, SliceMut<'a, B>)>,
}

impl<B: Backend> Epilogue<'_, B> {
    /// No epilogue.
    pub fn none() -> Self {
        Epilogue { bias: None, act: None }
    }
}

/// Loss totals returned to the host (sums over counted rows; divide by `count` for the mean).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LossStats {
    /// Sum of per-row losses (natural log for cross-entropy; squared error for MSE).
    pub sum: f64,
    /// Rows whose arg-max matched the target (cross-entropy only).
    pub correct: usize,
    /// Rows counted (targets below zero are ignored by cross-entropy).
    pub count: usize,
}

/// An optimizer update rule. Updates follow PyTorch's formulas (see [`crate::optim`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum OptimRule {
    /// `buf = mu * buf + g; p -= lr * (nesterov ? g + mu * buf : buf)` (plain SGD when `mu = 0`).
    Sgd { momentum: f64, nesterov: bool },
    /// `v = rho * v + (1 - rho) g^2; p -= lr * g / (sqrt(v) + eps)`.
    RmsProp { rho: f64, eps: f64 },
    /// Adam with bias correction.
    Adam { beta1: f64, beta2: f64, eps: f64 },
}

/// One optimizer update of one parameter buffer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OptimStep {
    /// The rule.
    pub rule: OptimRule,
    /// Learning rate for this parameter (its group's rate).
    pub lr: f64,
    /// Coupled L2 weight decay: `g += wd * p` before the rule.
    pub weight_decay: f64,
    /// 1-based step count (Adam's bias correction).
    pub t: u64,
}

/// A slot of the per-iteration readback: totals that kernels accumulate on the device during an
/// iteration and the host reads once, at its end ([`Backend::tally_read`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tally {
    /// The loss totals of the scored rows: `[sum, correct, count, invalid targets]`.
    Loss = 0,
    /// The loss totals of the rows accuracy is reported on (the last steps of the copy task).
    LossTail = 1,
    /// The optimizer step: `[sum of squared gradients, clipped (0/1), 0, 0]`.
    GradNorm = 2,
}

/// Values of every [`Tally`] slot, indexed by `Tally as usize`.
pub type TallyValues = [[f64; 4]; 3];

/// One tensor of a multi-tensor optimizer step ([`Backend::clip_and_step`]).
pub struct StepTensor<'a, B: Backend> {
    /// The parameter (updated in place when `step` is set).
    pub param: SliceMut<'a, B>,
    /// Its gradient (rescaled in place when the global norm is clipped).
    pub grad: SliceMut<'a, B>,
    /// Optimizer state (momentum / first moment, second moment), as long as the parameter.
    pub s1: SliceMut<'a, B>,
    pub s2: SliceMut<'a, B>,
    /// The update; `None` only clips the gradient (a geodesic parameter, stepped afterwards).
    pub step: Option<OptimStep>,
}

/// Unary element-wise maps with a backward.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MapOp {
    /// Spectral margin `y = 2m (sigmoid(x) - 0.5) + 1`, so `y` lies in `[1 - m, 1 + m]`.
    Margin { m: f64 },
}

/// Dimensions of a recurrent sequence op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeqDims {
    /// Time steps.
    pub t: usize,
    /// Batch rows.
    pub batch: usize,
    /// Hidden width.
    pub n: usize,
}

/// The device contract. See the module docs for layouts.
pub trait Backend: Clone + Send + Sync + 'static {
    /// Element type of every buffer.
    type Elem: Scalar;
    /// An owned buffer on the device.
    type Buf: DeviceBuf;
    /// An LU factorization with partial pivoting of an `n x n` matrix.
    type Lu: Send;

    /// Human-readable device name (`"cpu"`, `"cuda:0 (H100)"`, `"emu"`).
    fn name(&self) -> String;
    /// The arithmetic of the products marked [`Gemm::allow_reduced`] (f32 unless the backend was built
    /// with a reduced precision).
    fn gemm_precision(&self) -> Precision {
        Precision::Fp32
    }
    /// Waits for queued work (a no-op on the CPU).
    fn synchronize(&self) -> Result<()> {
        Ok(())
    }
    /// Device activity counters (see [`profile`]); `None` where nothing is counted (the CPU).
    fn profile(&self) -> Option<profile::Profile> {
        None
    }
    /// Notes on the implementation choices of the last ops (e.g. which recurrence path ran), for
    /// `bench` output; empty where there is nothing to say.
    fn path_notes(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    // ---- memory ----
    /// A zero-filled buffer.
    fn zeros(&self, len: usize) -> Result<Self::Buf>;
    /// Copies host data into a new buffer.
    fn upload(&self, host: &[Self::Elem]) -> Result<Self::Buf>;
    /// Copies a view to the host.
    fn download(&self, src: Slice<Self>) -> Result<Vec<Self::Elem>>;
    /// Overwrites a view with host data of the same length.
    fn write(&self, dst: SliceMut<Self>, host: &[Self::Elem]) -> Result<()>;
    /// Copies between views of the same length.
    fn copy(&self, src: Slice<Self>, dst: SliceMut<Self>) -> Result<()>;

    // ---- GEMM ----
    /// `C = alpha op(A) op(B) + beta C`, then the epilogue (see [`Gemm`], [`Epilogue`]).
    ///
    /// ```
    /// use ortho_rnn::backend::{Backend, Epilogue, Gemm, Slice, SliceMut, cpu::Cpu};
    /// let b = Cpu::<f32>::new(1);
    /// let (x, y) = (b.upload(&[1.0, 2.0, 3.0, 4.0])?, b.upload(&[0.0, 1.0, 1.0, 0.0])?);
    /// let mut c = b.zeros(4)?;
    /// // C = X Y^T (2 x 2 row-major): Y swaps the columns of X.
    /// b.gemm(&Gemm::new(2, 2, 2).tb(), Slice::all(&x), Slice::all(&y), SliceMut::all(&mut c), Epilogue::none())?;
    /// assert_eq!(b.download(Slice::all(&c))?, [2.0, 1.0, 4.0, 3.0]);
    /// # Ok::<(), ortho_rnn::Error>(())
    /// ```
    fn gemm(
        &self,
        g: &Gemm<Self::Elem>,
        a: Slice<Self>,
        b: Slice<Self>,
        c: SliceMut<Self>,
        epi: Epilogue<Self>,
    ) -> Result<()>;

    // ---- element-wise ----
    /// Sets every element to `v`.
    fn fill(&self, x: SliceMut<Self>, v: Self::Elem) -> Result<()>;
    /// `x *= s`.
    fn scale(&self, x: SliceMut<Self>, s: Self::Elem) -> Result<()>;
    /// `y = alpha x + beta y`.
    fn axpby(&self, alpha: Self::Elem, x: Slice<Self>, beta: Self::Elem, y: SliceMut<Self>) -> Result<()>;
    /// `X += v I` for an `n x n` matrix.
    fn add_diag(&self, x: SliceMut<Self>, n: usize, v: Self::Elem) -> Result<()>;
    /// `out = sum_i c_i X_i + d I` over `n x n` matrices, in one pass: the Pade polynomials of the
    /// matrix exponential (`terms` may be empty: `out = d I`).
    fn lincomb(&self, n: usize, terms: &[(Self::Elem, Slice<Self>)], d: Self::Elem, out: SliceMut<Self>) -> Result<()>;
    /// `out = alpha (X - X^T)` for an `n x n` matrix (`out` must not alias `X`).
    fn skew(&self, x: Slice<Self>, n: usize, alpha: Self::Elem, out: SliceMut<Self>) -> Result<()>;
    /// `out = X^T` for `X` of shape `[rows, cols]`.
    fn transpose(&self, x: Slice<Self>, rows: usize, cols: usize, out: SliceMut<Self>) -> Result<()>;
    /// `out[i, j] = x[i, j] * s[j]` for `X` of shape `[rows, cols]`.
    fn scale_cols(&self, x: Slice<Self>, s: Slice<Self>, rows: usize, cols: usize, out: SliceMut<Self>) -> Result<()>;
    /// `y = f(x)` for a [`MapOp`].
    fn map(&self, op: MapOp, x: Slice<Self>, y: SliceMut<Self>) -> Result<()>;
    /// `dx = f'(x) * dy` for a [`MapOp`].
    fn map_bwd(&self, op: MapOp, x: Slice<Self>, dy: Slice<Self>, dx: SliceMut<Self>) -> Result<()>;

    // ---- activations (rows of width `cols`) ----
    /// `h = phi(a)`.
    fn act_fwd(&self, act: Act<Self>, a: Slice<Self>, h: SliceMut<Self>, cols: usize) -> Result<()>;
    /// `da = J_phi(a)^T dh`; the parameter gradient (PReLU slope, modReLU bias) is **added** to
    /// `dparam`. `h = phi(a)` is passed because some backends use it.
    #[allow(clippy::too_many_arguments)]
    fn act_bwd(
        &self,
        act: Act<Self>,
        a: Slice<Self>,
        h: Slice<Self>,
        dh: Slice<Self>,
        da: SliceMut<Self>,
        dparam: Option<SliceMut<Self>>,
        cols: usize,
    ) -> Result<()>;

    // ---- LSTM cell (pointwise part) ----
    /// The LSTM cell with peepholes after its matrix products. `z` is `[B, 4n]`, gate blocks in the
    /// order `(i, f, g, o)`, holding `W_x x_t + W_h h_{t-1} + b`; `peep` is `[3n]` = `(w_ci, w_cf, w_co)`.
    /// `i = sigmoid(z_i + w_ci c_prev)`, `f = sigmoid(z_f + w_cf c_prev)`, `g = tanh(z_g)`,
    /// `c = f c_prev + i g`, `o = sigmoid(z_o + w_co c)`, `h = o tanh(c)`. `c` is `[2, B, n]`: `c_prev`
    /// is read from its first half and `c_t` written to its second (consecutive steps of a sequence
    /// buffer). Writes the activated gates `(i, f, g, o)` to `gates` (`[B, 4n]`) and `h` (`[B, n]`).
    fn lstm_fwd(
        &self,
        z: Slice<Self>,
        peep: Slice<Self>,
        c: SliceMut<Self>,
        gates: SliceMut<Self>,
        h: SliceMut<Self>,
        n: usize,
    ) -> Result<()>;
    /// Backward of [`Backend::lstm_fwd`]. `dh` is `dL/dh_t`; `dc` holds `dL/dc_t` from later steps on
    /// entry and `dL/dc_{t-1}` on exit; writes `dz` (`[B, 4n]`) and adds the peephole gradients to
    /// `dpeep`.
    #[allow(clippy::too_many_arguments)]
    fn lstm_bwd(
        &self,
        gates: Slice<Self>,
        c_prev: Slice<Self>,
        c: Slice<Self>,
        peep: Slice<Self>,
        dh: Slice<Self>,
        dc: SliceMut<Self>,
        dz: SliceMut<Self>,
        dpeep: SliceMut<Self>,
        n: usize,
    ) -> Result<()>;

    // ---- losses ----
    /// Softmax cross-entropy over rows of `logits` (`[rows, classes]`). `targets[r]` is the class
    /// index as a float; a negative target ignores the row. Writes `grad = scale (softmax - onehot)`
    /// for counted rows and zero for ignored ones.
    fn softmax_xent(
        &self,
        logits: Slice<Self>,
        targets: Slice<Self>,
        grad: SliceMut<Self>,
        classes: usize,
        scale: Self::Elem,
    ) -> Result<LossStats>;
    /// Squared error `sum (pred - target)^2`; writes `grad = 2 scale (pred - target)`.
    fn mse(&self, pred: Slice<Self>, target: Slice<Self>, grad: SliceMut<Self>, scale: Self::Elem)
    -> Result<LossStats>;

    // ---- reductions ----
    /// `sum x_i^2`, accumulated in f64 on the host side of the result.
    fn sum_sq(&self, x: Slice<Self>) -> Result<f64>;
    /// `max |x_i|`.
    fn max_abs(&self, x: Slice<Self>) -> Result<f64>;
    /// Matrix 1-norm (largest absolute column sum) of an `n x n` matrix.
    fn norm1(&self, x: Slice<Self>, n: usize) -> Result<f64>;
    /// `out = beta out + sum over rows of X` (`X` is `[rows, cols]`): bias gradients.
    fn col_sum(&self, x: Slice<Self>, rows: usize, cols: usize, beta: Self::Elem, out: SliceMut<Self>) -> Result<()>;
    /// `out_j = sum_i a_ij b_ij` for `[rows, cols]` matrices: the diagonal of `A^T B`.
    fn col_dot(&self, a: Slice<Self>, b: Slice<Self>, rows: usize, cols: usize, out: SliceMut<Self>) -> Result<()>;

    // ---- linear algebra ----
    /// A factorization workspace for `n x n` matrices (allocated once; refilled by
    /// [`Backend::lu_factor_into`] without allocating). It holds no factorization yet: solving with
    /// it gives NaN and [`Backend::lu_status`] says so.
    fn lu_new(&self, n: usize) -> Result<Self::Lu>;
    /// Factors `a` (`n x n`, the order `lu` was made for) into `lu` with partial pivoting, without
    /// allocating and without waiting for a device. A zero or non-finite pivot is **not** reported
    /// here (a device would have to stop and read it back): [`Backend::lu_status`] reports it, and
    /// every solve with such a factorization fills its right-hand sides with NaN, so the NaN reaches
    /// the loss and the drift checks that already stop a run.
    fn lu_factor_into(&self, a: Slice<Self>, lu: &mut Self::Lu) -> Result<()>;
    /// [`Backend::lu_new`] then [`Backend::lu_factor_into`] (allocates; keep a workspace in a loop).
    fn lu_factor(&self, a: Slice<Self>, n: usize) -> Result<Self::Lu> {
        let mut lu = self.lu_new(n)?;
        self.lu_factor_into(a, &mut lu)?;
        Ok(lu)
    }
    /// [`Error::Singular`](crate::Error) naming the first column whose pivot was zero or not finite
    /// in the last factorization into `lu` (an error too if `lu` holds none); `Ok` otherwise. On a
    /// device this waits for the factorization: call it where the host synchronizes anyway.
    fn lu_status(&self, lu: &Self::Lu) -> Result<()>;
    /// Solves `A X = B` (or `A^T X = B`) in place; `B` is `[n, nrhs]`. With a singular factorization
    /// (see [`Backend::lu_status`]) every entry of `B` becomes NaN.
    fn lu_solve(&self, lu: &Self::Lu, b: SliceMut<Self>, nrhs: usize, transpose: bool) -> Result<()>;

    // ---- optimizers ----
    /// One update of `param` from `grad` with optimizer state `s1`, `s2` (same length as `param`).
    fn optim_step(
        &self,
        step: &OptimStep,
        param: SliceMut<Self>,
        grad: Slice<Self>,
        s1: SliceMut<Self>,
        s2: SliceMut<Self>,
    ) -> Result<()>;

    // ---- the per-iteration readback ----
    /// Zeroes one [`Tally`] slot (queued: it is ordered with the work around it).
    fn tally_reset(&self, _slot: Tally) -> Result<()> {
        Err(Error::Device(format!("{}: this backend keeps no tallies", self.name())))
    }
    /// Adds host values to a slot (backends that compute on the host keep their tallies there).
    fn tally_add(&self, _slot: Tally, _v: [f64; 4]) -> Result<()> {
        Err(Error::Device(format!("{}: this backend keeps no tallies", self.name())))
    }
    /// Reads every slot: one host synchronization on a device.
    fn tally_read(&self) -> Result<TallyValues> {
        Err(Error::Device(format!("{}: this backend keeps no tallies", self.name())))
    }
    /// [`Backend::softmax_xent`] with its totals added to `slot` instead of returned. On a device the
    /// check of the targets is reported by the [`Backend::tally_read`] that reads the slot (as
    /// [`Tally::Loss`]'s fourth value, the count of invalid targets).
    fn softmax_xent_tally(
        &self,
        logits: Slice<Self>,
        targets: Slice<Self>,
        grad: SliceMut<Self>,
        classes: usize,
        scale: Self::Elem,
        slot: Tally,
    ) -> Result<()> {
        let st = self.softmax_xent(logits, targets, grad, classes, scale)?;
        self.tally_add(slot, [st.sum, st.correct as f64, st.count as f64, 0.0])
    }
    /// [`Backend::mse`] with its totals added to `slot`.
    fn mse_tally(
        &self,
        pred: Slice<Self>,
        target: Slice<Self>,
        grad: SliceMut<Self>,
        scale: Self::Elem,
        slot: Tally,
    ) -> Result<()> {
        let st = self.mse(pred, target, grad, scale)?;
        self.tally_add(slot, [st.sum, st.correct as f64, st.count as f64, 0.0])
    }

    // ---- multi-tensor optimizer step ----
    /// Global-norm clipping and one optimizer update over `tensors`: `q = sum_i ||g_i||^2`; when `q` is
    /// not finite nothing is updated (geodesic gradients are zeroed, so their steps do nothing);
    /// otherwise, with `clip = c` and `sqrt(q) > c`, every gradient is scaled by `c / sqrt(q)` (as an
    /// element), then each tensor with a `step` is updated by [`Backend::optim_step`]. `q` and whether
    /// the gradients were clipped are added to [`Tally::GradNorm`] (reset it first). The default is
    /// exactly the host sequence of `sum_sq`, `scale` and `optim_step` calls; a device does it all in
    /// two launches with no host round trip, keeping Adam's step counter and the learning rates in
    /// device memory.
    fn clip_and_step(&self, tensors: &mut [StepTensor<'_, Self>], clip: Option<f64>) -> Result<()> {
        clip_and_step_composed(self, tensors, clip)
    }

    // ---- graphs ----
    /// Records the device work `f` queues into a graph instead of running it, or returns `Ok(None)`
    /// without calling `f` where graphs do not exist (the CPU). `f` must not synchronize with the host
    /// or allocate; anything the host changes between replays must live in device memory.
    fn capture(&self, _f: &mut dyn FnMut() -> Result<()>) -> Result<Option<u64>> {
        Ok(None)
    }
    /// Runs a graph made by [`Backend::capture`].
    fn replay(&self, _graph: u64) -> Result<()> {
        Err(Error::Device(format!("{}: no graphs on this backend", self.name())))
    }
    /// Frees a graph made by [`Backend::capture`].
    fn drop_graph(&self, _graph: u64) {}

    // ---- sequence ops ----
    /// The forward recurrence over `T` steps.
    ///
    /// - `w`: `[n, n]`, the transition matrix.
    /// - `pre`: `[T, B, n]`; holds `X_t V^T + b` on entry and the pre-activations `a_t` on exit.
    /// - `h`: `[T + 1, B, n]`; `h[0]` is the initial state on entry, `h[t + 1] = phi(a_t)` on exit.
    fn recurrent_forward(
        &self,
        w: Slice<Self>,
        act: Act<Self>,
        mut pre: SliceMut<Self>,
        mut h: SliceMut<Self>,
        d: SeqDims,
    ) -> Result<()> {
        let bn = d.batch * d.n;
        pre.check("recurrent_forward(pre)", d.t * bn)?;
        h.check("recurrent_forward(h)", (d.t + 1) * bn)?;
        let g = Gemm::new(d.batch, d.n, d.n).tb().beta(Self::Elem::ONE).reduced_ok();
        for t in 0..d.t {
            self.gemm(&g, h.as_ref().sub(t * bn, bn), w, pre.rb().sub(t * bn, bn), Epilogue::none())?;
            self.act_fwd(act, pre.as_ref().sub(t * bn, bn), h.rb().sub((t + 1) * bn, bn), d.n)?;
        }
        Ok(())
    }

    /// Back-propagation through the recurrence.
    ///
    /// - `pre`, `h`: as left by [`Backend::recurrent_forward`].
    /// - `dh`: `[T, B, n]`, `dL/dh_{t+1}` from the outputs; **used as workspace** (overwritten).
    /// - `delta`: `[T, B, n]`, receives `dL/da_t`.
    /// - `dparam`: the activation's parameter gradient, accumulated.
    #[allow(clippy::too_many_arguments)]
    fn recurrent_backward(
        &self,
        w: Slice<Self>,
        act: Act<Self>,
        pre: Slice<Self>,
        h: Slice<Self>,
        mut dh: SliceMut<Self>,
        mut delta: SliceMut<Self>,
        mut dparam: Option<SliceMut<Self>>,
        d: SeqDims,
    ) -> Result<()> {
        let bn = d.batch * d.n;
        pre.check("recurrent_backward(pre)", d.t * bn)?;
        h.check("recurrent_backward(h)", (d.t + 1) * bn)?;
        dh.check("recurrent_backward(dh)", d.t * bn)?;
        delta.check("recurrent_backward(delta)", d.t * bn)?;
        let g = Gemm::new(d.batch, d.n, d.n).beta(Self::Elem::ONE).reduced_ok();
        for t in (0..d.t).rev() {
            if t + 1 < d.t {
                // dh_t += delta_{t+1} W
                self.gemm(&g, delta.as_ref().sub((t + 1) * bn, bn), w, dh.rb().sub(t * bn, bn), Epilogue::none())?;
            }
            self.act_bwd(
                act,
                pre.sub(t * bn, bn),
                h.sub((t + 1) * bn, bn),
                dh.as_ref().sub(t * bn, bn),
                delta.rb().sub(t * bn, bn),
                dparam.as_mut().map(|p| p.rb()),
                d.n,
            )?;
        }
        Ok(())
    }
}

/// [`Backend::clip_and_step`] composed from `sum_sq`, `fill`, `scale`, `optim_step` and `tally_add`.
pub fn clip_and_step_composed<B: Backend>(b: &B, tensors: &mut [StepTensor<'_, B>], clip: Option<f64>) -> Result<()> {
    let mut sq = 0.0;
    for t in tensors.iter() {
        sq += b.sum_sq(t.grad.as_ref())?;
    }
    let norm = sq.sqrt();
    if !norm.is_finite() {
        for t in tensors.iter_mut().filter(|t| t.step.is_none()) {
            b.fill(t.grad.rb(), B::Elem::ZERO)?;
        }
        return b.tally_add(Tally::GradNorm, [sq, 0.0, 0.0, 0.0]);
    }
    let mut clipped = false;
    if let Some(c) = clip.filter(|&c| norm > c) {
        let s = B::Elem::of(c / norm);
        for t in tensors.iter_mut() {
            b.scale(t.grad.rb(), s)?;
        }
        clipped = true;
    }
    for t in tensors.iter_mut() {
        if let Some(st) = &t.step {
            b.optim_step(st, t.param.rb(), t.grad.as_ref(), t.s1.rb(), t.s2.rb())?;
        }
    }
    b.tally_add(Tally::GradNorm, [sq, clipped as u8 as f64, 0.0, 0.0])
}

/// Checks an activation against a view of `len` elements in rows of width `cols`.
pub(crate) fn check_act<B: Backend>(act: &Act<B>, len: usize, cols: usize) -> Result<()> {
    if cols == 0 || !len.is_multiple_of(cols) {
        return Err(Error::shape("activation", format!("a multiple of the width {cols}"), len));
    }
    if act.kind == Activation::Oplu && !cols.is_multiple_of(2) {
        return Err(Error::invalid(
            "activation",
            "oplu",
            format!("OPLU pairs units, so the width must be even (got {cols})"),
        ));
    }
    let need = act.kind.param_len(cols);
    match &act.param {
        Some(p) => p.check("activation parameter", need),
        None if need == 0 => Ok(()),
        None => Err(Error::shape("activation parameter", need, "none")),
    }
}

/// Checks the lengths of an LSTM cell op's operands: `[B, 4n]` gate buffers, `[B, n]` state
/// buffers, `[3n]` peepholes; returns `B`.
fn check_lstm(op: &'static str, four: &[usize], one: &[usize], peep: usize, n: usize) -> Result<usize> {
    let rows = one.first().copied().unwrap_or(0) / n.max(1);
    if n == 0 || rows == 0 {
        return Err(Error::shape(op, "a non-empty batch of width n > 0", format!("n = {n}")));
    }
    for &l in one {
        if l != rows * n {
            return Err(Error::shape(op, rows * n, l));
        }
    }
    for &l in four {
        if l != 4 * rows * n {
            return Err(Error::shape(op, 4 * rows * n, l));
        }
    }
    if peep != 3 * n {
        return Err(Error::shape(op, 3 * n, peep));
    }
    Ok(rows)
}

/// Checks the operands of [`Backend::recurrent_forward`] (shapes, every view inside its buffer, the
/// activation's parameter).
pub(crate) fn check_recurrent_fwd<B: Backend>(
    w: &Slice<B>,
    act: &Act<B>,
    pre: &SliceMut<B>,
    h: &SliceMut<B>,
    d: SeqDims,
) -> Result<()> {
    let bn = d.batch * d.n;
    w.check("recurrent_forward(w)", d.n * d.n)?;
    pre.check("recurrent_forward(pre)", d.t * bn)?;
    h.check("recurrent_forward(h)", (d.t + 1) * bn)?;
    check_act(act, bn, d.n)
}

/// Checks the operands of [`Backend::recurrent_backward`] (as [`check_recurrent_fwd`], plus `dh`,
/// `delta` and the parameter gradient).
#[allow(clippy::too_many_arguments)]
pub(crate) fn check_recurrent_bwd<B: Backend>(
    w: &Slice<B>,
    act: &Act<B>,
    pre: &Slice<B>,
    h: &Slice<B>,
    dh: &SliceMut<B>,
    delta: &SliceMut<B>,
    dparam: Option<&SliceMut<B>>,
    d: SeqDims,
) -> Result<()> {
    let bn = d.batch * d.n;
    w.check("recurrent_backward(w)", d.n * d.n)?;
    pre.check("recurrent_backward(pre)", d.t * bn)?;
    h.check("recurrent_backward(h)", (d.t + 1) * bn)?;
    dh.check("recurrent_backward(dh)", d.t * bn)?;
    delta.check("recurrent_backward(delta)", d.t * bn)?;
    check_act(act, bn, d.n)?;
    if let Some(p) = dparam {
        p.check("recurrent_backward(dparam)", act.kind.param_len(d.n))?;
    }
    Ok(())
}

/// Checks the operands of [`Backend::lstm_fwd`] (shapes, and every view inside its buffer);
/// returns the batch rows.
pub(crate) fn check_lstm_fwd<B: Backend>(
    z: &Slice<B>,
    peep: &Slice<B>,
    c: &SliceMut<B>,
    gates: &SliceMut<B>,
    h: &SliceMut<B>,
    n: usize,
) -> Result<usize> {
    let rows = check_lstm("lstm_fwd", &[z.len, gates.len], &[c.len / 2, h.len], peep.len, n)?;
    check_lstm("lstm_fwd", &[], &[c.len - c.len / 2, h.len], peep.len, n)?;
    for v in [z, peep] {
        v.check("lstm_fwd", v.len)?;
    }
    for v in [c, gates, h] {
        v.check("lstm_fwd", v.len)?;
    }
    Ok(rows)
}

/// Checks the operands of [`Backend::lstm_bwd`] (shapes, and every view inside its buffer);
/// returns the batch rows.
#[allow(clippy::too_many_arguments)]
pub(crate) fn check_lstm_bwd<B: Backend>(
    gates: &Slice<B>,
    c_prev: &Slice<B>,
    c: &Slice<B>,
    peep: &Slice<B>,
    dh: &Slice<B>,
    dc: &SliceMut<B>,
    dz: &SliceMut<B>,
    dpeep: &SliceMut<B>,
    n: usize,
) -> Result<usize> {
    let rows = check_lstm("lstm_bwd", &[gates.len, dz.len], &[c_prev.len, c.len, dh.len, dc.len], peep.len, n)?;
    for v in [gates, c_prev, c, peep, dh] {
        v.check("lstm_bwd", v.len)?;
    }
    dc.check("lstm_bwd(dc)", dc.len)?;
    dz.check("lstm_bwd(dz)", dz.len)?;
    dpeep.check("lstm_bwd(dpeep)", 3 * n)?;
    Ok(rows)
}

/// Checks the operands of [`Backend::lincomb`]: every term and `out` are `n x n`.
pub(crate) fn check_lincomb<B: Backend>(n: usize, terms: &[(B::Elem, Slice<B>)], out: &SliceMut<B>) -> Result<()> {
    out.check("lincomb(out)", n * n)?;
    for (_, x) in terms {
        x.check("lincomb(X_i)", n * n)?;
    }
    Ok(())
}
