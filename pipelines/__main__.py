import socket
import sys

from data_engine.nodes import NODE_SCRIPT, one_line

try:
    from pipelines.cli import main
except ImportError as exc:
    # Typically a Ray node started outside the project environment, whose `python` a submitted job runs.
    sys.exit(f"error: {sys.executable} on {socket.gethostname()} cannot import the project ({one_line(exc)}); "
             f"use the project environment (on a Ray cluster: start every node with {NODE_SCRIPT})")

sys.exit(main())
