"""Ray cluster job submission: the same job YAML that runs locally, run by the cluster's head node.

`submit` validates the job locally first (a bad config fails here, in one line, not on the cluster), ships
the resolved config in the job's runtime environment (an environment variable, so a job file from anywhere
works and what ran is visible in the dashboard), uploads the code as the working directory and submits
`python -m pipelines run env:JOYAI_JOB_CONFIG` with `ray job submit` semantics (JobSubmissionClient).

What the job runs with comes from the nodes, never from the submitter: each node is started by
`scripts/ray_node.sh`, which puts the project environment first on PATH (the entrypoint's `python`) and
exports where that node's artifacts are (models, NIQE parameters, the render environment). The job's
driver checks every node before any shard runs (data_engine/nodes.py); `submit` returns once that passed,
or with the job's one-line error.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import yaml

from data_engine.job import JobConfigError
from data_engine.nodes import NODES_READY
from data_engine.registry import reader_class
from pipelines.jobfile import ENV_PREFIX, load_job

REPO = Path(__file__).resolve().parents[1]
JOB_CONFIG_ENV = "JOYAI_JOB_CONFIG"
# Uploaded with the job: the code, job files, prompts and rules only (Ray's working_dir limit is 500 MiB;
# Ray also skips what .gitignore lists). Artifacts are found on each node (scripts/ray_node.sh).
WORKING_DIR_EXCLUDES = [".git", ".venv", ".venv-*", "out", ".cache", "**/__pycache__/", ".pytest_cache/",
                        "benchmarks/results/"]
TERMINAL_STATES = {"SUCCEEDED", "FAILED", "STOPPED"}
AGENT_WAIT_S = 120


def _is_remote_safe(location: str) -> bool:
    """A path the cluster can resolve: a URI or an absolute path (relative ones would land in a temp dir)."""
    return "://" in location or Path(location).is_absolute()


def _refuse_checkout_paths(job_path: Path, where: str, value: object) -> None:
    """A stage file named by its place in this checkout (a default computed from `__file__`) would be looked
    up at that place on the nodes, which have the code at the job's working directory instead."""
    if isinstance(value, dict):
        for key, item in value.items():
            _refuse_checkout_paths(job_path, f"{where}.{key}", item)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_checkout_paths(job_path, f"{where}.{index}", item)
    elif isinstance(value, str) and Path(value).is_absolute() and Path(value).is_relative_to(REPO):
        raise JobConfigError(f"{job_path}: {where} {value!r} is a path inside the submitting checkout, which the "
                             "nodes do not have there; name a file every node can read (README: artifacts on "
                             "the nodes)")


def _client(address: str):
    from ray.job_submission import JobSubmissionClient

    # Ray's INFO lines about packaging and uploading the working directory are noise here: what the CLI
    # prints is the job id, the job's state or log, or the job's one-line error.
    # (the SDK module sets its own logger's level, so it is named as well).
    for name in ("ray", "ray.dashboard.modules.dashboard_sdk"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        return JobSubmissionClient(address)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise JobConfigError(f"cannot reach the Ray dashboard at {address}: {exc}") from None


def submit(job_path: Path, overrides: list[str], address: str, *, out: str | None = None) -> str:
    if out:
        overrides = [*overrides, f"output={out}"]
    job = load_job(job_path, overrides)
    generated = reader_class(job.reader.kind).generates_input(job.input)  # procedural inputs name no path
    for field, location in (("input", job.input), ("output", job.output)):
        if not (_is_remote_safe(location) or (field == "input" and generated)):
            raise JobConfigError(f"{job_path}: {field} {location!r} must be absolute or a URI when submitting "
                                 "to a cluster (relative paths would resolve inside the job's temp directory)")
    config = job.model_dump(mode="json", by_alias=True)
    for stage in config["stages"]:
        _refuse_checkout_paths(job_path, f"stages.{stage['name']}.config", stage["config"])
    resolved = yaml.safe_dump(config, sort_keys=False)
    entrypoint = f"python -m pipelines run {ENV_PREFIX}{JOB_CONFIG_ENV} --no-progress"
    runtime_env = {"working_dir": str(REPO), "excludes": WORKING_DIR_EXCLUDES,
                   "env_vars": {"PYTHONPATH": ".", "HF_HUB_OFFLINE": "1", JOB_CONFIG_ENV: resolved}}
    # WORKING_DIR_EXCLUDES names Ray's default excludes (.git, .venv, __pycache__) itself; left on, the
    # defaults make Ray warn about each of them on every submission.
    os.environ.setdefault("RAY_OVERRIDE_RUNTIME_ENV_DEFAULT_EXCLUDES", "")
    client = _client(address)
    deadline = time.monotonic() + AGENT_WAIT_S
    while True:
        try:
            return client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env,
                                     metadata={"job": job.name, "config_hash": job.config_hash()})
        except RuntimeError as exc:
            # A head that has just started answers 500 until its job agent is up: wait for it, briefly.
            if "No available agent" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(2)


def status(job_id: str, address: str) -> str:
    return str(_client(address).get_job_status(job_id).value)


def logs(job_id: str, address: str) -> str:
    return _client(address).get_job_logs(job_id)


def wait(job_id: str, address: str, *, timeout_s: float, until_nodes_ready: bool = False,
         poll_s: float = 1.0) -> str:
    """The job's final state; with `until_nodes_ready`, "RUNNING" as soon as every node passed its check."""
    deadline = time.monotonic() + timeout_s
    while True:
        state = status(job_id, address)
        if state in TERMINAL_STATES:
            return state
        if until_nodes_ready and NODES_READY in logs(job_id, address):
            return state
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {state} after {timeout_s:.0f} s")
        time.sleep(poll_s)


def failure_line(log: str) -> str:
    """Why a failed job failed, in one line: the last `error: ...` line `python -m pipelines` printed, else the
    log's last line (a command that never reached the CLI: no `python` on the node, a crash)."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    if errors:
        return errors[-1]
    return f"error: {lines[-1]}" if lines else "error: the job failed without output"
