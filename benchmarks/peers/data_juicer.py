"""Data-Juicer against our curation job on the same images: the model-free operators both have.

| decision             | ours (pipelines/jobs/curate_images.yaml, these stages only) | Data-Juicer 1.6.1            |
|----------------------|------------------------------------------------|-------------------------------------------|
| minimum side         | decode_image `min_side` (keep min side > N)     | image_shape_filter (width, height >= N+1)  |
| aspect ratio         | decode_image `max_aspect_ratio` (long/short <= R)| image_aspect_ratio_filter (1/R <= w/h <= R)|
| file size            | decode_image `max_file_bytes`                   | image_size_filter `max_size`              |
| exact duplicates     | dedup, MD5 pass                                 | (covered by equal pHash)                  |
| perceptual duplicates| dedup, pHash pass at similarity 1.0 (equal hash)| image_deduplicator `method: phash`        |

Data-Juicer's deduplicator drops images whose hash is equal, so ours runs at `near_duplicate_similarity: 1.0`
(no bit may differ) to make the same decision; the job's default (0.85) finds more.

Each side runs as a user runs it, in a fresh process pinned to the same cores (`taskset`): ours is
`python -m pipelines run` (local Ray with `ray.num_cpus` = cores), theirs `dj-process` in its own environment
(`np` = cores), from the image folder (ours) or the JSONL that lists the same files (theirs) to written output.
Timings are interleaved (benchmarks/common.py), the headline the ratio of the median wall times. The decisions are
then compared file by file with the corpus's ground truth (benchmarks/peers/corpus.py).

    python -m benchmarks.peers.data_juicer --peer-env ~/.cache/joyai-envs/peer-data-juicer-KEY
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import SelfTimed, interleaved, load_average, ratio_spread, spread, write_result
from benchmarks.peers.corpus import write_peer_corpus
from data_engine.shards import iter_shards
from pipelines.jobfile import JOBS_DIR, load_job_data

NAME = "peer_data_juicer"
GOAL = 2.0
MIN_SIDE = 128
MAX_ASPECT_RATIO = 2.5
MAX_FILE_BYTES = 300 * 1024
OUR_STAGES = ("decode_image", "dedup")


def our_job(images_dir: Path, out_dir: Path, cores: int, images: int) -> dict[str, Any]:
    """The curation job with only the stages Data-Juicer also has, at the thresholds above. Shards of about a
    quarter of each core's share (the job's 16 rows per shard exercise sharding on the demo's few images)."""
    job = load_job_data(JOBS_DIR / "curate_images.yaml")
    stages = [stage for stage in job["stages"] if stage["op"] in OUR_STAGES]
    for stage in stages:
        if stage["op"] == "decode_image":
            stage["config"] = {**stage.get("config", {}), "min_side": MIN_SIDE, "max_aspect_ratio": MAX_ASPECT_RATIO,
                               "max_file_bytes": MAX_FILE_BYTES}
        else:
            stage["config"] = {**stage.get("config", {}), "near_duplicate_similarity": 1.0}
    job.update(stages=stages, input=str(images_dir), output=str(out_dir), ray={"num_cpus": cores})
    job["reader"].update(source_dataset="peer_corpus", shard_rows=max(16, -(-images // (4 * cores))))
    return job


def dj_config(dataset: Path, export: Path, cores: int) -> dict[str, Any]:
    return {
        "project_name": "peer_benchmark", "dataset_path": str(dataset), "export_path": str(export),
        "np": cores, "image_key": "images", "text_keys": "text", "use_cache": False, "open_tracer": False,
        "process": [
            {"image_shape_filter": {"min_width": MIN_SIDE + 1, "min_height": MIN_SIDE + 1}},
            {"image_aspect_ratio_filter": {"min_ratio": 1 / MAX_ASPECT_RATIO, "max_ratio": MAX_ASPECT_RATIO}},
            {"image_size_filter": {"max_size": str(MAX_FILE_BYTES)}},
            {"image_deduplicator": {"method": "phash"}},
        ],
    }


def pinned(cores: int, command: list[str]) -> list[str]:
    return ["taskset", "-c", f"0-{cores - 1}", *command]


# Ray gives its raylet 30 s to register (a constant in ray/_private/node.py); on an overloaded machine it may
# not, and the run fails before doing any work. Such a run is started again, counted, and not timed.
RAY_START_TIMEOUT = "timed out during startup"
START_RETRIES = 2


def run_timed(command: list[str], env: dict[str, str], log: Path, restarts: list[str]) -> float:
    for attempt in range(START_RETRIES + 1):
        started = time.perf_counter()
        with log.open("w") as out:
            result = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        seconds = time.perf_counter() - started
        if result.returncode == 0:
            return seconds
        if attempt == START_RETRIES or RAY_START_TIMEOUT not in log.read_text():
            break
        restarts.append(log.name)
    raise RuntimeError(f"{' '.join(command)} failed (exit {result.returncode}); see {log}")


def our_decisions(out_dir: Path) -> dict[str, str | None]:
    """File -> our reject reason (None: kept)."""
    decisions = {}
    for _, table in iter_shards(out_dir, ["upstream_id", "reject_reason"]):
        decisions.update(zip(table.column("upstream_id").to_pylist(), table.column("reject_reason").to_pylist()))
    return decisions


def dj_kept(export: Path, images_dir: Path) -> set[str]:
    """The files of the samples Data-Juicer exported (its stats go to a `*_stats.jsonl` beside the export)."""
    kept = set()
    for line in export.read_text().splitlines():
        if line.strip():
            kept.update(str(Path(image).relative_to(images_dir)) for image in json.loads(line)["images"])
    return kept


def compare(files: list[dict[str, Any]], ours: dict[str, str | None], theirs: set[str]) -> dict[str, Any]:
    """Counts kept by each, and every file they decide differently, grouped by corpus kind and our reason."""
    differ: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    for entry in files:
        name = entry["file"]
        our_kept, their_kept = ours.get(name, "missing") is None, name in theirs
        if our_kept != their_kept:
            key = (f"{entry['kind']}: ours {'kept' if our_kept else ours.get(name)}, "
                   f"Data-Juicer {'kept' if their_kept else 'dropped'}")
            differ[key] += 1
            examples.setdefault(key, [])
            if len(examples[key]) < 3:
                examples[key].append(name + (f" (copy of {entry['copy_of']})" if entry["copy_of"] else ""))
    return {"images": len(files), "kept_ours": sum(1 for reason in ours.values() if reason is None),
            "kept_data_juicer": len(theirs), "rejects_ours": dict(Counter(r for r in ours.values() if r)),
            "decided_differently": sum(differ.values()), "differences": dict(differ), "difference_examples": examples}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer-env", type=Path, required=True, help="the Data-Juicer venv (scripts/setup_peer_env.sh)")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--work-dir", type=Path, default=Path("out/bench-peers/data_juicer"))
    args = parser.parse_args(argv)
    work = args.work_dir.resolve()
    files = write_peer_corpus(work / "corpus", args.images)
    images_dir = work / "corpus" / "images"
    dataset = work / "dj_dataset.jsonl"
    dataset.write_text("".join(json.dumps({"images": [str(images_dir / entry["file"])], "text": "<__dj__image>"}) + "\n"
                               for entry in files))
    job_path, dj_path = work / "our_job.yaml", work / "dj_config.yaml"
    our_out, dj_export = work / "ours_out", work / "dj_out" / "kept.jsonl"
    job_path.write_text(yaml.safe_dump(our_job(images_dir, our_out, args.cores, len(files)), sort_keys=False))
    dj_path.write_text(yaml.safe_dump(dj_config(dataset, dj_export, args.cores), sort_keys=False))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    restarts: list[str] = []

    def ours() -> SelfTimed:
        shutil.rmtree(our_out, ignore_errors=True)  # a rerun of a finished output would skip every shard
        seconds = run_timed(pinned(args.cores, [sys.executable, "-m", "pipelines", "run", str(job_path),
                                                "--no-progress"]), env, work / "ours.log", restarts)
        return SelfTimed(seconds, our_decisions(our_out))

    def theirs() -> SelfTimed:
        shutil.rmtree(dj_export.parent, ignore_errors=True)
        seconds = run_timed(pinned(args.cores, [str(args.peer_env / "bin" / "dj-process"), "--config", str(dj_path)]),
                            env, work / "data_juicer.log", restarts)
        return SelfTimed(seconds, dj_kept(dj_export, images_dir))

    decisions: dict = {}
    seconds = interleaved({"ours": ours, "data_juicer": theirs}, repeats=args.repeats, last_values=decisions)
    ours_s, theirs_s = spread(seconds["ours"]), spread(seconds["data_juicer"])
    ratio = theirs_s["median"] / ours_s["median"]
    metrics = {"throughput_ratio": round(ratio, 3), "ours_images_per_s": round(args.images / ours_s["median"], 1),
               "data_juicer_images_per_s": round(args.images / theirs_s["median"], 1)}
    notes = {
        "goal": {"throughput_ratio": f">= {GOAL}"}, "goal_met": ratio >= GOAL,
        "images": args.images, "cores": args.cores, "repeats": args.repeats, "warmup_rounds": 1, "interleaved": True,
        "seconds": {"ours": ours_s, "data_juicer": theirs_s},
        "throughput_ratio_per_round": ratio_spread(seconds["data_juicer"], seconds["ours"]),
        "thresholds": {"min_side": MIN_SIDE, "max_aspect_ratio": MAX_ASPECT_RATIO, "max_file_bytes": MAX_FILE_BYTES,
                       "phash": "equal hash (ours: near_duplicate_similarity 1.0)"},
        "restarted_before_start": {"ours": restarts.count("ours.log"),
                                   "data_juicer": restarts.count("data_juicer.log")},
        "load_average_at_end": load_average(),
        "decisions": compare(files, decisions["ours"], decisions["data_juicer"]),
        "timed": "wall time of each system's command in a fresh process (interpreter, Ray / Data-Juicer start, "
                 "reading, deciding, writing output)",
    }
    write_result(NAME, metrics, baseline="Data-Juicer 1.6.1 dj-process with image_shape_filter, "
                 "image_aspect_ratio_filter, image_size_filter, image_deduplicator(phash) on the same files and cores",
                 command=f"make bench-peers (python -m benchmarks.peers.data_juicer --images {args.images} "
                         f"--cores {args.cores} --repeats {args.repeats})", notes=notes)


if __name__ == "__main__":
    main()
