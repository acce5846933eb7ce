"""The training engine: fit loop, evaluation, checkpoints, distributed helpers."""
