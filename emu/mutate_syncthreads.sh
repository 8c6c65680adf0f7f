#!/usr/bin/env bash
# Mutation check of the emu parity tests: deletes each `__syncthreads()` and each grid-wide barrier
# (`this_grid().sync()`) of kernels/ in turn (in a scratch copy of the repository), rebuilds, runs the
# emulated parity tests, and reports whether a test failed. Every deletion should be caught
# ("killed"); a "SURVIVED" line is a barrier that no
# test depends on: either it is unneeded, or a test is missing.
#
#   emu/mutate_syncthreads.sh [SCRATCH_DIR]     (default: /tmp/ortho-rnn-mutation)
#
# Result on the dev VM: see the README (Testing the kernels). Under random resume orders the emulator
# lets warps drift apart by several warp collectives between barriers (runtime.cpp, hold_back_warps),
# so barriers between collective-separated phases (block_sum_d's entry, the tensor-core GEMM's
# epilogue) are caught too; before that drift they survived.
#
# Slow to start (a fresh target directory: about 10 minutes on 2 cores), then about a minute per
# mutation, so it is not part of CI.
# Exit status: 0 when every mutation was killed, 1 otherwise.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
scratch="${1:-/tmp/ortho-rnn-mutation}"
mkdir -p "$scratch"
rm -rf "$scratch/src"
mkdir -p "$scratch/src"
tar -C "$repo" --exclude=./target --exclude=./.git -cf - . | tar -C "$scratch/src" -xf -
export CARGO_TARGET_DIR="$scratch/target"
cd "$scratch/src"

tests=(--test cuda_parity --test cuda_parity_seq)
filter=emu_   # the emulated modules (in order, reversed, seeded random orders, several workers)

echo "baseline build and run (must pass)"
cargo test -q "${tests[@]}" -- "$filter" >"$scratch/baseline.log" 2>&1 || {
    echo "the unmutated tests fail; see $scratch/baseline.log"
    exit 2
}

survived=0
total=0
# Sites: file:line of every __syncthreads() and every grid barrier (this_grid().sync()) outside comments
# and the harness self-tests.
mapfile -t sites < <(grep -nE "__syncthreads\(\)|this_grid\(\)\.sync\(\)" kernels/*.cu kernels/*.cuh |
    grep -v "emu_selftest" |
    awk -F: '{ code = $0; sub(/^[^:]*:[^:]*:/, "", code); sub(/\/\/.*/, "", code);
               if (code ~ /__syncthreads\(\)|this_grid\(\)\.sync\(\)/) print $1 ":" $2 }')
for site in "${sites[@]}"; do
    file="${site%%:*}"
    line="${site##*:}"
    total=$((total + 1))
    cp "$file" "$file.orig"
    sed -i -E "${line}s/(__syncthreads\(\)|[A-Za-z_:]*this_grid\(\)\.sync\(\));/\/* mutation: barrier deleted *\//" "$file"
    if timeout 1200 cargo test -q "${tests[@]}" -- "$filter" >"$scratch/mutant.log" 2>&1; then
        echo "SURVIVED $site: no test failed without this barrier"
        survived=$((survived + 1))
    else
        failed=$(grep -cE "^test .* FAILED$|panicked" "$scratch/mutant.log" || true)
        echo "killed   $site ($failed failing test lines)"
    fi
    mv "$file.orig" "$file"
done
echo "$((total - survived)) of $total barrier deletions were caught"
[ "$survived" -eq 0 ]
