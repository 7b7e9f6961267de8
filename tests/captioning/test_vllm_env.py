"""The vLLM environment (scripts/setup_vllm_env.sh; `JOYAI_VLLM_ENV` names it): the `vllm` backend class
generates text in a subprocess there, and the `openai` backend of the main environment talks to
`vllm serve --enforce-eager` of the same tiny Qwen3 text model on 127.0.0.1.

vLLM's Qwen3-VL path needs a working torchvision, which the CPU build of vLLM cannot have, so images go
through the other backends here; on GPU nodes the same classes caption with Qwen3-VL-8B.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import png_bytes

from data_engine.captioning.backends import GenerationRequest, OpenAIBackend, OpenAIBackendConfig
from data_engine.captioning.parsing import STRUCTURED_CAPTION_SCHEMA
from data_engine.model_refs import tiny_model_path

REPO = Path(__file__).resolve().parents[2]
VLLM_ENV = os.environ.get("JOYAI_VLLM_ENV")
SERVER_START_BUDGET_S = 420  # measured: 1.5-3 minutes on a busy 2-core machine, mostly imports
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not VLLM_ENV, reason="JOYAI_VLLM_ENV is not set (make test builds the vLLM env)")]


def vllm_environment() -> dict[str, str]:
    return os.environ | {"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}


def test_vllm_backend_class_generates_text_and_guided_json(tmp_path: Path) -> None:
    requests = [{"prompt": "Rewrite into a detailed instruction: a cat on a mat.", "max_tokens": 6},
                {"prompt": "Describe the image as JSON.", "max_tokens": 12, "json_schema": STRUCTURED_CAPTION_SCHEMA,
                 "image_b64": None}]
    completed = subprocess.run(
        [f"{VLLM_ENV}/bin/python", "-m", "data_engine.captioning.vllm_generate", "--model", "tiny:qwen3", "--out", str(tmp_path / "out.jsonl"),
         "--engine-args", json.dumps({"enforce_eager": True, "max_model_len": 512})],
        input="\n".join(json.dumps(r) for r in requests), capture_output=True, text=True, cwd=REPO,
        env=vllm_environment(), timeout=SERVER_START_BUDGET_S)
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(results) == 2 and all(r["error"] is None and r["text"] for r in results)
    # Guided decoding holds even a random model to the JSON grammar: it opens an object.
    assert results[1]["text"].lstrip().startswith("{")


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path_factory.mktemp("vllm") / "serve.log"
    with open(log, "w") as handle:
        server = subprocess.Popen(
            [f"{VLLM_ENV}/bin/python", "-m", "vllm.entrypoints.openai.api_server", "--model",
             str(tiny_model_path("qwen3")), "--served-model-name", "tiny-qwen3", "--host", "127.0.0.1",
             "--port", str(port), "--enforce-eager", "--max-model-len", "512"],
            stdout=handle, stderr=subprocess.STDOUT, env=vllm_environment(), cwd=REPO)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + SERVER_START_BUDGET_S
        import httpx

        while True:
            if server.poll() is not None:
                pytest.fail(f"vllm serve exited with {server.returncode}: {log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vllm serve not ready within {SERVER_START_BUDGET_S} s: {log.read_text()[-3000:]}")
            time.sleep(2)
        yield base_url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def test_openai_backend_against_vllm_serve(vllm_server: str) -> None:
    backend = OpenAIBackend(OpenAIBackendConfig(base_url=vllm_server, model="tiny-qwen3", max_concurrency=4,
                                                timeout_s=60))
    results = backend.generate([GenerationRequest(f"Rewrite concisely: scene {i}.", 5) for i in range(4)]
                               + [GenerationRequest("JSON please.", 12, json_schema=STRUCTURED_CAPTION_SCHEMA)])
    assert all(r.error is None and r.text for r in results)
    assert results[-1].text.lstrip().startswith("{")
    # A text-only model refuses images: the failure is a result with the server's reason, not an exception.
    image = backend.generate([GenerationRequest("Describe.", 5, png_bytes((32, 32), (9, 9, 9)))])[0]
    assert image.text is None and image.error.startswith("http 4")
