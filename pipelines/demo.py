"""`make demo`: generate a small corpus, run data stages on local Ray, write shards and an HTML report.

Stages that need more than minutes on 2 cores stay out of the demo and have their own make targets
(caption, rebalance, render-*, train-*).
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


def run_demo(out: Path, *, n_procedural: int, n_scenes: int, address: str | None = None) -> Path:
    """Corpus -> decode + statistics; the same corpus -> Table 4 curation; procedural scenes -> spatial QA."""
    started = time.perf_counter()
    raw = out / "raw"
    if not (raw / "labels.json").is_file():
        summary = generate_demo_corpus(raw, n_procedural=n_procedural)
        print(f"[demo] generated corpus in {raw}: {summary}", file=sys.stderr)
    runs = [("demo.yaml", raw, out / "images"), ("curate_images.yaml", raw, out / "curated"),
            ("spatial_qa.yaml", f"procedural://{n_scenes}?seed=0", out / "spatial_qa")]
    for job_file, source, target in runs:
        run_job(load_job(JOBS_DIR / job_file, [f"input={source}", f"output={target}"]), address=address)
    report = write_html_report([target for _, _, target in runs], out / "report.html",
                               title="JoyAI data engine demo")
    print(f"[demo] finished in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    print(f"[demo] report: {report.resolve()}")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.demo", description=__doc__)
    parser.add_argument("--out", default="out/demo", help="output root (corpus, shards, report)")
    parser.add_argument("--n-procedural", type=int, default=48, help="procedural images to generate")
    parser.add_argument("--n-scenes", type=int, default=4, help="procedural 3D scenes for spatial QA")
    parser.add_argument("--address", help="Ray cluster address (default: a local Ray)")
    args = parser.parse_args(argv)
    try:
        run_demo(Path(args.out), n_procedural=args.n_procedural, n_scenes=args.n_scenes, address=args.address)
    except USAGE_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
