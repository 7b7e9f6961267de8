"""Data engine: the runtime every job shares and the image/text operators. It imports no client package
(openspatial, render, trainer, pipelines); tests/runtime/test_import_direction.py holds it to that.

Where each concept lives:
- the stage contract `stage.py` (+ `stage_runner.py`); stage base classes `stages/generation_base.py`
  (model stages that prompt a generation backend) and `stages/scorer_base.py` (learned image scorers);
- which module owns each op, reader kind and report section: `registry.py` (clients are added by
  `pipelines/registry.py`, the composition root);
- typed job configs `job.py`; YAML config files and `--set` overrides `config_files.py` (jobs and trainer);
- Ray execution `executor.py`; the output directory's lifecycle (claim, clean-up, resume, manifest,
  lineage, summary) `output_dir.py`; the shard file protocol and reading `shards.py`; storage `storage.py`;
- schemas `schemas.py`; readers `readers.py`, `io/`, `upstream.py`; re-applied thresholds `redecide.py`;
- coordinate conventions, camera conversions and pinhole projection `conventions.py` (openspatial and
  render share it); model references and the tiny-model cache `model_refs.py`;
- operators: `ops/`, `curation/`, `captioning/`, `rebalance/`, one stage per op in `stages/`;
- the HTML report `report/`.
New capabilities get their own subpackage when they arrive (editing data `editing/`, text rendering
`textrender/`, annotation `annotation/`), with their stages registered in `registry.py`.
"""
