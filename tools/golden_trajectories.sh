#!/usr/bin/env bash
# Regenerates tests/golden/*.safetensors, the PyTorch reference trajectories that tests/trajectory.rs
# replays. Needs PyTorch and safetensors (pip install torch safetensors; CPU is enough); CI does not
# run this. Each case trains a tiny model for 60 iterations in f64 with a dump of every iteration
# (target/trajectory/<case>/), then tools/torch_replay.py replays the dumps in PyTorch float64,
# prints ortho-rnn's largest differences from the reference, and writes the golden files.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet
out=target/trajectory
rm -rf "$out"
common=(--dtype ${DTYPE:-f64} --iters 60 --eval-every 60 --batch 4 --quiet --no-diagnostics --dump-params-every 1)
copy=(--task copy --seq-len 5)
adding=(--task adding --seq-len 8)
case_() {
    local name=$1; shift
    ./target/debug/ortho-rnn train "${common[@]}" --dump-trajectory "$out/$name" "$@" > /dev/null
}
case_ rnn_tanh_sgd_momentum_softorth_wd "${copy[@]}" --model rnn --hidden 4 --activation tanh \
    --optimizer sgd --momentum 0.9 --lr 0.02 --reg soft-orth=1e-2 --weight-decay 1e-3 --clip 0.5
case_ rnn_relu_adam_gainorth "${adding[@]}" --model rnn --hidden 4 --activation relu --init glorot \
    --optimizer adam --lr 1e-2 --reg gain-orth=1e-2,g=1.1 --clip 0.5
case_ rnn_nesterov_he_init "${adding[@]}" --model rnn --hidden 4 --activation tanh --init henaff \
    --optimizer sgd --momentum 0.9 --nesterov --lr 0.05 --init-in he-normal --init-out torch-default
case_ factorized_margin_rmsprop_clip_wd "${copy[@]}" --model factorized --hidden 4 --margin 0.5 \
    --activation identity --optimizer rmsprop --lr 1e-2 --geo-lr 1e-2 --clip 1 --weight-decay 1e-3
case_ factorized_margin_sgd_prior "${copy[@]}" --model factorized --hidden 4 --margin 0.1 \
    --activation tanh --optimizer sgd --momentum 0.5 --lr 0.1 --geo-lr 0.05 --reg spectrum-prior=0.1
case_ factorized_nomargin_prelu_adam_prior "${adding[@]}" --model factorized --hidden 4 --margin none \
    --activation prelu --optimizer adam --lr 1e-2 --geo-lr 1e-2 --reg spectrum-prior=1e-2
case_ factorized_glorot_rmsprop099 "${copy[@]}" --model factorized --hidden 4 --margin none --init glorot \
    --activation tanh --optimizer rmsprop --rho 0.99 --lr 1e-2 --geo-lr 1e-2
case_ factorized_margin0_fixed_prelu "${copy[@]}" --model factorized --hidden 4 --margin 0 \
    --activation prelu --prelu-fixed --prelu-slope 0.5 --optimizer adam --lr 1e-2 --geo-lr 1e-2
case_ orthogonal_oplu_sgd_clip "${copy[@]}" --model orthogonal --hidden 4 --activation oplu \
    --optimizer sgd --lr 0.1 --geo-lr 0.05 --clip 2
case_ scornn_modrelu_rmsprop "${copy[@]}" --model scornn --hidden 5 --neg 2 --activation modrelu \
    --optimizer rmsprop --lr 1e-2
case_ scornn_sgd_softorth "${adding[@]}" --model scornn --hidden 4 --activation tanh \
    --optimizer sgd --lr 0.5 --reg soft-orth=1e-2
case_ exprnn_adam_henaff "${copy[@]}" --model exprnn --hidden 4 --init henaff --activation tanh \
    --optimizer adam --lr 1e-2
case_ dtriv1_modrelu_rmsprop "${copy[@]}" --model dtriv --k 1 --hidden 4 --activation modrelu \
    --optimizer rmsprop --lr 1e-2
case_ dtriv10_sgd_momentum_clip "${copy[@]}" --model dtriv --k 10 --hidden 4 --activation tanh \
    --optimizer sgd --momentum 0.9 --lr 0.05 --clip 1
case_ lstm_adam_wd_clip "${copy[@]}" --model lstm --hidden 4 --optimizer adam --lr 1e-2 \
    --weight-decay 1e-3 --clip 1
case_ lstm_rmsprop_adding "${adding[@]}" --model lstm --hidden 4 --optimizer rmsprop --lr 1e-2
[ "${DUMP_ONLY:-}" ] && exit 0
python3 tools/torch_replay.py --quiet --golden tests/golden "$out"/*/
du -ch tests/golden/*.safetensors | tail -1
