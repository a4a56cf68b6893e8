#!/usr/bin/env bash
# Megatron-LM's examples/pretrain_bert.sh command line, run by megabio: the same flags, megabio's entry point.
# Megatron-only flags are translated or accepted (see README, "Megatron-LM flags"); the two megabio has no
# feature for are left out: --split (no validation pass: all of DATA_PATH trains) and --eval-interval /
# --eval-iters. --lr-decay-iters equals --train-iters, over which megabio decays the LR.
#
#   DATA_PATH=my-bert_text_sentence VOCAB_FILE=bert-vocab.txt CHECKPOINT_PATH=ckpt \
#     examples/megatron_pretrain_bert.sh [--dry-run]
set -euo pipefail
BERT_ARGS=(--num-layers 24 --hidden-size 1024 --num-attention-heads 16 --seq-length 512
  --max-position-embeddings 512 --micro-batch-size 4 --global-batch-size 8 --lr 0.0001 --train-iters 2000000
  --lr-decay-iters 2000000 --lr-decay-style linear --min-lr 0.00001 --weight-decay 1e-2 --lr-warmup-fraction .01
  --clip-grad 1.0 --fp16)
DATA_ARGS=(--data-path "${DATA_PATH:?set DATA_PATH}" --vocab-file "${VOCAB_FILE:?set VOCAB_FILE}" --data-impl mmap)
OUTPUT_ARGS=(--log-interval 100 --save-interval 10000 --save "${CHECKPOINT_PATH:?set CHECKPOINT_PATH}"
  --load "$CHECKPOINT_PATH")
if [[ " $* " == *" --dry-run "* ]]; then
  exec python -m megabio pretrain "${BERT_ARGS[@]}" "${DATA_ARGS[@]}" "${OUTPUT_ARGS[@]}" "$@"
fi
exec torchrun --nproc-per-node "${GPUS_PER_NODE:-1}" -m megabio pretrain "${BERT_ARGS[@]}" "${DATA_ARGS[@]}" \
  "${OUTPUT_ARGS[@]}" "$@"
