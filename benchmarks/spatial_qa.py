"""Spatial QA throughput on one core: QA generation from a built object-frame index (the issue's target,
>= 5,000 QA/s per core), and separately the stages around it: procedural rendering, projection/visibility
(index building), and anchor drawing + JPEG encoding of the QA images.

Scenes and indices are built before the QA timing starts; every stage runs in this one process.
"""

from __future__ import annotations

import argparse
import time

from benchmarks.common import write_result
from openspatial.frame_index import IndexConfig, build_object_frame_index
from openspatial.procedural import ProceduralConfig, generate_scene
from openspatial.qa.rows import sample_images
from openspatial.qa.tasks import QAConfig, generate_scene_qa

NAME = "spatial_qa"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenes", type=int, default=40)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--samples-per-task", type=int, default=4)
    args = parser.parse_args(argv)
    procedural = ProceduralConfig(width=args.width, height=args.height, frames=args.frames)
    qa_config = QAConfig(samples_per_task=args.samples_per_task)

    started = time.perf_counter()
    scenes = [generate_scene(0, number, procedural) for number in range(args.scenes)]
    render_seconds = time.perf_counter() - started
    started = time.perf_counter()
    indices = [build_object_frame_index(scene, IndexConfig()) for scene in scenes]
    index_seconds = time.perf_counter() - started
    object_frames = sum(len(index.records) for index in indices)

    started = time.perf_counter()
    samples = [generate_scene_qa(index, qa_config, number) for number, index in enumerate(indices)]
    qa_seconds = time.perf_counter() - started
    qa_count = sum(len(s) for s in samples)

    started = time.perf_counter()
    for scene, scene_samples in zip(scenes, samples):
        for sample in scene_samples:
            sample_images(scene, sample, quality=90)
    encode_seconds = time.perf_counter() - started

    metrics = {
        "qa_per_s_per_core": round(qa_count / qa_seconds, 1),
        "object_frames_per_s_per_core": round(object_frames / index_seconds, 1),
        "rendered_frames_per_s_per_core": round(args.scenes * args.frames / render_seconds, 2),
        "qa_images_drawn_and_encoded_per_s_per_core": round(qa_count / encode_seconds, 1),
    }
    write_result(NAME, metrics,
                 baseline="issue target: QA generation >= 5,000 QA/s per core (drawing and encoding excluded)",
                 command=f"python -m benchmarks.spatial_qa --scenes {args.scenes} --width {args.width} "
                         f"--height {args.height} --frames {args.frames} --samples-per-task {args.samples_per_task}",
                 notes={"scenes": args.scenes, "qa": qa_count, "object_frames": object_frames,
                        "resolution": f"{args.width}x{args.height}", "frames_per_scene": args.frames,
                        "seconds": {"render": render_seconds, "index": index_seconds, "qa": qa_seconds,
                                    "draw_encode": encode_seconds}})


if __name__ == "__main__":
    main()
