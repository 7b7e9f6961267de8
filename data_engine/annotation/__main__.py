"""`python -m data_engine.annotation export|import|report|audit|decide`: the human scoring workflow.

    export SHARD_DIR --sentinels POOL.parquet --out BATCH_DIR --batch-id ID --size N   # Label Studio tasks
    import BATCH_DIR EXPORT.json [--users USERS.json]     # Label Studio's JSON export -> annotations.parquet
    report BATCH_DIR [--ledger DIR]                        # QC summary as JSON
    audit BATCH_DIR --out AUDIT_DIR --batch-id ID          # 5% of the accepted items, as an audit batch
    decide AUDIT_DIR [--ledger DIR]                        # after importing the audit: passed | returned

Bad input is a one-line error and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from data_engine.annotation.audit import (DEFAULT_ACCEPT_THRESHOLD, DEFAULT_AUDIT_FRACTION,
                                          DEFAULT_MAX_LOW_QUALITY_RATE, decide_audit, default_ledger, export_audit)
from data_engine.annotation.batch import DEFAULT_SENTINEL_FRACTION, AnnotationError, export_batch, import_annotations
from data_engine.annotation.rubric import RubricError
from data_engine.annotation.summary import batch_summary
from data_engine.shards import ShardDirError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m data_engine.annotation", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="a batch of shard rows as Label Studio tasks, sentinels mixed in")
    export.add_argument("shard_dir", type=Path)
    export.add_argument("--sentinels", type=Path, required=True, help="Parquet: id, image_bytes, one score per dimension")
    export.add_argument("--out", type=Path, required=True)
    export.add_argument("--batch-id", required=True)
    export.add_argument("--size", type=int, required=True, help="tasks in the batch, sentinels included")
    export.add_argument("--sentinel-fraction", type=float, default=DEFAULT_SENTINEL_FRACTION)
    export.add_argument("--seed", type=int, default=0)
    export.add_argument("--image-max-side", type=int, default=1024)
    imported = commands.add_parser("import", help="Label Studio's JSON export into annotations.parquet")
    imported.add_argument("batch_dir", type=Path)
    imported.add_argument("export", type=Path)
    imported.add_argument("--users", type=Path, help="GET /api/users output, to name annotators by email")
    report = commands.add_parser("report", help="the batch's quality-control summary as JSON")
    report.add_argument("batch_dir", type=Path)
    report.add_argument("--ledger", type=Path)
    report.add_argument("--accept-threshold", type=float, default=DEFAULT_ACCEPT_THRESHOLD)
    audit = commands.add_parser("audit", help="sample the batch's accepted items into an audit batch")
    audit.add_argument("batch_dir", type=Path)
    audit.add_argument("--out", type=Path, required=True)
    audit.add_argument("--batch-id", required=True)
    audit.add_argument("--fraction", type=float, default=DEFAULT_AUDIT_FRACTION)
    audit.add_argument("--accept-threshold", type=float, default=DEFAULT_ACCEPT_THRESHOLD)
    audit.add_argument("--seed", type=int, default=0)
    decide = commands.add_parser("decide", help="the audit's decision, appended to the ledger")
    decide.add_argument("audit_dir", type=Path)
    decide.add_argument("--ledger", type=Path)
    decide.add_argument("--max-low-quality-rate", type=float, default=DEFAULT_MAX_LOW_QUALITY_RATE)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "export":
            result = export_batch(args.shard_dir, args.sentinels, args.out, batch_id=args.batch_id, size=args.size,
                                  sentinel_fraction=args.sentinel_fraction, seed=args.seed,
                                  image_max_side=args.image_max_side)
        elif args.command == "import":
            table = import_annotations(args.batch_dir, args.export, args.users)
            result = {"annotations": table.num_rows, "written": str(args.batch_dir / "annotations.parquet")}
        elif args.command == "report":
            result = batch_summary(args.batch_dir, args.ledger or default_ledger(args.batch_dir), args.accept_threshold)
        elif args.command == "audit":
            result = export_audit(args.batch_dir, args.out, audit_batch_id=args.batch_id, fraction=args.fraction,
                                  accept_threshold=args.accept_threshold, seed=args.seed)
        else:
            result = decide_audit(args.audit_dir, args.ledger or default_ledger(args.audit_dir),
                                  max_rate=args.max_low_quality_rate)
    except (AnnotationError, RubricError, ShardDirError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
