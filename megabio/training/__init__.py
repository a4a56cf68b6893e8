"""Pretraining: train loop, optimizer and LR schedule, mixed precision, checkpoints, logging."""
