"""The annotation workflow without a server: rubric, labeling config, export with hidden sentinels, import
of Label Studio's export, sentinel accuracy, distributions, Krippendorff's alpha, audits and the ledger."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import ls_annotation, sentinel_pool, shard_dir

from data_engine.annotation.__main__ import main
from data_engine.annotation.audit import (append_ledger, audit_status, batch_status, decide_audit, export_audit,
                                          read_ledger)
from data_engine.annotation.batch import (BATCH_FILE, KEY_FILE, KEY_SCHEMA, TASKS_FILE, AnnotationError, export_batch, import_annotations,
                                          read_batch_key)
from data_engine.annotation.metrics import krippendorff_alpha, score_distributions, sentinel_results
from data_engine.annotation.rubric import DIMENSION_NAMES, RubricError, label_config, weighted_score
from data_engine.annotation.summary import batch_summary


def test_weighted_score_is_exact():
    assert weighted_score({"aesthetics": 5, "information_density": 4, "style_purity": 0}) == 3.7
    assert weighted_score(dict.fromkeys(DIMENSION_NAMES, 3)) == 3.0
    with pytest.raises(RubricError, match="aesthetics: score 2"):
        weighted_score({"aesthetics": 2, "information_density": 4, "style_purity": 0})


def test_label_config_has_one_required_choice_per_dimension():
    root = ElementTree.fromstring(label_config())
    choices = root.findall("Choices")
    assert [c.get("name") for c in choices] == list(DIMENSION_NAMES)
    assert all(c.get("toName") == "image" and c.get("required") == "true" for c in choices)
    assert [[x.get("value") for x in c.findall("Choice")] for c in choices] == [["5", "4", "3", "0"]] * 3
    assert root.find("Image").get("value") == "$image"


def test_a_batch_of_1000_holds_exactly_50_unmarked_sentinels(tmp_path):
    shards = shard_dir(tmp_path / "shards", rows=960, rejected=5)
    pool = sentinel_pool(tmp_path / "pool.parquet", 60)
    summary = export_batch(shards, pool, tmp_path / "batch", batch_id="b1", size=1000)
    assert (summary["items"], summary["sentinels"]) == (950, 50)
    tasks = json.loads((tmp_path / "batch" / TASKS_FILE).read_text())
    key = read_batch_key(tmp_path / "batch")
    assert len(tasks) == 1000 and sum(k["kind"] == "sentinel" for k in key.values()) == 50
    # What annotators see is the same for both kinds: the same keys, an opaque task key, an image.
    assert {tuple(sorted(t["data"])) for t in tasks} == {("image", "task_key")}
    assert all(t["data"]["image"].startswith("data:image/jpeg;base64,") for t in tasks)
    rejected_ids = {r["row_id"] for r in key.values()} & {f"{i}" for i in range(5)}
    assert not rejected_ids
    sentinel_positions = [i for i, t in enumerate(tasks) if key[t["data"]["task_key"]]["kind"] == "sentinel"]
    assert sentinel_positions[-1] - sentinel_positions[0] > 500  # mixed in, not appended


def test_export_refuses_a_batch_larger_than_the_accepted_rows(tmp_path):
    shards = shard_dir(tmp_path / "shards", rows=10)
    with pytest.raises(AnnotationError, match="10 accepted rows with images, a batch of 40 needs 38"):
        export_batch(shards, sentinel_pool(tmp_path / "pool.parquet", 5), tmp_path / "b", batch_id="b", size=40)


def _annotated_batch(tmp_path: Path, plan) -> Path:
    """A batch of 40 tasks (2 sentinels) annotated per `plan(kind, task_key, known) -> [(user, scores)]`."""
    shards = shard_dir(tmp_path / "shards", rows=60)
    batch = tmp_path / "batches" / "b1"
    export_batch(shards, sentinel_pool(tmp_path / "pool.parquet", 4), batch, batch_id="b1", size=40)
    key = read_batch_key(batch)
    export, next_id = [], 1
    for number, task in enumerate(json.loads((batch / TASKS_FILE).read_text())):
        entry = key[task["data"]["task_key"]]
        annotations = []
        for user, scores in plan(entry["kind"], number, tuple(entry[d] for d in DIMENSION_NAMES)):
            annotations.append(ls_annotation(next_id, user, scores))
            next_id += 1
        export.append({"id": number + 1, "data": task["data"], "annotations": annotations})
    (tmp_path / "export.json").write_text(json.dumps(export))
    (tmp_path / "users.json").write_text(json.dumps([{"id": 1, "email": "ann1@example.com"},
                                                     {"id": 2, "email": "ann2@example.com"}]))
    import_annotations(batch, tmp_path / "export.json", tmp_path / "users.json")
    return batch


def test_import_writes_one_row_per_annotation_beside_the_rows(tmp_path):
    batch = _annotated_batch(tmp_path, lambda kind, n, known: [(1, known if kind == "sentinel" else (5, 4, 0)),
                                                               (2, (3, 3, 3))])
    table = pq.read_table(batch / "annotations.parquet").to_pylist()
    assert len(table) == 80 and {r["annotator"] for r in table} == {"ann1@example.com", "ann2@example.com"}
    items = [r for r in table if r["kind"] == "item" and r["annotator"] == "ann1@example.com"]
    assert {r["weighted_score"] for r in items} == {3.7} and all(r["lead_time_s"] == 4.0 for r in items)
    shard_ids = set(pq.read_table(tmp_path / "shards" / "part-00000.parquet", columns=["id"]).column(0).to_pylist())
    assert {r["row_id"] for r in items} <= shard_ids  # joinable to the shard rows
    summary = batch_summary(batch)
    results = {r["annotator"]: r for r in summary["sentinels"]["results"]}
    assert results["ann1@example.com"]["accuracy"] == 1.0 and not results["ann1@example.com"]["flagged"]
    assert results["ann2@example.com"]["flagged"]  # (3, 3, 3) matches none of this pool's sentinels


def test_import_errors_name_the_task(tmp_path):
    batch = _annotated_batch(tmp_path, lambda kind, n, known: [(1, (5, 4, 0))])
    export = json.loads((tmp_path / "export.json").read_text())
    export[3]["annotations"][0]["result"][0]["value"]["choices"] = ["2"]
    (tmp_path / "bad.json").write_text(json.dumps(export))
    with pytest.raises(RubricError, match="aesthetics: score 2"):
        import_annotations(batch, tmp_path / "bad.json")
    export[3]["data"]["task_key"] = "forged"
    (tmp_path / "bad.json").write_text(json.dumps(export))
    assert main(["import", str(batch), str(tmp_path / "bad.json")]) == 2


def _judgements(annotator: str, correct: int, total: int) -> list[dict]:
    right = {"aesthetics": 5, "information_density": 4, "style_purity": 3}
    return [{"annotator": annotator, "task_key": f"s{i}",
             **(right if i < correct else right | {"style_purity": 0})} for i in range(total)]


def test_sentinel_accuracy_flags_under_90_percent():
    known = {f"s{i}": {"aesthetics": 5, "information_density": 4, "style_purity": 3} for i in range(20)}
    results = {r.annotator: r for r in sentinel_results(_judgements("a", 19, 20) + _judgements("b", 17, 20), known)}
    assert results["a"].accuracy == 0.95 and not results["a"].flagged
    assert results["b"].accuracy == 0.85 and results["b"].flagged


def test_distribution_against_targets_flags_inflation():
    calibrated = [{"annotator": "a", **dict(zip(DIMENSION_NAMES, s))} for s in [(5, 3, 0), (3, 0, 3), (4, 3, 0), (0, 3, 0), (3, 0, 5)]]
    inflated = [{"annotator": "b", **dict(zip(DIMENSION_NAMES, s))} for s in [(5, 5, 4), (4, 4, 3), (5, 3, 0)]]
    results = {d.annotator: d for d in score_distributions(calibrated + inflated)}
    assert results["a"].shares == {"4-5": 0.2, "3": 0.4, "0": 0.4} and not results["a"].out_of_target
    assert results["b"].inflated and "4-5" in results["b"].out_of_target


def test_krippendorff_alpha_matches_the_published_example():
    """Krippendorff (2011), 'Computing Krippendorff's Alpha-Reliability', the 4 observers x 12 units example."""
    observers = [[1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
                 [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
                 [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
                 [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None]]
    units = {u: [o[u] for o in observers if o[u] is not None] for u in range(12)}
    assert krippendorff_alpha(units, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(units, "ordinal") == pytest.approx(0.815, abs=5e-4)
    assert krippendorff_alpha(units, "interval") == pytest.approx(0.849, abs=5e-4)
    assert krippendorff_alpha({0: [3, 3], 1: [3, 3]}) is None  # no variation: alpha undefined


def test_audit_returns_the_batch_above_5_percent_low_quality_passes(tmp_path):
    assert audit_status(100, 6) == "returned" and audit_status(100, 5) == "passed"
    for low, expected in ((6, "returned"), (5, "passed")):
        audit = tmp_path / f"audit-{low}"
        audit.mkdir()
        keys = [{"task_key": f"k{i}", "kind": "item", "row_id": f"r{i}", "shard": "part-00000.parquet"}
                | dict.fromkeys(DIMENSION_NAMES) for i in range(100)]
        pq.write_table(pa.Table.from_pylist(keys, schema=KEY_SCHEMA), audit / KEY_FILE)
        (audit / BATCH_FILE).write_text(json.dumps({"batch_id": f"audit-{low}", "audit_of": "b1", "accept_threshold": 3.0}))
        export = [{"id": i, "data": {"task_key": f"k{i}"},
                   "annotations": [ls_annotation(i, 9, (0, 3, 3) if i < low else (4, 3, 3))]} for i in range(100)]
        (tmp_path / "audit.json").write_text(json.dumps(export))
        import_annotations(audit, tmp_path / "audit.json")
        entry = decide_audit(audit, tmp_path / "ledger")
        assert (entry["audited"], entry["low_quality_passes"], entry["status"]) == (100, low, expected)
    ledger = read_ledger(tmp_path / "ledger")
    assert [e["status"] for e in ledger] == ["returned", "passed"]
    assert batch_status(tmp_path / "ledger", "b1") == "passed"  # the latest decision
    first = sorted((tmp_path / "ledger").iterdir())[0].read_bytes()
    append_ledger(tmp_path / "ledger", ledger[0])
    assert sorted((tmp_path / "ledger").iterdir())[0].read_bytes() == first  # append-only
    assert len(read_ledger(tmp_path / "ledger")) == 3


def test_audit_samples_5_percent_of_the_accepted_items(tmp_path):
    # Items 0-9 (in task order) scored 0 by both annotators: not accepted; the rest 3.7.
    batch = _annotated_batch(tmp_path, lambda kind, n, known: [(1, (0, 0, 0) if n < 10 else (5, 4, 0)),
                                                               (2, (0, 0, 0) if n < 10 else (5, 4, 0))])
    key = read_batch_key(batch)
    kinds = [key[t["data"]["task_key"]]["kind"] for t in json.loads((batch / TASKS_FILE).read_text())]
    assert batch_summary(batch)["items_accepted"] == sum(kind == "item" for kind in kinds[10:])
    audit = export_audit(batch, tmp_path / "batches" / "a1", audit_batch_id="a1")
    assert audit["size"] == 2  # ceil(5% of the accepted items)
    audited = [key[k] for k in read_batch_key(tmp_path / "batches" / "a1")]
    scores = {r["row_id"]: r["weighted_score"] for r in pq.read_table(batch / "annotations.parquet").to_pylist()}
    assert all(entry["kind"] == "item" and scores[entry["row_id"]] == 3.7 for entry in audited)


def test_report_section_shows_sentinels_distributions_and_audits(tmp_path):
    from pipelines.cli import main  # `python -m pipelines report`

    batch = _annotated_batch(tmp_path, lambda kind, n, known: [(1, known if kind == "sentinel" else (5, 4, 0))])
    append_ledger(tmp_path / "batches" / "ledger", {"batch_id": "b1", "audit_batch_id": "a1", "audited": 2,
                                                    "low_quality_passes": 1, "low_quality_rate": 0.5,
                                                    "max_low_quality_rate": 0.05, "status": "returned",
                                                    "decided_at": "2026-12-01T00:00:00+00:00"})
    assert main(["report", "--out", str(tmp_path / "report.html"), str(batch)]) == 0
    html = (tmp_path / "report.html").read_text()
    for expected in ("Sentinel accuracy", "ann1@example.com", "4-5 (target 10%-30%)", "Krippendorff", "returned"):
        assert expected in html, expected
