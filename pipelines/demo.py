"""`make demo`: generate a small corpus, run the data stages on local Ray, write shards and an HTML report.

Each data stage and the trainer join this demo as they are built.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from data_engine.demo_corpus import generate_demo_corpus
from data_engine.executor import run_job
from data_engine.report import write_html_report
from pipelines.cli import USAGE_ERRORS
from pipelines.jobfile import JOBS_DIR, load_job


def run_demo(out: Path, *, n_procedural: int, address: str | None = None) -> Path:
    started = time.perf_counter()
    raw = out / "raw"
    if not (raw / "labels.json").is_file():
        summary = generate_demo_corpus(raw, n_procedural=n_procedural)
        print(f"[demo] generated corpus in {raw}: {summary}", file=sys.stderr)
    images = out / "images"
    job = load_job(JOBS_DIR / "demo.yaml", [f"input={raw}", f"output={images}"])
    run_job(job, address=address)
    report = write_html_report([images], out / "report.html", title="JoyAI data engine demo")
    print(f"[demo] finished in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    print(f"[demo] report: {report.resolve()}")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.demo", description=__doc__)
    parser.add_argument("--out", default="out/demo", help="output root (corpus, shards, report)")
    parser.add_argument("--n-procedural", type=int, default=48, help="procedural images to generate")
    parser.add_argument("--address", help="Ray cluster address (default: a local Ray)")
    args = parser.parse_args(argv)
    try:
        run_demo(Path(args.out), n_procedural=args.n_procedural, address=args.address)
    except USAGE_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
