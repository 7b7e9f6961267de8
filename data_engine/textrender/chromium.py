"""A blueprint's HTML/CSS page, and the persistent headless Chromium that renders it.

The page places each block in its grid cell with absolute positioning (a block's text can never move
another's) and names its font family only: Chromium resolves it through fontconfig to the local files of
`fonts.py`, and the page's Content-Security-Policy forbids every fetch. Rendering awaits
`document.fonts.ready`, then measures each block's text with `Range.getBoundingClientRect` (and, for
vertical text, every character's box, so OCR can read the column as a line), then screenshots the canvas.

Chromium is Debian's (no browser download): one browser and one page per worker, reused for every row.
"""

from __future__ import annotations

import html
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from data_engine.textrender.blueprint import Blueprint

CHROMIUM_PATH = "/usr/bin/chromium"
# Flags for a closed network: without the background-networking ones Chromium keeps dialling out.
CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync")
_CSP = "default-src 'none'; style-src 'unsafe-inline'"
_JUSTIFY = {"left": "flex-start", "center": "center", "right": "flex-end"}

# Once the page's fonts are ready, per block: the text's box, its cell's box, and per-character boxes for
# vertical text (one round trip to the browser).
_MEASURE_JS = """async () => { await document.fonts.ready; return Array.from(document.querySelectorAll('span.t')).map(span => {
  const range = document.createRange();
  range.selectNodeContents(span);
  const r = range.getBoundingClientRect();
  const c = span.parentElement.getBoundingClientRect();
  let chars = null;
  if (span.dataset.vertical === '1' && span.firstChild) {
    chars = [];
    const node = span.firstChild;
    for (let i = 0; i < node.length; i++) {
      const one = document.createRange();
      one.setStart(node, i);
      one.setEnd(node, i + 1);
      const b = one.getBoundingClientRect();
      if (b.width > 0 && b.height > 0) chars.push([b.left, b.top, b.right, b.bottom]);
    }
  }
  return {box: [r.left, r.top, r.right, r.bottom], cell: [c.left, c.top, c.right, c.bottom], chars: chars};
}); }"""


def blueprint_html(blueprint: Blueprint) -> str:
    canvas = blueprint.canvas
    cells = []
    for number, block in enumerate(blueprint.blocks):
        left, top, right, bottom = blueprint.cell_box(block.cell)
        vertical = block.writing_mode == "vertical-rl"
        cell_style = (f"left:{left:.2f}px;top:{top:.2f}px;width:{right - left:.2f}px;height:{bottom - top:.2f}px;"
                      f"writing-mode:{block.writing_mode};justify-content:{_JUSTIFY[block.align]}")
        text_style = (f"font-family:'{block.font_family}';font-size:{block.size_px}px;font-weight:{block.weight};"
                      f"color:{block.color};text-align:{block.align}")
        cells.append(f'<div class="cell" style="{cell_style}"><span class="t" id="b{number}" '
                     f'data-vertical="{int(vertical)}" lang="{"zh-Hans" if block.language == "zh" else "en"}" '
                     f'style="{text_style}">{html.escape(block.text)}</span></div>')
    return ("<!doctype html><html><head><meta charset=\"utf-8\">"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{_CSP}\"><style>"
            "html,body{margin:0;padding:0}"
            f"body{{width:{canvas.width}px;height:{canvas.height}px;background:{canvas.background};"
            "position:relative;overflow:hidden}"
            ".cell{position:absolute;display:flex;align-items:center;overflow:hidden}"
            ".t{line-height:1.25;white-space:pre-wrap;overflow-wrap:anywhere}"
            "</style></head><body>" + "".join(cells) + "</body></html>")


@dataclass(frozen=True)
class RenderedPage:
    png: bytes
    blocks: list[dict[str, Any]]  # per block: box, cell (left, top, right, bottom) and chars (vertical text)


class ChromiumRenderer:
    """One headless Chromium and one page, kept for the worker's lifetime.

    Playwright's sync API is bound to the thread that started it, and Ray may call an actor's methods on
    another thread than its constructor's; every browser call therefore runs on one thread of our own.
    """

    def __init__(self, executable_path: str = CHROMIUM_PATH) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chromium")
        try:
            self._thread.submit(self._start, executable_path).result()
        except Exception:
            self._thread.shutdown()
            raise

    def _start(self, executable_path: str) -> None:
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        try:
            self._browser = self._playwright.chromium.launch(executable_path=executable_path,
                                                             args=list(CHROMIUM_ARGS))
            self._page = self._browser.new_page(device_scale_factor=1)
        except Exception:
            self._playwright.stop()
            raise

    def render(self, blueprint: Blueprint) -> RenderedPage:
        return self.render_html(blueprint_html(blueprint), blueprint.canvas.width, blueprint.canvas.height)

    def render_html(self, page_html: str, width: int, height: int) -> RenderedPage:
        return self._thread.submit(self._render, page_html, width, height).result()

    def _render(self, page_html: str, width: int, height: int) -> RenderedPage:
        page = self._page
        page.set_viewport_size({"width": width, "height": height})
        page.set_content(page_html, wait_until="load")
        blocks = page.evaluate(_MEASURE_JS)
        png = page.screenshot(type="png", clip={"x": 0, "y": 0, "width": width, "height": height})
        return RenderedPage(png, blocks)

    def close(self) -> None:
        def stop() -> None:
            self._browser.close()
            self._playwright.stop()

        self._thread.submit(stop).result()
        self._thread.shutdown()
