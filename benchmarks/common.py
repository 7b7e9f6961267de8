"""Result files, the README table and timing shared by every benchmark."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).parent / "results"
README = Path(__file__).parents[1] / "README.md"
TABLE_START, TABLE_END = "<!-- bench-table:start -->", "<!-- bench-table:end -->"


def machine_description() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    """Median wall time of `repeats` calls: one slow call on a shared machine does not move it."""
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def write_result(name: str, metrics: dict[str, float], *, baseline: str, command: str,
                 notes: dict[str, Any] | None = None) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    payload = {"name": name, "metrics": metrics, "baseline": baseline, "machine": machine_description(),
               "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": command}
    if notes:
        payload["notes"] = notes
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"{name}: " + ", ".join(f"{k}={v}" for k, v in metrics.items()), file=sys.stderr)
    return path


def results_table() -> str:
    """One row per benchmark; the machine once per distinct machine (results are only comparable on one)."""
    results = [json.loads(path.read_text()) for path in sorted(RESULTS_DIR.glob("*.json"))]
    machines = sorted({f"{r['machine']['cpu']}, {r['machine']['cores']} cores" for r in results})
    lines = [f"Machine{'s' if len(machines) > 1 else ''}: {'; '.join(machines)}.", "",
             "| benchmark | metrics | baseline | date |", "|---|---|---|---|"]
    for result in results:
        metrics = ", ".join(f"`{name}` {value}" for name, value in result["metrics"].items())
        lines.append(f"| {result['name']} | {metrics} | {result['baseline']} | {result['date'][:10]} |")
    return "\n".join(lines)


def update_readme_table() -> None:
    text = README.read_text()
    if TABLE_START not in text or TABLE_END not in text:
        raise RuntimeError(f"{README} lacks the {TABLE_START} / {TABLE_END} markers")
    head, rest = text.split(TABLE_START, 1)
    _, tail = rest.split(TABLE_END, 1)
    README.write_text(f"{head}{TABLE_START}\n{results_table()}\n{TABLE_END}{tail}")
