#!/usr/bin/env bash
# BioMegatron's QA recipes: BioASQ-7b factoid directly (the paper's Table 4 setting), or SQuAD v1.1 first and
# then BioASQ from the SQuAD-tuned model when SQUAD_TRAIN / SQUAD_DEV are given. The paper's head: two layers
# of 2048 with dropout 0.1. Scores: SQuAD EM / F1 and BioASQ strict / lenient accuracy and MRR.
#
#   CHECKPOINT=bio-mb BIOASQ=data/qa/BioASQ-7b [SQUAD_TRAIN=train-v1.1.json SQUAD_DEV=dev-v1.1.json] \
#     [GOLDEN="7B1_golden.json ... 7B5_golden.json"] [TP=2] examples/finetune_bioasq.sh [more megabio finetune qa
#     flags, e.g. --dry-run]
#
# BIOASQ: a folder with BioBERT's 7b files (BioASQ-train-factoid-7b.json, BioASQ-test-factoid-7b.json,
# 7B_golden.json); another year's SQuAD-format files (`megabio data bioasq` makes them from BioASQ's JSON) are
# given as TRAIN_FILE, TEST_FILE and GOLDEN instead. GOLDEN: the golden files to score against (default
# $BIOASQ/7B_golden.json); one per test batch reports each batch and the mean over the batches, as the paper's
# table does.
set -euo pipefail
: "${CHECKPOINT:?set CHECKPOINT (a megabio, transformers or converted Megatron-LM checkpoint)}"
if [[ -z "${TRAIN_FILE:-}" || -z "${TEST_FILE:-}" || -z "${GOLDEN:-}" ]]; then
  : "${BIOASQ:?set BIOASQ (the folder with BioASQ-train-factoid-7b.json, BioASQ-test-factoid-7b.json, 7B_golden.json)}"
fi
TRAIN_FILE=${TRAIN_FILE:-$BIOASQ/BioASQ-train-factoid-7b.json}
TEST_FILE=${TEST_FILE:-$BIOASQ/BioASQ-test-factoid-7b.json}
OUT=${OUT:-runs/qa}
read -r -a golden <<< "${GOLDEN:-$BIOASQ/7B_golden.json}"
head=(--num-fc-layers 2 --fc-hidden-size 2048 --fc-dropout 0.1)
run=(python -m megabio)
dry_run=false
[[ " $* " == *" --dry-run "* ]] && dry_run=true  # resolve and print each step, launching nothing
if [[ -n "${TP:-}" ]] && ! $dry_run; then
  run=(torchrun --standalone --nproc-per-node "$TP" -m megabio)
fi
if [[ -n "${TP:-}" ]]; then
  head+=(--tensor-model-parallel-size "$TP" --world-size "$TP")
fi
start=$CHECKPOINT
if [[ -n "${SQUAD_TRAIN:-}" ]]; then
  "${run[@]}" finetune qa --checkpoint "$CHECKPOINT" --train "$SQUAD_TRAIN" --dev "${SQUAD_DEV:?set SQUAD_DEV}" \
    --output-dir "$OUT/squad" --epochs 2 "${head[@]}" "$@"
  $dry_run || start=$OUT/squad/model
fi
# The BioASQ training set has no separate dev split: its own questions select the epoch.
"${run[@]}" finetune qa --checkpoint "$start" --train "$TRAIN_FILE" --dev "$TRAIN_FILE" --test "$TEST_FILE" \
  --golden "${golden[@]}" --output-dir "$OUT/bioasq" "${head[@]}" "$@"
