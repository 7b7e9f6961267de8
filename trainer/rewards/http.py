"""A reward service over HTTP, so reward models can run on their own (GPU) nodes outside the trainer's Ray.

Server: `python -m trainer.rewards serve --config rewards.yaml [--host 0.0.0.0] [--port 8500]` builds every
reward of the config's `rewards:` list (the same specs a trainer config takes; `key` names a second copy of a
reward) and serves each at `POST /score/<key>`; `GET /health` lists the keys. It prints
`serving <key>,... on http://HOST:PORT` once listening (port 0 picks a free one). Requests are scored one at a
time (the models are not shared between threads).

Wire format (JSON): request `{"prompts": [...], "images": [base64 PNG, ...], "source_images": [base64 PNG, ...]
or null, "latents": {"shape": [...], "float32": base64 little-endian} or null}`; response `{"scores": [...],
"details": [...]}` (NaN for an unscored image, with the reason in its details), or `{"error": "..."}` with
status 4xx / 5xx.

Trainer side: a reward spec with an `http` section calls the service instead of building the model; the name
picks the registered reward (for its needs: images, source images) and, unless `http.reward` says otherwise,
the key served:

    rewards:
      - {name: pickscore, weight: 1.0, http: {url: "http://reward-node-0:8500", timeout_s: 120}}

A request that fails (connection refused, timeout, an error status, a malformed answer) raises a TrainerError
naming the URL; no score is ever filled in for it.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import torch
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, field_validator

from trainer.core import TrainerError
from trainer.rewards import Reward, RewardInput, RewardOutput


class HttpRewardConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str  # the service's base URL, e.g. http://reward-node-0:8500
    reward: str | None = None  # the key the service serves it under; None: the spec's key or name
    timeout_s: float = Field(default=120.0, gt=0)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"url {url!r} is not an http(s) URL")
        return url.rstrip("/")


def encode_image(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_image(text: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(text))).convert("RGB")


def encode_batch(batch: RewardInput) -> dict[str, Any]:
    latents = None
    if batch.latents is not None:
        array = batch.latents.detach().float().cpu().numpy().astype("<f4")
        latents = {"shape": list(array.shape), "float32": base64.b64encode(array.tobytes()).decode("ascii")}
    return {"prompts": list(batch.prompts), "images": [encode_image(image) for image in batch.images],
            "source_images": (None if batch.source_images is None
                              else [encode_image(image) for image in batch.source_images]),
            "latents": latents}


def decode_batch(payload: dict[str, Any]) -> RewardInput:
    latents = payload.get("latents")
    if latents is not None:
        array = np.frombuffer(base64.b64decode(latents["float32"]), dtype="<f4").reshape(latents["shape"])
        latents = torch.from_numpy(array.copy())
    sources = payload.get("source_images")
    return RewardInput(prompts=list(payload["prompts"]), images=[decode_image(x) for x in payload.get("images", [])],
                       latents=latents, source_images=None if sources is None else [decode_image(x) for x in sources])


class HttpReward(Reward):
    """The client: the served reward behind the `Reward` interface."""

    def __init__(self, name: str, config: HttpRewardConfig, needs_images: bool, needs_source_images: bool,
                 key: str | None = None) -> None:
        self.endpoint = f"{config.url}/score/{config.reward or key or name}"
        self.timeout_s = config.timeout_s
        self.needs_images, self.needs_source_images = needs_images, needs_source_images

    def score(self, batch: RewardInput) -> RewardOutput:
        body = json.dumps(encode_batch(batch)).encode()
        request = urllib.request.Request(self.endpoint, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise TrainerError(f"rewards: {self.endpoint}: HTTP {exc.code}: {error_text(exc)}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TrainerError(f"rewards: {self.endpoint}: request failed: {reason}") from None
        except ValueError as exc:
            raise TrainerError(f"rewards: {self.endpoint}: the answer is not JSON: {exc}") from None
        scores, details = answer.get("scores"), answer.get("details")
        if not isinstance(scores, list) or not isinstance(details, list) or not (
                len(scores) == len(details) == len(batch.prompts)):
            raise TrainerError(f"rewards: {self.endpoint}: expected {len(batch.prompts)} scores and details, "
                               f"got {str(answer)[:200]}")
        return RewardOutput([float(value) for value in scores], details)


def error_text(exc: urllib.error.HTTPError) -> str:
    try:
        return json.loads(exc.read()).get("error", "")
    except ValueError:
        return exc.reason


def serve_rewards(rewards: dict[str, Reward], host: str, port: int) -> ThreadingHTTPServer:
    """An HTTP server scoring with `rewards` (key -> reward); call `serve_forever()` on it."""
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, payload: dict[str, Any]) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path == "/health":
                self._answer(200, {"rewards": sorted(rewards)})
            else:
                self._answer(404, {"error": f"no such path {self.path}; GET /health, POST /score/<key>"})

        def do_POST(self) -> None:  # noqa: N802
            key = self.path.removeprefix("/score/")
            if not self.path.startswith("/score/") or key not in rewards:
                self._answer(404, {"error": f"no reward at {self.path}; served: "
                                            f"{', '.join('/score/' + k for k in sorted(rewards))}"})
                return
            try:
                batch = decode_batch(json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0)))))
            except (ValueError, KeyError, TypeError, OSError) as exc:
                self._answer(400, {"error": f"malformed request: {exc}"})
                return
            try:
                with lock:
                    output = rewards[key].score(batch)
            except Exception as exc:  # noqa: BLE001 (the client gets the reason; the service stays up)
                self._answer(500, {"error": f"{key}: {type(exc).__name__}: {exc}"})
                return
            self._answer(200, {"scores": output.scores, "details": output.details})

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (quiet per request)
            pass

    return ThreadingHTTPServer((host, port), Handler)
