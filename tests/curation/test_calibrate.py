"""`pipelines calibrate`: thresholds proposed from stored scores reach the target retention, and `redecide`
applying them gives the funnel calibrate printed."""

from __future__ import annotations

import json
import re
import shlex

import pytest

from data_engine.calibrate import calibrate
from data_engine.shards import iter_shards
from pipelines.cli import main
from tests.curation.test_redecide import DECODED, JOB, NO_BORDER, scored, write_output

NO_DEDUP_JOB = JOB | {"stages": JOB["stages"][:3]}
# 100 decoded rows without borders whose aesthetic scores are 0.05, 0.15, ..., 9.95; two rows too small.
ROWS = ([{"id": f"r{i:03d}", "width": 500, "height": 400, **DECODED, **NO_BORDER, **scored(0.1 * i + 0.05)}
         for i in range(100)]
        + [{"id": f"small{i}", "width": 100, "height": 90, **DECODED, "reject_reason": "too_small",
            "reject_stage": "decode_image"} for i in range(2)])


def accepted_scores(out) -> list[float]:
    return sorted(row["aesthetic_score"] for _, table in iter_shards(out) for row in table.to_pylist()
                  if row["reject_reason"] is None)


@pytest.fixture
def output(tmp_path):
    out = write_output(tmp_path / "out", ROWS, NO_DEDUP_JOB)
    main(["redecide", str(out), "--set", "stages.aesthetic.config.min_score=4.6"])  # the job's own decisions
    return out


def test_proposal_reaches_the_target_and_redecide_applies_it(output, capsys):
    assert len(accepted_scores(output)) == 54  # scores 4.65 ... 9.95
    capsys.readouterr()
    assert main(["calibrate", str(output), "--target-retention", "0.34"]) == 0
    printed = capsys.readouterr().out
    # Retention moves in steps of 1/102: 35/102 = 0.343 is the nearest to 0.34 (34/102 = 0.333).
    assert "proposed 0.343 (35 of 102 rows)" in printed and "now 0.529" in printed
    assert re.search(r"\n  aesthetic +100 in +35 out +\(low_aesthetic 65\)\n", printed)
    command = printed.split("apply with:\n")[1].strip()
    arguments = shlex.split(command)
    assert arguments[:4] == ["python", "-m", "pipelines", "redecide"]
    assert main(arguments[3:]) == 0
    kept = accepted_scores(output)
    assert len(kept) == 35 and kept[0] == pytest.approx(6.55)  # the 35 best scores, 6.55 ... 9.95
    # Border thresholds were scaled too (their ratio kept), but no row has a border to reject.
    result = calibrate(output, 0.34)
    assert result.accepted == 35 and result.scale == pytest.approx(1.0, abs=0.02)  # already calibrated: k about 1


def test_json_output_and_thresholds_scale_together(output, capsys):
    capsys.readouterr()
    assert main(["calibrate", str(output), "--target-retention", "0.5", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["accepted"] == 51 and result["reached"]
    scale = result["scale"]
    assert result["thresholds"]["aesthetic"]["min_score"] == pytest.approx(4.6 * scale, rel=1e-3)
    assert result["thresholds"]["border"]["max_border_fraction"] == pytest.approx(0.04 / scale, rel=1e-3)


def test_out_of_reach_targets_and_bad_input(output, capsys):
    result = calibrate(output, 1.0)  # two rows are too small whatever the score thresholds
    assert not result.reached and result.accepted == 100 and "at most 0.980" in result.notes[0]
    assert result.thresholds["aesthetic"]["min_score"] <= 0.05 < calibrate(output, 0.97).thresholds["aesthetic"]["min_score"]
    assert main(["calibrate", str(output), "--target-retention", "1.5"]) == 2
    assert "must be in (0, 1]" in capsys.readouterr().err
    assert main(["calibrate", str(output), "--target-retention", "0.3", "--stage", "decode_image"]) == 2
    assert "no stage with score thresholds among decode_image" in capsys.readouterr().err
    assert main(["calibrate", str(output), "--target-retention", "0.3", "--stage", "nope"]) == 2
    assert "no stage named 'nope'" in capsys.readouterr().err
