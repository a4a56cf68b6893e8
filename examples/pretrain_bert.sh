#!/usr/bin/env bash
# Pretrain a BioMegatron-style encoder with torchrun on one or many DGX nodes (8 GPUs each).
#
#   examples/pretrain_bert.sh 345m|800m|1.2b [extra megabio pretrain flags, e.g. --dry-run]
#
# Environment: DATA_PATH (indexed-dataset prefix or "WEIGHT PREFIX ..." pairs), VOCAB_FILE, SAVE_DIR,
# NNODES (1), NODE_RANK (0), MASTER_ADDR (localhost), MASTER_PORT (29500), GPUS_PER_NODE (8), TP (per preset).
# Hyper-parameters follow Megatron-LM's 345M BERT recipe (lr 1e-4, 1% warmup, linear decay, wd 0.01,
# clip 1.0) with the paper's global batch 256 and sequence length 512, in bf16.
set -euo pipefail
preset=${1:?usage: $0 345m|800m|1.2b [flags]}
shift
case "$preset" in
  345m) default_tp=1 ;;  # 335M parameters fit one 32 GB GPU with activation recomputation
  800m) default_tp=2 ;;  # ~8 GiB per rank at TP=2: 32 GB GPUs; TP=1 fits 80 GB
  1.2b) default_tp=2 ;;  # ~12 GiB per rank at TP=2: 32 GB GPUs; TP=1 fits 80 GB
  *) echo "unknown preset $preset (345m, 800m or 1.2b)" >&2; exit 2 ;;
esac
nnodes=${NNODES:-1}
gpus=${GPUS_PER_NODE:-8}
flags=(--preset "$preset" --vocab-file "${VOCAB_FILE:?set VOCAB_FILE}" --data-path ${DATA_PATH:?set DATA_PATH}
  --tensor-model-parallel-size "${TP:-$default_tp}" --sequence-parallel --recompute-activations
  --use-distributed-optimizer
  --micro-batch-size 8 --global-batch-size 256 --seq-length 512
  --train-iters 100000 --lr 1e-4 --min-lr 1e-5 --lr-warmup-fraction 0.01 --lr-decay-style linear
  --weight-decay 0.01 --clip-grad 1.0 --bf16
  --save "${SAVE_DIR:?set SAVE_DIR}" --load "$SAVE_DIR" --save-interval 1000 --log-interval 100
  --tensorboard-dir "$SAVE_DIR/tensorboard" --world-size $((nnodes * gpus)))
if [[ " $* " == *" --dry-run "* ]]; then  # resolve and print, without launching any process
  exec python -m megabio pretrain "${flags[@]}" "$@"
fi
exec torchrun --nnodes "$nnodes" --node-rank "${NODE_RANK:-0}" --nproc-per-node "$gpus" \
  --max-restarts "${MAX_RESTARTS:-3}" \
  --rdzv-backend c10d --rdzv-endpoint "${MASTER_ADDR:-localhost}:${MASTER_PORT:-29500}" \
  -m megabio pretrain "${flags[@]}" "$@"
