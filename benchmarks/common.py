"""The benchmark harness: timing, result files and the README table, shared by every benchmark.

How a benchmark measures (issue 17, so that a skeptic can accept a ratio):
- `start_benchmark(threads)` first: pins the thread pools (torch, BLAS/OpenMP, OpenCV, and the environment
  that subprocesses inherit) and records the machine as it is before any work: CPU model, cores, load
  average, the git commit, the pinned thread count.
- `interleaved({...})` times every contender: each is warmed up (untimed) first, then the contenders take
  turns `repeats` (>= 5) times, the order rotating every round, so load from other processes on a shared
  machine falls on all of them alike and none always runs first after a pause.
- A repeated figure is written as `{"median", "min", "max"}` (`spread`); a ratio of two contenders is taken
  round by round (`ratio_spread`), since the rounds are paired. Counts and quality figures stay plain numbers.
- `write_result(..., goals=...)` records each goal and whether the median meets it: a miss is written as
  missed. A figure whose definition changes gets a new metric name; the old one is still reported.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).parent / "results"
README = Path(__file__).parents[1] / "README.md"
REPO = Path(__file__).parents[1]
TABLE_START, TABLE_END = "<!-- bench-table:start -->", "<!-- bench-table:end -->"
MIN_REPEATS = 5
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")
COMPARISONS: dict[str, Callable[[float, float], bool]] = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b}

Spread = dict[str, float]  # {"median": ..., "min": ..., "max": ...}

_started: dict[str, Any] = {}  # the machine as start_benchmark() found it, for write_result


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str:
    """HEAD of the checkout the benchmark runs from, `+dirty` when tracked files differ from it."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages: on a shared machine, how busy it was."""
    return [round(value, 2) for value in os.getloadavg()]


def machine_description(threads: int | None = None) -> dict[str, Any]:
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": threads, "load_average": load_average(),
            "git_commit": git_commit(), "python": platform.python_version(), "platform": platform.platform()}


def pin_threads(threads: int) -> None:
    """Every thread pool this process (and the processes it starts) uses gets `threads` threads."""
    for name in THREAD_ENV:
        os.environ[name] = str(threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)  # BLAS and OpenMP libraries already loaded; the environment covers later ones
    try:
        import torch
    except ImportError:
        pass
    else:
        torch.set_num_threads(threads)
    if "cv2" in sys.modules:
        sys.modules["cv2"].setNumThreads(threads)


def start_benchmark(threads: int | None = None) -> dict[str, Any]:
    """Pin threads (default: every core) and record the machine before any work; returns that record."""
    threads = threads or os.cpu_count() or 1
    pin_threads(threads)
    _started.clear()
    _started.update(machine_description(threads))
    return dict(_started)


class SelfTimed:
    """What a contender returns when it measured its own seconds (e.g. a subprocess reporting the time of its
    work without the interpreter's start), with the value a comparison reads."""

    def __init__(self, seconds: float, value: Any = None) -> None:
        self.seconds, self.value = seconds, value


def interleaved(contenders: Mapping[str, Callable[[], object]], *, repeats: int = MIN_REPEATS, warmup: int = 1,
                log: bool = True, last_values: dict[str, Any] | None = None) -> dict[str, list[float]]:
    """Seconds per call of each contender: `warmup` untimed calls each, then `repeats` rounds in which every
    contender runs once, the order rotating by one each round. A contender returning a `SelfTimed` counts the
    seconds it measured; `last_values` receives each contender's value from its last timed call."""
    if repeats < MIN_REPEATS:
        raise ValueError(f"repeats={repeats}: a benchmark repeats every contender at least {MIN_REPEATS} times")
    names = list(contenders)
    for name in names:
        for _ in range(warmup):
            contenders[name]()
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for round_number in range(repeats):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            value = contenders[name]()
            elapsed = time.perf_counter() - started
            if isinstance(value, SelfTimed):
                elapsed, value = value.seconds, value.value
            seconds[name].append(elapsed)
            if last_values is not None:
                last_values[name] = value
            if log:
                print(f"round {round_number}: {name} {elapsed:.3f}s", file=sys.stderr, flush=True)
    return seconds


def spread(values: Sequence[float], digits: int = 4) -> Spread:
    if not values:
        raise ValueError("spread of no values")
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits)}


def ratio_spread(numerator: Sequence[float], denominator: Sequence[float], digits: int = 3) -> Spread:
    """Spread of the round-by-round ratios of two interleaved contenders (round i of each is paired)."""
    if len(numerator) != len(denominator):
        raise ValueError(f"paired ratios need as many values on both sides ({len(numerator)} vs {len(denominator)})")
    return spread([a / b for a, b in zip(numerator, denominator)], digits)


def rate_spread(count: float, seconds: Sequence[float], digits: int = 2) -> Spread:
    """Items per second for each timed call."""
    return spread([count / s for s in seconds], digits)


def median_of(value: float | Spread | None) -> float | None:
    return value["median"] if isinstance(value, dict) else value


def check_goals(metrics: Mapping[str, Any], goals: Mapping[str, tuple[str, float]]) -> dict[str, dict[str, Any]]:
    """{metric: {"goal": ">= 0.5", "met": bool}}, judged on the median; a metric absent is a miss."""
    verdicts = {}
    for metric, (comparison, target) in goals.items():
        if comparison not in COMPARISONS:
            raise ValueError(f"goal for {metric}: comparison {comparison!r} is not one of {sorted(COMPARISONS)}")
        value = median_of(metrics.get(metric))
        verdicts[metric] = {"goal": f"{comparison} {target}",
                            "met": value is not None and COMPARISONS[comparison](value, target)}
    return verdicts


def write_result(name: str, metrics: dict[str, Any], *, baseline: str, command: str,
                 notes: dict[str, Any] | None = None, goals: Mapping[str, tuple[str, float]] | None = None,
                 machine: dict[str, Any] | None = None) -> Path:
    """benchmarks/results/<name>.json. `machine` defaults to what start_benchmark() recorded (else now)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {"name": name, "metrics": metrics, "baseline": baseline,
                               "machine": machine or dict(_started) or machine_description(),
                               "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": command}
    if goals:
        payload["goals"] = check_goals(metrics, goals)
    if notes:
        payload["notes"] = notes
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"{name}: " + ", ".join(f"{k}={format_metric(v)}" for k, v in metrics.items()), file=sys.stderr)
    return path


def format_metric(value: Any) -> str:
    if isinstance(value, dict) and {"median", "min", "max"} <= value.keys():
        return f"{value['median']} ({value['min']}-{value['max']})"
    return str(value)


def matmul_roofline_seconds(rows: int, inner: int, columns: int, *, calls: int = 3) -> float:
    """Best seconds of a bare fp32 (rows x inner) @ (inner x columns) torch matmul at the pinned threads: the
    rate the machine reaches on the operation a FLOP-bound benchmark is made of, measured in the same run."""
    import torch

    generator = torch.Generator().manual_seed(0)
    left = torch.randn(rows, inner, generator=generator)
    right = torch.randn(inner, columns, generator=generator)
    left @ right  # warm-up
    best = float("inf")
    for _ in range(calls):
        started = time.perf_counter()
        left @ right
        best = min(best, time.perf_counter() - started)
    return best


def results_table() -> str:
    """One row per benchmark, medians with their spread (min-max) and goals marked met or missed; the machine
    once per distinct machine (results are only comparable on one)."""
    results = [json.loads(path.read_text()) for path in sorted(RESULTS_DIR.glob("*.json"))]
    machines = sorted({f"{r['machine']['cpu']}, {r['machine']['cores']} cores" for r in results})
    lines = [f"Machine{'s' if len(machines) > 1 else ''}: {'; '.join(machines)}. Repeated figures are medians "
             "with (min-max) over interleaved repeats; goals are judged on the median.", "",
             "| benchmark | metrics | goals | baseline | date |", "|---|---|---|---|---|"]
    for result in results:
        metrics = ", ".join(f"`{name}` {format_metric(value)}" for name, value in result["metrics"].items())
        goals = ", ".join(f"`{metric}` {verdict['goal']}: {'met' if verdict['met'] else 'MISSED'}"
                          for metric, verdict in result.get("goals", {}).items())
        # a result written before the harness has no commit in `machine`: its figures are not harness figures
        measured = result["date"][:10] + ("" if "git_commit" in result["machine"] else ", before the harness")
        lines.append(f"| {result['name']} | {metrics} | {goals} | {result['baseline']} | {measured} |")
    return "\n".join(lines)


def update_readme_table() -> None:
    text = README.read_text()
    if TABLE_START not in text or TABLE_END not in text:
        raise RuntimeError(f"{README} lacks the {TABLE_START} / {TABLE_END} markers")
    head, rest = text.split(TABLE_START, 1)
    _, tail = rest.split(TABLE_END, 1)
    README.write_text(f"{head}{TABLE_START}\n{results_table()}\n{TABLE_END}{tail}")
