"""The trainer section of the HTML report over real run directories: a tiny MMDiT trained for two checkpoints
with `python -m trainer sample` grids and a held-out eval, and the untrained tiny MLLM scored per sub-task by
`python -m trainer eval`."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pytest

from data_engine.report import format_number, write_html_report
from tests.browser import open_page
from tests.trainer.conftest import tiny_config, write_config
from trainer.cli import main as cli_main
from trainer.latents import write_synthetic_latent_shards

CHECKPOINTS = ("step-00000001", "step-00000002")
HOSTILE_TASK = "<script>alert('task')</script>"


@pytest.fixture(scope="module")
def mmdit_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mmdit-report")
    write_synthetic_latent_shards(root / "latents", 8, resolution=64, shard_rows=8)
    run = root / "run"
    config = write_config(root / "config.yaml", {
        "task": {"name": "mmdit_t2i", "config": {"preset": "tiny", "sample": {"num_steps": 2, "columns": 2}}},
        "data": {"window": 8, "datasets": [{"name": "shapes", "path": str(root / "latents")}]},
        "optim": {"lr": 1e-3, "warmup_steps": 0},
        "engine": {"zero_stage": 1, "micro_batch_size": 4},
        "run": {"out_dir": str(run), "max_steps": 2, "save_every": 1, "progress": False, "tensorboard": False},
    })
    assert cli_main(["train", "--config", str(config)]) == 0
    assert cli_main(["sample", "--config", str(config), "--checkpoint", "all"]) == 0  # -> run/samples/<tag> each
    assert cli_main(["eval", "--config", str(config), "--limit", "4"]) == 0
    return run


@pytest.fixture(scope="module")
def mllm_run(qa_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("mllm-report")
    config = write_config(run / "config.yaml", tiny_config(qa_dirs, run))
    assert cli_main(["eval", "--config", str(config), "--checkpoint", "base", "--limit", "6"]) == 0
    # A result file with hostile text, as a broken or malicious eval writer could leave one.
    (run / "eval" / "hostile.json").write_text(json.dumps({
        "checkpoint": "<i>hostile</i>", "step": 99, "overall": 0.5, "samples": 1,
        "per_subtask": {HOSTILE_TASK: {"n": 1, "metric": "<u>m</u>", "score": 0.5}},
        "predictions": [{"id": "<b>x</b>", "task": HOSTILE_TASK, "prediction": "<img src=x onerror=alert(1)>",
                         "reference": "A & B", "metric": "exact_match", "score": 0.5}]}))
    return run


@pytest.fixture(scope="module")
def report(mmdit_run: Path, mllm_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_html_report([mmdit_run, mllm_run], tmp_path_factory.mktemp("html") / "report.html", title="runs")


def test_eval_results_per_sub_task_and_checkpoint(mllm_run: Path, mmdit_run: Path, report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    result = json.loads((mllm_run / "eval" / "base.json").read_text())
    assert result["checkpoint"] == "base" and result["per_subtask"]
    # Columns: the untrained model, then the hostile file (step 99), which has none of the real sub-tasks.
    assert "<th>base</th><th>&lt;i&gt;hostile&lt;/i&gt;</th>" in text
    for task, scores in result["per_subtask"].items():
        assert (f"<tr><td>{task}</td><td>{scores['metric']}</td><td>{scores['score']:.3g} (n={scores['n']})</td>"
                "<td>—</td></tr>") in text
    flow = json.loads((mmdit_run / "eval" / f"{CHECKPOINTS[1]}.json").read_text())
    assert f'<tr><td>flow_loss</td><td></td><td class="num">{format_number(flow["flow_loss"])}</td></tr>' in text
    # The latest result's predictions are shown: here the hostile file's, escaped.
    assert html.escape(HOSTILE_TASK) in text and html.escape("<img src=x onerror=alert(1)>") in text
    assert "<script" not in text and "<img src=x" not in text and "<u>" not in text


def test_loss_curve_and_checkpoints_from_the_run_log(mmdit_run: Path, report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    records = [json.loads(line) for line in (mmdit_run / "train_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r["event"] == "step"]
    assert f"<tr><th>Loss</th><td>{losses[0]:.4g} → {losses[-1]:.4g}</td></tr>" in text
    assert f"<tr><th>Checkpoints</th><td>{', '.join(CHECKPOINTS)}</td></tr>" in text
    assert text.count("<title>loss</title>") == 1  # the MLLM directory holds an eval of the base model only


def test_sample_grid_per_checkpoint_renders(mmdit_run: Path, report: Path, browser) -> None:
    page, problems, dialogs = open_page(browser, report)
    grids = page.locator("img[alt^='sample grid']")
    assert grids.evaluate_all("images => images.map(i => i.alt)") == [f"sample grid {tag}" for tag in CHECKPOINTS]
    # Four 64 px samples in two columns: the grid is shown at its own size, with its prompts in grid order.
    assert grids.evaluate_all("images => images.map(i => [i.naturalWidth, i.naturalHeight])") == [[128, 128]] * 2
    for tag in CHECKPOINTS:
        index = json.loads((mmdit_run / "samples" / tag / "samples.json").read_text())
        prompts = [sample["prompt"] for sample in index["samples"]]
        card = page.locator(".card", has=page.locator(f"img[alt='sample grid {tag}']"))
        assert card.locator("li").all_inner_texts() == prompts
    assert HOSTILE_TASK in page.inner_text("body")
    assert problems == [] and dialogs == []
    page.close()


def test_rl_runs_get_reward_kl_and_r_curves(tmp_path: Path) -> None:
    """Step records as the Flow-GRPO and DiffusionNFT tasks log them: a chart per metric group, a series per key."""
    run = tmp_path / "grpo"
    run.mkdir()
    records = [{"event": "start", "task": "mmdit_grpo_t2i", "world_size": 1}] + [
        {"event": "step", "step": step, "loss": 0.1, "reward_mean": 0.2 * step, "reward/aesthetic": 0.1 * step,
         "reward/ocr": 0.3, "kl": 0.01 * step, "r_mean": 0.5} for step in (1, 2, 3)]
    (run / "train_log.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    text = write_html_report([run], tmp_path / "report.html", title="rl").read_text(encoding="utf-8")
    for title in ("Rewards", "KL to the reference", "Optimality probability r"):
        assert f"<h3>{title} <span" in text
    for series in ("reward_mean", "reward/aesthetic", "reward/ocr", "kl", "r_mean"):
        assert f"<title>{series}</title>" in text
