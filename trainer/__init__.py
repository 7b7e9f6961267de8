"""Trainer: reads shards; models, objectives, packing, engine setup, checkpoints, CLI."""
