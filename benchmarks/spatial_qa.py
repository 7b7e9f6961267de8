"""Spatial QA throughput on one core (one thread pinned): QA generation from a built object-frame index, the
stages around it, and the whole path from a rendered scene to QA rows with their images.

Contenders, each over the same procedural scenes (rendered once, outside the timing: rendering stands in for
the dataset's own frames), warmed up and interleaved by the harness:
- `qa`: QA generation from built indices (the first issue's target, >= 5,000 QA/s per core);
- `index`: projection/visibility, building the object-frame index of every scene;
- `draw`: anchor drawing + JPEG encoding of every QA sample's images;
- `end_to_end`: index building + QA generation + drawing and encoding, scene after scene, which is what a
  QA job does per scene (`end_to_end_qa_per_s_per_core`, goal >= 500, issue 17).
"""

from __future__ import annotations

import argparse
import time

from benchmarks.common import MIN_REPEATS, interleaved, rate_spread, start_benchmark, write_result
from openspatial.frame_index import IndexConfig, build_object_frame_index
from openspatial.procedural import ProceduralConfig, generate_scene
from openspatial.qa.rows import sample_images
from openspatial.qa.tasks import QAConfig, generate_scene_qa

NAME = "spatial_qa"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenes", type=int, default=20)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--samples-per-task", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=MIN_REPEATS)
    args = parser.parse_args(argv)
    machine = start_benchmark(threads=1)
    procedural = ProceduralConfig(width=args.width, height=args.height, frames=args.frames)
    qa_config, index_config = QAConfig(samples_per_task=args.samples_per_task), IndexConfig()

    started = time.perf_counter()
    scenes = [generate_scene(0, number, procedural) for number in range(args.scenes)]
    render_seconds = time.perf_counter() - started
    indices = [build_object_frame_index(scene, index_config) for scene in scenes]
    samples = [generate_scene_qa(index, qa_config, number) for number, index in enumerate(indices)]
    qa_count = sum(len(s) for s in samples)
    object_frames = sum(len(index.records) for index in indices)

    def draw(scene, scene_samples) -> None:
        for sample in scene_samples:
            sample_images(scene, sample, quality=90)

    def end_to_end() -> None:
        for number, scene in enumerate(scenes):
            draw(scene, generate_scene_qa(build_object_frame_index(scene, index_config), qa_config, number))

    seconds = interleaved({
        "qa": lambda: [generate_scene_qa(index, qa_config, number) for number, index in enumerate(indices)],
        "index": lambda: [build_object_frame_index(scene, index_config) for scene in scenes],
        "draw": lambda: [draw(scene, scene_samples) for scene, scene_samples in zip(scenes, samples)],
        "end_to_end": end_to_end,
    }, repeats=args.repeats)

    metrics = {
        "end_to_end_qa_per_s_per_core": rate_spread(qa_count, seconds["end_to_end"], 1),
        "qa_per_s_per_core": rate_spread(qa_count, seconds["qa"], 1),
        "object_frames_per_s_per_core": rate_spread(object_frames, seconds["index"], 1),
        "qa_images_drawn_and_encoded_per_s_per_core": rate_spread(qa_count, seconds["draw"], 1),
        "rendered_frames_per_s_per_core": round(args.scenes * args.frames / render_seconds, 2),
    }
    write_result(NAME, metrics, machine=machine,
                 baseline="issue goals: QA generation >= 5,000 QA/s per core (drawing and encoding excluded); "
                          "end to end (index + QA + drawing and encoding) >= 500 QA/s per core",
                 command=f"python -m benchmarks.spatial_qa --scenes {args.scenes} --width {args.width} "
                         f"--height {args.height} --frames {args.frames} --samples-per-task {args.samples_per_task} "
                         f"--repeats {args.repeats}",
                 goals={"qa_per_s_per_core": (">=", 5000), "end_to_end_qa_per_s_per_core": (">=", 500)},
                 notes={"scenes": args.scenes, "qa": qa_count, "object_frames": object_frames,
                        "resolution": f"{args.width}x{args.height}", "frames_per_scene": args.frames,
                        "rendered_frames": "one pass, before the timed contenders", "seconds": seconds})


if __name__ == "__main__":
    main()
