"""Held-out evaluation: eval reads only `split=eval` rows (training never does), and stops with one line when
its rows share scene ids with the training rows."""

from __future__ import annotations

import pyarrow as pa
import pytest

from data_engine.schemas import QA_CONVERSATION
from data_engine.shards import read_shard, shard_paths, write_shard
from tests.trainer.conftest import tiny_config, write_config
from trainer.cli import main as cli_main
from trainer.config import DatasetSpec
from trainer.data import iter_accepted, scene_ids
from trainer.synthetic_qa import write_synthetic_qa

SCHEMAS = ("qa_conversation",)


@pytest.fixture()
def spatial(tmp_path):
    write_synthetic_qa(tmp_path / "spatial", "spatial_qa", 30, shard_rows=10)
    return DatasetSpec(name="spatial", path=tmp_path / "spatial")


def test_eval_and_training_rows_are_disjoint_by_scene(spatial):
    every = [s.row["id"] for s in iter_accepted(spatial, SCHEMAS, "all")]
    held_out_ids = [s.row["id"] for s in iter_accepted(spatial, SCHEMAS, "eval")]
    assert len(every) == 27 and len(held_out_ids) == 6  # rows 2, 7, ..., 27 held out; 9, 19, 29 rejected
    assert all(int(row_id[-2:]) % 5 == 2 for row_id in held_out_ids)
    held_out = {s.row["id"] for s in iter_accepted(spatial, SCHEMAS, "eval")}
    training = {s.row["id"] for s in iter_accepted(spatial, SCHEMAS, "train")}
    assert held_out and training and not held_out & training
    assert all(s.row["split"] == "eval" for s in iter_accepted(spatial, SCHEMAS, "eval"))
    assert not scene_ids(spatial, SCHEMAS, "eval") & scene_ids(spatial, SCHEMAS, "train")


def test_eval_stops_with_one_line_when_held_out_scenes_were_trained_on(spatial, tmp_path, capsys):
    # The same rows, every one marked train: a training set that contains the held-out scenes.
    leaked = tmp_path / "leaked"
    leaked.mkdir()
    for number, path in enumerate(shard_paths(spatial.path)):
        rows = read_shard(path).to_pylist()
        for row in rows:
            row["split"] = "train"
        write_shard(leaked, number, pa.Table.from_pylist(rows, schema=QA_CONVERSATION.arrow()), [])
    config = tiny_config({"spatial": leaked, "general": tmp_path / "general"}, tmp_path / "run")
    config["data"]["datasets"] = config["data"]["datasets"][:1]
    config_file = write_config(tmp_path / "config.yaml", config)
    assert cli_main(["eval", "--config", str(config_file), "--checkpoint", "base", "--data", str(spatial.path)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("trainer: error: eval shards share 6 scene ids with the training data")
    assert "\n" not in error and "spatial_qa-0-000002" in error


def test_eval_without_held_out_rows_is_a_one_line_error(tmp_path, capsys):
    write_synthetic_qa(tmp_path / "general", "general_qa", 10, shard_rows=10)  # general rows are never held out
    config_file = write_config(tmp_path / "config.yaml", tiny_config(
        {"spatial": tmp_path / "general", "general": tmp_path / "general"}, tmp_path / "run"))
    assert cli_main(["eval", "--config", str(config_file), "--checkpoint", "base",
                     "--data", str(tmp_path / "general")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("trainer: error: no accepted split=eval rows in") and "\n" not in error
