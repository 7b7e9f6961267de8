"""`make demo`: generate a small corpus, run data stages on local Ray, write shards and an HTML report.

The corpus goes through decode + statistics and through the Table 4 curation job once per training-stage
preset (the report shows one funnel per preset); procedural scenes go through spatial QA. Stages that need
more than minutes on 2 cores stay out of the demo and have their own make targets (caption, rebalance,
render-*, train-*); `python -m data_engine.report` puts their outputs in a report too.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from data_engine.curation.presets import PRESET_DEFAULTS
from data_engine.demo_corpus import generate_demo_corpus
from data_engine.executor import ray_session, run_job
from data_engine.job import JobConfig
from data_engine.report import write_html_report
from pipelines.cli import USAGE_ERRORS
from pipelines.jobfile import JOBS_DIR, load_job

CURATION_PRESETS = tuple(PRESET_DEFAULTS["decode_image"])  # stage1_208p, stage2_512p, stage3_1024p


def demo_jobs(out: Path, raw: Path, n_scenes: int) -> list[JobConfig]:
    """Decode + statistics, curation per preset, spatial QA: each job with its own output directory."""
    runs = [("demo.yaml", raw, out / "images", [])]
    runs += [("curate_images.yaml", raw, out / f"curated_{preset}", [f"preset={preset}"])
             for preset in CURATION_PRESETS]
    runs.append(("spatial_qa.yaml", f"procedural://{n_scenes}?seed=0", out / "spatial_qa", []))
    return [load_job(JOBS_DIR / job_file, [f"input={source}", f"output={target}", *overrides])
            for job_file, source, target, overrides in runs]


def run_demo(out: Path, *, n_procedural: int, n_scenes: int, address: str | None = None) -> Path:
    started = time.perf_counter()
    raw = out / "raw"
    if not (raw / "labels.json").is_file():
        summary = generate_demo_corpus(raw, n_procedural=n_procedural)
        print(f"[demo] generated corpus in {raw}: {summary}", file=sys.stderr)
    jobs = demo_jobs(out, raw, n_scenes)
    # One Ray for every job: starting a local Ray costs seconds each time.
    with ray_session(jobs[0], address):
        for job in jobs:
            run_job(job, address=address)
    report = write_html_report([Path(job.output) for job in jobs], out / "report.html", title="JoyAI data engine demo")
    print(f"[demo] finished in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    print(f"[demo] report: {report.resolve()}")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
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
