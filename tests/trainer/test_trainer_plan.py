"""`train --dry-run` on the production configs: models on the meta device, the report's MLLM mix, step counts."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.cli import main as cli_main
from trainer.config import CONFIGS_DIR, load_config
from trainer.core import TrainerError
from trainer.plan import dry_run, plan_datasets

MLLM_8B = CONFIGS_DIR / "mllm_sft_8b.yaml"


def test_the_8b_config_holds_the_reports_mix() -> None:
    """Report 3.1.2 by category: General Understanding 6.1M (the six listed sources), Spatial Understanding
    3.4M (OpenSpatial 3.3M, VST 49.4K), Prompt Enhancement 1.54M (1.4M + 137.4K), Others 328.1K; 11.3M in all.
    KL distillation on the general-purpose sources only."""
    datasets = {spec.name: spec for spec in load_config(MLLM_8B).data.datasets}
    categories = {"general": ["general_vqa", "math", "doc_chart", "language", "multi_task", "ocr"],
                  "spatial": ["openspatial", "vst_subset"],
                  "prompt": ["instruction_rewriting", "spatial_editing_prompts"], "others": ["others"]}
    assert sorted(datasets) == sorted(name for names in categories.values() for name in names)
    size = {category: sum(datasets[name].rows for name in names) for category, names in categories.items()}
    assert size == {"general": 6_081_600, "spatial": 3_349_400, "prompt": 1_537_400, "others": 328_100}
    assert abs(sum(size.values()) - 11.3e6) < 0.05e6
    distilled = {name for name, spec in datasets.items() if spec.general_domain}
    assert distilled == set(categories["general"] + categories["others"])
    assert datasets["vst_subset"].rows == 49_400 and datasets["openspatial"].rows == 3_300_000


def test_the_8b_dry_run_builds_on_meta_and_derives_one_epoch_of_steps() -> None:
    config = load_config(MLLM_8B)
    assert config.run.epochs == 1 and config.run.max_steps is None
    report = dry_run(config, samples_per_micro_batch=22)
    assert "8,767,123,696 parameters" in report  # Qwen3-VL-8B: 8.77B
    # 11,296,500 rows at about 22 samples per 8192-token pack and 128 packs per step
    assert "steps: 4,011 = 1 epoch(s) x 11,296,500 rows" in report
    assert sum(plan.per_epoch for plan in plan_datasets(config)) == 11_296_500


@pytest.mark.parametrize("path", sorted(CONFIGS_DIR.glob("*.yaml")), ids=lambda path: path.stem)
def test_every_shipped_config_dry_runs(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["train", "--config", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "on the meta device" in out and "steps: " in out
    if "mmdit" in path.stem and "tiny" not in path.stem:
        assert "16,095,866,816 parameters" in out


def test_length_and_kd_layer_mistakes_are_one_line_errors(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(TrainerError, match="set exactly one of run.max_steps and run.epochs"):
        load_config(MLLM_8B, ["run.max_steps=100"])
    config = load_config(MLLM_8B, ["task.config.kd_layers=[8,35]"])
    with pytest.raises(TrainerError, match="kd_layers: 35 is the last decoder layer"):
        dry_run(config)
    assert cli_main(["train", "--config", str(MLLM_8B), "--set", "task.config.kd_layers=[35]", "--dry-run"]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


def test_production_rl_configs_host_every_reward_off_the_trainer() -> None:
    """Configuration only: each reward model runs in a Ray actor, behind the HTTP service or on a VLM server."""
    def hosted(spec: dict) -> bool:
        if "scorer" in spec and not hosted(spec["scorer"]):
            return False
        return bool(spec.get("remote") or spec.get("http")) or spec.get("backend", {}).get("kind") == "openai"

    for name in ("grpo_t2i_512p", "nft_edit"):
        rewards = load_config(CONFIGS_DIR / f"{name}.yaml").task_config().rewards
        assert rewards and all(hosted(spec) for spec in rewards), name


@pytest.mark.parametrize(("reward", "message"), [
    ("{name: clip_score, model_path: tiny:clip, weigth: 2}", "rewards.clip_score: unknown option.s. weigth"),
    ("{name: naturalness, backend: {kind: openai, model: m}, scorer: {name: hps_v2, model_path: x}}",
     "rewards: judge backend.openai.base_url: Field required"),
    ("{name: naturalness, backend: {kind: transformers, model: m}, scorer: {name: hps_v2}}",
     "rewards.hps_v2: missing option.s. model_path"),
    ("{name: pickscore, model_path: x, remote: {num_gpu: 1}}", "rewards.pickscore.remote.num_gpu: Extra inputs"),
])
def test_a_bad_reward_spec_fails_at_load(reward: str, message: str) -> None:
    with pytest.raises(TrainerError, match=f"task.config.rewards: {message}"):
        load_config(CONFIGS_DIR / "nft_edit_tiny.yaml", [f"task.config.rewards=[{reward}]"])
