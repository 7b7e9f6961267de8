"""The rebalance summary (`rebalance_report.json`, written beside the rebalanced shards) and its section of the
HTML report (`python -m pipelines report`): category frequency before and after on log-log axes, head and
tail shares, the entropy of the category distribution, and examples per category."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from data_engine.rebalance.sampling import (Decision, RebalanceConfig, categories_of, distribution_summary, keep_rate,
                                            quota, tag_counts)
from data_engine.report import (SERIES_COLORS, ReportError, ReportInput, ReportOptions, ScannedRows, SectionKind,
                                Series, caption_line, escape, evenly_spaced, fetch_values, format_number, heading,
                                image_html, make_thumbnail, muted, read_json_file, register_section,
                                render_line_chart, render_manifest_summary, render_table, scan_rows)
from data_engine.shards import atomic_write_bytes, atomic_write_json

SUMMARY_NAME = "rebalance_report.json"
PLOT_NAME = "category_frequency.svg"
EXAMPLES_PER_CATEGORY = 3


def rebalance_summary(decisions: Sequence[Decision], ids: Sequence[str], tags: Sequence[Sequence[str]],
                      names: Mapping[str, str], texts: Mapping[str, str | None],
                      config: RebalanceConfig) -> dict[str, Any]:
    """Per tag (every sample carrying it counts, whichever category decided it): samples before and after, of
    those kept the ones another (rarer) category decided, the rate r(c) and, for the joyai method, the quota
    N_sample; distribution statistics; kept example rows."""
    kept_tags = [sample_tags for sample_tags, decision in zip(tags, decisions) if decision.keep]
    before, after = tag_counts(tags), tag_counts(kept_tags)
    through_rarer = tag_counts([categories_of(sample_tags) - {decision.category}
                                for sample_tags, decision in zip(tags, decisions) if decision.keep])
    examples: dict[str, list[dict[str, str]]] = {}
    for sample_id, sample_tags, decision in zip(ids, tags, decisions):
        for tag in sorted(categories_of(sample_tags)) if decision.keep else ():
            chosen = examples.setdefault(tag, [])
            if len(chosen) < EXAMPLES_PER_CATEGORY:
                chosen.append({"id": sample_id, "caption": texts.get(sample_id) or ""})

    def rate(tag: str) -> float:
        count = before[tag]
        return keep_rate(count, tag, config) if config.method == "joyai" else min(1.0, config.tail_threshold / count)

    return {
        "method": config.method, "tail_threshold": config.tail_threshold,
        "before": {"samples": len(decisions)} | distribution_summary(before, config.tail_threshold),
        "after": {"samples": len(kept_tags)} | distribution_summary(after, config.tail_threshold),
        "categories": [{"id": c, "name": names.get(c, c), "before": n, "after": after.get(c, 0),
                        "kept_through_rarer": through_rarer.get(c, 0), "rate": rate(c),
                        "quota": quota(n, c, config) if config.method == "joyai" else None,
                        "examples": examples.get(c, [])}
                       for c, n in sorted(before.items(), key=lambda item: (-item[1], item[0]))],
    }


def frequency_plot(summary: Mapping[str, Any]) -> str:
    """Category frequency versus rank, before and after, on log-log axes (a standalone SVG document)."""
    categories = summary.get("categories") or []
    series = []
    for number, key in enumerate(("before", "after")):
        counts = sorted((c.get(key) or 0 for c in categories if isinstance(c, dict)), reverse=True)
        series.append(Series(key, [(rank, count) for rank, count in enumerate(counts, start=1) if count > 0],
                             SERIES_COLORS[number]))
    return render_line_chart(series, x_label="category rank", y_label="samples in category", log_x=True, log_y=True)


def write_rebalance_summary(out_dir: Path, summary: dict[str, Any]) -> None:
    atomic_write_json(out_dir / SUMMARY_NAME, summary)
    atomic_write_bytes(out_dir / PLOT_NAME, frequency_plot(summary).encode())


def _check_summary(path: Path, summary: Any) -> dict[str, Any]:
    if not isinstance(summary, dict) or not isinstance(summary.get("categories"), list) or \
            not all(isinstance(summary.get(key), dict) for key in ("before", "after")):
        raise ReportError(f"{path}: malformed rebalance summary (needs 'before', 'after' objects and a "
                          "'categories' list)")
    return summary


def _example_thumbnails(scan: ScannedRows, example_ids: list[str]) -> dict[str, Any]:
    """Thumbnails of the example rows (captioned images carry their bytes), where the scan finds them."""
    position = {row_id: n for n, row_id in enumerate(scan.rows["id"].to_pylist())} if scan.rows.num_rows else {}
    picks = [position[row_id] for row_id in example_ids if row_id in position]
    images = fetch_values(scan, picks, "image_bytes")
    return {scan.rows["id"][p].as_py(): make_thumbnail(data) for p, data in zip(picks, images)}


def render_rebalance_section(report_input: ReportInput, options: ReportOptions) -> str:
    path = report_input.directory / SUMMARY_NAME
    summary = _check_summary(path, read_json_file(path))
    before, after = summary["before"], summary["after"]
    statistics = render_table(["", "samples", "tag occurrences", "categories", "head share", "tail share",
                               "entropy (bits)"], [
        [name, stats.get("samples"), stats.get("tag_occurrences"), stats.get("categories"), stats.get("head_share"),
         stats.get("tail_share"), stats.get("entropy_bits")] for name, stats in (("before", before), ("after", after))])
    categories = [c for c in summary["categories"] if isinstance(c, dict)]
    shown = [categories[n] for n in evenly_spaced(range(len(categories)), options.sample_rows)]
    example_ids = [str(e.get("id")) for c in shown for e in c.get("examples") or [] if isinstance(e, dict)]
    scan = scan_rows(report_input.directory, ["id"], options.max_scanned_rows)
    thumbnails = _example_thumbnails(scan, example_ids)
    cards = []
    for category in shown:
        examples = "".join(
            f'<div class="images">{image_html(thumbnails.get(str(e.get("id"))), str(e.get("id")), "no image")}</div>'
            f'<div class="text">{escape(e.get("caption", ""))}</div>'
            for e in category.get("examples") or [] if isinstance(e, dict))
        target = f", quota {format_number(category['quota'])}" if category.get("quota") is not None else ""
        counts = (f"{format_number(category.get('before'))} → {format_number(category.get('after'))} samples, "
                  f"rate {format_number(category.get('rate'))}{target}")
        cards.append(f'<div class="card">{caption_line(str(category.get("name")), "reason")}'
                     f'{caption_line(str(category.get("id")), "id")}{caption_line(counts)}'
                     f'{examples or muted("no kept example")}</div>')
    head_note = f"head: categories with at least T = {format_number(summary.get('tail_threshold'))} samples"
    return (render_manifest_summary(report_input.manifest or {}, scan)
            + heading("Category distribution", f"method {summary.get('method')}; {head_note}") + statistics
            + heading("Category frequency before and after", "log-log") + frequency_plot(summary)
            + heading("Examples per category", f"{len(shown)} of {len(categories)} categories, most to least frequent")
            + (f'<div class="grid">{"".join(cards)}</div>' if cards else muted("No categories.")))


REBALANCE_SECTION = register_section(SectionKind(
    "rebalance", lambda report_input: report_input.manifest is not None
    and (report_input.directory / SUMMARY_NAME).is_file(), render_rebalance_section))
