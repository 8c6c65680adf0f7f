//! Penn Treebank next-character prediction, one sentence per sequence.
//!
//! Data: Mikolov's preprocessed Penn Treebank (`simple-examples.tgz`, folder `data/`), in either form,
//! whichever is in the directory (the character files win when both are):
//! - character level, [`CHAR_FILES`]: one sentence per line, characters separated by spaces, `_`
//!   between words (`p i e r r e _ < u n k > _ N _ y e a r s`);
//! - word level, [`WORD_FILES`]: one sentence per line, words separated by spaces
//!   (`pierre <unk> N years`).
//!
//! Both become the same symbol sequence over the 49-symbol [`VOCAB`]: words joined by the word
//! separator [`SEPARATOR`] (`_`), the whole word `<unk>` (a rare word) becomes the single symbol
//! [`UNKNOWN`], the whole word `N` (a number) becomes [`NUMBER`], and every other character is
//! lower-cased and looked up in the table, characters not in it becoming [`UNKNOWN`] too. Blank lines are
//! skipped; a sentence of `n` symbols is kept when `n <= max_len` (75 and 300 in the papers; the
//! `<unk>` and `N` words count as one symbol each).
//!
//! A sentence `s_0 .. s_{n-1}` gives `n` steps: the input at step `k` is the one-hot `s_k`, the target
//! is `s_{k+1}`, and the target of the last step is the end-of-sentence symbol [`END`]. A batch is padded
//! to its longest sentence: padded steps have all-zero inputs and target -1 (not scored), so
//! [`Batch::t`] varies from batch to batch and never exceeds `max_len`. The loss is softmax
//! cross-entropy at every scored step, in nats; [`nats_to_bpc`] converts it to bits per character.
//!
//! Training batches sample sentences without replacement within an epoch, exactly as MNIST does
//! ([`super::mnist::epoch_sample`]); evaluation batches run over the validation file (or the test
//! file) in file order.
//!
//! Baseline: predicting the unigram symbol frequencies of the training targets; its loss is their
//! entropy in nats ([`PtbTask::baseline_bpc`] in bits), its accuracy that of always predicting the most
//! frequent symbol.

use super::mnist::{epoch_sample, eval_range};
use super::{Baseline, Batch, LossKind, Task};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Number of symbols.
pub const VOCAB_SIZE: usize = 49;

/// The symbol table: index = class id and one-hot position.
///
/// | ids    | symbols                                                     |
/// |--------|-------------------------------------------------------------|
/// | 0..26  | `a` .. `z`                                                  |
/// | 26..36 | `0` .. `9`                                                  |
/// | 36     | `_` word separator ([`SEPARATOR`])                          |
/// | 37     | `N`, the number word ([`NUMBER`])                           |
/// | 38     | `\n`, end of sentence ([`END`])                             |
/// | 39     | `U+FFFD`, `<unk>` and any character not in the table ([`UNKNOWN`]) |
/// | 40..49 | `#` `$` `&` `'` `*` `-` `.` `/` `\`                         |
pub const VOCAB: [char; VOCAB_SIZE] = [
    'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', 'p', 'q', 'r', 's', 't', 'u', 'v', 'w',
    'x', 'y', 'z', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '_', 'N', '\n', '\u{FFFD}', '#', '$', '&', '\'',
    '*', '-', '.', '/', '\\',
];
/// The word separator `_`.
pub const SEPARATOR: usize = 36;
/// The word `N` (PTB's stand-in for a number).
pub const NUMBER: usize = 37;
/// End of sentence: the target after the last character.
pub const END: usize = 38;
/// The word `<unk>`, and any character outside the table.
pub const UNKNOWN: usize = 39;
/// First punctuation symbol.
const PUNCT_START: usize = 40;

/// Character-level files: train, valid, test.
pub const CHAR_FILES: [&str; 3] = ["ptb.char.train.txt", "ptb.char.valid.txt", "ptb.char.test.txt"];
/// Word-level files: train, valid, test.
pub const WORD_FILES: [&str; 3] = ["ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"];
/// Where to get the files, for error messages.
pub const DOWNLOAD_HINT: &str = "download http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz \
     and point at its data/ folder (mirror: https://github.com/townie/PTB-dataset-from-Tomas-Mikolov-s-webpage)";

/// Converts a mean cross-entropy in nats to bits per character: `bpc = nats / ln 2`.
pub fn nats_to_bpc(nats: f64) -> f64 {
    nats / std::f64::consts::LN_2
}

/// The symbol of one character inside a word (after lower-casing); [`UNKNOWN`] when not in the table.
pub fn symbol_of(c: char) -> usize {
    let c = c.to_ascii_lowercase();
    match c {
        'a'..='z' => c as usize - 'a' as usize,
        '0'..='9' => 26 + c as usize - '0' as usize,
        _ => VOCAB[PUNCT_START..].iter().position(|&p| p == c).map_or(UNKNOWN, |i| PUNCT_START + i),
    }
}

/// The symbols of a sentence given as words (see the module docs for `<unk>` and `N`).
pub fn encode_words<'a>(words: impl IntoIterator<Item = &'a str>) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, word) in words.into_iter().enumerate() {
        if i > 0 {
            out.push(SEPARATOR as u8);
        }
        if word.eq_ignore_ascii_case("<unk>") {
            out.push(UNKNOWN as u8);
        } else if word == "N" {
            out.push(NUMBER as u8);
        } else {
            out.extend(word.chars().map(|c| symbol_of(c) as u8));
        }
    }
    out
}

/// One line of a character-level file (`a _ b c`): characters separated by spaces, `_` between words.
pub fn parse_char_line(line: &str) -> Vec<u8> {
    let joined: String = line.split_whitespace().collect();
    encode_words(joined.split('_').filter(|w| !w.is_empty()))
}

/// One line of a word-level file (`a bc`): words separated by spaces.
pub fn parse_word_line(line: &str) -> Vec<u8> {
    encode_words(line.split_whitespace())
}

/// Which of the two file sets was loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PtbFormat {
    /// `ptb.char.*.txt`.
    Characters,
    /// `ptb.*.txt`.
    Words,
}

impl PtbFormat {
    /// Train, valid and test file names.
    pub fn files(self) -> [&'static str; 3] {
        match self {
            PtbFormat::Characters => CHAR_FILES,
            PtbFormat::Words => WORD_FILES,
        }
    }
    fn parse(self, line: &str) -> Vec<u8> {
        match self {
            PtbFormat::Characters => parse_char_line(line),
            PtbFormat::Words => parse_word_line(line),
        }
    }
}

/// Everything [`PtbTask::new`] needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PtbConfig {
    /// Directory holding the PTB text files.
    pub dir: PathBuf,
    /// Keep sentences of at most this many symbols (75 or 300 in the papers).
    pub max_len: usize,
    /// Seed of the training-batch shuffles.
    pub seed: u64,
    /// Keep only the first `max_train` training sentences that pass the length filter.
    pub max_train: Option<usize>,
    /// Evaluate on the test file instead of the validation file.
    pub use_test_for_eval: bool,
}

impl PtbConfig {
    /// Defaults: seed 0, every training sentence, validation eval.
    pub fn new(dir: impl Into<PathBuf>, max_len: usize) -> Self {
        PtbConfig { dir: dir.into(), max_len, seed: 0, max_train: None, use_test_for_eval: false }
    }
}

/// Next-character prediction on Penn Treebank sentences.
#[derive(Clone, Debug)]
pub struct PtbTask {
    format: PtbFormat,
    seed: u64,
    train: Vec<Vec<u8>>,
    eval: Vec<Vec<u8>>,
    eval_is_test: bool,
    longest: usize,
    unigram_nats: f64,
    unigram_accuracy: f64,
}

impl PtbTask {
    /// Detects the file set in `cfg.dir` and loads the training and evaluation sentences.
    pub fn new(cfg: &PtbConfig) -> Result<Self> {
        if cfg.max_len == 0 {
            return Err(Error::invalid("--seq-len", 0, "the longest sentence kept must be at least 1 character"));
        }
        if cfg.max_train == Some(0) {
            return Err(Error::invalid("--max-train", 0, "must be at least 1"));
        }
        let format = detect_format(&cfg.dir)?;
        let files = format.files();
        let eval_name = if cfg.use_test_for_eval { files[2] } else { files[1] };
        let eval_path = cfg.dir.join(eval_name);
        if !eval_path.is_file() {
            return Err(Error::bad_file(
                &cfg.dir,
                format!("has {} but no {eval_name} to evaluate on; {DOWNLOAD_HINT}", files[0]),
            ));
        }
        let mut train = load_sentences(&cfg.dir.join(files[0]), format, cfg.max_len)?;
        if let Some(m) = cfg.max_train {
            train.truncate(m);
        }
        let eval = load_sentences(&eval_path, format, cfg.max_len)?;
        let longest = train.iter().chain(&eval).map(Vec::len).max().unwrap_or(0);
        let (unigram_nats, unigram_accuracy) = unigram_baseline(&train);
        Ok(PtbTask {
            format,
            seed: cfg.seed,
            train,
            eval,
            eval_is_test: cfg.use_test_for_eval,
            longest,
            unigram_nats,
            unigram_accuracy,
        })
    }

    /// Which file set was found.
    pub fn format(&self) -> PtbFormat {
        self.format
    }
    /// Training sentences, as symbol ids.
    pub fn train_sentences(&self) -> &[Vec<u8>] {
        &self.train
    }
    /// Evaluation sentences, as symbol ids, in file order.
    pub fn eval_sentences(&self) -> &[Vec<u8>] {
        &self.eval
    }
    /// True when evaluation uses the test file rather than the validation file.
    pub fn eval_is_test(&self) -> bool {
        self.eval_is_test
    }
    /// The unigram baseline in bits per character.
    pub fn baseline_bpc(&self) -> f64 {
        nats_to_bpc(self.unigram_nats)
    }

    fn build(&self, sentences: &[&[u8]]) -> Batch {
        let batch = sentences.len();
        let t = sentences.iter().map(|s| s.len()).max().unwrap_or(0);
        let mut x = vec![0.0f32; t * batch * VOCAB_SIZE];
        let mut y = vec![-1.0f32; t * batch];
        for (row, s) in sentences.iter().enumerate() {
            for (step, &sym) in s.iter().enumerate() {
                x[(step * batch + row) * VOCAB_SIZE + sym as usize] = 1.0;
                y[step * batch + row] = s.get(step + 1).map_or(END as f32, |&next| f32::from(next));
            }
        }
        Batch { t, batch, input_dim: VOCAB_SIZE, x, y }
    }
}

impl Task for PtbTask {
    fn reports_bpc(&self) -> bool {
        true
    }
    fn name(&self) -> String {
        "ptb".into()
    }
    fn input_dim(&self) -> usize {
        VOCAB_SIZE
    }
    fn loss(&self) -> LossKind {
        LossKind::XentEveryStep { classes: VOCAB_SIZE }
    }
    fn seq_len(&self) -> usize {
        self.longest
    }
    fn train_batch(&self, iter: usize, batch: usize) -> Result<Batch> {
        let idx = epoch_sample(self.seed, iter, batch, self.train.len())?;
        Ok(self.build(&idx.iter().map(|&i| self.train[i].as_slice()).collect::<Vec<_>>()))
    }
    fn eval_batches(&self, batch: usize) -> usize {
        self.eval.len().div_ceil(batch.max(1))
    }
    fn eval_batch(&self, i: usize, batch: usize) -> Result<Batch> {
        let range = eval_range(i, batch, self.eval.len())?;
        Ok(self.build(&self.eval[range].iter().map(Vec::as_slice).collect::<Vec<_>>()))
    }
    fn baseline(&self) -> Baseline {
        Baseline {
            loss: self.unigram_nats,
            accuracy: Some(self.unigram_accuracy),
            what: "the unigram symbol frequencies of the training targets (accuracy: always the most frequent)",
        }
    }
    fn train_size(&self) -> Option<usize> {
        Some(self.train.len())
    }
}

/// Character files if `ptb.char.train.txt` is present, else word files if `ptb.train.txt` is.
pub fn detect_format(dir: &Path) -> Result<PtbFormat> {
    super::data_dir::check(dir, &format!("{} or {}", CHAR_FILES[0], WORD_FILES[0]), DOWNLOAD_HINT)?;
    for format in [PtbFormat::Characters, PtbFormat::Words] {
        if dir.join(format.files()[0]).is_file() {
            return Ok(format);
        }
    }
    let place = if dir.is_dir() { "in this directory" } else { "because this directory does not exist" };
    Err(Error::bad_file(
        dir,
        format!("no {} (character level) or {} (word level) {place}; {DOWNLOAD_HINT}", CHAR_FILES[0], WORD_FILES[0]),
    ))
}

/// The non-empty sentences of `path` with at most `max_len` symbols.
fn load_sentences(path: &Path, format: PtbFormat, max_len: usize) -> Result<Vec<Vec<u8>>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        Error::bad_file(path, format!("not UTF-8 text (invalid byte at offset {})", e.utf8_error().valid_up_to()))
    })?;
    let mut lines = 0usize;
    let kept: Vec<Vec<u8>> = text
        .lines()
        .map(|line| format.parse(line))
        .filter(|s| !s.is_empty())
        .inspect(|_| lines += 1)
        .filter(|s| s.len() <= max_len)
        .collect();
    if kept.is_empty() {
        return Err(Error::bad_file(
            path,
            format!("none of its {lines} non-empty sentences has at most {max_len} symbols"),
        ));
    }
    Ok(kept)
}

/// Entropy (nats) of the training targets' symbol frequencies, and the most frequent symbol's share.
fn unigram_baseline(train: &[Vec<u8>]) -> (f64, f64) {
    let mut counts = [0u64; VOCAB_SIZE];
    for s in train {
        for &sym in s.iter().skip(1) {
            counts[sym as usize] += 1;
        }
        counts[END] += 1;
    }
    let total = counts.iter().sum::<u64>() as f64;
    if total == 0.0 {
        return (0.0, 0.0);
    }
    let entropy = counts.iter().filter(|&&c| c > 0).map(|&c| c as f64 / total).map(|p| -p * p.ln()).sum();
    let top = counts.iter().copied().max().unwrap_or(0) as f64 / total;
    (entropy, top)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_is_49_distinct_symbols() {
        let mut v = VOCAB.to_vec();
        v.sort_unstable();
        v.dedup();
        assert_eq!(v.len(), 49);
        for (i, &c) in VOCAB.iter().enumerate() {
            if ![SEPARATOR, NUMBER, END, UNKNOWN].contains(&i) {
                assert_eq!(symbol_of(c), i, "{c:?}");
            }
        }
        assert_eq!(VOCAB[SEPARATOR], '_');
        assert_eq!(VOCAB[NUMBER], 'N');
        assert_eq!(VOCAB[END], '\n');
        assert_eq!(symbol_of('Q'), 16, "lower-cased");
        assert_eq!(symbol_of('N'), 13, "a capital N inside a word is the letter n");
        assert_eq!(symbol_of('?'), UNKNOWN);
        assert_eq!(symbol_of('é'), UNKNOWN);
        assert_eq!(symbol_of('_'), UNKNOWN, "only the separator between words is the separator");
    }

    #[test]
    fn both_formats_encode_alike() {
        // "mr. <unk> is N" by hand: m=12 r=17 .=46 _=36 <unk>=39 _=36 i=8 s=18 _=36 N=37.
        let want = vec![12, 17, 46, 36, 39, 36, 8, 18, 36, 37];
        assert_eq!(parse_word_line(" mr. <unk> is N "), want);
        assert_eq!(parse_char_line(" m r . _ < u n k > _ i s _ N "), want);
        assert_eq!(parse_char_line("_ _"), Vec::<u8>::new());
    }

    #[test]
    fn unigram_baseline_by_hand() {
        // Sentences "ab" and "a": targets b, END, END -> p(END) = 2/3, p(b) = 1/3.
        let (h, acc) = unigram_baseline(&[vec![0, 1], vec![0]]);
        let want = -(2.0 / 3.0 * (2.0f64 / 3.0).ln() + 1.0 / 3.0 * (1.0f64 / 3.0).ln());
        assert!((h - want).abs() < 1e-12 && (h - 0.636_514_168_294_813_4).abs() < 1e-12, "{h}");
        assert!((acc - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn bpc_is_nats_over_ln_2() {
        assert!((nats_to_bpc(std::f64::consts::LN_2) - 1.0).abs() < 1e-15);
        // ln 49 nats = log2 49 = 5.614709844115208 bits (uniform over the vocabulary).
        assert!((nats_to_bpc(49f64.ln()) - 5.614_709_844_115_208).abs() < 1e-12);
        // 3 nats = 3 / 0.6931471805599453 = 4.328085122666891 bits.
        assert!((nats_to_bpc(3.0) - 4.328_085_122_666_891).abs() < 1e-12);
    }
}
