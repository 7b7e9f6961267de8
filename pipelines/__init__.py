"""The composition root: declarative job definitions (jobs/*.yaml), the CLI that runs them locally or on a Ray
cluster, the demo, and the one table of what each client package adds to the engine (`registry.py`, imported
here so that every entry point under `pipelines` has it)."""

import pipelines.registry  # noqa: F401
