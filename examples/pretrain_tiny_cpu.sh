#!/usr/bin/env bash
# The tiny preset on CPU with TP=2 over gloo: the shape of a real run, small enough for a laptop.
#
#   DATA_PATH=runs/demo/data/corpus_text_sentence VOCAB_FILE=runs/demo/vocab/vocab.txt \
#     examples/pretrain_tiny_cpu.sh [--dry-run]
set -euo pipefail
flags=(--preset tiny --vocab-file "${VOCAB_FILE:?set VOCAB_FILE}" --data-path ${DATA_PATH:?set DATA_PATH}
  --tensor-model-parallel-size 2 --micro-batch-size 16 --global-batch-size 32 --seq-length 64
  --train-iters 500 --lr 5e-3 --lr-warmup-fraction 0.05 --log-interval 20
  --save "${SAVE_DIR:-runs/tiny}" --load "${SAVE_DIR:-runs/tiny}" --save-interval 100
  --tensorboard-dir "${SAVE_DIR:-runs/tiny}/tensorboard" --world-size 2)
if [[ " $* " == *" --dry-run "* ]]; then
  exec python -m megabio pretrain "${flags[@]}" "$@"
fi
OMP_NUM_THREADS=1 exec torchrun --standalone --nproc-per-node 2 -m megabio pretrain "${flags[@]}" "$@"
