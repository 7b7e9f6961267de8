"""Render benchmarks (Cycles CPU, 8 samples, no denoising, one procedural chair seen from orbiting cameras).

- seconds_per_view_256 / _512: one warm render worker, wall time per view of `render_views` (request,
  Cycles render to a multilayer EXR, read-back into RGBA / depth / index-mask arrays, loading them on the
  main side).
- overhead_vs_bare_bpy: that per-view time at 256 px over a bare bpy script in one process rendering the
  same scene with the same settings (`configure_render`, same passes and samples) straight to an RGBA PNG
  (target <= 1.10). The bare script gets no depth or mask files out, so the ratio charges us for those.
  Both are warmed up and the harness interleaves their passes, so a change in machine load hits both alike;
  the ratio is taken pass by pass.
- reuse_speedup: per-view time with a fresh worker process per view (start-up, bpy import, scene build;
  median over `--fresh-views` views) over the reused worker's (target >= 3).
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

from benchmarks.common import MIN_REPEATS, interleaved, ratio_spread, spread, start_benchmark, write_result
from render.client import RenderWorker, render_python, render_views
from render.multiview import camera_at
from render.preprocess import prepare_asset
from render.procedural import default_lights, procedural_asset
from render.scene import RenderSettings, RenderScene

NAME = "render"
SETTINGS = RenderSettings(samples=8, denoise=False, threads=0)


def bench_scene(worker: RenderWorker, size: int, n_views: int):
    prepared = prepare_asset(procedural_asset("chair", 1), worker, target_extent=None)
    scene = RenderScene(objects=(prepared.instance(),), lights=default_lights(random.Random(0), 1.0))
    cameras = [camera_at(prepared, 360.0 * k / n_views, 20.0, 45.0, 1.3, size, size)[0] for k in range(n_views)]
    return scene, cameras


def pipeline_pass(worker: RenderWorker, scene: RenderScene, cameras: list) -> None:
    """One `render_views` call over all cameras."""
    render_views(worker, scene, cameras, SETTINGS)


# One pass over the cameras per line read from stdin, timed inside Blender, straight to PNG files.
BARE_BPY_SCRIPT = textwrap.dedent("""
    import json, sys, time, bpy
    from render import blender_scene
    spec = json.load(open(sys.argv[1]))
    blender_scene.build_scene(spec["scene"])
    blender_scene.configure_render(spec["settings"])
    render = bpy.context.scene.render
    render.image_settings.media_type = "IMAGE"
    render.image_settings.file_format = "PNG"
    for _ in sys.stdin:
        started = time.perf_counter()
        for index, camera in enumerate(spec["cameras"]):
            blender_scene.set_camera(camera)
            render.filepath = f"{sys.argv[2]}/bare_{index}.png"
            bpy.ops.render.render(write_still=True)
        print("RESULT", (time.perf_counter() - started) / len(spec["cameras"]), flush=True)
""")


class BareBpyScript:
    """A plain bpy script in its own process rendering the same scene with the same settings; each
    `seconds_per_view()` is one pass, so its passes alternate with ours and see the same machine load."""

    def __init__(self, scene: RenderScene, cameras: list, scratch: Path) -> None:
        spec = scratch / "spec.json"
        spec.write_text(json.dumps({"scene": scene.model_dump(mode="json"),
                                    "settings": SETTINGS.model_dump(mode="json"),
                                    "cameras": [c.model_dump(mode="json") for c in cameras]}))
        repo = str(Path(__file__).parents[1])
        self.process = subprocess.Popen([str(render_python()), "-c", BARE_BPY_SCRIPT, str(spec), str(scratch)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                        text=True, cwd=repo, env={"PYTHONPATH": repo})

    def seconds_per_view(self) -> float:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("pass\n")
        self.process.stdin.flush()
        for line in self.process.stdout:  # Blender prints its own progress lines too
            if line.startswith("RESULT"):
                return float(line.split()[1])
        raise RuntimeError(f"bare bpy script exited with code {self.process.wait()}")

    def __enter__(self) -> BareBpyScript:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.process.kill()
        self.process.wait()


def fresh_process_seconds_per_view(scene: RenderScene, cameras: list) -> list[float]:
    seconds = []
    for camera in cameras:
        started = time.perf_counter()
        with RenderWorker() as worker:
            render_views(worker, scene, [camera], SETTINGS)
        seconds.append(time.perf_counter() - started)
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=MIN_REPEATS)
    parser.add_argument("--fresh-views", type=int, default=MIN_REPEATS)
    parser.add_argument("--sizes", type=int, nargs=2, default=(256, 512), metavar=("SMALL", "LARGE"))
    args = parser.parse_args(argv)
    machine = start_benchmark()
    small, large = args.sizes
    with RenderWorker() as worker, tempfile.TemporaryDirectory(prefix="bench-bare-") as scratch:
        scene, cameras_small = bench_scene(worker, small, args.views)
        _, cameras_large = bench_scene(worker, large, args.views)
        with BareBpyScript(scene, cameras_small, Path(scratch)) as bare_script:
            seconds = interleaved({"ours": lambda: pipeline_pass(worker, scene, cameras_small),
                                   "bare": bare_script.seconds_per_view}, repeats=args.repeats)
        seconds["ours_large"] = interleaved({"ours_large": lambda: pipeline_pass(worker, scene, cameras_large)},
                                            repeats=args.repeats)["ours_large"]
    fresh = fresh_process_seconds_per_view(scene, [cameras_small[i % args.views] for i in range(args.fresh_views)])
    per_view = {side: [s / args.views for s in values] for side, values in seconds.items()}
    metrics = {
        f"seconds_per_view_{small}": spread(per_view["ours"]),
        f"seconds_per_view_{large}": spread(per_view["ours_large"]),
        "overhead_vs_bare_bpy": ratio_spread(per_view["ours"], per_view["bare"]),
        "reuse_speedup": round(statistics.median(fresh) / statistics.median(per_view["ours"]), 2),
    }
    write_result(NAME, metrics, machine=machine,
                 baseline=f"bare bpy script, same scene and settings ({statistics.median(per_view['bare']):.4f} s/view "
                          f"at {small} px); fresh worker per view ({statistics.median(fresh):.3f} s/view)",
                 command="python -m benchmarks.render",
                 goals={"overhead_vs_bare_bpy": ("<=", 1.10), "reuse_speedup": (">=", 3)},
                 notes={"engine": "Cycles CPU", "samples": SETTINGS.samples, "denoise": False, "views": args.views,
                        "asset": "procedural chair 00001", "seconds_per_pass": seconds,
                        "fresh_seconds_per_view": spread(fresh)})


if __name__ == "__main__":
    main()
