"""Render benchmarks (Cycles CPU, 8 samples, no denoising, one procedural chair seen from orbiting cameras).

- seconds_per_view_256 / _512: one warm render worker, wall time per view of `render_views` (request,
  Cycles render, EXR read-back, PNG/depth/mask files, decoding on the main side).
- overhead_vs_bare_bpy: that per-view time at 256 px over a bare bpy script in one process rendering the
  same scene with the same settings straight to a file (target <= 1.10).
- reuse_speedup: per-view time with a fresh worker process per view (start-up, bpy import, scene build)
  over the reused worker's (target >= 3).
Renders use every core (`threads: 0`), as a dedicated render node would.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path

from benchmarks.common import write_result
from render.client import RenderWorker, render_python, render_views
from render.multiview import camera_at
from render.preprocess import prepare_asset
from render.procedural import default_lights, procedural_asset
from render.scene import RenderSettings, Scene

NAME = "render"
SETTINGS = RenderSettings(samples=8, denoise=False, threads=0)


def bench_scene(worker: RenderWorker, size: int, n_views: int):
    prepared = prepare_asset(procedural_asset("chair", 1), worker, target_extent=None)
    scene = Scene(objects=(prepared.instance(),), lights=default_lights(random.Random(0), 1.0))
    cameras = [camera_at(prepared, 360.0 * k / n_views, 20.0, 45.0, 1.3, size, size)[0] for k in range(n_views)]
    return scene, cameras


def pipeline_seconds_per_view(worker: RenderWorker, scene: Scene, cameras: list, repeats: int) -> float:
    render_views(worker, scene, cameras[:1], SETTINGS)  # scene built and kernels warm before timing
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        render_views(worker, scene, cameras, SETTINGS)
        runs.append((time.perf_counter() - started) / len(cameras))
    return statistics.median(runs)


def bare_bpy_seconds_per_view(scene: Scene, cameras: list, repeats: int) -> float:
    """The same scene and settings rendered by a plain bpy script to PNG files, timed inside Blender."""
    with tempfile.TemporaryDirectory(prefix="bench-bare-") as scratch:
        spec = Path(scratch, "spec.json")
        spec.write_text(json.dumps({"scene": scene.model_dump(mode="json"),
                                    "settings": SETTINGS.model_dump(mode="json"),
                                    "cameras": [c.model_dump(mode="json") for c in cameras]}))
        script = textwrap.dedent(f"""
            import json, statistics, time, bpy
            from render import blender_scene
            spec = json.load(open({str(spec)!r}))
            blender_scene.build_scene(spec["scene"])
            blender_scene.configure_render(spec["settings"])
            render = bpy.context.scene.render
            render.image_settings.media_type = "IMAGE"
            render.image_settings.file_format = "PNG"
            def one_pass():
                started = time.perf_counter()
                for index, camera in enumerate(spec["cameras"]):
                    blender_scene.set_camera(camera)
                    render.filepath = {scratch!r} + f"/bare_{{index}}.png"
                    bpy.ops.render.render(write_still=True)
                return (time.perf_counter() - started) / len(spec["cameras"])
            one_pass()
            print("RESULT", statistics.median(one_pass() for _ in range({repeats})))
        """)
        result = subprocess.run([str(render_python()), "-c", script], capture_output=True, text=True, check=True,
                                cwd=Path(__file__).parents[1], env={"PYTHONPATH": str(Path(__file__).parents[1])})
        return float(next(line for line in result.stdout.splitlines() if line.startswith("RESULT")).split()[1])


def fresh_process_seconds_per_view(scene: Scene, cameras: list) -> float:
    started = time.perf_counter()
    for camera in cameras:
        with RenderWorker() as worker:
            render_views(worker, scene, [camera], SETTINGS)
    return (time.perf_counter() - started) / len(cameras)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs=2, default=(256, 512), metavar=("SMALL", "LARGE"))
    args = parser.parse_args(argv)
    small, large = args.sizes
    with RenderWorker() as worker:
        scene, cameras_small = bench_scene(worker, small, args.views)
        _, cameras_large = bench_scene(worker, large, args.views)
        per_view_small = pipeline_seconds_per_view(worker, scene, cameras_small, args.repeats)
        per_view_large = pipeline_seconds_per_view(worker, scene, cameras_large, args.repeats)
    bare = bare_bpy_seconds_per_view(scene, cameras_small, args.repeats)
    fresh = fresh_process_seconds_per_view(scene, cameras_small[: max(2, args.views // 2)])
    metrics = {
        f"seconds_per_view_{small}": round(per_view_small, 4),
        f"seconds_per_view_{large}": round(per_view_large, 4),
        "overhead_vs_bare_bpy": round(per_view_small / bare, 3),
        "reuse_speedup": round(fresh / per_view_small, 2),
    }
    write_result(NAME, metrics, baseline=f"bare bpy script, same scene and settings ({bare:.4f} s/view at {small} px); "
                                         f"fresh worker per view ({fresh:.3f} s/view)",
                 command="python -m benchmarks.render",
                 notes={"engine": "Cycles CPU", "samples": SETTINGS.samples, "denoise": False, "views": args.views,
                        "asset": "procedural chair 00001"})


if __name__ == "__main__":
    main()
