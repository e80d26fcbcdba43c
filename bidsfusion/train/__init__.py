"""The training engine: the per-fold loop, checkpoints and the encoding of representations."""
