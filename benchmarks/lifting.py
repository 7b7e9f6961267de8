"""3D lifting on one core: frames per second at 640x480 (target >= 20 per core) and the 3D IoU of the kept
boxes to ground truth under the default `ObservationNoise` (1% depth noise, 1% per-frame depth scale error,
mask boundaries off by up to 2 px, 0.5 degree / 2 cm pose error), on procedural scenes.

Procedural camera paths see many objects from one side only, so boxes are partial; `mean_iou_3d_orbit` adds
the same measurement on orbit views (four cameras around the objects) where every box is seen from several sides,
and `mean_iou_3d_clean` the path measurement without noise: its gap to 1 is what partial views (occlusion, image
borders, one-sided paths) cost. (Noise also changes which boxes pass cycle consistency, so clean and noisy means
are over slightly different boxes.)
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks.common import write_result
from openspatial.lifting import LiftingConfig, ObservationNoise, gravity_aligned_iou, lift_tracks, noisy_observations
from openspatial.procedural import ProceduralConfig, generate_scene, look_at_pose

NAME = "lifting"


def orbit_frames(scene, count: int = 4):
    """The scene re-rendered from cameras on a circle around its objects, looking at their centroid."""
    from openspatial.procedural import render_frames
    from openspatial.scene import Frame

    centre = np.mean([o.box.center for o in scene.objects], axis=0)
    room = np.array(scene.metadata["room_size"])
    radius = 0.45 * room.min()
    frames = []
    for k in range(count):
        angle = 2 * np.pi * (k + 0.5) / count
        position = np.array([*(room / 2 + radius * np.array([np.cos(angle), np.sin(angle)])), 1.8])
        base = scene.frames[0]
        frames.append(Frame(f"orbit{k}", base.width, base.height, base.intrinsics, look_at_pose(position, centre)))
    render_frames(scene.objects, room, scene.metadata["room_height"], frames)
    return frames


def measure(scenes, frames_of, noise: ObservationNoise, config: LiftingConfig):
    ious, seconds, frame_count, kept, total = [], 0.0, 0, 0, 0
    for number, scene in enumerate(scenes):
        frames = noisy_observations(frames_of(scene), noise, seed=number)
        started = time.perf_counter()
        results = lift_tracks(frames, {o.instance_id: o.category for o in scene.objects}, config)
        seconds += time.perf_counter() - started
        frame_count += len(frames)
        truth = {o.instance_id: o.box for o in scene.objects}
        for result in results:
            total += 1
            if result.reject_reason is None:
                kept += 1
                ious.append(gravity_aligned_iou(result.box, truth[result.track_id]))
    return frame_count / seconds, float(np.mean(ious)), kept / max(total, 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenes", type=int, default=20)
    parser.add_argument("--frames", type=int, default=8)
    args = parser.parse_args(argv)
    scenes = [generate_scene(30, n, ProceduralConfig(width=640, height=480, frames=args.frames)) for n in range(args.scenes)]
    noise, config = ObservationNoise(), LiftingConfig()
    fps, iou, kept = measure(scenes, lambda scene: scene.frames, noise, config)
    _, orbit_iou, orbit_kept = measure(scenes, orbit_frames, noise, config)
    no_noise = ObservationNoise(depth_relative_sigma=0, depth_scale_sigma=0, mask_boundary_pixels=0,
                                pose_rotation_deg=0, pose_translation_m=0)
    _, clean_iou, _ = measure(scenes, lambda scene: scene.frames, no_noise, config)
    write_result(NAME, {"frames_per_s_per_core": round(fps, 2), "mean_iou_3d": round(iou, 3),
                        "kept_fraction": round(kept, 3), "mean_iou_3d_orbit": round(orbit_iou, 3),
                        "kept_fraction_orbit": round(orbit_kept, 3), "mean_iou_3d_clean": round(clean_iou, 3)},
                 baseline="issue target: >= 20 frames/s per core at 640x480",
                 command=f"python -m benchmarks.lifting --scenes {args.scenes} --frames {args.frames}",
                 notes={"noise": noise.model_dump(), "lifting": config.model_dump(), "resolution": "640x480"})


if __name__ == "__main__":
    main()
