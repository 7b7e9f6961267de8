"""Streaming shard reader for training: accepted rows, a deterministic shuffle, rank sharding, a mixture.

Rows are split by the shards' `split` column (held-out scenes, written by the QA jobs): training reads every
row but `split=eval`, evaluation only `split=eval` rows. Shards of a schema without the column (captions,
latents) are not split: both read all their rows.

Order of one dataset in epoch e: its shards in a shuffled order, and within each shard its accepted rows
(null `reject_reason`) in a shuffled order, both seeded by (data seed, dataset, epoch[, shard]). Rank r of
W takes every W-th row of that sequence; every rank gets the same count per epoch (the remainder of an epoch
is dropped), so ranks stay in step. Shards are read whole and one at a time (a small cache), so the reader
streams through a directory instead of loading it.

The mixture (report 3.1.2: per-dataset sampling ratios, neither uniform nor proportional to size): one
epoch of the mixture draws `round(ratio x accepted rows)` rows from each dataset (this rank's share of
them): ratio 1 reads every row once, 0.5 half of them (the next epoch reads the other half), 2 every row
twice. Rows are interleaved by picking, for each next row, the dataset furthest below its share of the
epoch's rows, so the mix holds at every prefix and each epoch ends with every dataset read exactly its
quota. The whole state is the count of rows taken from each dataset, which is what a checkpoint stores.

`MicroBatchStream` reads `window` rows at a time (never across an epoch's end), lets the task turn them into
examples and plan them into micro-batches, and yields collated micro-batches. Its position is (counts at
the window start, micro-batches already yielded from that window): resuming re-reads one window and skips
what was already trained on. `micro_batches_per_epoch` runs the same planning without collating, which is
how a run given in epochs derives its step count.
"""

from __future__ import annotations

import json
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from data_engine.shards import MANIFEST_NAME, ShardDirError, open_parquet, read_shard, shard_paths
from trainer.config import DatasetSpec
from trainer.core import ExampleError, Sample, Task, TrainerError, synthetic_writer

_SHARD_CACHE_SIZE = 2


def _stable_hash(text: str) -> int:
    return zlib.crc32(text.encode())


@dataclass(frozen=True)
class ShardIndex:
    """Accepted row numbers per shard file of one dataset directory."""

    paths: list[Path]
    accepted: list[np.ndarray]

    @property
    def total(self) -> int:
        return int(sum(len(rows) for rows in self.accepted))


Split = Literal["train", "eval", "all"]


def _in_split(table: pa.Table, split: Split) -> np.ndarray:
    """Which rows of a shard (read with `reject_reason` and, if it has one, `split`) belong to `split`."""
    accepted = table.column("reject_reason").is_null().to_numpy(zero_copy_only=False)
    if split == "all":
        return accepted
    if "split" not in table.column_names:
        return accepted
    held_out = np.array([value == "eval" for value in table.column("split").to_pylist()], dtype=bool)
    return accepted & (held_out if split == "eval" else ~held_out)


def index_dataset(path: Path, schemas: tuple[str, ...], split: Split = "train") -> ShardIndex:
    try:
        paths = shard_paths(path)
    except ShardDirError as exc:
        raise TrainerError(str(exc)) from None
    if not paths:
        raise TrainerError(f"{path}: no part-*.parquet shards")
    manifest = path / MANIFEST_NAME
    if manifest.is_file():
        found = json.loads(manifest.read_text()).get("schema", {})
        found_name = found.get("name") if isinstance(found, dict) else found
        if found_name and found_name not in schemas:
            raise TrainerError(f"{path}: shards are {found_name}, this task reads {' or '.join(schemas)}")
    accepted = []
    for shard in paths:
        try:
            table = read_shard(shard, columns=[c for c in ("reject_reason", "split") if c in open_columns(shard)])
        except ShardDirError as exc:
            raise TrainerError(str(exc)) from None
        accepted.append(np.flatnonzero(_in_split(table, split)))
    index = ShardIndex(paths, accepted)
    if index.total == 0:
        which = "" if split == "all" else f" in split={split}"
        raise TrainerError(f"{path}: no accepted rows{which}")
    return index


def open_columns(shard: Path) -> list[str]:
    try:
        return open_parquet(shard).schema_arrow.names
    except ShardDirError as exc:
        raise TrainerError(str(exc)) from None


def scene_ids(spec: DatasetSpec, schemas: tuple[str, ...], split: Split) -> set[str]:
    """Scene ids (row metadata `scene_id`) of a dataset's accepted rows in `split`; empty for rows without one."""
    index = index_dataset(spec.path, schemas, split)
    found = set()
    for path, rows in zip(index.paths, index.accepted):
        if "metadata" not in open_columns(path):
            continue
        metadata = read_shard(path, columns=["metadata"]).column("metadata").to_pylist()
        for row in rows:
            scene = json.loads(metadata[int(row)] or "{}").get("scene_id")
            if scene:
                found.add(scene)
    return found


class DatasetStream:
    """Rank `rank`'s view of one dataset: row k of this rank's infinite, epoch-by-epoch shuffled sequence."""

    def __init__(self, spec: DatasetSpec, schemas: tuple[str, ...], seed: int, rank: int, world_size: int) -> None:
        self.spec = spec
        self.index = index_dataset(spec.path, schemas)
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.per_rank = self.index.total // world_size
        if self.per_rank == 0:
            raise TrainerError(f"{spec.path}: {self.index.total} accepted rows, fewer than {world_size} ranks")
        self._epoch_order: tuple[int, np.ndarray, np.ndarray] | None = None
        self._tables: OrderedDict[int, pa.Table] = OrderedDict()

    def _order(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(shard number, row number) of every accepted row in epoch `epoch`'s order."""
        if self._epoch_order is None or self._epoch_order[0] != epoch:
            base = [self.seed, _stable_hash(self.spec.name), epoch]
            shard_order = np.random.default_rng(base).permutation(len(self.index.paths))
            shards, rows = [], []
            for shard in shard_order:
                accepted = self.index.accepted[shard]
                rows.append(np.random.default_rng(base + [int(shard)]).permutation(accepted))
                shards.append(np.full(len(accepted), shard))
            self._epoch_order = (epoch, np.concatenate(shards), np.concatenate(rows))
        return self._epoch_order[1], self._epoch_order[2]

    def _table(self, shard: int) -> pa.Table:
        if shard not in self._tables:
            try:
                self._tables[shard] = read_shard(self.index.paths[shard])
            except ShardDirError as exc:
                raise TrainerError(str(exc)) from None
            if len(self._tables) > _SHARD_CACHE_SIZE:
                self._tables.popitem(last=False)
        return self._tables[shard]

    def sample(self, position: int) -> Sample:
        epoch, offset = divmod(position, self.per_rank)
        shards, rows = self._order(epoch)
        where = offset * self.world_size + self.rank
        shard, row = int(shards[where]), int(rows[where])
        record = self._table(shard).slice(row, 1).to_pylist()[0]
        sample_seed = _stable_hash(f"{self.seed}/{self.spec.name}/{epoch}/{shard}/{row}")
        return Sample(row=record, dataset=self.spec.name, general_domain=self.spec.general_domain, seed=sample_seed)


def ensure_synthetic_datasets(datasets: list[DatasetSpec]) -> None:
    """Write each dataset marked `synthetic` whose directory has no shards yet."""
    for spec in datasets:
        if spec.synthetic and not (spec.path.is_dir() and shard_paths(spec.path)):
            synthetic_writer(spec.synthetic)(spec.path, spec.synthetic_rows)


def iter_accepted(spec: DatasetSpec, schemas: tuple[str, ...], split: Split = "eval") -> Iterator[Sample]:
    """Every accepted row of one dataset in `split` once, in file order (evaluation)."""
    index = index_dataset(spec.path, schemas, split)
    for path, rows in zip(index.paths, index.accepted):
        table = read_shard(path)
        for row in rows:
            record = table.slice(int(row), 1).to_pylist()[0]
            yield Sample(row=record, dataset=spec.name, general_domain=spec.general_domain,
                         seed=_stable_hash(f"{spec.name}/{path.name}/{row}"))


def epoch_quota(spec: DatasetSpec, rows: int) -> int:
    """Rows one epoch draws from a dataset of `rows` rows (at least one)."""
    return max(1, round(spec.ratio * rows))


class Mixture:
    """Deterministic interleaving of datasets by per-dataset sampling ratio; its state is the rows taken per
    dataset."""

    def __init__(self, streams: list[DatasetStream]) -> None:
        self.streams = streams
        self.quotas = [epoch_quota(stream.spec, stream.per_rank) for stream in streams]
        self.epoch_rows = sum(self.quotas)
        self.shares = [quota / self.epoch_rows for quota in self.quotas]
        self.taken = [0] * len(streams)

    def remaining_in_epoch(self) -> int:
        return self.epoch_rows - sum(self.taken) % self.epoch_rows

    def next_sample(self) -> Sample:
        after = sum(self.taken) + 1
        deficits = [share * after - taken for share, taken in zip(self.shares, self.taken)]
        chosen = int(np.argmax(deficits))
        sample = self.streams[chosen].sample(self.taken[chosen])
        self.taken[chosen] += 1
        return sample

    def state(self) -> dict[str, int]:
        return {stream.spec.name: taken for stream, taken in zip(self.streams, self.taken)}

    def load_state(self, state: dict[str, int]) -> None:
        self.taken = [int(state.get(stream.spec.name, 0)) for stream in self.streams]


class MicroBatchStream:
    """Infinite iterator of collated micro-batches for one rank; `state()` / `load_state()` for checkpoints."""

    def __init__(self, task: Task, datasets: list[DatasetSpec], *, seed: int, window: int, rank: int,
                 world_size: int) -> None:
        self.task = task
        self.mixture = Mixture([DatasetStream(spec, task.schemas(), seed, rank, world_size) for spec in datasets])
        self.window = window
        self.window_start: dict[str, int] = self.mixture.state()
        self.emitted_in_window = 0
        self.skipped: dict[str, int] = {}
        self._examples: list[Any] = []
        self._groups: list[list[int]] = []

    def _fill_window(self) -> None:
        self.window_start = self.mixture.state()
        self.emitted_in_window = 0
        examples = []
        for _ in range(min(self.window, self.mixture.remaining_in_epoch())):
            sample = self.mixture.next_sample()
            try:
                examples.append(self.task.prepare(sample))
            except ExampleError as exc:
                reason = str(exc).split(":", 1)[0].strip() or "error"
                self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if not examples:
            raise TrainerError(f"a window of {self.window} rows gave no usable example (skipped: {self.skipped})")
        self._examples = examples
        self._groups = self.task.plan_micro_batches(examples)

    def micro_batches_per_epoch(self) -> int:
        """Micro-batches this rank's stream yields over its first epoch (planned, not collated); leaves the
        stream at its start."""
        self.mixture.load_state({})
        count = 0
        while sum(self.mixture.taken) < self.mixture.epoch_rows:
            self._fill_window()
            count += len(self._groups)
        self.mixture.load_state({})
        self.window_start, self.emitted_in_window = self.mixture.state(), 0
        self._examples, self._groups, self.skipped = [], [], {}
        return count

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self

    def __next__(self) -> dict[str, Any]:
        while self.emitted_in_window >= len(self._groups):
            self._fill_window()
        group = self._groups[self.emitted_in_window]
        self.emitted_in_window += 1
        return self.task.collate([self._examples[i] for i in group])

    def state(self) -> dict[str, Any]:
        return {"window_start": dict(self.window_start), "emitted_in_window": self.emitted_in_window}

    def load_state(self, state: dict[str, Any]) -> None:
        self.mixture.load_state(state["window_start"])
        self._fill_window()
        self.emitted_in_window = int(state["emitted_in_window"])
