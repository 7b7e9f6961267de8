"""apply_stage: row bookkeeping shared by every executor (no Ray needed)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from data_engine.schemas import IMAGE_SAMPLE
from data_engine.stage import REJECT_COLUMN, Stage, StageConfig
from data_engine.stage_runner import StageOutputError, apply_stage


class LengthConfig(StageConfig):
    max_length: int = 0


class LengthStage(Stage[LengthConfig]):
    """Scores rows by payload length; payloads starting with b'!' raise; b'?' is a processing reject."""

    op = "test_length"
    Config = LengthConfig
    decision_reasons = frozenset({"too_long"})
    calls: list[int]

    def __init__(self, config: LengthConfig, name: str | None = None) -> None:
        super().__init__(config, name)
        self.calls = []

    def output_fields(self):
        return (pa.field("length", pa.int64()),)

    def process_batch(self, batch):
        self.calls.append(batch.num_rows)
        payloads = batch.column("image_bytes").to_pylist()
        if any(p.startswith(b"!") for p in payloads):
            raise ValueError("payload starts with !")
        return {"length": [len(p) for p in payloads],
                REJECT_COLUMN: ["questionable" if p.startswith(b"?") else None for p in payloads]}

    def decide(self, scores):
        limit = self.config.max_length
        return ["too_long" if limit and n > limit else None for n in scores.column("length").to_pylist()]


def make_table(payloads, rejected=()):
    n = len(payloads)
    columns = {f.name: [None] * n for f in IMAGE_SAMPLE.fields}
    columns.update(id=[str(i) for i in range(n)], source_dataset=["t"] * n, upstream_id=[f"{i}.jpg" for i in range(n)],
                   license=["x"] * n, image_bytes=payloads)
    for index in rejected:
        columns["reject_reason"][index], columns["reject_stage"][index] = "earlier", "read"
    return pa.table(columns, schema=IMAGE_SAMPLE.arrow())


def test_scores_rejects_and_stats():
    stage = LengthStage(LengthConfig(max_length=3))
    table, stats = apply_stage(stage, make_table([b"ab", b"abcdef", b"?x", b"abc"], rejected=[3]), batch_size=8)
    assert table.column("length").to_pylist() == [2, 6, 2, None]
    assert table.column("reject_reason").to_pylist() == [None, "too_long", "questionable", "earlier"]
    assert table.column("reject_stage").to_pylist() == [None, "test_length", "test_length", "read"]
    assert (stats.rows_in, stats.rows_out) == (3, 1)
    assert stats.rejects == {"too_long": 1, "questionable": 1}
    assert table.schema.field("length").type == pa.int64()


def test_failing_row_is_isolated_and_recorded():
    stage = LengthStage(LengthConfig())
    table, stats = apply_stage(stage, make_table([b"a", b"!boom", b"abc", b"ab"]), batch_size=4)
    assert table.column("reject_reason").to_pylist() == [None, "error:ValueError", None, None]
    assert "payload starts with !" in table.column("reject_detail")[1].as_py()
    assert table.column("length").to_pylist() == [1, None, 3, 2]
    assert stats.rows_out == 3
    assert stage.calls[0] == 4  # the batch was tried whole first


def test_batches_respect_batch_size():
    stage = LengthStage(LengthConfig())
    apply_stage(stage, make_table([b"a"] * 10), batch_size=4)
    assert stage.calls == [4, 4, 2]


def test_undeclared_output_column_is_a_stage_bug():
    class Sloppy(LengthStage):
        def process_batch(self, batch):
            return {"length": [1] * batch.num_rows, "surprise": [0] * batch.num_rows}

    with pytest.raises(StageOutputError, match="surprise"):
        apply_stage(Sloppy(LengthConfig()), make_table([b"a"]), batch_size=4)
