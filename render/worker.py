"""Render worker process: `<render python> -m render.worker`, driven by render/client.py.

Protocol: one JSON object per line. The worker first writes {"ready": true, ...}; then, for each request
line {"id": n, "op": ..., ...} it writes one response line {"id": n, "ok": true, "result": {...}} or
{"id": n, "ok": false, "error": "<Type>: <message>"}. Images, depth and masks travel as files in the
request's `out_dir`. Blender prints to stdout, so the protocol keeps its own copy of the original stdout
and everything else written to fd 1 goes to stderr.

Imports only bpy, numpy, OpenEXR, data_engine.conventions and render.geometry / render.blender_scene: the render
environment has no pydantic, Ray or torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Callable


def _canonical_digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class WorkerState:
    """The scene currently built in Blender; a request for the same scene reuses it."""

    def __init__(self, blender_scene: Any) -> None:
        self.blender = blender_scene
        self.scene_digest: str | None = None
        self.objects: dict[str, list[str]] = {}

    def ensure_scene(self, scene: dict[str, Any]) -> bool:
        digest = _canonical_digest(scene)
        if digest == self.scene_digest:
            return False
        self.scene_digest = None  # a failed build must not leave a half-built scene marked as current
        self.objects = self.blender.build_scene(scene)
        self.scene_digest = digest
        return True


def _op_ping(state: WorkerState, request: dict[str, Any]) -> dict[str, Any]:
    return {"blender": state.blender.blender_version(), "pid": os.getpid(),
            "scripts_auto_execute": state.blender.scripts_auto_execute()}


def _op_render(state: WorkerState, request: dict[str, Any]) -> dict[str, Any]:
    rebuilt = state.ensure_scene(request["scene"])
    state.blender.configure_render(request["settings"])
    out_dir = Path(request["out_dir"])
    views = [state.blender.render_view(camera, out_dir / f"{request.get('prefix', 'view')}_{index:03d}")
             for index, camera in enumerate(request["cameras"])]
    return {"views": views, "scene_rebuilt": rebuilt}


def _op_ray_cast(state: WorkerState, request: dict[str, Any]) -> dict[str, Any]:
    rebuilt = state.ensure_scene(request["scene"])
    batches = [state.blender.cast_rays(batch["origin"], batch["directions"], request.get("max_distance", 1e4),
                                       request.get("target_pass_index"))
               for batch in request["rays"]]
    return {"batches": batches, "scene_rebuilt": rebuilt}


def _op_geometry(state: WorkerState, request: dict[str, Any]) -> dict[str, Any]:
    state.ensure_scene(request["scene"])
    return {name: state.blender.object_geometry(state.objects[name], request.get("max_triangles", 50_000))
            for name in request["objects"]}


def _op_devices(state: WorkerState, request: dict[str, Any]) -> dict[str, Any]:
    return {"devices": state.blender.select_devices(request["settings"])}


OPS: dict[str, Callable[[WorkerState, dict[str, Any]], dict[str, Any]]] = {
    "ping": _op_ping, "render": _op_render, "ray_cast": _op_ray_cast, "geometry": _op_geometry,
    "devices": _op_devices,
}


def main() -> int:
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def send(message: dict[str, Any]) -> None:
        protocol.write(json.dumps(message) + "\n")

    from render import blender_scene  # imports bpy: only after fd 1 is redirected

    blender_scene.disable_script_autoexec()
    state = WorkerState(blender_scene)
    send({"ready": True, "pid": os.getpid(), "blender": blender_scene.blender_version()})
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        request_id = request.get("id")
        try:
            result = OPS[request["op"]](state, request)
        except Exception as exc:  # reported to the client, which decides; the worker stays usable
            traceback.print_exc()
            send({"id": request_id, "ok": False, "error": f"{type(exc).__name__}: {exc}"})
            continue
        send({"id": request_id, "ok": True, "result": result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
