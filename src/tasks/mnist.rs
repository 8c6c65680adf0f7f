//! Pixel-by-pixel MNIST (and Fashion-MNIST): sequential, permuted and row-wise.
//!
//! Data: the four standard IDX files (see [`super::idx`] for the format), raw or gzip-compressed,
//! in one directory: [`TRAIN_IMAGES`], [`TRAIN_LABELS`], [`TEST_IMAGES`], [`TEST_LABELS`], each
//! optionally with a `.gz` suffix (the Kaggle spelling `train-images.idx3-ubyte` is accepted too).
//! Fashion-MNIST ships the same file names and format and loads the same way.
//!
//! Each image is a sequence over its 784 pixels, scaled from `0..=255` to `[0, 1]`:
//! - [`MnistVariant::Sequential`]: 784 steps of one pixel, in row-major order;
//! - [`MnistVariant::Permuted`]: 784 steps of one pixel, step `s` reading pixel `perm[s]` of one fixed
//!   permutation drawn from [`MnistConfig::permutation_seed`] (default [`DEFAULT_PERMUTATION_SEED`]),
//!   independent of the training seed;
//! - [`MnistVariant::RowWise`]: 28 steps of one 28-pixel row.
//!
//! The class (0..=9) is scored by softmax cross-entropy at the last step. Batches are time-major:
//! `x[(step * batch + row) * input_dim + k]`, targets `y[row]`.
//!
//! Split: of the `n` images in the training file, the first `n * 4 / 5` train and the last
//! `n - n * 4 / 5` validate (48000 / 12000 for the 60000 MNIST images, as in the papers); the split
//! does not depend on any seed. [`MnistConfig::use_test_for_eval`] evaluates on the t10k file instead,
//! training on the same 48000. [`MnistConfig::max_train`] keeps only the first `max_train` training
//! images, for quick experiments.
//!
//! Training batches sample without replacement within an epoch: training example number
//! `k = iter * batch + j` is position `k mod n` of epoch `k / n`'s shuffle, seeded by
//! `(seed, epoch)`, so batch `iter` is a pure function of `(seed, iter, batch)` and a resumed run
//! sees exactly the data it would have seen.
//!
//! Baseline: uniform guessing, loss `ln 10` and accuracy 0.1.

use super::idx::{self, IdxImages};
use super::{Baseline, Batch, LossKind, Task, batch_rng};
use crate::error::{Error, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};

/// Image height.
pub const ROWS: usize = 28;
/// Image width.
pub const COLS: usize = 28;
/// Pixels per image.
pub const PIXELS: usize = ROWS * COLS;
/// Digit classes.
pub const CLASSES: usize = 10;
/// Training images file (optionally `.gz`).
pub const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
/// Training labels file (optionally `.gz`).
pub const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
/// Test images file (optionally `.gz`).
pub const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
/// Test labels file (optionally `.gz`).
pub const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";
/// Seed of the fixed pixel permutation of permuted MNIST, unless the config says otherwise.
pub const DEFAULT_PERMUTATION_SEED: u64 = 5_489;
/// Where to get the files, for error messages.
pub const DOWNLOAD_HINT: &str = "download MNIST from https://ossci-datasets.s3.amazonaws.com/mnist/ \
     (mirror of http://yann.lecun.com/exdb/mnist/) or Fashion-MNIST from \
     https://github.com/zalandoresearch/fashion-mnist (Debian: apt install dataset-fashion-mnist, \
     files in /usr/share/datasets/fashion-mnist)";

/// `batch_rng` stream of the per-epoch training shuffles.
const EPOCH_STREAM: u64 = 0x0065_706f_6368; // "epoch"

/// How an image becomes a sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MnistVariant {
    /// 784 steps of one pixel, row-major.
    Sequential,
    /// 784 steps of one pixel, in a fixed seeded permutation.
    Permuted,
    /// 28 steps of one row of 28 pixels.
    RowWise,
}

impl MnistVariant {
    /// Task name: `mnist`, `pmnist` or `mnist-rows`.
    pub fn name(self) -> &'static str {
        match self {
            MnistVariant::Sequential => "mnist",
            MnistVariant::Permuted => "pmnist",
            MnistVariant::RowWise => "mnist-rows",
        }
    }
    /// Steps per sequence.
    pub fn steps(self) -> usize {
        match self {
            MnistVariant::RowWise => ROWS,
            _ => PIXELS,
        }
    }
    /// Inputs per step.
    pub fn input_dim(self) -> usize {
        match self {
            MnistVariant::RowWise => COLS,
            _ => 1,
        }
    }
}

/// Everything [`MnistTask::new`] needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MnistConfig {
    /// Directory holding the IDX files.
    pub dir: PathBuf,
    /// Sequential, permuted or row-wise.
    pub variant: MnistVariant,
    /// Seed of the training-batch shuffles.
    pub seed: u64,
    /// Seed of the pixel permutation (used by [`MnistVariant::Permuted`] only).
    pub permutation_seed: u64,
    /// Keep only the first `max_train` training images (`None`: all of the 4/5 training part).
    pub max_train: Option<usize>,
    /// Evaluate on the t10k test files instead of the validation split.
    pub use_test_for_eval: bool,
}

impl MnistConfig {
    /// Defaults: seed 0, [`DEFAULT_PERMUTATION_SEED`], the full training split, validation eval.
    pub fn new(dir: impl Into<PathBuf>, variant: MnistVariant) -> Self {
        MnistConfig {
            dir: dir.into(),
            variant,
            seed: 0,
            permutation_seed: DEFAULT_PERMUTATION_SEED,
            max_train: None,
            use_test_for_eval: false,
        }
    }
}

/// Images as `[n, 784]` bytes and their labels.
#[derive(Clone, Debug)]
struct Split {
    pixels: Vec<u8>,
    labels: Vec<u8>,
}

impl Split {
    fn len(&self) -> usize {
        self.labels.len()
    }
}

/// Sequential, permuted or row-wise MNIST classification over IDX files.
#[derive(Clone, Debug)]
pub struct MnistTask {
    variant: MnistVariant,
    seed: u64,
    /// Step `s` of a one-pixel variant reads pixel `order[s]` (identity unless permuted).
    order: Vec<usize>,
    train: Split,
    eval: Split,
    eval_is_test: bool,
}

impl MnistTask {
    /// Loads the files in `cfg.dir` (the t10k files only when `cfg.use_test_for_eval`).
    pub fn new(cfg: &MnistConfig) -> Result<Self> {
        if cfg.max_train == Some(0) {
            return Err(Error::invalid("--max-train", 0, "must be at least 1"));
        }
        super::data_dir::check(&cfg.dir, &format!("{TRAIN_IMAGES}[.gz] and {TRAIN_LABELS}[.gz]"), DOWNLOAD_HINT)?;
        let train_images = find_file(&cfg.dir, TRAIN_IMAGES)?;
        let train_labels = find_file(&cfg.dir, TRAIN_LABELS)?;
        let mut all = load_split(&train_images, &train_labels)?;
        let n = all.len();
        let n_train = train_split_size(n);
        let val = Split { pixels: all.pixels.split_off(n_train * PIXELS), labels: all.labels.split_off(n_train) };
        let mut train = all;
        if n_train == 0 {
            return Err(Error::bad_file(
                &train_images,
                format!(
                    "has {n} image(s); splitting into training (first 4/5) and validation (last 1/5) \
                     needs at least 2"
                ),
            ));
        }
        if let Some(m) = cfg.max_train.filter(|&m| m < n_train) {
            train.pixels.truncate(m * PIXELS);
            train.labels.truncate(m);
        }
        let eval = if cfg.use_test_for_eval {
            let test_images = find_file(&cfg.dir, TEST_IMAGES)?;
            let test = load_split(&test_images, &find_file(&cfg.dir, TEST_LABELS)?)?;
            if test.len() == 0 {
                return Err(Error::bad_file(&test_images, "has no images to evaluate on"));
            }
            test
        } else {
            val // Not empty: n >= 2 gives n - n * 4 / 5 >= 1.
        };
        let order = match cfg.variant {
            MnistVariant::Permuted => permutation(cfg.permutation_seed, PIXELS),
            _ => (0..PIXELS).collect(),
        };
        Ok(MnistTask { variant: cfg.variant, seed: cfg.seed, order, train, eval, eval_is_test: cfg.use_test_for_eval })
    }

    /// The variant.
    pub fn variant(&self) -> MnistVariant {
        self.variant
    }
    /// Pixel read at each step of the one-pixel variants (`order[s]` at step `s`).
    pub fn pixel_order(&self) -> &[usize] {
        &self.order
    }
    /// Number of evaluation images.
    pub fn eval_size(&self) -> usize {
        self.eval.len()
    }
    /// True when evaluation uses the t10k test files rather than the validation split.
    pub fn eval_is_test(&self) -> bool {
        self.eval_is_test
    }

    fn build(&self, split: &Split, idx: &[usize]) -> Batch {
        let batch = idx.len();
        let (t, dim) = (self.variant.steps(), self.variant.input_dim());
        let mut x = vec![0.0f32; t * batch * dim];
        let mut y = Vec::with_capacity(batch);
        for (row, &i) in idx.iter().enumerate() {
            let image = &split.pixels[i * PIXELS..(i + 1) * PIXELS];
            match self.variant {
                MnistVariant::RowWise => {
                    for (step, pixels) in image.chunks_exact(COLS).enumerate() {
                        let out = &mut x[(step * batch + row) * COLS..][..COLS];
                        for (o, &p) in out.iter_mut().zip(pixels) {
                            *o = f32::from(p) / 255.0;
                        }
                    }
                }
                _ => {
                    for (step, &pixel) in self.order.iter().enumerate() {
                        x[step * batch + row] = f32::from(image[pixel]) / 255.0;
                    }
                }
            }
            y.push(f32::from(split.labels[i]));
        }
        Batch { t, batch, input_dim: dim, x, y }
    }
}

impl Task for MnistTask {
    fn name(&self) -> String {
        self.variant.name().into()
    }
    fn input_dim(&self) -> usize {
        self.variant.input_dim()
    }
    fn loss(&self) -> LossKind {
        LossKind::XentLastStep { classes: CLASSES }
    }
    fn seq_len(&self) -> usize {
        self.variant.steps()
    }
    fn train_batch(&self, iter: usize, batch: usize) -> Result<Batch> {
        let idx = epoch_sample(self.seed, iter, batch, self.train.len())?;
        Ok(self.build(&self.train, &idx))
    }
    fn eval_batches(&self, batch: usize) -> usize {
        self.eval.len().div_ceil(batch.max(1))
    }
    fn eval_batch(&self, i: usize, batch: usize) -> Result<Batch> {
        let range = eval_range(i, batch, self.eval.len())?;
        Ok(self.build(&self.eval, &range.collect::<Vec<_>>()))
    }
    fn baseline(&self) -> Baseline {
        Baseline {
            loss: (CLASSES as f64).ln(),
            accuracy: Some(1.0 / CLASSES as f64),
            what: "uniform guessing over the 10 classes",
        }
    }
    fn train_size(&self) -> Option<usize> {
        Some(self.train.len())
    }
}

/// Training images out of the `n` in the training file: the first `n * 4 / 5` (48000 of 60000);
/// the remaining `n - n * 4 / 5` are the validation split.
pub fn train_split_size(n: usize) -> usize {
    (n as u128 * 4 / 5) as usize
}

/// Finds `stem`, `stem.gz`, or the Kaggle spelling (`train-images.idx3-ubyte`) with or without `.gz`.
pub fn find_file(dir: &Path, stem: &str) -> Result<PathBuf> {
    let dotted = stem.replacen("-idx", ".idx", 1);
    let names = [stem.to_string(), format!("{stem}.gz"), dotted.clone(), format!("{dotted}.gz")];
    if let Some(found) = names.iter().map(|n| dir.join(n)).find(|p| p.is_file()) {
        return Ok(found);
    }
    let place = if dir.is_dir() { "in this directory" } else { "because this directory does not exist" };
    Err(Error::bad_file(dir, format!("no {stem} or {stem}.gz {place}; {DOWNLOAD_HINT}")))
}

/// Loads an image file and its label file, checking 28x28 images and matching counts.
fn load_split(images: &Path, labels: &Path) -> Result<Split> {
    let IdxImages { count, rows, cols, pixels } = idx::read_images(images)?;
    if (rows, cols) != (ROWS, COLS) {
        return Err(Error::bad_file(images, format!("images are {rows}x{cols}, but MNIST needs {ROWS}x{COLS}")));
    }
    let labels_data = idx::read_labels(labels, CLASSES)?;
    if labels_data.len() != count {
        return Err(Error::bad_file(
            labels,
            format!("has {} labels, but {} has {count} images", labels_data.len(), images.display()),
        ));
    }
    Ok(Split { pixels, labels: labels_data })
}

/// A uniformly random permutation of `0..n` drawn by Fisher-Yates from `ChaCha8Rng(seed)`.
///
/// Uses only the generator's raw `u64` stream and rejection sampling, so the permutation does not
/// change with the `rand` crate's sampling algorithms.
pub fn permutation(seed: u64, n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    shuffle(&mut ChaCha8Rng::seed_from_u64(seed), &mut order);
    order
}

fn shuffle(rng: &mut impl Rng, v: &mut [usize]) {
    for i in (1..v.len()).rev() {
        let bound = i as u64 + 1;
        // Largest multiple of `bound` that fits: values at or above it would bias the draw.
        let limit = u64::MAX - u64::MAX % bound;
        let j = loop {
            let r = rng.next_u64();
            if r < limit {
                break r % bound;
            }
        };
        v.swap(i, j as usize);
    }
}

/// The order in which epoch `epoch` visits `n` training examples under `seed`.
pub fn epoch_order(seed: u64, epoch: usize, n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    shuffle(&mut batch_rng(seed, EPOCH_STREAM, epoch as u64), &mut order);
    order
}

/// Training example indices of batch `iter` of size `batch` over `n` examples: example number
/// `k = iter * batch + j` is `epoch_order(seed, k / n, n)[k % n]` (without replacement within an epoch;
/// a batch may straddle two epochs).
pub fn epoch_sample(seed: u64, iter: usize, batch: usize, n: usize) -> Result<Vec<usize>> {
    if batch == 0 {
        return Err(Error::invalid("--batch", 0, "must be at least 1"));
    }
    if n == 0 {
        return Err(Error::invalid("training set size", 0, "no training examples"));
    }
    // `start + batch` must not overflow either: the loop below runs up to it.
    let start = iter
        .checked_mul(batch)
        .filter(|s| s.checked_add(batch).is_some())
        .ok_or_else(|| Error::invalid("iteration", iter, format!("iteration x batch {batch} overflows")))?;
    let mut out = Vec::with_capacity(batch);
    let mut current: Option<(usize, Vec<usize>)> = None;
    for k in start..start + batch {
        let epoch = k / n;
        if current.as_ref().is_none_or(|(e, _)| *e != epoch) {
            current = Some((epoch, epoch_order(seed, epoch, n)));
        }
        if let Some((_, order)) = &current {
            out.push(order[k % n]);
        }
    }
    Ok(out)
}

/// Examples of evaluation batch `i` of size `batch` over `n` (the last batch may be smaller).
pub fn eval_range(i: usize, batch: usize, n: usize) -> Result<std::ops::Range<usize>> {
    if batch == 0 {
        return Err(Error::invalid("--batch", 0, "must be at least 1"));
    }
    let batches = n.div_ceil(batch);
    if i >= batches {
        return Err(Error::invalid("evaluation batch", i, format!("there are {batches} batches of {batch}")));
    }
    Ok(i * batch..((i + 1) * batch).min(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_is_a_fixed_permutation() {
        let p = permutation(DEFAULT_PERMUTATION_SEED, PIXELS);
        let mut sorted = p.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..PIXELS).collect::<Vec<_>>());
        assert_eq!(p, permutation(DEFAULT_PERMUTATION_SEED, PIXELS));
        assert_ne!(p, permutation(DEFAULT_PERMUTATION_SEED + 1, PIXELS));
        let fixed = p.iter().enumerate().filter(|&(i, &v)| i == v).count();
        assert!(fixed < 10, "a random permutation of 784 has about 1 fixed point, got {fixed}");
        // Regression lock: published results name the permutation by its seed, so it must never change.
        assert_eq!(p[..8], [618, 222, 533, 569, 65, 433, 90, 531]);
        assert_eq!(permutation(1, 10), [2, 7, 6, 3, 4, 9, 0, 5, 8, 1]);
    }

    #[test]
    fn epoch_sampling_covers_each_epoch_once() {
        // 10 examples, batches of 4: iterations 0..5 cover 20 examples = exactly two epochs.
        let seen: Vec<usize> = (0..5).flat_map(|it| epoch_sample(3, it, 4, 10).unwrap()).collect();
        for epoch in seen.chunks(10) {
            let mut e = epoch.to_vec();
            e.sort_unstable();
            assert_eq!(e, (0..10).collect::<Vec<_>>());
        }
        assert_ne!(seen[..10], seen[10..], "each epoch gets its own shuffle");
        assert_eq!(&seen[8..12], epoch_sample(3, 2, 4, 10).unwrap().as_slice(), "batch 2 straddles epochs");
        assert_eq!(seen[..10], epoch_order(3, 0, 10)[..]);
        assert!(epoch_sample(3, usize::MAX, 2, 10).is_err());
        assert!(epoch_sample(3, 0, 0, 10).is_err());
    }

    #[test]
    fn split_is_four_fifths() {
        assert_eq!(train_split_size(60_000), 48_000);
        assert_eq!(train_split_size(10), 8);
        assert_eq!(train_split_size(7), 5);
        assert_eq!(train_split_size(1), 0);
    }

    #[test]
    fn eval_ranges_cover_the_set_in_order() {
        assert_eq!(eval_range(0, 4, 10).unwrap(), 0..4);
        assert_eq!(eval_range(2, 4, 10).unwrap(), 8..10);
        assert!(eval_range(3, 4, 10).is_err());
        assert!(eval_range(0, 0, 10).is_err());
    }
}
