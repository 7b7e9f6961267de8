"""Run the `vllm` backend in a subprocess of the vLLM environment: JSON lines of requests in, results out.

The main environment cannot import vLLM (it pins another torch); it starts this module with the vLLM
environment's Python instead, or talks to `vllm serve` through the `openai` backend.

    $VLLM_ENV/bin/python -m data_engine.captioning.vllm_generate --model DIR --out FILE [--engine-args JSON] < requests.jsonl

Each input line: {"prompt": str, "max_tokens": int, "image_b64": str|null, "json_schema": obj|null};
each line of FILE: {"text": str|null, "error": str|null}, in input order (a file, not stdout,
because vLLM logs to stdout).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path

from data_engine.captioning.backends import GenerationRequest, VllmBackend, VllmBackendConfig


def request_from_json(line: str) -> GenerationRequest:
    data = json.loads(line)
    image = base64.b64decode(data["image_b64"]) if data.get("image_b64") else None
    return GenerationRequest(data["prompt"], int(data["max_tokens"]), image, data.get("json_schema"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_engine.captioning.vllm_generate", description=__doc__)
    parser.add_argument("--model", required=True, help="checkpoint directory or tiny:<name>")
    parser.add_argument("--out", required=True, type=Path, help="where the JSON lines of results go")
    parser.add_argument("--engine-args", default="{}", help="JSON object passed to vllm.LLM")
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    requests = [request_from_json(line) for line in sys.stdin if line.strip()]
    backend = VllmBackend(VllmBackendConfig(model=args.model, engine_args=json.loads(args.engine_args),
                                            temperature=args.temperature, seed=args.seed))
    results = backend.generate(requests)
    args.out.write_text("".join(json.dumps({"text": r.text, "error": r.error}, ensure_ascii=False) + "\n"
                                for r in results))
    backend.close()
    return 0


if __name__ == "__main__":  # vLLM's CPU engine starts worker processes that re-import the main module
    sys.exit(main())
