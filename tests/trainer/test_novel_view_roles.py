"""Thinking with Novel Views with models in the roles: the tiny Qwen3-VL (`make tiny-models`) as planner and
reasoner through the captioning backend, the tiny MMDiT (real classes, random weights) as the editor, questions
from 3DSRBench / RealWorldQA copies in their published layouts; the config that wires them is checked at load."""

from __future__ import annotations

import base64
import csv
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from data_engine.camera_move import CameraMove
from data_engine.captioning.backends import Generation, GenerationBackend, GenerationRequest
from data_engine.job import JobConfigError
from pipelines.novel_views import load_novel_views_config, main, run_from_config
from trainer.evaluation.benchmarks import BenchmarkQuestion
from trainer.evaluation.novel_view_roles import BackendReasoner, MMDiTEditor
from trainer.evaluation.novel_views import NOVEL_VIEW_COLUMNS

PROJECT = Path(__file__).resolve().parents[2]
MMDIT_CONFIG = PROJECT / "trainer" / "configs" / "mmdit_t2i_tiny.yaml"
MODELS_CONFIG = PROJECT / "pipelines" / "evals" / "novel_views_models.yaml"


def _png(colour: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _benchmark_copies(root: Path) -> tuple[Path, Path]:
    """Two 3DSRBench questions (TSV, base64 images) and two RealWorldQA questions (Parquet, image structs)."""
    threedsr = root / "3dsrbench_v1_vlmevalkit.tsv"
    with threedsr.open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["index", "question", "A", "B", "C", "D", "answer", "category", "image"])
        for index, subcategory in enumerate(("orientation_viewpoint", "height_higher")):
            writer.writerow([index, f"Is the cup left of the plate? ({index})", "yes", "no", "", "", "A",
                             subcategory, base64.b64encode(_png((200, 40 * index, 30))).decode()])
    realworldqa = root / "test-00000-of-00001.parquet"
    pq.write_table(pa.table({"image": [{"bytes": _png((20, 90, 200 - 50 * i)), "path": f"{i}.png"} for i in range(2)],
                             "question": ["Which way does the road turn?\nA. left\nB. right"] * 2,
                             "answer": ["B", "A"]}), realworldqa)
    return threedsr, realworldqa


def test_the_config_refuses_roles_that_cannot_serve_its_questions(tmp_path: Path) -> None:
    threedsr, realworldqa = _benchmark_copies(tmp_path)
    benchmarks = [f"questions={{source: benchmarks, threedsrbench: {threedsr}, realworldqa: [{realworldqa}]}}"]
    with pytest.raises(JobConfigError, match=r"planner, reasoner, editor: scripted roles and the Blender editor"):
        load_novel_views_config(PROJECT / "pipelines" / "evals" / "novel_views.yaml", benchmarks)
    with pytest.raises(JobConfigError, match=r"editor.mmdit.checkpont: Extra inputs are not permitted"):
        load_novel_views_config(MODELS_CONFIG, ["editor.checkpont=latest"])
    loaded = load_novel_views_config(MODELS_CONFIG, benchmarks)
    assert (loaded.planner.kind, loaded.editor.kind, loaded.reasoner.kind) == ("backend", "mmdit", "backend")


def test_the_reasoner_sees_both_views_side_by_side() -> None:
    class Recording(GenerationBackend):
        def __init__(self) -> None:
            self.requests: list[GenerationRequest] = []

        def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
            self.requests += requests
            return [Generation(text=None, error="server down")]

    backend = Recording()
    answer = BackendReasoner(backend)("Which?\nA. red\nB. blue", [_png((255, 0, 0)), _png((0, 0, 255), (20, 15))])
    assert answer == "error: server down"  # a failed generation is an answer that scores wrong, not a crash
    request = backend.requests[0]
    assert "The left half of the image is the original view" in request.prompt and "A. red" in request.prompt
    pixels = np.asarray(Image.open(io.BytesIO(request.image)))
    assert pixels.shape == (30, 80, 3)  # the second view scaled to the first's height, placed on its right
    assert (pixels[:, :40] == (255, 0, 0)).all() and (pixels[:, 40:] == (0, 0, 255)).all()
    BackendReasoner(backend)("Which?\nA. red", [_png((255, 0, 0))])
    assert backend.requests[1].image == _png((255, 0, 0)) and "The image shows the scene." in backend.requests[1].prompt


def test_the_mmdit_editor_renders_the_move_it_is_given() -> None:
    editor = MMDiTEditor(MMDIT_CONFIG, "base", ["task.config.sample.num_steps=2"])
    # The untrained model's output layers start at zero (its velocity ignores every input); random weights in
    # their place stand for a trained checkpoint, so the test sees whether instruction and source reach it.
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in editor.model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)

    def question(colour: tuple[int, int, int]) -> BenchmarkQuestion:
        return BenchmarkQuestion(id="q", source="3DSRBench", category="Location", subcategory="height_higher",
                                 question="?", answer="A", image=_png(colour))

    left, again = (editor(question((120, 60, 30)), CameraMove("cup", yaw_deg=-90.0)) for _ in range(2))
    up = editor(question((120, 60, 30)), CameraMove("cup", pitch_deg=45.0, zoom="in"))
    other_source = editor(question((10, 200, 90)), CameraMove("cup", yaw_deg=-90.0))
    assert Image.open(io.BytesIO(left)).size == (128, 128)  # the config's sample size
    assert left == again  # same source, instruction and seed: the same view
    assert left != up  # the instruction reaches the model: another move, another view
    assert left != other_source  # so does the source image


def test_models_in_every_role_run_the_benchmark_selection(tmp_path: Path) -> None:
    threedsr, realworldqa = _benchmark_copies(tmp_path)
    config = load_novel_views_config(MODELS_CONFIG, [
        f"out={tmp_path / 'out'}",
        f"questions={{source: benchmarks, threedsrbench: {threedsr}, realworldqa: [{realworldqa}], "
        "threedsrbench_count: 2, realworldqa_count: 1}",
        f"editor.config={MMDIT_CONFIG}", "editor.checkpoint=base", "editor.set=[task.config.sample.num_steps=2]"])
    summary = run_from_config(config)
    table = pq.read_table(tmp_path / "out" / "steps.parquet")
    assert table.schema == NOVEL_VIEW_COLUMNS and table.num_rows == 3 == summary["questions"]
    for row in table.to_pylist():
        assert row["planner_output"]  # the tiny model's own words, whatever they are
        # Either the planner's text read as a move and the MMDiT rendered it, or it is no move with a reason.
        assert (row["camera_move"] is None) == (row["novel_view"] is None) == (row["move_reject_reason"] is not None)
        if row["camera_move"] is None:
            assert row["prediction"] == row["baseline_prediction"]
    assert summary["roles"]["editor"] | {"set": []} == {"kind": "mmdit", "config": str(MMDIT_CONFIG),
                                                        "checkpoint": "base", "set": []}
    written = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert written["roles"]["prompts"] == ["novel-view-planner-v1", "novel-view-reasoner-v1"]
    assert set(written["baseline"]) == {"Location", "Orientation", "RealWorldQA", "Overall"}


def test_a_missing_checkpoint_is_one_line(tmp_path: Path, capsys) -> None:
    code = main(["--config", str(MODELS_CONFIG), "--set", f"out={tmp_path / 'out'}",
                 "--set", f"editor.set=[run.out_dir={tmp_path / 'no-run'}]"])
    assert code == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error
    last = error.strip().splitlines()[-1]
    assert last.startswith("error: ") and "no-run/checkpoints: no checkpoint" in last, error
    assert not (tmp_path / "out").exists()  # refused before any question was rendered
