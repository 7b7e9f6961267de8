"""Editing data (report 5.1): every edit source in one triplet format, its curation, instruction refinement and
balancing, as stages of the `edit_data` job (`pipelines/jobs/edit_data.yaml`).

- `triplet.py`: the one triplet schema (`edit_triplet`) and its label vocabularies;
- `adapters.py`: the `edit_sources` reader: spatial-edit renders, text-edit pairs, video pairs and external
  datasets (Parquet/JSONL layouts of the public edit datasets) written as triplets;
- `curation.py`: negligible change, change outside the edited region, blur and artifacts, intent ambiguity;
- `refine.py`: instruction refinement through a text LLM (JSON output, quotes kept verbatim);
- `balance.py`: the global pass sampling to target proportions over the five axes with per-cell caps.
"""
