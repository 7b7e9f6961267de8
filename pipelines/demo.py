"""`make demo`: the main job of ../shared/ARCHITECTURE.md on one machine, in minutes on 2 cores.

1. generate a small corpus (procedural images with known degradations, a few photos);
2. run every data stage on one local Ray: decode + statistics, spatial QA on procedural scenes, 3D lifting of
   noisy procedural RGB-D sequences and spatial QA on the lifted scenes, edit pairs from procedural videos
   (PyAV-encoded: hard cuts, blurred stretches, moving shapes) with VLM instructions, multi-view and spatial-edit
   rendering (Blender), the edit triplets of every edit source (curated, refined, balanced) and their latents,
   and the report's image flow as one chain of jobs, each reading the accepted rows of the one
   before: raw -> the Table 4 curation job once per training-stage preset -> OCR-aware captions of the 512p
   preset's accepted images (tiny Qwen3-VL) and caption filters -> embedding + tagging and the global
   rebalance step (one job) -> VAE latent + text feature caching of the rebalanced selection;
3. train the tiny MLLM on the spatial QA (then evaluate it on the held-out scenes: `split=eval` rows) and the
   tiny MMDiT on the cached latents (then
   sample a grid), a few steps each, and print how the loss went;
4. write one HTML report over every output directory.

Every output lives under `--out` (default out/demo); a rerun skips the shards and checkpoints already written.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from data_engine.curation.presets import PRESET_DEFAULTS
from data_engine.demo_corpus import generate_demo_corpus
from data_engine.executor import PROJECT_ROOT, project_pythonpath, ray_session, run_job
from data_engine.job import JobConfig
from data_engine.report import write_html_report
from pipelines.cli import USAGE_ERRORS
from pipelines.jobfile import JOBS_DIR, load_job
from trainer.report import read_train_log

CURATION_PRESETS = tuple(PRESET_DEFAULTS["decode_image"])  # stage1_208p, stage2_512p, stage3_1024p
CAPTIONED_PRESET = "stage2_512p"  # the preset whose accepted images the caption job reads
TRAINER_CONFIGS = PROJECT_ROOT / "trainer" / "configs"


class DemoError(RuntimeError):
    """A demo step failed; the message says which and where its own error went."""


@dataclass(frozen=True)
class DemoSize:
    n_procedural: int = 24  # procedural images in the corpus (besides the fixed photos and broken files)
    n_scenes: int = 4  # procedural 3D scenes for spatial QA
    n_sequences: int = 2  # procedural RGB-D sequences for 3D lifting
    n_videos: int = 3  # procedural videos (a hard cut, a blurred stretch, still then moving) for edit pairs
    n_assets: int = 6  # procedural assets per rendering job
    train_steps: int | None = None  # None: the trainer configs' own run.max_steps


@dataclass(frozen=True)
class TrainingRun:
    """One trainer config run on the demo's shards, then a follow-up command (eval or sample)."""
    config: str  # file under trainer/configs/
    out_dir: str  # under the demo root
    datasets: dict[str, str]  # dataset name in the config -> shard directory under the demo root
    follow_up: str
    follow_up_data: str | None = None  # the follow-up reads only this directory under the demo root


TRAINING_RUNS = (
    # evaluated on the spatial QA alone: the general-domain rows are there for the KL term
    TrainingRun("mllm_sft_tiny.yaml", "train-mllm", {"spatial": "spatial_qa", "general": "train-data/general_qa"},
                "eval", "spatial_qa"),
    TrainingRun("mmdit_t2i_tiny.yaml", "train-mmdit", {"demo_images": "latents"}, "sample"),
)


def demo_jobs(out: Path, raw: Path, size: DemoSize) -> list[JobConfig]:
    """Every data job of the demo, in dependency order, each with its own output directory under `out`."""
    runs = [("demo.yaml", raw, "images", [])]
    runs += [("curate_images.yaml", raw, f"curated_{preset}", [f"preset={preset}"]) for preset in CURATION_PRESETS]
    runs += [("spatial_qa.yaml", f"procedural://{size.n_scenes}?seed=0", "spatial_qa", []),
             ("lift_video.yaml", f"procedural://{size.n_sequences}?seed=0", "lift_video/lifted_objects", []),
             ("video_pairs.yaml", f"procedural://{size.n_videos}?seed=0", "video_pairs", []),
             ("spatial_qa.yaml", out / "lift_video" / "lifted_objects", "lift_video/spatial_qa", []),
             ("caption.yaml", out / f"curated_{CAPTIONED_PRESET}", "captions", []),
             ("rebalance.yaml", out / "captions", "rebalanced", []),
             ("cache_latents.yaml", out / "rebalanced", "latents", []),
             ("multiview.yaml", "procedural", "render/multiview", [f"reader.count={size.n_assets}"]),
             ("spatial_edit.yaml", "procedural", "render/spatial_edit", [f"reader.count={size.n_assets}"]),
             # every edit source the demo built, as triplets: curated, refined, balanced; then their latents
             ("edit_data.yaml", out, "edit_data", []),
             ("cache_edit_latents.yaml", out / "edit_data", "edit_latents", [])]
    return [load_job(JOBS_DIR / job_file, [f"input={source}", f"output={out / target}", *overrides])
            for job_file, source, target, overrides in runs]


def trainer_command(run: TrainingRun, command: str, out: Path, train_steps: int | None,
                    data: str | None = None) -> list[str]:
    overrides = [f"run.out_dir={out / run.out_dir}"]
    overrides += [f"data.datasets.{name}.path={out / directory}" for name, directory in run.datasets.items()]
    if train_steps is not None:
        overrides.append(f"run.max_steps={train_steps}")
    return [sys.executable, "-m", "trainer", command, "--config", str(TRAINER_CONFIGS / run.config),
            *(part for override in overrides for part in ("--set", override)),
            *(("--data", str(out / data)) if data else ())]


def run_trainer(run: TrainingRun, out: Path, train_steps: int | None) -> str:
    """Train, then eval or sample, each in its own process (DeepSpeed keeps process-wide state); the loss line."""
    env = dict(os.environ, PYTHONPATH=project_pythonpath())
    for command, data in (("train", None), (run.follow_up, run.follow_up_data)):
        finished = subprocess.run(trainer_command(run, command, out, train_steps, data), env=env, cwd=PROJECT_ROOT)
        if finished.returncode:
            raise DemoError(f"trainer {command} with {run.config} exited with {finished.returncode} (its error is above)")
    losses = [(record["step"], record["loss"]) for record in read_train_log(out / run.out_dir / "train_log.jsonl")
              if record.get("event") == "step"]
    if not losses:
        raise DemoError(f"{out / run.out_dir}: the training log has no steps")
    (first_step, first_loss), (last_step, last_loss) = losses[0], losses[-1]
    return f"{run.config}: loss {first_loss:.3f} (step {first_step}) -> {last_loss:.3f} (step {last_step})"


def run_demo(out: Path, size: DemoSize = DemoSize(), *, address: str | None = None) -> Path:
    started = time.perf_counter()
    raw = out / "raw"
    if not (raw / "labels.json").is_file():
        summary = generate_demo_corpus(raw, n_procedural=size.n_procedural)
        print(f"[demo] generated corpus in {raw}: {summary}", file=sys.stderr)
    jobs = demo_jobs(out, raw, size)
    # One Ray for every job: starting a local Ray costs seconds each time.
    with ray_session(jobs[0], address):
        for job in jobs:
            job_started = time.perf_counter()
            run_job(job, address=address)
            print(f"[demo] {job.name} -> {job.output}: {time.perf_counter() - job_started:.1f} s", file=sys.stderr)
    losses = [run_trainer(run, out, size.train_steps) for run in TRAINING_RUNS]
    outputs = [Path(job.output) for job in jobs] + [out / run.out_dir for run in TRAINING_RUNS]
    report = write_html_report(outputs, out / "report.html", title="JoyAI data engine and trainer demo")
    for line in losses:
        print(f"[demo] {line}", file=sys.stderr)
    print(f"[demo] finished in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    print(f"[demo] report: {report.resolve()}")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="out/demo", help="output root (corpus, shards, checkpoints, report)")
    parser.add_argument("--n-procedural", type=int, default=DemoSize.n_procedural, help="procedural images")
    parser.add_argument("--n-scenes", type=int, default=DemoSize.n_scenes, help="procedural 3D scenes for spatial QA")
    parser.add_argument("--n-sequences", type=int, default=DemoSize.n_sequences,
                        help="procedural RGB-D sequences for 3D lifting")
    parser.add_argument("--n-videos", type=int, default=DemoSize.n_videos,
                        help="procedural videos for edit pairs (kinds in turn: hard cut, blurred stretch, still then moving)")
    parser.add_argument("--n-assets", type=int, default=DemoSize.n_assets, help="procedural assets per render job")
    parser.add_argument("--train-steps", type=int, help="optimizer steps per model (default: the trainer configs')")
    parser.add_argument("--address", help="Ray cluster address (default: a local Ray)")
    args = parser.parse_args(argv)
    size = DemoSize(n_procedural=args.n_procedural, n_scenes=args.n_scenes, n_sequences=args.n_sequences,
                    n_videos=args.n_videos, n_assets=args.n_assets, train_steps=args.train_steps)
    try:
        run_demo(Path(args.out), size, address=args.address)
    except (*USAGE_ERRORS, DemoError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
