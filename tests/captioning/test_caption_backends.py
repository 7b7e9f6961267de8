"""The transformers and openai backends on the tiny Qwen3-VL: batching, ordering, token budgets, and the
openai client's concurrency bound, retries, timeouts and failures against a real HTTP server."""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor

from conftest import ServedModel, png_bytes

from data_engine.captioning.backends import (GenerationRequest, OpenAIBackend, OpenAIBackendConfig,
                                             TransformersBackend, TransformersBackendConfig)
from data_engine.captioning.parsing import STRUCTURED_CAPTION_SCHEMA

RED = png_bytes((64, 48), (200, 30, 30))
BLUE = png_bytes((40, 72), (30, 30, 200))


def test_transformers_batches_mixed_requests_in_order_with_their_own_budgets() -> None:
    # Greedy decoding of the random tiny model emits one newline per token until the budget is used up,
    # so each text's length is exactly its request's token budget: ordering and grouping are visible.
    greedy = TransformersBackend(TransformersBackendConfig(model="tiny:qwen3vl"))
    requests = [GenerationRequest("Describe.", 3, RED), GenerationRequest("描述这张图片。", 7, BLUE),
                GenerationRequest("Text only.", 5), GenerationRequest("Again.", 3, BLUE)]
    assert [len(g.text) for g in greedy.generate(requests)] == [3, 7, 5, 3]


def test_transformers_sampling_is_seeded(tiny_vlm: TransformersBackend) -> None:
    requests = [GenerationRequest("Describe.", 6, RED), GenerationRequest("Describe.", 6, BLUE)]
    first, second = tiny_vlm.generate(requests), tiny_vlm.generate(requests)
    assert first == second and all(g.text.strip() and g.error is None for g in first)


def openai_backend(served: ServedModel, **overrides) -> OpenAIBackend:
    settings = dict(base_url=served.base_url, model=served.model, max_concurrency=2, timeout_s=20,
                    max_retries=2, backoff_s=0.01) | overrides
    return OpenAIBackend(OpenAIBackendConfig(**settings))


def test_openai_backend_gets_model_text_with_bounded_concurrency(served_tiny_vlm: ServedModel) -> None:
    served_tiny_vlm.control.delay_s = 0.2  # requests overlap, so the bound is what limits them
    requests = [GenerationRequest(f"Describe image {i}.", 4, RED if i % 2 else BLUE) for i in range(6)]
    results = openai_backend(served_tiny_vlm).generate(requests)
    assert all(r.error is None and r.text for r in results)
    assert served_tiny_vlm.control.peak_in_flight == 2
    sent = served_tiny_vlm.control.received
    assert sorted(p["messages"][0]["content"][1]["text"] for p in sent) == sorted(r.prompt for r in requests)
    assert sent[0]["messages"][0]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")


def test_openai_backend_works_where_an_event_loop_already_runs(served_tiny_vlm: ServedModel) -> None:
    # A notebook, an async service or Playwright's sync API (the report tests' browser) runs a loop in the
    # calling thread; asyncio.run inside it raised RuntimeError for every request.
    async def caller() -> list:
        return openai_backend(served_tiny_vlm).generate([GenerationRequest("Describe.", 4, RED)])

    # The caller's loop runs on a thread of its own: this test's thread may already hold the browser's loop.
    with ThreadPoolExecutor(max_workers=1) as pool:
        results = pool.submit(asyncio.run, caller()).result()
    assert len(results) == 1 and results[0].error is None and results[0].text


def test_openai_backend_sends_the_json_schema_for_guided_decoding(served_tiny_vlm: ServedModel) -> None:
    request = GenerationRequest("Describe as JSON.", 4, RED, json_schema=STRUCTURED_CAPTION_SCHEMA)
    openai_backend(served_tiny_vlm).generate([request])
    response_format = served_tiny_vlm.control.received[0]["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["schema"] == STRUCTURED_CAPTION_SCHEMA
    openai_backend(served_tiny_vlm, guided_json=False).generate([request])
    assert "response_format" not in served_tiny_vlm.control.received[1]


def test_openai_backend_retries_transient_failures(served_tiny_vlm: ServedModel) -> None:
    served_tiny_vlm.control.fail_next.extend([503, 429])
    result = openai_backend(served_tiny_vlm, max_concurrency=1).generate([GenerationRequest("Hi.", 3, RED)])
    assert result[0].error is None and result[0].text
    assert len(served_tiny_vlm.control.received) == 3


def test_openai_backend_failures_become_results_with_a_reason(served_tiny_vlm: ServedModel) -> None:
    served_tiny_vlm.control.fail_next.extend([503, 503, 503])
    exhausted = openai_backend(served_tiny_vlm, max_concurrency=1).generate([GenerationRequest("Hi.", 3)])
    assert exhausted[0].text is None and exhausted[0].error.startswith("http 503") and "3 attempts" in exhausted[0].error

    served_tiny_vlm.control.fail_next.append(400)
    refused = openai_backend(served_tiny_vlm).generate([GenerationRequest("Hi.", 3)])
    assert refused[0].error.startswith("http 400") and len(served_tiny_vlm.control.received) == 4  # no retry

    unknown_model = openai_backend(served_tiny_vlm, model="other").generate([GenerationRequest("Hi.", 3)])
    assert "not served" in unknown_model[0].error


def test_openai_backend_times_out_and_reports_it(served_tiny_vlm: ServedModel) -> None:
    served_tiny_vlm.control.delay_s = 1.0
    started = time.perf_counter()
    result = openai_backend(served_tiny_vlm, timeout_s=0.2, max_retries=1).generate([GenerationRequest("Hi.", 3)])
    assert result[0].error == "timeout after 0.2s (2 attempts)"
    assert time.perf_counter() - started < 2.0


def test_openai_backend_reports_an_unreachable_server() -> None:
    backend = OpenAIBackend(OpenAIBackendConfig(base_url="http://127.0.0.1:9/v1", model="m", max_retries=1,
                                                backoff_s=0.01, timeout_s=2))
    result = backend.generate([GenerationRequest("Hi.", 3)])
    assert result[0].text is None and "ConnectError" in result[0].error


def test_openai_backend_reads_the_api_key_from_the_environment(served_tiny_vlm: ServedModel, monkeypatch) -> None:
    monkeypatch.setenv("TEST_CAPTION_KEY", "secret-123")
    backend = openai_backend(served_tiny_vlm, api_key_env="TEST_CAPTION_KEY")
    assert backend.headers["Authorization"] == "Bearer secret-123"
    monkeypatch.delenv("TEST_CAPTION_KEY")
    try:
        openai_backend(served_tiny_vlm, api_key_env="TEST_CAPTION_KEY")
    except ValueError as exc:
        assert "TEST_CAPTION_KEY is not set" in str(exc)
    else:
        raise AssertionError("a missing API key must be an error")
    assert json.dumps(backend.config.model_dump()).count("secret") == 0
