"""The checkpoint core, below training and convert: Megatron's layout and `latest` pointer, whole
checkpoints written atomically and read merged over TP, per-rank training checkpoints, TP shard / merge."""

from megabio.checkpoint.layout import CHECKPOINT_FORMAT, LATEST, CheckpointError, read_latest
from megabio.checkpoint.sharding import merge_shards, shard_for_rank
from megabio.checkpoint.store import read_checkpoint, read_checkpoint_config, write_checkpoint
from megabio.checkpoint.training import latest_iteration, load_checkpoint, save_checkpoint

__all__ = ["CHECKPOINT_FORMAT", "LATEST", "CheckpointError", "latest_iteration", "load_checkpoint", "merge_shards",
           "read_checkpoint", "read_checkpoint_config", "read_latest", "save_checkpoint", "shard_for_rank",
           "write_checkpoint"]
