"""Text rendering: the render_text stage as the job runs it (blueprint parse, glyph coverage and re-fonting,
HTML, Chromium render with `document.fonts.ready`, DOM box measurement, overflow and blank checks, hashing,
the runtime's per-row bookkeeping) against a bare Playwright loop that loads the same pages' HTML into one
page and screenshots it, in the same Debian Chromium with the same flags.

Both sides start their browser outside the timed region (a worker keeps it for its lifetime), render every
page once untimed (fonts and caches warm), then the harness interleaves them, so drift on a shared machine
hits both. `overhead_ratio` = seconds of ours / seconds of theirs, round by round (goal <= 1.2); renders per
second per core are of one worker (one page at a time).
"""

from __future__ import annotations

import argparse
import sys

import pyarrow as pa
from playwright.sync_api import sync_playwright

from benchmarks.common import MIN_REPEATS, interleaved, rate_spread, ratio_spread, start_benchmark, write_result
from data_engine.readers import row_id
from data_engine.schemas import CAPTION
from data_engine.stage_runner import apply_stage
from data_engine.textrender.chromium import CHROMIUM_ARGS, CHROMIUM_PATH, blueprint_html
from data_engine.textrender.procedural import ProceduralLayoutConfig, sample_blueprint
from data_engine.textrender.stages import RenderTextConfig, RenderTextStage

NAME = "text_render"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=MIN_REPEATS)
    args = parser.parse_args(argv)
    machine = start_benchmark(threads=1)

    config = ProceduralLayoutConfig()
    keys = [f"procedural/0/{index:06d}" for index in range(args.pages)]
    blueprints = [sample_blueprint(key, config) for key in keys]
    table = pa.Table.from_pylist(
        [{"id": row_id("bench", key), "source_dataset": "bench", "upstream_id": key, "license": "generated"}
         for key in keys], schema=CAPTION.arrow()).append_column("blueprint", pa.array([b.to_json() for b in blueprints]))
    pages = [(blueprint_html(b), b.canvas.width, b.canvas.height) for b in blueprints]

    stage = RenderTextStage(RenderTextConfig())
    stage.setup()
    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(executable_path=CHROMIUM_PATH, args=list(CHROMIUM_ARGS))
    page = browser.new_page(device_scale_factor=1)

    def ours() -> None:
        out, _ = apply_stage(stage, table, batch_size=len(keys))
        rejected = [r for r in out.column("reject_reason").to_pylist() if r is not None]
        if rejected:
            raise RuntimeError(f"the stage rejected pages: {rejected}")  # both sides must produce every page

    def theirs() -> None:
        for html, width, height in pages:
            page.set_viewport_size({"width": width, "height": height})
            page.set_content(html, wait_until="load")
            page.screenshot(type="png", clip={"x": 0, "y": 0, "width": width, "height": height})

    try:
        timings = interleaved({"ours": ours, "theirs": theirs}, repeats=args.repeats)
    finally:
        stage.renderer.close()
        browser.close()
        playwright.stop()
    metrics = {
        "overhead_ratio": ratio_spread(timings["ours"], timings["theirs"]),
        "stage_renders_per_s_per_core": rate_spread(args.pages, timings["ours"]),
        "bare_renders_per_s_per_core": rate_spread(args.pages, timings["theirs"]),
    }
    write_result(NAME, metrics, machine=machine, goals={"overhead_ratio": ("<=", 1.2)},
                 baseline="bare Playwright loop: set_content + screenshot of the same pages' HTML, "
                 "same Chromium and flags, one page", command=f"python -m benchmarks.text_render {' '.join(argv or [])}".strip(),
                 notes={"pages": args.pages, "repeats_interleaved": args.repeats, "seconds": timings})


if __name__ == "__main__":
    main(sys.argv[1:])
