"""Synthetic text rendering (report 4.1.2): layout blueprints rendered with HTML/CSS in headless Chromium.

The data flow, one module each:
- `blueprint.py`: the blueprint (canvas, grid, text blocks with their typography) and the parsing of a
  model's layout output into one (typography tokens stripped, invalid output a reason);
- `charfreq.py`: Chinese character frequency buckets (from `wordfreq`) and the balanced character sampler;
- `procedural.py`: blueprints sampled from a seed;
- `fonts.py`: the font families a blueprint may name, resolved to local files through fontconfig, and the
  glyph coverage check (font cmap) that re-fonts a block or rejects it before anything renders;
- `html.py` + `chromium.py`: the HTML/CSS page of a blueprint and the persistent headless Chromium that
  renders it and measures every block's box from the DOM;
- `verify.py`: blank-block detection and the OCR round trip (character error rate per block);
- `captions.py`: captions that quote every rendered string verbatim, with the layout;
- `stages.py`, `edit.py`, `reader.py`: the job layer (stages, the text-edit pair stage, the seed readers).
"""
