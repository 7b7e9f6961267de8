"""Streaming shard reader: accepted rows only, rank sharding, deterministic shuffle, mixture, exact position."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from data_engine.schemas import QA_CONVERSATION
from data_engine.shards import write_shard
from trainer.config import DatasetSpec
from trainer.core import ExampleError, RunContext, Sample, Task, TrainerError
from trainer.data import DatasetStream, Mixture, MicroBatchStream, iter_accepted
from trainer.synthetic_qa import synthetic_row, write_synthetic_qa


class RowIdTask(Task):
    """Examples are row ids; a micro-batch is a list of them. Rows whose id ends in 3 are unusable."""

    schema = "qa_conversation"

    def prepare(self, sample: Sample) -> str:
        if sample.row["id"].endswith("3"):
            raise ExampleError(f"odd_row: {sample.row['id']}")
        return sample.row["id"]

    def collate(self, examples: list[str]) -> dict[str, Any]:
        return {"ids": list(examples)}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, DatasetSpec]:
    root = tmp_path_factory.mktemp("qa")
    write_synthetic_qa(root / "spatial", "spatial_qa", 50, shard_rows=16, held_out_every=0)  # all 45 train
    write_synthetic_qa(root / "general", "general_qa", 30, shard_rows=16)
    return {"spatial": DatasetSpec(name="spatial", path=root / "spatial", ratio=3),
            "general": DatasetSpec(name="general", path=root / "general", ratio=1, general_domain=True)}


def rank_ids(spec: DatasetSpec, rank: int, world: int, count: int, seed: int = 0) -> list[str]:
    stream = DatasetStream(spec, ("qa_conversation",), seed, rank, world)
    return [stream.sample(k).row["id"] for k in range(count)]


def test_only_accepted_rows_and_ranks_partition_an_epoch(datasets: dict[str, DatasetSpec]) -> None:
    spec = datasets["spatial"]
    accepted = [s.row["id"] for s in iter_accepted(spec, ("qa_conversation",), split="train")]
    assert len(accepted) == 45 and not any(s.endswith(("09", "19", "29", "39", "49")) for s in accepted)
    per_rank = 45 // 2
    rank0, rank1 = rank_ids(spec, 0, 2, per_rank), rank_ids(spec, 1, 2, per_rank)
    assert not set(rank0) & set(rank1)
    assert set(rank0) | set(rank1) <= set(accepted) and len(set(rank0) | set(rank1)) == 2 * per_rank
    # Deterministic, shuffled, and a new order each epoch.
    assert rank0 == rank_ids(spec, 0, 2, per_rank)
    assert rank0 != sorted(rank0)
    next_epoch = rank_ids(spec, 0, 2, 2 * per_rank)[per_rank:]
    next_union = set(next_epoch) | set(rank_ids(spec, 1, 2, 2 * per_rank)[per_rank:])
    assert next_epoch != rank0 and next_union <= set(accepted) and len(next_union) == 2 * per_rank
    assert rank0 != rank_ids(spec, 0, 2, per_rank, seed=1)


def test_mixture_keeps_ratios_at_every_prefix(datasets: dict[str, DatasetSpec]) -> None:
    # 45 accepted spatial rows x ratio 3 = 135 per epoch, 27 general rows x ratio 1 = 27: shares 5 to 1
    streams = [DatasetStream(datasets[name], ("qa_conversation",), 0, 0, 1) for name in ("spatial", "general")]
    mixture = Mixture(streams)
    picks = [mixture.next_sample() for _ in range(36)]
    for prefix in (6, 12, 24, 36):
        counts = Counter(sample.dataset for sample in picks[:prefix])
        assert counts["spatial"] == 5 * prefix // 6 and counts["general"] == prefix // 6
    assert all(sample.general_domain == (sample.dataset == "general") for sample in picks)
    assert mixture.state() == {"spatial": 30, "general": 6}


def test_each_epoch_draws_ratio_times_rows_from_each_dataset_whatever_the_sizes(
        datasets: dict[str, DatasetSpec]) -> None:
    """Per-dataset sampling ratios (report 3.1.2): the bigger dataset at ratio 0.4 gives 18 of its 45 rows per
    epoch (the next epoch 18 others), the smaller one at ratio 2 every one of its 27 rows twice."""
    specs = [datasets["spatial"].model_copy(update={"ratio": 0.4}),
             datasets["general"].model_copy(update={"ratio": 2.0})]
    mixture = Mixture([DatasetStream(spec, ("qa_conversation",), 0, 0, 1) for spec in specs])
    assert mixture.quotas == [18, 54] and mixture.epoch_rows == 72
    epochs = [[mixture.next_sample() for _ in range(72)] for _ in range(2)]
    for picks in epochs:
        per_dataset = Counter(sample.dataset for sample in picks)
        assert per_dataset == {"spatial": 18, "general": 54}
        general = Counter(sample.row["id"] for sample in picks if sample.dataset == "general")
        assert len(general) == 27 and set(general.values()) == {2}
        for prefix in range(1, 73):  # the mix holds at every prefix, within one row
            spatial = sum(sample.dataset == "spatial" for sample in picks[:prefix])
            assert abs(spatial - prefix * 18 / 72) < 1
    first, second = ({sample.row["id"] for sample in picks if sample.dataset == "spatial"} for picks in epochs)
    assert len(first) == len(second) == 18 and not first & second


def make_stream(datasets: dict[str, DatasetSpec], micro_batch_size: int = 3) -> MicroBatchStream:
    context = RunContext(rank=0, world_size=1, device="cpu", dtype=None, out_dir=Path("."))
    task = RowIdTask(RowIdTask.config_model(), context, micro_batch_size)
    return MicroBatchStream(task, list(datasets.values()), seed=0, window=10, rank=0, world_size=1)


def test_stream_resumes_at_the_exact_micro_batch(datasets: dict[str, DatasetSpec]) -> None:
    uninterrupted = make_stream(datasets)
    expected = [next(uninterrupted)["ids"] for _ in range(12)]
    assert sum(len(ids) for ids in expected) > 20  # several windows
    assert uninterrupted.skipped.get("odd_row", 0) > 0  # skipped rows are counted, never silent

    first = make_stream(datasets)
    head = [next(first)["ids"] for _ in range(5)]
    state = json.loads(json.dumps(first.state()))  # as stored in a checkpoint
    resumed = make_stream(datasets)
    resumed.load_state(state)
    assert head + [next(resumed)["ids"] for _ in range(7)] == expected


def test_bad_directories_fail_with_one_line(tmp_path: Path, datasets: dict[str, DatasetSpec]) -> None:
    with pytest.raises(TrainerError, match="not a directory"):
        DatasetStream(DatasetSpec(name="x", path=tmp_path / "missing"), ("qa_conversation",), 0, 0, 1)
    with pytest.raises(TrainerError, match="shards are qa_conversation, this task reads caption"):
        DatasetStream(datasets["spatial"], ("caption",), 0, 0, 1)
    rejected = dict(synthetic_row("spatial_qa", 0, 0), reject_reason="blurry")
    write_shard(tmp_path, 0, pa.Table.from_pylist([rejected], schema=QA_CONVERSATION.arrow()), [])
    with pytest.raises(TrainerError, match="no accepted rows"):
        DatasetStream(DatasetSpec(name="x", path=tmp_path), ("qa_conversation",), 0, 0, 1)


def test_an_epoch_of_micro_batches_ends_with_the_mixture_epoch(datasets: dict[str, DatasetSpec]) -> None:
    """Windows stop at the epoch's end, so the micro-batches of one epoch hold exactly its rows: counted by
    hand, 10-row windows over the 72-row epoch (7 of 10, then 2), rows ending in 3 skipped, 3 per micro-batch."""
    specs = {"spatial": datasets["spatial"].model_copy(update={"ratio": 0.4}),
             "general": datasets["general"].model_copy(update={"ratio": 2.0})}
    reference = Mixture([DatasetStream(spec, ("qa_conversation",), 0, 0, 1) for spec in specs.values()])
    rows = [reference.next_sample().row["id"] for _ in range(72)]
    windows = [rows[start:start + 10] for start in range(0, 72, 10)]
    usable = [[row for row in window if not row.endswith("3")] for window in windows]
    expected = sum(-(-len(window) // 3) for window in usable)

    stream = make_stream(specs)
    assert stream.micro_batches_per_epoch() == expected
    yielded = [next(stream)["ids"] for _ in range(expected)]  # the count left the stream at its start
    assert [row for ids in yielded for row in ids] == [row for window in usable for row in window]
    assert stream.mixture.state() == {"spatial": 18, "general": 54}
