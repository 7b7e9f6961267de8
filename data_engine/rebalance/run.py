"""The Rebalance step as a global decision of the rebalance job's last stage (`data_engine/stages/rebalance.py`):
global tag counts over every row that reaches it, one decision per sample (rows never dropped: a downsampled
row is rejected with `rebalance_downsampled`), plus the summary the HTML report draws
(`data_engine/rebalance/report.py`), read back from the decided shards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from data_engine.rebalance.report import rebalance_summary, write_rebalance_summary
from data_engine.rebalance.sampling import Decision, RebalanceConfig, rebalance
from data_engine.shards import iter_shards

STAGE_NAME = "rebalance"
REJECT_REASON = "rebalance_downsampled"
# The decision of each row that reaches the stage; `rebalance_kept` is what decide() reads.
ADDED_FIELDS = (pa.field("rebalance_category", pa.string()), pa.field("rebalance_category_count", pa.int64()),
                pa.field("rebalance_keep_probability", pa.float32()), pa.field("rebalance_kept", pa.bool_()))


def decision_columns(candidates: pa.Table, config: RebalanceConfig) -> dict[str, list[Any]]:
    """The ADDED_FIELDS columns for `candidates` (`id`, `tags`), decided over all of them at once."""
    decisions = rebalance(candidates.column("id").to_pylist(),
                          [tags or [] for tags in candidates.column("tags").to_pylist()], config)
    return {"rebalance_category": [d.category for d in decisions],
            "rebalance_category_count": [d.category_count for d in decisions],
            "rebalance_keep_probability": [d.keep_probability for d in decisions],
            "rebalance_kept": [d.keep for d in decisions]}


def write_summary(shard_dir: Path, config: RebalanceConfig) -> None:
    """The report's summary of the decisions stored in a rebalanced output."""
    columns = ["id", "tags", "tag_names", "embedded_caption", "captions", *(f.name for f in ADDED_FIELDS)]
    decisions, ids, tags, names, texts = [], [], [], {}, {}
    for _, table in iter_shards(shard_dir, columns=columns):
        for row in table.to_pylist():
            if row["rebalance_kept"] is None:  # never reached the stage
                continue
            decisions.append(Decision(row["rebalance_category"], row["rebalance_category_count"],
                                      row["rebalance_keep_probability"], row["rebalance_kept"]))
            ids.append(row["id"])
            tags.append(row["tags"] or [])
            names.update(zip(row["tags"] or [], row["tag_names"] or []))
            texts[row["id"]] = dict(row["captions"] or []).get(row["embedded_caption"])
    write_rebalance_summary(shard_dir, rebalance_summary(decisions, ids, tags, names, texts, config))
