"""Shared fixtures for the captioning tests: the tiny Qwen3-VL backend, small images, and an
OpenAI-compatible HTTP server on 127.0.0.1 whose completions the tiny model generates."""

from __future__ import annotations

import base64
import io
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from PIL import Image, ImageDraw

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from data_engine.captioning.backends import (GenerationRequest, TransformersBackend,  # noqa: E402
                                             TransformersBackendConfig)


def png_bytes(size: tuple[int, int], colour: tuple[int, int, int], text: str | None = None) -> bytes:
    image = Image.new("RGB", size, colour)
    if text:
        ImageDraw.Draw(image).text((4, size[1] // 3), text, fill=(0, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def tiny_vlm() -> TransformersBackend:
    """The tiny random Qwen3-VL, sampling (greedy decoding of a random model only emits newlines)."""
    return TransformersBackend(TransformersBackendConfig(model="tiny:qwen3vl", temperature=1.0, seed=0))


@dataclass
class ServerControl:
    """What the test server should do next and what it saw (requests, peak concurrency)."""

    fail_next: list[int] = field(default_factory=list)  # HTTP status codes for the next requests, in order
    replies: list[str] = field(default_factory=list)  # completion texts for the next requests instead of the model's
    delay_s: float = 0.0
    received: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    peak_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class ServedModel:
    base_url: str
    model: str
    control: ServerControl


def _request_from_chat(payload: dict[str, Any]) -> GenerationRequest:
    """Back from the OpenAI chat format to a generation request: the text parts and a data-URL image."""
    image, texts = None, []
    for part in payload["messages"][-1]["content"]:
        if part["type"] == "image_url":
            image = base64.b64decode(part["image_url"]["url"].split(",", 1)[1])
        elif part["type"] == "text":
            texts.append(part["text"])
    return GenerationRequest("\n".join(texts), int(payload["max_tokens"]), image)


def _handler(backend: TransformersBackend, model: str, control: ServerControl,
             generate_lock: threading.Lock) -> type[BaseHTTPRequestHandler]:
    class ChatCompletions(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep pytest output clean
            pass

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with control.lock:
                control.received.append(payload)
                control.in_flight += 1
                control.peak_in_flight = max(control.peak_in_flight, control.in_flight)
                status = control.fail_next.pop(0) if control.fail_next else 200
                scripted = control.replies.pop(0) if status == 200 and control.replies else None
            try:
                time.sleep(control.delay_s)
                if self.path != "/v1/chat/completions":
                    self._reply(404, {"error": {"message": f"no route {self.path}"}})
                elif status != 200:
                    self._reply(status, {"error": {"message": f"injected status {status}"}})
                elif payload.get("model") != model:
                    self._reply(404, {"error": {"message": f"model {payload.get('model')!r} not served"}})
                else:
                    text = scripted
                    if text is None:
                        with generate_lock:  # one model, one generate at a time, like a single-GPU server
                            text = backend.generate([_request_from_chat(payload)])[0].text
                    self._reply(200, {"id": "cmpl-test", "object": "chat.completion", "model": model,
                                      "choices": [{"index": 0, "finish_reason": "length",
                                                   "message": {"role": "assistant", "content": text}}]})
            finally:
                with control.lock:
                    control.in_flight -= 1

    return ChatCompletions


@pytest.fixture(scope="session")
def _served_tiny_vlm(tiny_vlm: TransformersBackend) -> Iterator[ServedModel]:
    control = ServerControl()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(tiny_vlm, "tiny-qwen3vl", control, threading.Lock()))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield ServedModel(f"http://127.0.0.1:{server.server_port}/v1", "tiny-qwen3vl", control)
    server.shutdown()
    server.server_close()


@pytest.fixture
def served_tiny_vlm(_served_tiny_vlm: ServedModel) -> Iterator[ServedModel]:
    """The session's server with its controls reset for this test; waits for requests the client gave up
    on (timeouts) to finish, so no handler thread is inside torch when the interpreter exits."""
    control = _served_tiny_vlm.control
    with control.lock:
        control.fail_next.clear()
        control.replies.clear()
        control.received.clear()
        control.delay_s = 0.0
        control.peak_in_flight = 0
    yield _served_tiny_vlm
    deadline = time.monotonic() + 60
    while control.in_flight and time.monotonic() < deadline:
        time.sleep(0.05)
