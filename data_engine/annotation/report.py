"""The annotation section of the HTML report (`python -m pipelines report BATCH_DIR`): annotators, score
distributions against the targets, sentinel results, agreement and audit decisions of one batch."""

from __future__ import annotations

from data_engine.annotation.audit import default_ledger
from data_engine.annotation.batch import ANNOTATIONS_FILE, BATCH_FILE
from data_engine.annotation.summary import batch_summary
from data_engine.report import (ReportInput, ReportOptions, SectionKind, heading, muted, register_section,
                                render_key_values, render_table)


def render_annotation_section(report_input: ReportInput, options: ReportOptions) -> str:
    summary = batch_summary(report_input.directory, default_ledger(report_input.directory))
    batch = summary["batch"]
    overview = render_key_values([("batch", batch["batch_id"]), ("tasks", batch["size"]),
                                  ("sentinels", batch["sentinels"]), ("annotations", summary["annotations"]),
                                  ("items scored", summary["items_scored"]),
                                  (f"items accepted (score >= {summary['accept_threshold']})", summary["items_accepted"])])
    annotators = render_table(["annotator", "annotations", "median lead time (s)"],
                              [[a["annotator"], a["annotations"], a["median_lead_time_s"]] for a in summary["annotators"]])
    sentinels = render_table(["annotator", "judged", "correct", "accuracy", "flagged"],
                             [[r["annotator"], r["judged"], r["correct"], r["accuracy"], "yes" if r["flagged"] else "no"]
                              for r in summary["sentinels"]["results"]])
    targets = summary["distribution"]["targets"]
    bands = list(targets)
    distribution = render_table(
        ["annotator", "scores", *(f"{band} (target {low:.0%}-{high:.0%})" for band, (low, high) in targets.items()),
         "out of target", "inflation"],
        [[d["annotator"], d["scores"], *(d["shares"][band] for band in bands), ", ".join(d["out_of_target"]) or "-",
          "yes" if d["inflated"] else "no"] for d in summary["distribution"]["results"]])
    agreement = render_key_values([(f"Krippendorff's alpha, {name}", value if value is not None else "n/a")
                                   for name, value in summary["agreement"].items()])
    audits = (render_table(["audit batch", "audited", "low-quality passes", "rate", "max rate", "status", "decided"],
                           [[e["audit_batch_id"], e["audited"], e["low_quality_passes"], e["low_quality_rate"],
                             e["max_low_quality_rate"], e["status"], e["decided_at"]] for e in summary["audits"]])
              if summary["audits"] else muted("No audit decision for this batch yet."))
    return (overview + heading("Annotators") + annotators
            + heading("Sentinel accuracy", f"flagged under {summary['sentinels']['min_accuracy']:.0%}") + sentinels
            + heading("Score distribution against the targets", "real items, all dimensions pooled") + distribution
            + heading("Agreement on overlapped items", "ordinal per dimension, interval on the weighted score")
            + agreement + heading("Audit decisions") + audits)


ANNOTATION_SECTION = register_section(SectionKind(
    "annotation", lambda report_input: (report_input.directory / BATCH_FILE).is_file()
    and (report_input.directory / ANNOTATIONS_FILE).is_file(), render_annotation_section))
