"""The composition root: declarative job definitions (jobs/*.yaml), the CLI that runs them locally or on a Ray
cluster, the demo, and the one table of what each client package adds to the engine (`registry.py`, imported
here so that every entry point under `pipelines` has it)."""

import socket
import sys

from data_engine.nodes import NODE_SCRIPT, one_line

try:
    import pipelines.registry  # noqa: F401
except ImportError as exc:
    # Typically a Ray node started outside the project environment, whose `python` a submitted job runs:
    # every entry point under `pipelines` stops here with one line instead of a traceback.
    sys.exit(f"error: {sys.executable} on {socket.gethostname()} cannot import the project ({one_line(exc)}); "
             f"use the project environment (on a Ray cluster: start every node with {NODE_SCRIPT})")
