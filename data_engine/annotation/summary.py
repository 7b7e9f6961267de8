"""One batch's quality-control summary: annotators, sentinel results, distributions against the targets,
agreement, accepted items and audit decisions. The CLI prints it as JSON; the report section draws it."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from data_engine.annotation.audit import DEFAULT_ACCEPT_THRESHOLD, item_scores, read_ledger
from data_engine.annotation.batch import BATCH_FILE, read_annotations, read_batch_key
from data_engine.annotation.metrics import MIN_SENTINEL_ACCURACY, agreement, score_distributions, sentinel_results
from data_engine.annotation.rubric import DIMENSION_NAMES, TARGET_BANDS


def batch_summary(batch_dir: Path, ledger_dir: Path | None = None,
                  accept_threshold: float = DEFAULT_ACCEPT_THRESHOLD) -> dict[str, Any]:
    batch = json.loads((batch_dir / BATCH_FILE).read_text())
    annotations = read_annotations(batch_dir)
    key = read_batch_key(batch_dir)
    known = {k: {d: row[d] for d in DIMENSION_NAMES} for k, row in key.items() if row["kind"] == "sentinel"}
    items = [a for a in annotations if a["kind"] == "item"]
    counts = Counter(a["annotator"] for a in annotations)
    lead = {a: [x["lead_time_s"] for x in annotations if x["annotator"] == a and x["lead_time_s"] is not None]
            for a in counts}
    scores = item_scores(annotations)
    ledger = [e for e in read_ledger(ledger_dir) if e["batch_id"] == batch["batch_id"]] if ledger_dir else []
    return {
        "batch": batch,
        "annotations": len(annotations),
        "annotators": [{"annotator": a, "annotations": counts[a],
                        "median_lead_time_s": sorted(lead[a])[len(lead[a]) // 2] if lead[a] else None}
                       for a in sorted(counts)],
        "sentinels": {"min_accuracy": MIN_SENTINEL_ACCURACY, "results": [
            {"annotator": r.annotator, "judged": r.judged, "correct": r.correct, "accuracy": r.accuracy,
             "flagged": r.flagged} for r in sentinel_results(annotations, known)]},
        "distribution": {"targets": TARGET_BANDS, "results": [
            {"annotator": d.annotator, "scores": d.scores, "shares": d.shares, "out_of_target": list(d.out_of_target),
             "inflated": d.inflated} for d in score_distributions(items)]},
        "agreement": agreement(items),
        "items_scored": len(scores),
        "accept_threshold": accept_threshold,
        "items_accepted": sum(score >= accept_threshold for score in scores.values()),
        "audits": ledger,
    }
