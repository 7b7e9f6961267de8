"""A two-node Ray cluster on loopback (head + worker, each its own ports and resources): an unchanged job
runs on both nodes with output equal to a local run's, and submit / status / logs work against the head."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from data_engine.demo_corpus import generate_demo_corpus
from data_engine.executor import run_job
from data_engine.shards import iter_shards, read_manifest
from pipelines.jobfile import JOBS_DIR, load_job

REPO = Path(__file__).resolve().parents[2]
DEMO_JOB = JOBS_DIR / "demo.yaml"
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cluster_env(tmp_path: Path) -> dict[str, str]:
    # The cluster's `python` must be this environment's, as the README's recipe says. RAY_ADDRESS and the
    # like point at the session's local Ray (ray.init exports them): the cluster must not inherit them.
    inherited = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    return inherited | {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(REPO),
        "RAY_AUTH_MODE": "disabled",
        # init_local_ray (the session's local Ray) turns multi-node support off in this process; a real
        # cluster needs it on.
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
    }


def agent_ports() -> list[str]:
    """Ports of a node's agents: the defaults are taken by any other Ray on the machine (the session's)."""
    return [f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
            f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}"]


def start_node(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    # --block keeps each node's processes under one process we can stop without touching other Rays.
    return subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--block", *args, *agent_ports()],
                            env=env,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)


def wait_for_nodes(gcs_address: str, count: int, env: dict[str, str], timeout: float = 240) -> None:
    probe = ("import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False); "
             "print(sum(n['Alive'] for n in ray.nodes()))")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = subprocess.run([sys.executable, "-c", probe, gcs_address], env=env, capture_output=True,
                                    text=True, timeout=120)
        except subprocess.TimeoutExpired:
            continue
        if result.returncode == 0 and result.stdout.strip().splitlines()[-1:] == [str(count)]:
            return
        time.sleep(2)
    raise AssertionError(f"cluster at {gcs_address} did not reach {count} nodes")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cluster")
    env = cluster_env(tmp)
    gcs_port, dashboard_port = free_port(), free_port()
    # Ray's unix sockets live under the temp dir; pytest's tmp paths exceed the 107-byte socket path limit.
    ray_temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    # Ray maps 127.0.0.1 to the host's interface address; other loopback addresses it takes as given.
    head = start_node(["--head", f"--port={gcs_port}", "--node-ip-address=127.0.0.2", "--num-cpus=1",
                       "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}",
                       "--resources={\"head\": 1}", f"--temp-dir={ray_temp}"], env, tmp / "head.log")
    gcs_address = f"127.0.0.2:{gcs_port}"
    worker = None
    try:
        wait_for_nodes(gcs_address, 1, env)
        worker_ports = free_port()
        worker = start_node([f"--address={gcs_address}", "--node-ip-address=127.0.0.3", "--num-cpus=1",
                             f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}",
                             f"--min-worker-port={worker_ports}", f"--max-worker-port={worker_ports + 100}",
                             "--resources={\"worker\": 1}"], env, tmp / "worker.log")
        wait_for_nodes(gcs_address, 2, env)
        yield {"gcs": gcs_address, "dashboard": f"http://127.0.0.1:{dashboard_port}", "env": env}
    finally:
        for process in (worker, head):
            if process is not None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, 9)
        shutil.rmtree(ray_temp, ignore_errors=True)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    generate_demo_corpus(root, n_procedural=16, seed=11)
    return root


def rows_by_id(out: Path) -> dict[str, dict]:
    return {row["id"]: row for _, table in iter_shards(out) for row in table.to_pylist()}


def test_unchanged_job_runs_on_both_nodes_and_matches_a_local_run(cluster, corpus, ray_local, tmp_path):
    local_out, cluster_out = tmp_path / "local", tmp_path / "cluster"
    overrides = [f"input={corpus}", "reader.shard_rows=4"]
    run_job(load_job(DEMO_JOB, overrides + [f"output={local_out}"]), progress=False)
    command = [sys.executable, "-m", "pipelines", "run", str(DEMO_JOB), "--no-progress", "--out", str(cluster_out),
               "--address", cluster["gcs"]] + [arg for o in overrides for arg in ("--set", o)]
    result = subprocess.run(command, cwd=REPO, env=cluster["env"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = read_manifest(cluster_out)
    assert len(manifest["shards_per_node"]) == 2, manifest["shards_per_node"]
    assert rows_by_id(cluster_out) == rows_by_id(local_out)


def test_submit_status_and_logs(cluster, corpus, tmp_path):
    out = tmp_path / "submitted"
    cli = [sys.executable, "-m", "pipelines"]
    submitted = subprocess.run(cli + ["submit", str(DEMO_JOB), "--address", cluster["dashboard"], "--out", str(out),
                                      "--set", f"input={corpus}", "--wait", "--timeout", "300"],
                               cwd=REPO, env=cluster["env"], capture_output=True, text=True, timeout=400)
    assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-3000:]
    job_id = submitted.stdout.splitlines()[0].strip()
    status = subprocess.run(cli + ["status", job_id, "--address", cluster["dashboard"]], cwd=REPO,
                            env=cluster["env"], capture_output=True, text=True, timeout=60)
    assert status.stdout.strip() == "SUCCEEDED"
    logs = subprocess.run(cli + ["logs", job_id, "--address", cluster["dashboard"]], cwd=REPO,
                          env=cluster["env"], capture_output=True, text=True, timeout=60)
    assert "rows written" in logs.stdout
    assert read_manifest(out)["rows_written"] == len(json.loads((corpus / "labels.json").read_text())["files"])


def test_submit_refuses_relative_output_in_one_line(cluster, corpus):
    result = subprocess.run([sys.executable, "-m", "pipelines", "submit", str(DEMO_JOB), "--address",
                             cluster["dashboard"], "--set", f"input={corpus}"], cwd=REPO, env=cluster["env"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "output 'out/demo/images' must be absolute or a URI" in result.stderr
    assert result.stderr.count("\n") == 1
