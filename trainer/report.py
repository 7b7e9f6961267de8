"""The trainer section of the HTML report (`python -m pipelines report RUN_DIR`): the loss curve from
`train_log.jsonl` (RL runs: reward, KL and r curves too), the checkpoints, eval results per sub-task and checkpoint (`python -m trainer eval` writes
`eval/<tag>.json`, format in trainer/evaluation/spatial_qa.py), and the fixed-prompt sample grid of each checkpoint with
its prompts (`python -m trainer sample` writes `samples/<tag>/grid.png` and `samples.json`).

A directory holding only `grid.png` (a `sample --out` directory) gets the section too. Kept free of torch:
the report only reads files.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from data_engine.report import (SERIES_COLORS, ReportError, ReportInput, ReportOptions, SectionKind, Series,
                                caption_line, escape, heading, image_html, make_thumbnail, muted, read_json_file,
                                register_section, render_key_values, render_line_chart, render_table)
from trainer.run_log import JSONL_NAME

EVAL_GLOB = "eval/*.json"  # trainer.evaluation.spatial_qa.eval_result_path
GRID_NAME = "grid.png"
SAMPLES_INDEX_NAME = "samples.json"
SAMPLES_GLOB = f"samples/*/{GRID_NAME}"  # trainer.sampling.samples_dir
CHECKPOINTS_DIR = "checkpoints"  # trainer/checkpoint.py's layout: checkpoints/step-XXXXXXXX/
GRID_SIDE = 768
PREDICTIONS_PER_TASK = 2


def read_train_log(path: Path) -> list[dict[str, Any]]:
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ReportError(f"{path}:{number}: not a JSON line ({exc})") from exc
        if not isinstance(record, dict):
            raise ReportError(f"{path}:{number}: not a JSON object")
        records.append(record)
    return records


def sample_grids(directory: Path) -> list[Path]:
    """Grid files: the directory's own (a `sample --out` directory), then one per checkpoint, in tag order."""
    own = [directory / GRID_NAME] if (directory / GRID_NAME).is_file() else []
    return own + sorted(directory.glob(SAMPLES_GLOB))


def is_trainer_output(report_input: ReportInput) -> bool:
    directory = report_input.directory
    return report_input.manifest is None and (
        (directory / JSONL_NAME).is_file() or any(directory.glob(EVAL_GLOB)) or bool(sample_grids(directory)))


def _finish_text(record: dict[str, Any]) -> str:
    reason = f" ({record['reason']})" if record.get("reason") else ""
    return f"{record['event']} at step {record.get('step')}{reason}"


def render_training(records: list[dict[str, Any]], directory: Path) -> str:
    steps = [r for r in records if r.get("event") == "step"
             and all(isinstance(r.get(key), (int, float)) for key in ("step", "loss"))]
    start = next((r for r in records if r.get("event") == "start"), {})
    stops = [r for r in records if r.get("event") in ("end", "stopped")]
    checkpoints = sorted(p.name for p in (directory / CHECKPOINTS_DIR).glob("step-*") if p.is_dir())
    pairs = [("Task", start.get("task")), ("World size", start.get("world_size")),
             ("Steps logged", f"{steps[0]['step']}–{steps[-1]['step']}" if steps else "none"),
             ("Loss", f"{steps[0]['loss']:.4g} → {steps[-1]['loss']:.4g}" if steps else None),
             ("Finished", _finish_text(stops[-1]) if stops else "no end event"),
             ("Checkpoints", ", ".join(checkpoints) or "none")]
    curve = render_line_chart([Series("loss", [(r["step"], r["loss"]) for r in steps], SERIES_COLORS[1])],
                              x_label="step", y_label="loss")
    return (render_key_values([(k, v) for k, v in pairs if v is not None]) + heading("Training loss") + curve
            + render_rl_curves(steps))


# RL post-training metrics (trainer/objectives/flow_grpo.py, diffusion_nft.py): a chart per group, one series
# per logged key the group selects, drawn only when the log has them.
RL_CHARTS = (
    ("Rewards", "mean score per reward (reward/<key>) and of the weighted sum (reward_mean)",
     lambda key: key == "reward_mean" or key.startswith("reward/")),
    ("KL to the reference", "Flow-GRPO: per element, over the trained steps", lambda key: key == "kl"),
    ("Optimality probability r", "DiffusionNFT: batch mean of r in [0, 1]", lambda key: key == "r_mean"),
)


def render_rl_curves(steps: list[dict[str, Any]]) -> str:
    parts = []
    for title, note, selects in RL_CHARTS:
        keys = sorted({key for record in steps for key in record if selects(key)})
        if not keys:
            continue
        series = [Series(key, [(r["step"], r[key]) for r in steps if isinstance(r.get(key), (int, float))],
                         SERIES_COLORS[(number + 1) % len(SERIES_COLORS)]) for number, key in enumerate(keys)]
        parts.append(heading(title, note) + render_line_chart(series, x_label="step", y_label=title.split()[0]))
    return "".join(parts)


def read_eval_results(directory: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every eval result file of the run, in checkpoint step order."""
    results = []
    for path in directory.glob(EVAL_GLOB):
        result = read_json_file(path)
        if not isinstance(result, dict):
            raise ReportError(f"{path}: malformed eval result (top level is {type(result).__name__}, not an object)")
        results.append((path, result))
    return sorted(results, key=lambda item: (item[1].get("step") if isinstance(item[1].get("step"), int) else -1,
                                             item[0].name))


def render_eval_table(results: list[tuple[Path, dict[str, Any]]]) -> str:
    """One column per checkpoint: overall, then each sub-task's score with its sample count and metric."""
    labels = [str(result.get("checkpoint", path.stem)) for path, result in results]
    scalar_keys = [key for key in ("overall", "flow_loss", "samples")
                   if any(key in result for _, result in results)]
    rows: list[list[Any]] = [[key, "", *[result.get(key) for _, result in results]] for key in scalar_keys]
    subtasks: dict[str, str] = {}
    for _, result in results:
        for task, scores in (result.get("per_subtask") or {}).items():
            subtasks.setdefault(task, str((scores or {}).get("metric", "?")))
    for task, metric in sorted(subtasks.items()):
        cells = []
        for _, result in results:
            scores = (result.get("per_subtask") or {}).get(task)
            cells.append(f"{scores.get('score', 0):.3g} (n={scores.get('n')})" if isinstance(scores, dict) else None)
        rows.append([task, metric, *cells])
    return render_table(["", "metric", *labels], rows)


def render_predictions(path: Path, result: dict[str, Any]) -> str:
    shown: dict[str, int] = defaultdict(int)
    cards = []
    for prediction in result.get("predictions") or []:
        if not isinstance(prediction, dict):
            continue
        task = str(prediction.get("task"))
        if shown[task] >= PREDICTIONS_PER_TASK:
            continue
        shown[task] += 1
        label = f"{task} · {prediction.get('id')}"
        cards.append(f'<div class="card">{caption_line(label, "id")}'
                     f'<b>reference</b><div class="text">{escape(prediction.get("reference", ""))}</div>'
                     f'<b>prediction</b> <span class="muted">{escape(prediction.get("metric", ""))} '
                     f'{escape(prediction.get("score"))}</span>'
                     f'<div class="text">{escape(prediction.get("prediction", ""))}</div></div>')
    if not cards:
        return ""
    title = f"Predictions of {result.get('checkpoint', path.stem)}"
    return (heading(title, f"up to {PREDICTIONS_PER_TASK} per sub-task")
            + f'<div class="wide-grid">{"".join(cards)}</div>')


def render_grid(grid: Path) -> str:
    """A checkpoint's grid with its prompts in grid order (row by row), from `samples.json` when present."""
    index_path = grid.parent / SAMPLES_INDEX_NAME
    index = read_json_file(index_path) if index_path.is_file() else {}
    label = str(index.get("checkpoint", grid.parent.name)) if isinstance(index, dict) else grid.parent.name
    samples = index.get("samples") if isinstance(index, dict) and isinstance(index.get("samples"), list) else []
    prompts = "".join(f"<li>{escape(sample.get('prompt', ''))}</li>" for sample in samples if isinstance(sample, dict))
    thumbnail = make_thumbnail(grid.read_bytes(), GRID_SIDE)
    return (f'<div class="card">{caption_line(label, "id")}'
            f'{image_html(thumbnail, f"sample grid {label}", "unreadable grid")}'
            + (f"<ol>{prompts}</ol>" if prompts else "") + "</div>")


def render_trainer_section(report_input: ReportInput, options: ReportOptions) -> str:
    directory = report_input.directory
    parts = []
    if (directory / JSONL_NAME).is_file():
        parts.append(render_training(read_train_log(directory / JSONL_NAME), directory))
    results = read_eval_results(directory)
    if results:
        parts += [heading("Evaluation", "per checkpoint; sub-task scores with their sample counts"),
                  render_eval_table(results), render_predictions(*results[-1])]
    grids = sample_grids(directory)
    if grids:
        parts += [heading("Fixed-prompt sample grids", "one per checkpoint, same prompts and noise"),
                  f'<div class="wide-grid">{"".join(render_grid(grid) for grid in grids)}</div>']
    return "".join(parts) or muted("Nothing to show.")


TRAINER_SECTION = register_section(SectionKind("trainer", is_trainer_output, render_trainer_section))
