//! Reader for the IDX files that MNIST and Fashion-MNIST ship in.
//!
//! An IDX file is a big-endian header followed by the raw data:
//!
//! | bytes  | images (`*-images-idx3-ubyte`)      | labels (`*-labels-idx1-ubyte`) |
//! |--------|-------------------------------------|--------------------------------|
//! | 0..4   | magic `0x00000803` (u8 data, 3 dims)| magic `0x00000801` (u8, 1 dim) |
//! | 4..8   | image count `n`                     | label count `n`                |
//! | 8..12  | rows                                | (data starts)                  |
//! | 12..16 | columns                             |                                |
//! | 16..   | `n * rows * cols` pixels, row-major | `n` labels                     |
//!
//! The magic is two zero bytes, the data type (`0x08` = unsigned byte) and the number of dimensions.
//! Files may be stored raw or gzip-compressed; compression is detected from the gzip magic bytes
//! `1f 8b`, not from the file name. Reading is streamed: the header is read and checked first, the
//! declared data size is checked against the memory available, and then at most that many bytes
//! (plus one, to detect trailing data) are inflated, so a gzip bomb costs no more memory than its
//! header declares and a header with a wrong magic costs 16 bytes. Any malformed input (wrong magic, a header that disagrees with the
//! data size, corrupt gzip) comes back as [`Error::BadFile`] naming the file and the problem; nothing
//! here panics on any input.

use crate::error::{Error, Result};
use std::io::Read;
use std::path::Path;

/// Magic number of an IDX file of unsigned bytes with 3 dimensions (images).
pub const IMAGE_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with 1 dimension (labels).
pub const LABEL_MAGIC: u32 = 0x0000_0801;
/// Header size of an image file: magic, count, rows, columns.
pub const IMAGE_HEADER_BYTES: usize = 16;
/// Header size of a label file: magic, count.
pub const LABEL_HEADER_BYTES: usize = 8;
/// The two bytes every gzip stream starts with.
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// A stack of `count` images of `rows x cols` unsigned-byte pixels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxImages {
    /// Number of images.
    pub count: usize,
    /// Pixel rows per image.
    pub rows: usize,
    /// Pixel columns per image.
    pub cols: usize,
    /// `[count, rows, cols]`, row-major, 0 = background.
    pub pixels: Vec<u8>,
}

/// Reads a whole file, inflating it when it starts with the gzip magic bytes (no size cap: for
/// small files and tests; the IDX readers below stream).
pub fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    inflate_if_gzip(path, raw)
}

/// `bytes` inflated when they start with the gzip magic bytes, else unchanged; `path` names them in errors.
pub fn inflate_if_gzip(path: &Path, bytes: Vec<u8>) -> Result<Vec<u8>> {
    if !bytes.starts_with(&GZIP_MAGIC) {
        return Ok(bytes);
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes.as_slice())
        .read_to_end(&mut out)
        .map_err(|e| Error::bad_file(path, format!("corrupt or truncated gzip data: {e}")))?;
    Ok(out)
}

/// Opens `path` as a byte stream, inflating it when it starts with the gzip magic bytes; also
/// returns the file's size on disk and whether it is compressed.
fn open_stream(path: &Path) -> Result<(Box<dyn Read>, u64, bool)> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut reader = std::io::BufReader::new(file);
    let head = std::io::BufRead::fill_buf(&mut reader).map_err(|e| Error::io(path, e))?;
    let gz = head.starts_with(&GZIP_MAGIC);
    let stream: Box<dyn Read> = if gz { Box::new(flate2::read::MultiGzDecoder::new(reader)) } else { Box::new(reader) };
    Ok((stream, size, gz))
}

/// Reads up to `len` bytes; fewer only at the end of the stream.
fn read_up_to(path: &Path, r: &mut dyn Read, len: u64, gz: bool) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(len.min(64 << 20) as usize);
    r.take(len).read_to_end(&mut out).map_err(|e| {
        if gz { Error::bad_file(path, format!("corrupt or truncated gzip data: {e}")) } else { Error::io(path, e) }
    })?;
    Ok(out)
}

/// Streams an IDX file: header of `header_len` bytes checked by `declared` (which returns the data
/// size and a description), then exactly that many data bytes.
fn read_idx(
    path: &Path,
    stream: &mut dyn Read,
    gz: bool,
    header_len: usize,
    kind: &str,
    declared: impl Fn(&[u32]) -> Result<(usize, String)>,
) -> Result<(Vec<u32>, Vec<u8>)> {
    let head = read_up_to(path, stream, header_len as u64, gz)?;
    let words = header(path, &head, header_len, kind)?;
    let (expected, what) = declared(&words)?;
    if let Some(a) = crate::limits::host_available()
        && expected as u64 > a.bytes
    {
        return Err(Error::bad_file(
            path,
            format!(
                "header says {what}, {expected} bytes, more than the {} bytes of memory available ({}); a damaged \
                 header?",
                a.bytes, a.source
            ),
        ));
    }
    let data = read_up_to(path, stream, expected as u64 + 1, gz)?;
    if data.len() == expected {
        return Ok((words, data));
    }
    if data.len() < expected {
        check_data_len(path, &what, expected, data.len(), header_len)?;
    }
    Err(Error::bad_file(
        path,
        format!(
            "header says {what}, which is {expected} data bytes after the {header_len}-byte header, but the file \
             has more (trailing bytes; the inflated data was not read past them)"
        ),
    ))
}

/// Reads an image file (raw or gzip) from disk, streaming (see the module documentation).
pub fn read_images(path: &Path) -> Result<IdxImages> {
    let (mut stream, size, gz) = open_stream(path)?;
    let (count, rows, cols, pixels) = read_images_from(path, &mut stream, gz, (!gz).then_some(size))?;
    Ok(IdxImages { count, rows, cols, pixels })
}

/// Reads an image file from `stream` (inflated already when `gz`); `raw_size`, the size of an
/// uncompressed file, gives the exact byte count in errors.
pub fn read_images_from(
    path: &Path,
    stream: &mut dyn Read,
    gz: bool,
    raw_size: Option<u64>,
) -> Result<(usize, usize, usize, Vec<u8>)> {
    let (h, pixels) = read_idx(path, stream, gz, IMAGE_HEADER_BYTES, "image", |h| {
        check_magic(path, h[0], IMAGE_MAGIC)?;
        let [count, rows, cols] = [h[1], h[2], h[3]].map(|v| v as usize);
        let expected = count
            .checked_mul(rows)
            .and_then(|v| v.checked_mul(cols))
            .ok_or_else(|| Error::bad_file(path, format!("header size {count} x {rows} x {cols} overflows")))?;
        let what = format!("{count} images of {rows}x{cols} pixels");
        if let Some(size) = raw_size {
            let actual = size.saturating_sub(IMAGE_HEADER_BYTES as u64) as usize;
            check_data_len(path, &what, expected, actual, IMAGE_HEADER_BYTES)?;
        }
        Ok((expected, what))
    })?;
    Ok((h[1] as usize, h[2] as usize, h[3] as usize, pixels))
}

/// Reads a label file (raw or gzip) from disk, streaming; every label must be below `classes`.
pub fn read_labels(path: &Path, classes: usize) -> Result<Vec<u8>> {
    let (mut stream, size, gz) = open_stream(path)?;
    let (_, labels) = read_idx(path, &mut stream, gz, LABEL_HEADER_BYTES, "label", |h| {
        check_magic(path, h[0], LABEL_MAGIC)?;
        let count = h[1] as usize;
        let what = format!("{count} labels");
        if !gz {
            let actual = size.saturating_sub(LABEL_HEADER_BYTES as u64) as usize;
            check_data_len(path, &what, count, actual, LABEL_HEADER_BYTES)?;
        }
        Ok((count, what))
    })?;
    check_labels(path, &labels, classes)?;
    Ok(labels)
}

/// Parses the (already inflated) contents of an image file; `path` only names it in errors.
pub fn parse_images(path: &Path, bytes: &[u8]) -> Result<IdxImages> {
    let header = header(path, bytes, IMAGE_HEADER_BYTES, "image")?;
    check_magic(path, header[0], IMAGE_MAGIC)?;
    let [count, rows, cols] = [header[1], header[2], header[3]].map(|v| v as usize);
    let expected = count
        .checked_mul(rows)
        .and_then(|v| v.checked_mul(cols))
        .ok_or_else(|| Error::bad_file(path, format!("header size {count} x {rows} x {cols} overflows")))?;
    let what = format!("{count} images of {rows}x{cols} pixels");
    check_data_len(path, &what, expected, bytes.len() - IMAGE_HEADER_BYTES, IMAGE_HEADER_BYTES)?;
    Ok(IdxImages { count, rows, cols, pixels: bytes[IMAGE_HEADER_BYTES..].to_vec() })
}

/// Parses the (already inflated) contents of a label file; every label must be below `classes`.
pub fn parse_labels(path: &Path, bytes: &[u8], classes: usize) -> Result<Vec<u8>> {
    let header = header(path, bytes, LABEL_HEADER_BYTES, "label")?;
    check_magic(path, header[0], LABEL_MAGIC)?;
    let count = header[1] as usize;
    check_data_len(path, &format!("{count} labels"), count, bytes.len() - LABEL_HEADER_BYTES, LABEL_HEADER_BYTES)?;
    let labels = &bytes[LABEL_HEADER_BYTES..];
    check_labels(path, labels, classes)?;
    Ok(labels.to_vec())
}

fn check_labels(path: &Path, labels: &[u8], classes: usize) -> Result<()> {
    if let Some((i, &bad)) = labels.iter().enumerate().find(|&(_, &l)| l as usize >= classes) {
        return Err(Error::bad_file(
            path,
            format!("label {i} is {bad}, but labels must lie in 0..={} ({classes} classes)", classes.saturating_sub(1)),
        ));
    }
    Ok(())
}

/// The big-endian u32 words of a header of `len` bytes.
fn header(path: &Path, bytes: &[u8], len: usize, kind: &str) -> Result<Vec<u32>> {
    if bytes.len() < len {
        return Err(Error::bad_file(
            path,
            format!("file is {} bytes, shorter than the {len}-byte IDX {kind} header", bytes.len()),
        ));
    }
    Ok(bytes[..len].chunks_exact(4).map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]])).collect())
}

fn check_magic(path: &Path, found: u32, expected: u32) -> Result<()> {
    if found == expected {
        return Ok(());
    }
    let describe = |m: u32| match m {
        IMAGE_MAGIC => "an IDX image file",
        LABEL_MAGIC => "an IDX label file",
        _ => "not an IDX unsigned-byte file",
    };
    let hint = if path.extension().is_some_and(|e| e == "gz") {
        " (the name ends in .gz but the content is not gzip-compressed)"
    } else {
        ""
    };
    Err(Error::bad_file(
        path,
        format!(
            "bad magic number 0x{found:08x} ({}), expected 0x{expected:08x} ({}){hint}",
            describe(found),
            describe(expected)
        ),
    ))
}

fn check_data_len(path: &Path, what: &str, expected: usize, actual: usize, header: usize) -> Result<()> {
    if expected == actual {
        return Ok(());
    }
    let why = if actual < expected {
        format!("truncated: {} bytes missing", expected - actual)
    } else {
        format!("{} trailing bytes", actual - expected)
    };
    Err(Error::bad_file(
        path,
        format!(
            "header says {what}, which is {expected} data bytes after the {header}-byte header, \
             but the file has {actual} ({why})"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn image_file(count: u32, rows: u32, cols: u32) -> Vec<u8> {
        let mut v = Vec::new();
        for w in [IMAGE_MAGIC, count, rows, cols] {
            v.extend_from_slice(&w.to_be_bytes());
        }
        v.extend((0..count * rows * cols).map(|i| (i % 256) as u8));
        v
    }

    fn label_file(labels: &[u8]) -> Vec<u8> {
        let mut v = 0x0000_0801u32.to_be_bytes().to_vec();
        v.extend_from_slice(&(labels.len() as u32).to_be_bytes());
        v.extend_from_slice(labels);
        v
    }

    #[test]
    fn parses_a_hand_written_image_file() {
        // 2 images of 2x3 pixels: header 00000803 00000002 00000002 00000003, then 12 bytes.
        let bytes = [0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 255];
        let img = parse_images(Path::new("x"), &bytes).unwrap();
        assert_eq!((img.count, img.rows, img.cols), (2, 2, 3));
        assert_eq!(img.pixels, vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 255]);
        let labels = parse_labels(Path::new("y"), &[0, 0, 8, 1, 0, 0, 0, 3, 9, 0, 4], 10).unwrap();
        assert_eq!(labels, vec![9, 0, 4]);
    }

    #[test]
    fn reports_each_malformation() {
        let p = Path::new("data/f");
        let msg = |r: Result<IdxImages>| r.unwrap_err().to_string();
        let m = msg(parse_images(p, &[0, 0, 8]));
        assert!(m.contains("data/f") && m.contains("3 bytes") && m.contains("16-byte"), "{m}");
        let m = msg(parse_images(p, &label_file(&[1, 2, 3, 4, 5, 6, 7, 8])));
        assert!(m.contains("0x00000801") && m.contains("expected 0x00000803") && m.contains("label file"), "{m}");
        let mut f = image_file(2, 2, 2);
        f.pop();
        let m = msg(parse_images(p, &f));
        assert!(m.contains("8 data bytes") && m.contains("has 7") && m.contains("truncated"), "{m}");
        let mut f = image_file(2, 2, 2);
        f.extend_from_slice(&[0, 0, 0]);
        let m = msg(parse_images(p, &f));
        assert!(m.contains("has 11") && m.contains("3 trailing bytes"), "{m}");
        let m = msg(parse_images(p, &[0, 0, 8, 3, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255]));
        assert!(m.contains("data/f") && m.contains("overflows"), "{m}");
        let e = parse_labels(p, &label_file(&[3, 10, 1]), 10).unwrap_err().to_string();
        assert!(e.contains("label 1 is 10") && e.contains("0..=9"), "{e}");
    }

    #[test]
    fn no_input_panics() {
        // Random byte strings, and valid files with random truncations and byte flips.
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let p = Path::new("fuzz");
        for case in 0..3000 {
            let mut bytes = match case % 3 {
                0 => {
                    let n = rng.random_range(0..64usize);
                    (0..n).map(|_| rng.next_u32() as u8).collect()
                }
                1 => image_file(rng.random_range(0..4), rng.random_range(0..5), rng.random_range(0..5)),
                _ => label_file(&[1, 2, 3, 12, 0][..rng.random_range(0..5usize)]),
            };
            if case % 3 != 0 && !bytes.is_empty() {
                let at = rng.random_range(0..bytes.len());
                match rng.random_range(0..3u8) {
                    0 => bytes.truncate(at),
                    1 => bytes[at] ^= 1 << rng.random_range(0..8u32),
                    _ => bytes[at] = 0xff,
                }
            }
            let _ = parse_images(p, &bytes);
            let _ = parse_labels(p, &bytes, 10);
            // The same bytes behind a gzip magic, and a valid gzip stream with one byte changed.
            let _ = inflate_if_gzip(p, GZIP_MAGIC.iter().chain(&bytes).copied().collect());
            let mut gz = gzip(&bytes);
            let at = rng.random_range(0..gz.len());
            gz[at] = gz[at].wrapping_add(rng.random_range(1..=255u8));
            if let Ok(inflated) = inflate_if_gzip(p, gz) {
                let _ = parse_images(p, &inflated);
            }
        }
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let _ = e.write_all(bytes);
        e.finish().unwrap_or_default()
    }

    /// Counts the compressed bytes a reader consumed.
    struct Counting<'a>(&'a [u8], std::rc::Rc<std::cell::Cell<usize>>);
    impl Read for Counting<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.read(buf)?;
            self.1.set(self.1.get() + n);
            Ok(n)
        }
    }

    #[test]
    fn a_gzip_bomb_is_inflated_no_further_than_its_header_declares() {
        let p = Path::new("bomb.gz");
        // 200 gzip members of 4 MiB of zeros each (800 MiB inflated, ~800 KiB compressed), after a
        // valid header declaring 2 images of 2x2 pixels: reading must stop after 16 + 8 + 1 bytes,
        // within the decoder's 32 KiB input buffer.
        let member = gzip(&vec![0u8; 4 << 20]);
        let mut bomb = gzip(&image_file(2, 2, 2)[..IMAGE_HEADER_BYTES]);
        for _ in 0..200 {
            bomb.extend_from_slice(&member);
        }
        let used = std::rc::Rc::new(std::cell::Cell::new(0));
        let mut stream = flate2::read::MultiGzDecoder::new(Counting(&bomb, used.clone()));
        let e = read_images_from(p, &mut stream, true, None).unwrap_err().to_string();
        assert!(e.contains("trailing bytes") && e.contains("2 images of 2x2"), "{e}");
        assert!(used.get() <= 64 << 10, "read {} of {} compressed bytes", used.get(), bomb.len());
        // A bomb of zeros has magic 0: refused after its header.
        let used = std::rc::Rc::new(std::cell::Cell::new(0));
        let zeros: Vec<u8> = (0..200).flat_map(|_| member.iter().copied()).collect();
        let mut stream = flate2::read::MultiGzDecoder::new(Counting(&zeros, used.clone()));
        let e = read_images_from(p, &mut stream, true, None).unwrap_err().to_string();
        assert!(e.contains("bad magic number 0x00000000"), "{e}");
        assert!(used.get() <= 64 << 10, "read {} of {} compressed bytes", used.get(), zeros.len());
    }

    #[test]
    fn gzip_is_detected_by_content_and_damage_is_reported() {
        let p = Path::new("d/f.gz");
        let payload = image_file(2, 3, 3);
        assert_eq!(inflate_if_gzip(p, gzip(&payload)).unwrap(), payload);
        assert_eq!(inflate_if_gzip(p, payload.clone()).unwrap(), payload, "not gzip: unchanged");
        let gz = gzip(&payload);
        let e = inflate_if_gzip(p, gz[..gz.len() - 6].to_vec()).unwrap_err().to_string();
        assert!(e.contains("d/f.gz") && e.contains("gzip"), "{e}");
        let e = parse_images(p, &payload[..3]).unwrap_err().to_string();
        assert!(e.contains("3 bytes"), "{e}");
        let e = parse_images(p, &label_file(&[1; 9])).unwrap_err().to_string();
        assert!(e.contains("not gzip-compressed"), "{e}");
    }
}
