"""A scripted OpenAI-compatible chat server: it answers each request with the next scripted text (the model
stands in for nothing under test here: the stages' prompts, parsing and decisions are what the tests read)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class ScriptedServer:
    base_url: str
    replies: list[str] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)

    def backend(self) -> dict[str, Any]:
        return {"kind": "openai", "base_url": self.base_url, "model": "scripted", "max_retries": 0,
                "max_concurrency": 1}


@pytest.fixture
def scripted_server() -> Iterator[ScriptedServer]:
    lock = threading.Lock()
    state = ScriptedServer("")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                state.received.append(payload)
                text = state.replies.pop(0)
            body = json.dumps({"id": "x", "object": "chat.completion", "model": "scripted", "choices": [
                {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.base_url = f"http://127.0.0.1:{server.server_port}/v1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
