"""Human quality annotation (report 4.1.4 / Table 5) through Label Studio.

- `rubric.py`: the three dimensions, weights and score levels; the weighted score; the labeling config;
- `batch.py`: export of shard rows as Label Studio tasks with hidden sentinels, import of its JSON export
  into `annotations.parquet`;
- `metrics.py`: sentinel accuracy, score distributions against the targets, Krippendorff's alpha;
- `audit.py`: audits of accepted items and the append-only Parquet ledger of their decisions;
- `summary.py` + `report.py`: the batch summary and its HTML report section;
- `__main__.py`: `python -m data_engine.annotation export|import|report|audit|decide`.
"""
