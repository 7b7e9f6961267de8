"""`python -m pipelines`: run, validate, inspect, redecide and calibrate jobs, and write the HTML report. Usage
errors exit 2 with one line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from data_engine.config_files import parse_override
from data_engine.error_budget import ErrorBudgetExceeded, ErrorTally
from data_engine.job import JobConfigError
from data_engine.lineage import lineage, lineage_lines
from data_engine.nodes import StageSetupFailed
from data_engine.readers import InputError
from data_engine.schemas import SchemaError
from data_engine.shards import ShardDirError, iter_shards, read_manifest
from data_engine.stage import StageUnavailable
from data_engine.storage import Location, StorageError, as_location, resolve
from pipelines.jobfile import load_job

# Failures a user fixes in a config or on a node, reported in one line (exit 2) instead of a traceback.
USAGE_ERRORS = (JobConfigError, InputError, ShardDirError, SchemaError, StageUnavailable, StageSetupFailed,
                StorageError)


def _cmd_run(args: argparse.Namespace) -> int:
    from data_engine.executor import run_job

    # --out is the job's `output` (a JSON string is YAML that stays a string), validated with the rest of the
    # job, so an output outside the storage allow-list is refused before Ray starts.
    out_override = [f"output={json.dumps(args.out)}"] if args.out else []
    job = load_job(Path(args.job), [*args.set, *out_override])
    manifest = run_job(job, address=args.address, progress=not args.no_progress)
    print(json.dumps({"output": str(resolve(job.output, job.storage)), "rows_written": manifest["rows_written"],
                      "rows_accepted": manifest["rows_accepted"]}))
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    job = load_job(Path(args.job), args.set)
    stages = " -> ".join(["read"] + [spec.name for spec in job.stages])
    print(f"{args.job}: ok ({job.name}: {stages}; schema {job.schema_name}; config hash {job.config_hash()[:12]})")
    return 0


def _bytes_summary(value: Any) -> Any:
    return f"<{len(value)} bytes>" if isinstance(value, bytes) else value


def inspect_shards(shard_dir: str | Path | Location, sample_rows: int) -> dict[str, Any]:
    """`shard_dir`: a path or a storage URI (endpoint and allow-list from the environment, see
    data_engine.storage)."""
    shard_dir = as_location(shard_dir)
    manifest = read_manifest(shard_dir)
    reasons: Counter[str] = Counter()
    rows = 0
    samples: list[dict[str, Any]] = []
    errors = ErrorTally()
    schema = None
    for _, table in iter_shards(shard_dir):
        schema = schema or table.schema
        rows += table.num_rows
        errors.add(table)
        for reason, stage in zip(table.column("reject_reason").to_pylist(), table.column("reject_stage").to_pylist()):
            if reason is not None:
                reasons[f"{stage}:{reason}"] += 1
        for row in table.slice(0, max(0, sample_rows - len(samples))).to_pylist():
            samples.append({key: _bytes_summary(value) for key, value in row.items()})
    return {
        "path": str(shard_dir),
        "schema": manifest["schema"],
        "columns": {field.name: str(field.type) for field in schema} if schema else {},
        "rows": rows,
        "rows_accepted": rows - sum(reasons.values()),
        "rejects": dict(reasons.most_common()),
        "errors": errors.report(),
        "manifest_rows_written": manifest["rows_written"],
        "samples": samples,
    }


def _cmd_inspect(args: argparse.Namespace) -> int:
    if args.lineage:
        chain = lineage(args.shard_dir)
        if args.json:
            print(json.dumps([{"directory": link.directory, "job": link.job,
                               "config_hash": link.manifest.get("config_hash"), "changed_since": link.changed_since,
                               "input": link.input_uri, **{key: link.manifest.get(key) for key in
                                                           ("rows_in", "rows_written", "rows_accepted")}}
                              for link in chain], indent=2))
        else:
            print("\n".join(lineage_lines(chain)))
        return 0
    report = inspect_shards(args.shard_dir, args.rows)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    print(f"{report['path']}: schema {report['schema']['name']} v{report['schema']['version']}, "
          f"{report['rows']} rows, {report['rows_accepted']} accepted")
    print("columns: " + ", ".join(f"{name}: {kind}" for name, kind in report["columns"].items()))
    print("rejects:" + ("".join(f"\n  {reason}: {count}" for reason, count in report["rejects"].items()) or " none"))
    print("errors:" + ("".join(f"\n  {reason}: {entry['count']}, e.g. {entry['example']}"
                                for reason, entry in report["errors"].items()) or " none"))
    for sample in report["samples"]:
        print("  " + json.dumps(sample, default=str))
    return 0


def _threshold_overrides(texts: list[str]) -> dict[str, dict[str, Any]]:
    """`stages.NAME.config.FIELD=value` (or the short `NAME.FIELD=value`) -> {NAME: {FIELD: value}}."""
    overrides: dict[str, dict[str, Any]] = {}
    for text in texts:
        path, value = parse_override(text)
        if len(path) == 4 and path[0] == "stages" and path[2] == "config":
            stage, field = path[1], path[3]
        elif len(path) == 2:
            stage, field = path
        else:
            raise JobConfigError(f"--set {text!r}: expected stages.STAGE.config.FIELD=value")
        overrides.setdefault(stage, {})[field] = value
    return overrides


def _cmd_redecide(args: argparse.Namespace) -> int:
    from data_engine.output_dir import output_lock, summary_lines
    from data_engine.redecide import redecide
    from data_engine.storage import as_location

    # The lock is taken here, not in redecide(): a job's own finalisation calls redecide() while holding it.
    with output_lock(as_location(Path(args.shard_dir))):
        manifest = redecide(Path(args.shard_dir), _threshold_overrides(args.set))
    for line in summary_lines(manifest):
        print(line)
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from data_engine.calibrate import calibrate, redecide_command

    result = calibrate(Path(args.shard_dir), args.target_retention, args.stage)
    if args.json:
        print(json.dumps(result.__dict__ | {"redecide": redecide_command(args.shard_dir, result.thresholds)}, indent=2))
        return 0
    print(f"{args.shard_dir}: target retention {result.target:g}; now {result.current_retention:.3f}; proposed "
          f"{result.retention:.3f} ({result.accepted} of {result.rows} rows) with every score threshold scaled "
          f"by k = {result.scale:.4g} (lower bounds x k, upper bounds / k)")
    for note in result.notes:
        print(f"note: {note}")
    print("thresholds:")
    for stage, fields in result.thresholds.items():
        print(f"  {stage}: " + ", ".join(f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}"
                                      for name, value in fields.items()))
    print("funnel:")
    for entry in result.funnel:
        rejects = ", ".join(f"{reason} {count}" for reason, count in entry["rejects"].items())
        print(f"  {entry['name']:<16} {entry['rows_in']:>8} in {entry['rows_out']:>8} out"
              + (f"  ({rejects})" if rejects else ""))
    print("apply with:")
    print(f"  {redecide_command(args.shard_dir, result.thresholds)}")
    return 0


def _dashboard_address(args: argparse.Namespace) -> str:
    address = args.address or os.environ.get("RAY_ADDRESS")
    if not address:
        raise JobConfigError("no cluster address: pass --address http://HEAD:8265 or set RAY_ADDRESS")
    return address


def _cmd_submit(args: argparse.Namespace) -> int:
    from pipelines import cluster

    address = _dashboard_address(args)
    job_id = cluster.submit(Path(args.job), args.set, address, out=args.out)
    print(job_id, flush=True)
    # Without --wait, return once every node passed the job's checks, so a broken node is reported here.
    state = cluster.wait(job_id, address, timeout_s=args.timeout, until_nodes_ready=not args.wait)
    if state == "FAILED":
        print(cluster.failure_line(cluster.logs(job_id, address)), file=sys.stderr)
        print(f"{job_id}: FAILED; full log (worker tracebacks): python -m pipelines logs {job_id} "
              f"--address {address}", file=sys.stderr)
        return 1
    if args.wait:
        print(cluster.logs(job_id, address), end="")
        print(f"{job_id}: {state}")
        return 0 if state == "SUCCEEDED" else 1
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from pipelines import cluster

    print(cluster.status(args.job_id, _dashboard_address(args)))
    return 0


def _cmd_logs(args: argparse.Namespace) -> int:
    from pipelines import cluster

    address = _dashboard_address(args)
    log = cluster.logs(args.job_id, address)
    if cluster.status(args.job_id, address) == "FAILED":
        print(cluster.failure_line(log))
    print(log, end="")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from data_engine.report import ReportError, ReportOptions, write_html_report

    options = ReportOptions(sample_rows=args.sample_rows, rejected_per_reason=args.rejected_per_reason)
    try:
        path = write_html_report(args.directories, args.out, title=args.title, options=options)
    except (ReportError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipelines", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run (or resume) a job on local Ray or a cluster")
    run.add_argument("job")
    run.add_argument("--out", help="output directory or storage URI (default: the job's `output`)")
    run.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    run.add_argument("--no-progress", action="store_true", help="hide Ray Data progress bars")
    run.set_defaults(handler=_cmd_run)

    validate = commands.add_parser("validate", help="check a job file without running it")
    validate.add_argument("job")
    validate.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    validate.set_defaults(handler=_cmd_validate)

    inspect = commands.add_parser("inspect", help="schema, counts, rejects and sample rows of a shard directory")
    inspect.add_argument("shard_dir", help="a directory or a storage URI (s3://, gs://)")
    inspect.add_argument("--json", action="store_true")
    inspect.add_argument("--rows", type=int, default=3, help="sample rows to show")
    inspect.add_argument("--lineage", action="store_true",
                         help="the chain of jobs this output was made from, back to the raw input")
    inspect.set_defaults(handler=_cmd_inspect)

    submit = commands.add_parser("submit", help="submit a job to a Ray cluster (ray job submit)")
    submit.add_argument("job")
    submit.add_argument("--address", help="dashboard address, e.g. http://HEAD:8265 (default: $RAY_ADDRESS)")
    submit.add_argument("--out", help="output directory or URI on the cluster (absolute)")
    submit.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    submit.add_argument("--wait", action="store_true", help="wait for the job, then print its logs")
    submit.add_argument("--timeout", type=float, default=3600, help="seconds to wait with --wait")
    submit.set_defaults(handler=_cmd_submit)
    for name, handler in (("status", _cmd_status), ("logs", _cmd_logs)):
        command = commands.add_parser(name, help=f"{name} of a submitted job")
        command.add_argument("job_id")
        command.add_argument("--address", help="dashboard address (default: $RAY_ADDRESS)")
        command.set_defaults(handler=handler)

    redecide = commands.add_parser("redecide", help="re-apply filter thresholds to stored scores")
    redecide.add_argument("shard_dir")
    redecide.add_argument("--set", action="append", default=[], required=True,
                          metavar="stages.STAGE.config.FIELD=VALUE")
    redecide.set_defaults(handler=_cmd_redecide)

    calibrate = commands.add_parser("calibrate", help="propose score thresholds that reach a target retention "
                                                      "(data_engine/calibrate.py); redecide applies them")
    calibrate.add_argument("shard_dir")
    calibrate.add_argument("--target-retention", type=float, required=True, metavar="SHARE",
                           help="share of the output's rows to keep, e.g. 0.34")
    calibrate.add_argument("--stage", action="append", default=[], metavar="NAME",
                           help="calibrate only this stage's thresholds (repeatable; default: every enforced one)")
    calibrate.add_argument("--json", action="store_true")
    calibrate.set_defaults(handler=_cmd_calibrate)

    report = commands.add_parser("report", help="one static HTML report over output directories: stage outputs, "
                                                "spatial QA, render, rebalance and trainer runs")
    report.add_argument("directories", nargs="+", type=Path, metavar="DIR",
                        help="stage output directory or trainer run directory")
    report.add_argument("--out", required=True, type=Path, help="HTML file to write")
    report.add_argument("--title", default="Data engine report")
    report.add_argument("--sample-rows", type=int, default=24, help="images per accepted grid, examples per section")
    report.add_argument("--rejected-per-reason", type=int, default=6, help="images per reject reason")
    report.set_defaults(handler=_cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except USAGE_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ErrorBudgetExceeded as exc:  # every shard and the manifest are written; the run still failed
        print(f"error: {exc}", file=sys.stderr)
        return 1
