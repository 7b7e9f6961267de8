"""Generation backends behind one interface: a batch of requests in, one text or error per request out.

All backends see the same requests (prompt text, optional image, token budget, optional JSON schema) built
from the same prompt files, and their outputs go through the same parser, so switching `backend.kind` in a
job changes where text is generated, nothing else.
- `transformers`: a local checkpoint, batched `generate` (CPU or GPU); JSON is parsed, not guided.
- `openai`: any OpenAI-compatible server (e.g. `vllm serve`), async with bounded concurrency, retries with
  exponential backoff and a per-request timeout; JSON is guided through `response_format` when enabled.
- `vllm`: the in-process vLLM engine (its own environment, see scripts/setup_vllm_env.sh); JSON guided.
A failed request becomes a result with an `error`, never an exception that sinks the batch.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import io
import os
import random
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from data_engine.model_refs import resolve_model_path

_RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    max_tokens: int
    image: bytes | None = None  # encoded image; None for text-only prompts
    json_schema: dict | None = None  # guided decoding target where the backend supports it


@dataclass(frozen=True)
class Generation:
    text: str | None
    error: str | None = None


class _BackendConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(default=0.0, ge=0)  # 0: greedy
    seed: int = 0  # sampling seed, so sampled captions are reproducible too


class TransformersBackendConfig(_BackendConfig):
    kind: Literal["transformers"] = "transformers"
    model: str  # checkpoint directory, or "tiny:<name>" for a test model built by `make tiny-models`
    device: str = "cpu"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    torch_threads: int | None = Field(default=None, gt=0)


class OpenAIBackendConfig(_BackendConfig):
    kind: Literal["openai"] = "openai"
    base_url: str  # e.g. http://127.0.0.1:8000/v1
    model: str  # the served model name
    api_key_env: str | None = None  # environment variable holding the API key; the key never sits in a config
    max_concurrency: int = Field(default=16, gt=0)
    timeout_s: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=3, ge=0)
    backoff_s: float = Field(default=1.0, ge=0)  # first retry delay; doubles each retry, with jitter
    guided_json: bool = True


class VllmBackendConfig(_BackendConfig):
    kind: Literal["vllm"] = "vllm"
    model: str  # local checkpoint directory (or "tiny:<name>")
    engine_args: dict[str, Any] = Field(default_factory=dict)  # passed to vllm.LLM as they are
    guided_json: bool = True


BackendConfig = Annotated[TransformersBackendConfig | OpenAIBackendConfig | VllmBackendConfig,
                          Field(discriminator="kind")]


def check_backend_available(config: TransformersBackendConfig | OpenAIBackendConfig | VllmBackendConfig) -> str | None:
    """Why this backend cannot run here (None when it can): a local model that is missing, vLLM absent."""
    if isinstance(config, OpenAIBackendConfig):
        return None  # a server that is down is a per-request failure, recorded on the rows
    try:
        path = resolve_model_path(config.model)
    except Exception as exc:  # the tiny-model resolver says what to build
        return str(exc)
    if not path.is_dir():
        return f"backend.model: {config.model} is not a directory"
    if isinstance(config, VllmBackendConfig) and importlib.util.find_spec("vllm") is None:
        return "backend.kind vllm: vLLM is not installed in this environment (scripts/setup_vllm_env.sh)"
    return None


def image_data_url(image: bytes) -> str:
    from PIL import Image

    with Image.open(io.BytesIO(image)) as decoded:
        mime = Image.MIME.get(decoded.format or "", "image/png")
    return f"data:{mime};base64,{base64.b64encode(image).decode()}"


def chat_messages(request: GenerationRequest) -> list[dict[str, Any]]:
    """OpenAI chat format (also what vLLM's `LLM.chat` takes): the image first, then the instruction."""
    content: list[dict[str, Any]] = []
    if request.image is not None:
        content.append({"type": "image_url", "image_url": {"url": image_data_url(request.image)}})
    content.append({"type": "text", "text": request.prompt})
    return [{"role": "user", "content": content}]


class GenerationBackend(ABC):
    supports_guided_json: bool = False

    @abstractmethod
    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        """One result per request, in order."""

    def close(self) -> None:
        """Release the model or connections."""


class TransformersBackend(GenerationBackend):
    """Batched `generate` with left padding; requests with the same token budget share a batch."""

    def __init__(self, config: TransformersBackendConfig) -> None:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        if config.torch_threads:
            torch.set_num_threads(config.torch_threads)
        path = resolve_model_path(config.model)
        self.config = config
        self.processor = AutoProcessor.from_pretrained(path)
        self.processor.tokenizer.padding_side = "left"  # decoder-only: pad before the prompt
        self.model = AutoModelForImageTextToText.from_pretrained(path, dtype=getattr(torch, config.dtype))
        self.model.to(config.device).eval()

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        results: list[Generation | None] = [None] * len(requests)
        by_budget: dict[int, list[int]] = {}
        for index, request in enumerate(requests):
            by_budget.setdefault(request.max_tokens, []).append(index)
        for max_tokens, indices in by_budget.items():
            texts = self._generate_batch([requests[i] for i in indices], max_tokens)
            for index, text in zip(indices, texts):
                results[index] = Generation(text)
        return [r for r in results if r is not None]

    def _generate_batch(self, requests: list[GenerationRequest], max_tokens: int) -> list[str]:
        import torch
        from PIL import Image

        conversations = []
        for request in requests:
            content: list[dict[str, Any]] = []
            if request.image is not None:
                content.append({"type": "image", "image": Image.open(io.BytesIO(request.image)).convert("RGB")})
            content.append({"type": "text", "text": request.prompt})
            conversations.append([{"role": "user", "content": content}])
        inputs = self.processor.apply_chat_template(conversations, add_generation_prompt=True, tokenize=True,
                                                    return_dict=True, return_tensors="pt",
                                                    processor_kwargs={"padding": True})
        inputs = inputs.to(self.config.device)
        sampling = ({"do_sample": True, "temperature": self.config.temperature} if self.config.temperature > 0
                    else {"do_sample": False})
        torch.manual_seed(self.config.seed)
        with torch.inference_mode():
            output = self.model.generate(**inputs, max_new_tokens=max_tokens, **sampling)
        new_tokens = output[:, inputs["input_ids"].shape[1]:]
        return self.processor.batch_decode(new_tokens, skip_special_tokens=True)


class OpenAIBackend(GenerationBackend):
    """Chat completions against an OpenAI-compatible server; one event loop per `generate` call."""

    supports_guided_json = True

    def __init__(self, config: OpenAIBackendConfig) -> None:
        self.config = config
        self.supports_guided_json = config.guided_json
        headers = {"Content-Type": "application/json"}
        if config.api_key_env:
            key = os.environ.get(config.api_key_env)
            if not key:
                raise ValueError(f"backend.api_key_env: environment variable {config.api_key_env} is not set")
            headers["Authorization"] = f"Bearer {key}"
        self.headers = headers
        self.url = config.base_url.rstrip("/") + "/chat/completions"

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._generate_all(requests))
        # Called where an event loop already runs in this thread (a notebook, an async service, Playwright's sync
        # API): asyncio.run cannot nest, so the requests get a loop of their own on a helper thread.
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, self._generate_all(requests)).result()

    async def _generate_all(self, requests: list[GenerationRequest]) -> list[Generation]:
        import httpx

        limit = asyncio.Semaphore(self.config.max_concurrency)
        limits = httpx.Limits(max_connections=self.config.max_concurrency)
        async with httpx.AsyncClient(timeout=self.config.timeout_s, headers=self.headers, limits=limits) as client:
            return list(await asyncio.gather(*(self._generate_one(client, limit, r) for r in requests)))

    def _payload(self, request: GenerationRequest) -> dict[str, Any]:
        payload: dict[str, Any] = {"model": self.config.model, "messages": chat_messages(request),
                                   "max_tokens": request.max_tokens, "temperature": self.config.temperature,
                                   "seed": self.config.seed}
        if request.json_schema is not None and self.config.guided_json:
            payload["response_format"] = {"type": "json_schema",
                                          "json_schema": {"name": "caption", "schema": request.json_schema}}
        return payload

    async def _generate_one(self, client: Any, limit: asyncio.Semaphore, request: GenerationRequest) -> Generation:
        import httpx

        payload = self._payload(request)
        last_error = "no attempt made"
        for attempt in range(self.config.max_retries + 1):
            if attempt:
                delay = self.config.backoff_s * 2 ** (attempt - 1)
                await asyncio.sleep(delay * (0.5 + random.random()))
            async with limit:
                try:
                    response = await client.post(self.url, json=payload)
                except httpx.TimeoutException:
                    last_error = f"timeout after {self.config.timeout_s}s"
                    continue
                except httpx.TransportError as exc:
                    last_error = f"{type(exc).__name__}: {exc}"
                    continue
            if response.status_code in _RETRYABLE_STATUS:
                last_error = f"http {response.status_code}: {response.text[:200]}"
                continue
            if response.status_code != 200:
                return Generation(None, f"http {response.status_code}: {response.text[:200]}")
            return _completion_text(response)
        return Generation(None, f"{last_error} ({self.config.max_retries + 1} attempts)")


def _completion_text(response: Any) -> Generation:
    try:
        text = response.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        return Generation(None, f"malformed completion ({type(exc).__name__}): {response.text[:200]}")
    return Generation(text if isinstance(text, str) else None,
                      None if isinstance(text, str) else f"completion content is {type(text).__name__}")


class VllmBackend(GenerationBackend):
    """The vLLM engine in this process (only inside the vLLM environment); chat API with guided JSON."""

    supports_guided_json = True

    def __init__(self, config: VllmBackendConfig) -> None:
        from vllm import LLM

        self.config = config
        self.supports_guided_json = config.guided_json
        self.llm = LLM(model=str(resolve_model_path(config.model)), **config.engine_args)

    def _sampling(self, request: GenerationRequest) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        structured = None
        if request.json_schema is not None and self.config.guided_json:
            structured = StructuredOutputsParams(json=request.json_schema)
        return SamplingParams(max_tokens=request.max_tokens, temperature=self.config.temperature,
                              seed=self.config.seed, structured_outputs=structured)

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        outputs = self.llm.chat([chat_messages(r) for r in requests], [self._sampling(r) for r in requests],
                                use_tqdm=False)
        return [Generation(output.outputs[0].text) for output in outputs]

    def close(self) -> None:
        del self.llm


def make_backend(config: TransformersBackendConfig | OpenAIBackendConfig | VllmBackendConfig) -> GenerationBackend:
    if isinstance(config, TransformersBackendConfig):
        return TransformersBackend(config)
    if isinstance(config, OpenAIBackendConfig):
        return OpenAIBackend(config)
    return VllmBackend(config)
