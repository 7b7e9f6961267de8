"""Main-environment side of the render workers: start, talk to, time out and restart them.

A `RenderWorker` owns one `<render python> -m render.worker` process (see render/worker.py for the
protocol) and reuses it for many requests; after a crash or a timeout the process is killed and the next
request starts a fresh one. The render environment's Python is `$JOYAI_RENDER_PYTHON`, else the
`.venv-render` link in the repository that `make render-env` creates.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from data_engine.stage import StageUnavailable
from render.scene import Camera, RenderSettings, RenderScene

REPO = Path(__file__).resolve().parents[1]
RENDER_PYTHON_ENV = "JOYAI_RENDER_PYTHON"
DEFAULT_RENDER_VENV = REPO / ".venv-render"
_STDERR_TAIL_CHARS = 2000


class RenderEnvMissing(StageUnavailable):
    """The render environment's Python is not there."""


class RenderWorkerError(RuntimeError):
    """A request failed inside the worker (bad asset, bad scene); the worker itself is still fine."""


class RenderWorkerCrashed(RuntimeError):
    """The worker process died or stopped answering; it is restarted on the next request."""


class RenderTimeout(RenderWorkerCrashed):
    """A request took longer than its timeout; the worker was killed."""


class RenderDeviceUnavailable(StageUnavailable):
    """The configured render device (a Cycles GPU backend) does not exist where the worker runs."""


def render_python() -> Path:
    configured = os.environ.get(RENDER_PYTHON_ENV)
    python = Path(configured) if configured else DEFAULT_RENDER_VENV / "bin" / "python"
    if not python.exists():
        how = f"${RENDER_PYTHON_ENV}={configured}" if configured else f"{python} (default)"
        raise RenderEnvMissing(f"render environment not found: {how}; build it with `make render-env` "
                               f"or point {RENDER_PYTHON_ENV} at a Python with bpy 5.0.1")
    return python


class RenderWorker:
    def __init__(self, python: Path | None = None, *, startup_timeout: float = 120.0) -> None:
        self.python = python or render_python()
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.requests_served = 0
        self._buffer = b""
        self._next_id = 0
        self._log_path: Path | None = None

    # ---- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> dict[str, Any]:
        self.close()
        handle, log_path = tempfile.mkstemp(prefix="joyai-render-worker-", suffix=".log")
        self._log_path = Path(log_path)
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen([str(self.python), "-m", "render.worker"], cwd=REPO, env=env,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=handle)
        os.close(handle)
        self._buffer = b""
        self.starts += 1
        return self._read_message(self.startup_timeout, what="start-up")

    def close(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait()
            for stream in (self.process.stdin, self.process.stdout):
                if stream:
                    stream.close()
            self.process = None
        if self._log_path is not None:
            self._log_path.unlink(missing_ok=True)
            self._log_path = None

    def __enter__(self) -> RenderWorker:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None and self.process.poll() is None else None

    # ---- requests ------------------------------------------------------------------------------------
    def request(self, op: str, payload: dict[str, Any] | None = None, *, timeout: float = 300.0) -> dict[str, Any]:
        if self.pid is None:
            self.start()
        assert self.process is not None and self.process.stdin is not None
        self._next_id += 1
        message = {"id": self._next_id, "op": op, **(payload or {})}
        try:
            self.process.stdin.write((json.dumps(message) + "\n").encode())
            self.process.stdin.flush()
        except BrokenPipeError:
            raise self._crashed(f"{op}: worker exited before the request was sent") from None
        response = self._read_message(timeout, what=op)
        if response.get("id") != message["id"]:
            raise self._crashed(f"{op}: response id {response.get('id')} for request {message['id']}")
        if not response["ok"]:
            raise RenderWorkerError(f"{op}: {response['error']}")
        self.requests_served += 1
        return response["result"]

    def _read_message(self, timeout: float, *, what: str) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        deadline = time.monotonic() + timeout
        stdout = self.process.stdout.fileno()
        with selectors.DefaultSelector() as selector:
            selector.register(stdout, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.close()
                    raise RenderTimeout(f"{what}: no answer from the render worker within {timeout:.0f} s; killed it")
                if not selector.select(remaining):
                    continue
                chunk = os.read(stdout, 1 << 16)
                if not chunk:
                    raise self._crashed(f"{what}: render worker exited (code {self.process.wait()})")
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def _crashed(self, message: str) -> RenderWorkerCrashed:
        tail = self._log_path.read_text(errors="replace")[-_STDERR_TAIL_CHARS:] if self._log_path else ""
        self.close()
        last_line = tail.strip().splitlines()[-1] if tail.strip() else "no stderr"
        return RenderWorkerCrashed(f"{message}; last stderr line: {last_line}")


@dataclass
class RenderedView:
    rgba: np.ndarray  # H x W x 4 uint8, straight alpha, sRGB
    depth: np.ndarray  # H x W float32, metres along the optical axis, 0 where nothing was hit
    index_mask: np.ndarray  # H x W uint8 object pass indices, 0 = background


def render_views(worker: RenderWorker, scene: RenderScene, cameras: list[Camera], settings: RenderSettings,
                 *, timeout: float = 300.0) -> list[RenderedView]:
    scratch = Path(tempfile.mkdtemp(prefix="joyai-render-"))
    try:
        result = worker.request("render", {"scene": scene.model_dump(mode="json"),
                                           "cameras": [c.model_dump(mode="json") for c in cameras],
                                           "settings": settings.model_dump(mode="json"), "out_dir": str(scratch)},
                                timeout=timeout)
        return [RenderedView(rgba=np.load(view["image"]), depth=np.load(view["depth"]),
                             index_mask=np.load(view["mask"])) for view in result["views"]]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def render_devices(worker: RenderWorker, settings: RenderSettings) -> list[str]:
    """The Cycles devices the worker renders `settings` on; raises RenderDeviceUnavailable (one line, from
    the worker) when a GPU is configured and the node has none of that backend."""
    try:
        return worker.request("devices", {"settings": settings.model_dump(mode="json")})["devices"]
    except RenderWorkerError as failure:
        if "RenderDeviceError: " not in str(failure):
            raise
        raise RenderDeviceUnavailable(str(failure).split("RenderDeviceError: ", 1)[1]) from None


def cast_rays(worker: RenderWorker, scene: RenderScene, rays: list[tuple[np.ndarray, np.ndarray]],
              target_pass_index: int | None = None, *, timeout: float = 120.0) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each (origin, directions) batch: the pass index first hit by every ray (0: none) and whether the
    ray reaches the target object at all (first or behind something)."""
    result = worker.request("ray_cast", {"scene": scene.model_dump(mode="json"), "target_pass_index": target_pass_index,
                                         "rays": [{"origin": origin.tolist(), "directions": directions.tolist()}
                                                  for origin, directions in rays]}, timeout=timeout)
    return [(np.asarray(batch["pass_indices"], dtype=np.int32), np.asarray(batch["reaches_target"], dtype=bool))
            for batch in result["batches"]]
