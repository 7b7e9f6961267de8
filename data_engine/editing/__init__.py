"""Editing data (report 5.1): open-domain pairs from video (`video_pairs` job: shots -> frames -> pairs -> VLM
instructions), and every edit source in one triplet format with its curation, instruction refinement and
balancing (`edit_data` job, `pipelines/jobs/edit_data.yaml`).

- `video.py`, `shots.py`, `pairs.py`, `instructions.py`: the video reader, shot detection and frame sampling,
  pairs inside one shot and their change decision, instructions from a VLM;
- `triplet.py`: the one triplet schema (`edit_triplet`) and its label vocabularies;
- `adapters.py`: the `edit_sources` reader: spatial-edit renders, text-edit pairs, video pairs and external
  datasets (Parquet/JSONL layouts of the public edit datasets) written as triplets;
- `curation.py`: negligible change, change outside the edited region, blur and artifacts, intent ambiguity;
- `refine.py`: instruction refinement through a text LLM (JSON output, quotes kept verbatim);
- `balance.py`: the global pass sampling to target proportions over the five axes with per-cell caps.
"""
