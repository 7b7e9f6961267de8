"""The report's cross-job section: one funnel over the chain of jobs the last output of a flow was made from
(raw files -> decoded -> curated -> captioned -> caption-filtered -> selected by rebalancing -> latents), each
count read from the manifest of the job that decided it (`data_engine.lineage.flow_funnel`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from data_engine.lineage import LineageLink, flow_funnel, lineage
from data_engine.report.document import RenderedSection
from data_engine.report.drawing import ACCEPTED_COLOR, Bar, format_share, render_bar_chart, render_table
from data_engine.shards import MANIFEST_NAME, ShardDirError


def longest_chain(directories: Sequence[Path]) -> list[LineageLink] | None:
    """The longest lineage among the directories that are job outputs (None when no output read another)."""
    chains = []
    for directory in directories:
        if (Path(directory) / MANIFEST_NAME).is_file():
            try:
                chains.append(lineage(directory))
            except ShardDirError:
                continue  # an output whose upstream moved has no flow to draw; its own section says the rest
    best = max(chains, key=len, default=None)
    return best if best is not None and len(best) > 1 else None


def render_flow_section(directories: Sequence[Path]) -> RenderedSection | None:
    chain = longest_chain(directories)
    if chain is None:
        return None
    steps = flow_funnel(chain)
    start = steps[0].rows
    bars = []
    for previous, step in zip([None, *steps], steps):
        lost = max(0, previous.rows - step.rows) if previous else 0
        bars.append(Bar(step.label, step.rows, ACCEPTED_COLOR, f"({format_share(step.rows, start)})", lost))
    table = render_table(["step", "rows", "job", "output"],
                         [[step.label, step.rows, step.job, step.directory] for step in steps])
    body = (f"<p>Rows left at each step of the image flow, across jobs; each job read the accepted rows of the "
            f"one before, and each count is its manifest's.</p>{render_bar_chart(bars)}{table}")
    return RenderedSection(f"Image flow across jobs: {Path(chain[0].directory).name}", "flow",
                           Path(chain[0].directory), body)
