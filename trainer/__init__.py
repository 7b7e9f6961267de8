"""Trainer: reads shards; models, objectives, packing, engine setup, checkpoints, CLI.

Where each concept lives: the extension point (`Task`, `register_task`) `core.py`; the loop `loop.py`;
configs `config.py` (YAML and `--set` through `data_engine.config_files`, never the job layer); shard
reading and mixing `data.py`; packing `packing.py`; DeepSpeed `engine.py`; checkpoints `checkpoint.py`;
models `models/`; objectives `objectives/`; evaluation `evaluation/` (spatial QA scoring, the report's table
metrics, Thinking with Novel Views); the report section `report.py`; the tiny test models `tiny_models.py`
(built into the cache `data_engine.model_refs` reads). RL objectives join `objectives/`; rewards get
`rewards/`. Data reaches the trainer only through shards.
"""
