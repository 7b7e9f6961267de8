"""The Rebalance step over a tagged shard directory: global tag counts, one decision per sample, shards
out (rows never dropped: a downsampled row carries `rebalance_downsampled`), plus the summary the HTML report
draws (`data_engine/rebalance/report.py`).

    python -m data_engine.rebalance --input out/demo/tagged --out out/demo/rebalanced [--config FILE.yaml]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import yaml
from pydantic import ValidationError

from data_engine.output_dir import write_manifest
from data_engine.rebalance.report import rebalance_summary, write_rebalance_summary
from data_engine.rebalance.sampling import RebalanceConfig, RebalanceInputError, check_unique_ids, rebalance
from data_engine.shards import ShardDirError, iter_shards, read_manifest, shard_file_name, write_shard
from data_engine.stage import StageStats

STAGE_NAME = "rebalance"
REJECT_REASON = "rebalance_downsampled"
ADDED_FIELDS = (pa.field("rebalance_category", pa.string()), pa.field("rebalance_category_count", pa.int64()),
                pa.field("rebalance_keep_probability", pa.float32()))


def _with_decisions(table: pa.Table, decided: dict[str, Any]) -> pa.Table:
    rows = table.to_pylist()
    for row in rows:
        decision = decided.get(row["id"])
        row.update(rebalance_category=None, rebalance_category_count=None, rebalance_keep_probability=None)
        if decision is None:
            continue
        row.update(rebalance_category=decision.category, rebalance_category_count=decision.category_count,
                   rebalance_keep_probability=decision.keep_probability)
        if not decision.keep:
            row.update(reject_reason=REJECT_REASON, reject_stage=STAGE_NAME,
                       reject_detail=f"category {decision.category} (count {decision.category_count}) "
                                     f"kept with p={decision.keep_probability:.4f}")
    fields = [f for f in table.schema if f.name not in {a.name for a in ADDED_FIELDS}] + list(ADDED_FIELDS)
    return pa.Table.from_pylist(rows, schema=pa.schema(fields, metadata=table.schema.metadata))


def run_rebalance(input_dir: Path, out_dir: Path, config: RebalanceConfig) -> dict[str, Any]:
    started = time.perf_counter()
    columns = ["id", "reject_reason", "tags", "tag_names", "embedded_caption", "captions"]
    ids, tags, names, examples_text, every_id = [], [], {}, {}, []
    for _, table in iter_shards(input_dir, columns=columns):
        every_id += table.column("id").to_pylist()
        for row in table.to_pylist():
            if row["reject_reason"] is None:
                ids.append(row["id"])
                tags.append(row["tags"] or [])
                names.update(zip(row["tags"] or [], row["tag_names"] or []))
                examples_text[row["id"]] = dict(row["captions"] or []).get(row["embedded_caption"])
    check_unique_ids(every_id)  # a decision is applied by id, so two rows with one id would share it
    decisions = rebalance(ids, tags, config)
    decided = dict(zip(ids, decisions))
    out_dir.mkdir(parents=True, exist_ok=True)
    shards, total = [], StageStats(STAGE_NAME)
    for shard_id, (path, table) in enumerate(iter_shards(input_dir)):
        out = _with_decisions(table, decided)
        stats = StageStats(STAGE_NAME, rows_in=sum(1 for r in table.column("reject_reason").to_pylist() if r is None))
        reasons = out.column("reject_reason").to_pylist()
        stats.add_rejects([r for r, before in zip(reasons, table.column("reject_reason").to_pylist())
                           if before is None and r == REJECT_REASON])
        stats.rows_out = stats.rows_in - sum(stats.rejects.values())
        write_shard(out_dir, shard_id, out, [stats.to_json()])
        total.merge(stats)
        shards.append({"file": shard_file_name(shard_id), "rows": out.num_rows, "from": path.name})
    total.seconds = time.perf_counter() - started
    write_rebalance_summary(out_dir, rebalance_summary(decisions, ids, tags, names, examples_text, config))
    upstream = read_manifest(input_dir)
    manifest = {
        "schema": upstream["schema"], "job": STAGE_NAME, "stage_output": STAGE_NAME,
        "config": config.model_dump(mode="json"),
        "config_hash": hashlib.sha256(json.dumps(config.model_dump(mode="json"), sort_keys=True).encode()).hexdigest(),
        "input": {"uri": str(input_dir), "upstream": {"job": upstream.get("job"), "config_hash": upstream.get("config_hash")}},
        "rows_in": sum(s["rows"] for s in shards), "rows_written": sum(s["rows"] for s in shards),
        "rows_accepted": total.rows_out, "rejects": {f"{STAGE_NAME}:{k}": v for k, v in total.rejects.items()},
        "stages": [total.to_json()], "shards": shards,
    }
    write_manifest(out_dir, manifest)
    return manifest


class RebalanceConfigError(ValueError):
    """A rebalance config file that does not validate; the message names the file and the field."""


def load_rebalance_config(path: Path | None) -> RebalanceConfig:
    """RebalanceConfig from a YAML file of its fields (defaults when no file is given)."""
    try:
        return RebalanceConfig.model_validate((yaml.safe_load(path.read_text()) if path else None) or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise RebalanceConfigError(f"{path}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    except yaml.YAMLError as exc:
        raise RebalanceConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_engine.rebalance", description=__doc__)
    parser.add_argument("--input", required=True, type=Path, help="tagged shards (output of rebalance.yaml)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--config", type=Path, help="YAML with RebalanceConfig fields")
    args = parser.parse_args(argv)
    try:
        manifest = run_rebalance(args.input, args.out, load_rebalance_config(args.config))
    except (RebalanceConfigError, RebalanceInputError, ShardDirError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"output": str(args.out), "rows_accepted": manifest["rows_accepted"],
                      "rejects": manifest["rejects"]}))
    return 0
