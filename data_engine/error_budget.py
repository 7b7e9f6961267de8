"""Error budgets: how many `error:<Type>` rows (a stage raised on the row) a stage may produce before the job
counts as failed.

An error row is a failure of the code or of a service, not a property of the data, so a systematic bug would
otherwise reject every row while the job exits 0. The job still writes every shard (nothing is lost, and a
rerun after the fix redoes only what it must); the check runs after the manifest and fails the run in one line
naming the stage, the count, the fraction and the most frequent error with one of its messages.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pyarrow as pa

from data_engine.job import JobConfig
from data_engine.shards import ShardDir, iter_shards

ERROR_PREFIX = "error:"


class ErrorBudgetExceeded(RuntimeError):
    """A stage's error rows exceed its max_error_fraction; str() is one line."""


class ErrorTally:
    """Error rows by `stage:error:<Type>`, with the first message seen for each."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, str | None] = {}

    def add(self, table: pa.Table) -> None:
        for stage, reason, detail in zip(table.column("reject_stage").to_pylist(),
                                         table.column("reject_reason").to_pylist(),
                                         table.column("reject_detail").to_pylist()):
            if reason is not None and reason.startswith(ERROR_PREFIX):
                key = f"{stage}:{reason}"
                self.counts[key] += 1
                self.examples.setdefault(key, detail)

    def report(self) -> dict[str, dict[str, Any]]:
        """{"stage:error:Type": {"count": n, "example": message}}, most frequent first."""
        return {key: {"count": count, "example": self.examples[key]} for key, count in self.counts.most_common()}


def error_fraction_limits(job: JobConfig) -> dict[str, float]:
    """Each stage's max_error_fraction: its own, else the job's default."""
    return {spec.name: job.max_error_fraction if spec.max_error_fraction is None else spec.max_error_fraction
            for spec in job.stages}


def check_error_budget(manifest: dict[str, Any], limits: dict[str, float], out_dir: ShardDir) -> None:
    """Raise ErrorBudgetExceeded for the first stage (in job order) whose error rows exceed its limit."""
    for stage in manifest["stages"]:
        if stage["name"] not in limits or not stage["rows_in"]:
            continue
        errors = {reason: count for reason, count in stage["rejects"].items() if reason.startswith(ERROR_PREFIX)}
        fraction = sum(errors.values()) / stage["rows_in"]
        if fraction <= limits[stage["name"]]:
            continue
        tally = ErrorTally()
        for _, table in iter_shards(out_dir, columns=["reject_stage", "reject_reason", "reject_detail"]):
            tally.add(table)
        reason, count = max(errors.items(), key=lambda item: (item[1], item[0]))
        example = tally.examples.get(f"{stage['name']}:{reason}") or ""
        raise ErrorBudgetExceeded(
            f"stage {stage['name']}: {sum(errors.values())} error rows of {stage['rows_in']} "
            f"({fraction:.1%} > max_error_fraction {limits[stage['name']]:g}); most frequent {reason} "
            f"x{count}: {' '.join(example.split())[:200]}"
        )
