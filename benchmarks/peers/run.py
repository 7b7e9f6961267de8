"""`make bench-peers`: run every peer comparison (or those named), then refresh the README table.

    python -m benchmarks.peers.run --env data-juicer=DIR --env trl=DIR --env nemo-curator=DIR [NAME ...]
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from benchmarks.common import update_readme_table

# Module under benchmarks/peers/ -> the peer environment it runs the other side in (None: the main one, where
# pyiqa already is: our learned-IQA stage is built on its architecture classes).
PEER_BENCHMARKS = {"pyiqa_iqa": None, "data_juicer": "data-juicer", "nemo_curator": "nemo-curator",
                   "trl_sft": "trl"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", action="append", default=[], metavar="PEER=DIR", help="a peer's environment")
    parser.add_argument("names", nargs="*", help=f"comparisons to run (default all: {', '.join(PEER_BENCHMARKS)})")
    args = parser.parse_args(argv)
    envs = dict(text.split("=", 1) for text in args.env)
    unknown = sorted(set(args.names) - set(PEER_BENCHMARKS))
    if unknown:
        raise SystemExit(f"unknown peer benchmarks {unknown}; known: {', '.join(PEER_BENCHMARKS)}")
    for name in args.names or PEER_BENCHMARKS:
        peer = PEER_BENCHMARKS[name]
        if peer is not None and peer not in envs:
            raise SystemExit(f"{name} needs --env {peer}=DIR (scripts/setup_peer_env.sh {peer} DIR)")
        importlib.import_module(f"benchmarks.peers.{name}").main(
            [] if peer is None else ["--peer-env", str(Path(envs[peer]))])
    update_readme_table()


if __name__ == "__main__":
    main()
