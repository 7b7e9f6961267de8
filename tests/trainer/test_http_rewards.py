"""The HTTP reward service (`python -m trainer.rewards serve`) started as a subprocess on loopback: its scores
equal the in-process rewards' on the same images and latents; a failed request is an error naming the URL."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from tests.trainer.conftest import REPO, clean_env
from trainer.core import TrainerError
from trainer.rewards import RewardInput, build_reward, build_reward_mixer

SERVED = [{"name": "clip_score", "model_path": "tiny:clip"},
          {"name": "latent_probe", "channels": 4, "seed": 3},
          {"name": "latent_probe", "channels": 4, "seed": 5, "key": "probe_b"}]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    config = tmp_path_factory.mktemp("reward-service") / "rewards.yaml"
    config.write_text(yaml.safe_dump({"rewards": SERVED}))
    process = subprocess.Popen([sys.executable, "-m", "trainer.rewards", "serve", "--config", str(config),
                                "--port", "0"], cwd=REPO, env=clean_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        if not line.startswith("serving "):
            process.kill()
            pytest.fail(f"the reward service did not start: {line}{process.stderr.read()}")
        yield line.split(" on ")[1].strip()
    finally:
        process.terminate()
        process.wait(timeout=30)


def batch() -> RewardInput:
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (48, 40, 3), dtype=np.uint8)) for _ in range(3)]
    return RewardInput(prompts=["a red cup", "two dogs on grass", 'a sign that says "open"'], images=images,
                       latents=torch.randn(3, 4, 1, 2, 2, generator=torch.Generator().manual_seed(1)))


def test_served_scores_equal_the_in_process_rewards(service: str) -> None:
    mixer = build_reward_mixer([{"name": "clip_score", "weight": 0.5, "http": {"url": service}},
                                {"name": "latent_probe", "http": {"url": service}},
                                {"name": "latent_probe", "key": "probe_b", "http": {"url": service, "timeout_s": 60}}])
    assert not mixer.rewards["latent_probe"].reward.needs_images  # known from the registry, no model loaded here
    inputs = batch()
    for spec in SERVED:
        key = spec.get("key", spec["name"])
        local = build_reward(spec).score(inputs).scores
        served = mixer.rewards[key].reward.score(inputs).scores
        assert served == pytest.approx(local, abs=1e-6) and len(set(served)) == 3


def test_a_failed_request_is_an_error_naming_the_url(service: str) -> None:
    unknown = build_reward({"name": "hps_v2", "http": {"url": service}})
    served = r"served: /score/clip_score, /score/latent_probe, /score/probe_b"
    with pytest.raises(TrainerError, match=rf"{service}/score/hps_v2: HTTP 404: no reward at /score/hps_v2; {served}"):
        unknown.score(batch())
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    with pytest.raises(TrainerError, match=rf"{url}/score/clip_score: request failed"):
        build_reward({"name": "clip_score", "http": {"url": url}}).score(batch())
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(TrainerError, match=rf"{url}/score/clip_score: request failed: timed out"):
            build_reward({"name": "clip_score", "http": {"url": url, "timeout_s": 0.2}}).score(batch())


@pytest.mark.parametrize(("spec", "message"), [
    ({"name": "clip_score", "http": {"url": "reward-node:8500"}},
     r"rewards.clip_score.http.url: url .reward-node:8500. is not an http\(s\) URL"),
    ({"name": "clip_score", "model_path": "/m", "http": {"url": "http://h:1"}},
     "model_path: a served reward's options belong in the service's config"),
    ({"name": "clip_score", "http": {"url": "http://h:1"}, "remote": {"num_gpus": 1}}, "at most one of"),
])
def test_bad_http_specs_are_one_line_errors(spec: dict, message: str) -> None:
    with pytest.raises(TrainerError, match=message):
        build_reward_mixer([spec])

