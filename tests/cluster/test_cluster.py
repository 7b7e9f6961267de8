"""A two-node Ray cluster on loopback, each node started by scripts/ray_node.sh (the commands the README shows)
from a bare login environment: every shipped job, submitted to it, writes what a local run writes; nodes are
checked before any shard runs, and a failure on a node is one line naming the stage, the node and the cause.

One cluster serves the whole file. The local and the cluster runs the selected tests need are all started when the
first of them starts (`cluster_runs`), each side on a background queue taking one job at a time in the order the
tests come, so the cluster runs one job while the local Ray runs another; each test waits for its two runs."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from data_engine.demo_corpus import generate_demo_corpus
from data_engine.executor import run_job
from data_engine.ops.niqe import PARAMS_FILE_NAME, default_params_path
from data_engine.shards import iter_shards, read_manifest
from pipelines.jobfile import JOBS_DIR, load_job
from render.client import RenderEnvMissing, render_python

REPO = Path(__file__).resolve().parents[2]
NODE_SCRIPT = REPO / "scripts" / "ray_node.sh"
ENV_BIN = Path(sys.executable).parent
HEAD_IP, WORKER_IP = "127.0.0.2", "127.0.0.3"  # Ray maps 127.0.0.1 to the host's address; these it keeps
# What a node's artifacts are may be configured for this test session (make test sets them); the node script
# keeps values already set, as the README says.
ARTIFACT_VARIABLES = ("JOYAI_TINY_MODELS", "JOYAI_NIQE_PARAMS", "JOYAI_RENDER_PYTHON")
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def login_env(**extra: str) -> dict[str, str]:
    """A bare shell on a node: no project environment on PATH, no PYTHONPATH; the node script does the rest."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.environ["HOME"], "LANG": "C.UTF-8",
           "RAY_USAGE_STATS_ENABLED": "0"}
    env.update({name: os.environ[name] for name in ARTIFACT_VARIABLES if name in os.environ})
    return env | extra


def submitter_env() -> dict[str, str]:
    # RAY_ADDRESS and the like point at the session's local Ray (ray.init exports them): drop them.
    return {key: value for key, value in os.environ.items() if not key.startswith("RAY_")} | {
        "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled"}


def agent_ports() -> list[str]:
    """Ports of a node's agents: the defaults are taken by any other Ray on the machine (the session's)."""
    return [f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
            f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}"]


def start_node(command: list[str], env: dict[str, str], log: Path, gcs_address: str, nodes: int,
               attempts: int = 5) -> subprocess.Popen:
    """Start a node and wait until the cluster has `nodes` alive nodes. `ray start` gives a raylet 30 s to
    register, which a loaded 2-core machine can miss: a node that exited is started again."""
    for attempt in range(attempts):
        # --block keeps each node's processes under one process group we can stop without touching other Rays.
        process = subprocess.Popen([*command, "--block", *agent_ports()], env=env, stdout=open(log, "a"),
                                   stderr=subprocess.STDOUT, start_new_session=True)
        if wait_for_nodes(gcs_address, nodes, process):
            return process
        stop_nodes([process])
    raise AssertionError(f"node did not join {gcs_address} in {attempts} attempts; see {log}")


# One probe process per node start (importing Ray costs seconds): it connects once the GCS answers, then
# polls the node table until `count` nodes are alive.
NODES_PROBE = """
import sys, time
import ray
address, count = sys.argv[1], int(sys.argv[2])
while True:
    try:
        ray.init(address=address, log_to_driver=False)
        break
    except Exception:  # the GCS is not up yet
        time.sleep(1)
while sum(node["Alive"] for node in ray.nodes()) < count:
    time.sleep(1)
"""


def wait_for_nodes(gcs_address: str, count: int, process: subprocess.Popen, timeout: float = 240) -> bool:
    """Whether the cluster has `count` alive nodes before `timeout`, while the node's process keeps running."""
    probe = subprocess.Popen([sys.executable, "-c", NODES_PROBE, gcs_address, str(count)], env=submitter_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if probe.poll() is not None:
                return probe.returncode == 0
            time.sleep(0.5)
        return False
    finally:
        if probe.poll() is None:
            probe.kill()
        probe.wait()


def stop_nodes(processes: list[subprocess.Popen | None], grace_s: float = 3) -> None:
    """SIGTERM to every node's process group at once, SIGKILL to what is left of them after `grace_s` (a
    `ray start --block` took 30 s to leave on SIGTERM alone, and still sat the whole of a 10 s grace at each
    teardown; nothing of a test node outlives its test, and its temp dir is the test's own)."""
    nodes = [process for process in processes if process is not None]
    signal_groups(nodes, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for process in nodes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    signal_groups(nodes, signal.SIGKILL)  # the node's raylet, GCS and workers, however its start ended
    for process in nodes:
        process.wait()


def signal_groups(processes: list[subprocess.Popen], number: int) -> None:
    for process in processes:
        try:
            os.killpg(process.pid, number)
        except ProcessLookupError:  # the whole group is gone already
            pass


@dataclass
class Cluster:
    gcs: str
    dashboard: str
    worker_niqe_params: Path  # the worker node's own copy (no shared storage between these two nodes)
    # One job at a time: two jobs' actor pools can hold every CPU of the 2-CPU nodes and starve each
    # other's read tasks.
    queue: BackgroundQueue = field(default_factory=lambda: BackgroundQueue("cluster-runs"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cluster")
    gcs_port, dashboard_port = free_port(), free_port()
    # Ray's unix sockets live under the temp dir; pytest's tmp paths exceed the 107-byte socket path limit.
    ray_temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    head = worker = None
    try:
        gcs_address = f"{HEAD_IP}:{gcs_port}"
        # Two logical CPUs a node: with one, two half-CPU actors on different nodes leave no node a whole CPU
        # for the read tasks (curate_images hung that way).
        head = start_node([str(NODE_SCRIPT), "--head", f"--port={gcs_port}", f"--node-ip-address={HEAD_IP}",
                           "--num-cpus=2", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}",
                           f"--temp-dir={ray_temp}"], login_env(), tmp / "head.log", gcs_address, 1)
        worker_niqe = tmp / "worker-artifacts" / PARAMS_FILE_NAME
        worker_niqe.parent.mkdir()
        if default_params_path().is_file():
            shutil.copy(default_params_path(), worker_niqe)
        worker_ports = free_port()
        worker = start_node([str(NODE_SCRIPT), f"--address={gcs_address}", f"--node-ip-address={WORKER_IP}",
                             "--num-cpus=2", f"--node-manager-port={free_port()}",
                             f"--object-manager-port={free_port()}", f"--min-worker-port={worker_ports}",
                             f"--max-worker-port={worker_ports + 100}"],
                            login_env(JOYAI_NIQE_PARAMS=str(worker_niqe)), tmp / "worker.log", gcs_address, 2)
        started = Cluster(gcs_address, f"http://127.0.0.1:{dashboard_port}", worker_niqe)
        try:
            yield started
        finally:
            started.queue.close()
    finally:
        stop_nodes([worker, head])
        shutil.rmtree(ray_temp, ignore_errors=True)


def submit(cluster: Cluster, job: str, overrides: list[str], out: Path, *, wait: bool) -> subprocess.CompletedProcess:
    """`pipelines submit` as a user runs it (a process of its own); with `wait`, its last line is the job's state."""
    command = [sys.executable, "-m", "pipelines", "submit", str(JOBS_DIR / job), "--address", cluster.dashboard,
               "--out", str(out), *(arg for o in overrides for arg in ("--set", o)), "--timeout", "600"]
    return subprocess.run(command + (["--wait"] if wait else []), cwd=REPO, env=submitter_env(),
                          capture_output=True, text=True, timeout=900)


def pipelines_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines", *args], cwd=REPO, env=submitter_env(),
                          capture_output=True, text=True, timeout=120)


def rows_by_id(out: Path) -> dict[str, dict]:
    return {row["id"]: row for _, table in iter_shards(out) for row in table.to_pylist()}


QA_SMALL = ["input=procedural://2?seed=0", "reader.procedural.width=128", "reader.procedural.height=96",
            "reader.procedural.frames=4", "reader.index.min_visible_pixels=40", "reader.qa.min_visible_pixels=40",
            "reader.shard_rows=1"]
MULTIVIEW_SMALL = ["reader.count=2", "reader.shard_rows=1", "stages.render_multiview.config.multiview.width=48",
                   "stages.render_multiview.config.multiview.height=48",
                   "stages.render_multiview.config.multiview.n_views=3",
                   "stages.render_multiview.config.multiview.render.samples=2"]
EDIT_SMALL = ["reader.count=2", "reader.shard_rows=1", "stages.render_spatial_edit.config.spatial_edit.width=48",
              "stages.render_spatial_edit.config.spatial_edit.height=48",
              "stages.render_spatial_edit.config.spatial_edit.render.samples=2"]
LIFT_SMALL = ["input=procedural://2?seed=0", "reader.shard_rows=1", "reader.procedural.width=160",
              "reader.procedural.height=120"]
TWO_PROCEDURAL = ["input=procedural://2?seed=0", "reader.shard_rows=1"]  # a shard for each node
RENDER_JOBS = {"multiview.yaml", "spatial_edit.yaml"}
# Jobs that read other jobs' outputs: the first is the job's input; edit_data reads the rest as named sources.
UPSTREAM = {"caption.yaml": ("demo.yaml",), "cache_latents.yaml": ("caption.yaml",),
            "rebalance.yaml": ("caption.yaml",), "rewrite.yaml": ("caption.yaml",),
            "text_render_prompts.yaml": ("caption.yaml",), "cache_edit_latents.yaml": ("text_edit.yaml",),
            "edit_data.yaml": ("spatial_edit.yaml", "video_pairs.yaml")}
# The demo corpus cut down to what still exercises the image jobs (every caption costs a tiny-VLM generation):
# one procedural image of each format and both photos, which the demo keeps, and of the degraded and corrupt
# files only a few that curation or decoding rejects for different reasons.
DEGRADED_AND_CORRUPT_KEPT = ("degraded/flower_very_dark.jpg", "degraded/china_tiny.jpg",
                             "degraded/flower_letterbox.jpg", "corrupt/truncated.jpg", "corrupt/html_page.jpg")
# Jobs that read the corpus shard it by two: several shards, so the scheduler spreads them over both nodes.
CORPUS_SHARD_ROWS = 2


def small_corpus(root: Path) -> Path:
    generate_demo_corpus(root, n_procedural=3, seed=11)
    for path in [*root.glob("degraded/*"), *root.glob("corrupt/*")]:
        if path.relative_to(root).as_posix() not in DEGRADED_AND_CORRUPT_KEPT:
            path.unlink()
    return root


def runnable(job: str) -> str | None:
    """Why this machine cannot run the job (None: it can)."""
    if job in RENDER_JOBS:
        try:
            render_python()
        except RenderEnvMissing as missing:
            return f"needs the render environment: {missing}"
    return next((f"reads {upstream}, which {why}" for upstream in UPSTREAM.get(job, ())
                 if (why := runnable(upstream))), None)


def in_queue_order(jobs: list[str]) -> list[str]:
    """Jobs reading no other job's output first, then the others by depth: the order both queues take them."""
    def depth(job: str) -> int:
        return 1 + max(map(depth, UPSTREAM[job])) if job in UPSTREAM else 0
    return sorted(jobs, key=lambda job: (depth(job), job))


SHIPPED_JOBS = in_queue_order([path.name for path in JOBS_DIR.glob("*.yaml")])


class BackgroundQueue:
    """Work run one piece at a time on a thread of its own, in the order it was queued."""

    def __init__(self, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    def run(self, work: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        return self._pool.submit(work, *args, **kwargs)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class ShippedJobs:
    """Small inputs for every job in pipelines/jobs/, and each job's local run on them, run once, in the background
    (the session's local Ray), while the cluster runs its side; a job reading another job's output gets that
    job's local output."""

    corpus: Path
    root: Path
    queue: BackgroundQueue = field(default_factory=lambda: BackgroundQueue("local-runs"))
    runs: dict[str, Future] = field(default_factory=dict)

    def overrides(self, job: str) -> list[str]:
        corpus = [f"input={self.corpus}", f"reader.shard_rows={CORPUS_SHARD_ROWS}"]
        inputs = {"demo.yaml": corpus, "curate_images.yaml": corpus,
                  "spatial_qa.yaml": QA_SMALL, "multiview.yaml": MULTIVIEW_SMALL, "spatial_edit.yaml": EDIT_SMALL,
                  "lift_video.yaml": LIFT_SMALL, "text_render.yaml": TWO_PROCEDURAL, "text_edit.yaml": TWO_PROCEDURAL,
                  "video_pairs.yaml": TWO_PROCEDURAL}
        if job == "edit_data.yaml":
            spatial_edit, video_pairs = (self.local(upstream) for upstream in UPSTREAM[job])
            return [f"input={spatial_edit}", f"reader.sources=[{{adapter: spatial_edit, path: {spatial_edit}}}, "
                                             f"{{adapter: video_pairs, path: {video_pairs}}}]"]
        if job in UPSTREAM:
            return [f"input={self.local(UPSTREAM[job][0])}"]
        if job not in inputs:
            raise AssertionError(f"{job} is shipped but has no cluster test: give it small inputs here")
        return inputs[job]

    def start_local(self, job: str) -> Future:
        for upstream in UPSTREAM.get(job, ()):
            self.start_local(upstream)  # queued first, so the job's own run never waits on a later one
        if job not in self.runs:
            self.runs[job] = self.queue.run(self._run_local, job)
        return self.runs[job]

    def local(self, job: str) -> Path:
        return self.start_local(job).result()

    def _run_local(self, job: str) -> Path:
        out = self.root / job.removesuffix(".yaml")
        run_job(load_job(JOBS_DIR / job, [*self.overrides(job), f"output={out}"]), progress=False)
        return out


@pytest.fixture(scope="module")
def shipped(tmp_path_factory, ray_local):
    jobs = ShippedJobs(small_corpus(tmp_path_factory.mktemp("corpus")), tmp_path_factory.mktemp("local"))
    yield jobs
    jobs.queue.close()


def run_with_address(cluster: Cluster, job: str, overrides: list[str], out: Path) -> subprocess.CompletedProcess:
    """`pipelines run --address`: a driver outside the cluster that joins it."""
    command = [sys.executable, "-m", "pipelines", "run", str(JOBS_DIR / job), "--no-progress", "--out", str(out),
               "--address", cluster.gcs, *(arg for o in overrides for arg in ("--set", o))]
    return subprocess.run(command, cwd=REPO, env=submitter_env(), capture_output=True, text=True, timeout=600)


@dataclass
class ClusterRuns:
    """Runs of shipped jobs on the cluster, each queued once (`cluster.queue`); `result` waits for one."""

    cluster: Cluster
    shipped: ShippedJobs
    root: Path
    queued: dict[str, Future] = field(default_factory=dict)

    def out(self, key: str) -> Path:
        return self.root / key.removesuffix(".yaml").replace(" ", "-")

    def start_submission(self, job: str) -> str:
        if job not in self.queued:
            # The overrides are resolved on the queue's thread: a job reading another's output waits there for
            # that local run, which the local queue took before (its jobs come in the same order).
            self.queued[job] = self.cluster.queue.run(
                lambda: submit(self.cluster, job, self.shipped.overrides(job), self.out(job), wait=True))
        return job

    def start_run_with_address(self, job: str) -> str:
        key = f"run {job}"
        if key not in self.queued:
            self.queued[key] = self.cluster.queue.run(
                lambda: run_with_address(self.cluster, job, self.shipped.overrides(job), self.out(key)))
        return key

    def result(self, key: str) -> tuple[subprocess.CompletedProcess, Path]:
        return self.queued[key].result(), self.out(key)


@pytest.fixture(scope="module")
def cluster_runs(request, cluster, shipped, tmp_path_factory) -> ClusterRuns:
    """Starts the local and the cluster runs of every selected test of this file, each side on its own queue in
    the order the tests come, so the cluster works on one job while this process runs another locally."""
    runs = ClusterRuns(cluster, shipped, tmp_path_factory.mktemp("cluster-runs"))
    selected = [item for item in request.session.items if item.path == request.path]
    if any(item.originalname == test_unchanged_job_runs_on_both_nodes_and_matches_a_local_run.__name__
           for item in selected):
        shipped.start_local("demo.yaml")
        runs.start_run_with_address("demo.yaml")
    jobs = [item.callspec.params["job"] for item in selected
            if item.originalname == test_submitted_job_writes_what_a_local_run_writes.__name__]
    for job in in_queue_order([job for job in jobs if runnable(job) is None]):
        shipped.start_local(job)
        runs.start_submission(job)
    return runs


def test_readme_starts_every_node_with_the_node_script():
    """The test's nodes and the README's come from the same place: scripts/ray_node.sh."""
    section = (REPO / "README.md").read_text().split("## Running on a Ray cluster", 1)[1]
    recipe = section.split("```bash\n", 1)[1].split("```", 1)[0]
    starts = [line.strip() for line in recipe.splitlines()
              if ("ray start" in line or "ray_node.sh" in line) and not line.lstrip().startswith("#")]
    assert starts and all(command.startswith("scripts/ray_node.sh ") for command in starts), starts
    assert {"--head" in command for command in starts} == {True, False}


def test_unchanged_job_runs_on_both_nodes_and_matches_a_local_run(cluster_runs, shipped):
    local_out = shipped.local("demo.yaml")
    result, cluster_out = cluster_runs.result(cluster_runs.start_run_with_address("demo.yaml"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"nodes ready: 2 ({HEAD_IP}, {WORKER_IP})" in result.stderr
    manifest = read_manifest(cluster_out)
    assert len(manifest["shards_per_node"]) == 2, manifest["shards_per_node"]
    assert rows_by_id(cluster_out) == rows_by_id(local_out)


@pytest.mark.parametrize("job", SHIPPED_JOBS)
def test_submitted_job_writes_what_a_local_run_writes(cluster_runs, shipped, job):
    reason = runnable(job)
    if reason is not None:
        pytest.skip(reason)
    local_out = shipped.local(job)
    result, out = cluster_runs.result(cluster_runs.start_submission(job))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    job_id = result.stdout.splitlines()[0].strip()
    assert result.stdout.splitlines()[-1] == f"{job_id}: SUCCEEDED"  # the job's state, as `submit --wait` read it
    assert f"nodes ready: 2 ({HEAD_IP}, {WORKER_IP})" in result.stdout
    assert read_manifest(out)["rows_written"] == read_manifest(local_out)["rows_written"] > 0
    assert rows_by_id(out) == rows_by_id(local_out)


def test_an_artifact_missing_on_one_node_fails_the_submission_in_one_line(cluster, shipped, tmp_path):
    overrides = shipped.overrides("curate_images.yaml")

    def submit_while_the_worker_node_lacks_it() -> subprocess.CompletedProcess:
        hidden = cluster.worker_niqe_params.with_suffix(".hidden")
        cluster.worker_niqe_params.rename(hidden)  # the head still has its copy; the worker node has none
        try:
            return submit(cluster, "curate_images.yaml", overrides, tmp_path / "out", wait=False)
        finally:
            hidden.rename(cluster.worker_niqe_params)

    # Through the queue: no other job is on the cluster while the worker node's copy is away.
    result = cluster.queue.run(submit_while_the_worker_node_lacks_it).result()
    assert result.returncode == 1
    error, hint = result.stderr.splitlines()
    assert re.fullmatch(rf"error: stage iqa on node {re.escape(WORKER_IP)}: StageUnavailable: iqa.niqe_params: "
                        rf"NIQE pristine parameters not found at {re.escape(str(cluster.worker_niqe_params))}: .*",
                        error), error
    assert hint.endswith("FAILED; full log (worker tracebacks): python -m pipelines logs "
                         f"{result.stdout.strip()} --address {cluster.dashboard}")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("part-*.parquet"))


def test_a_stage_failing_on_a_worker_is_one_line_naming_stage_node_and_cause(cluster, shipped, tmp_path):
    not_a_model = tmp_path / "empty-model-dir"  # a directory (preflight passes) that holds no model
    not_a_model.mkdir()
    overrides = [*shipped.overrides("caption.yaml"), f"stages.caption_image.config.backend.model={not_a_model}"]
    result = cluster.queue.run(submit, cluster, "caption.yaml", overrides, tmp_path / "out", wait=True).result()
    assert result.returncode == 1
    error = result.stderr.splitlines()[0]
    assert re.fullmatch(rf"error: stage caption_image on node ({re.escape(HEAD_IP)}|{re.escape(WORKER_IP)}): "
                        rf"\w+: .*{re.escape(str(not_a_model))}.*", error), error
    assert "Traceback" not in result.stdout + result.stderr
    job_id = result.stdout.splitlines()[0].strip()
    logs = pipelines_cli("logs", job_id, "--address", cluster.dashboard).stdout
    assert logs.splitlines()[0] == error
    assert "Traceback" in logs  # the worker's traceback stays in the log


@pytest.fixture(scope="module")
def head_without_project_python(tmp_path_factory):
    """A head started the way the issue did (`.venv/bin/ray start`, the environment not activated) on a
    machine whose `python` is a bare interpreter: the job's `python` lacks the project's packages."""
    bare = Path(sys.base_prefix) / "bin" / "python3"
    probe = subprocess.run([str(bare), "-c", "import pyarrow"], capture_output=True)
    if probe.returncode == 0:
        pytest.skip(f"{bare} has pyarrow: no bare interpreter to stand for a node without the project")
    tmp = tmp_path_factory.mktemp("bare-head")
    (tmp / "bin").mkdir()
    (tmp / "bin" / "python").symlink_to(bare)
    gcs_port, dashboard_port = free_port(), free_port()
    ray_temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    head = None
    try:
        head = start_node([str(ENV_BIN / "ray"), "start", "--head", f"--port={gcs_port}",
                           f"--node-ip-address={HEAD_IP}", "--num-cpus=1", "--dashboard-host=127.0.0.1",
                           f"--dashboard-port={dashboard_port}", f"--temp-dir={ray_temp}"],
                          login_env(PATH=f"{tmp / 'bin'}:/usr/bin:/bin", RAY_AUTH_MODE="disabled"), tmp / "head.log",
                          f"{HEAD_IP}:{gcs_port}", 1)
        yield Cluster(f"{HEAD_IP}:{gcs_port}", f"http://127.0.0.1:{dashboard_port}", Path())
    finally:
        stop_nodes([head])
        shutil.rmtree(ray_temp, ignore_errors=True)


def test_a_node_python_without_the_project_is_one_line_at_submission(head_without_project_python, shipped,
                                                                     tmp_path):
    result = submit(head_without_project_python, "demo.yaml", shipped.overrides("demo.yaml"), tmp_path / "out",
                    wait=False)
    assert result.returncode == 1
    error = result.stderr.splitlines()[0]
    assert re.fullmatch(r"error: \S+/python on \S+ cannot import the project \(ModuleNotFoundError: No module "
                        r"named '\w+'\); use the project environment \(on a Ray cluster: start every node with "
                        r"scripts/ray_node.sh\)", error), error


def test_submit_refuses_relative_output_in_one_line(cluster, shipped):
    result = pipelines_cli("submit", str(JOBS_DIR / "demo.yaml"), "--address", cluster.dashboard,
                           "--set", f"input={shipped.corpus}")
    assert result.returncode == 2
    assert "output 'out/demo/images' must be absolute or a URI" in result.stderr
    assert result.stderr.count("\n") == 1


def test_submit_refuses_a_stage_file_named_inside_the_submitting_checkout(cluster, shipped):
    rules = REPO / "data_engine" / "rules" / "caption_content.yaml"  # the nodes have it, but not at this path
    result = pipelines_cli("submit", str(JOBS_DIR / "caption.yaml"), "--address", cluster.dashboard, "--out",
                           "/tmp/never-written", "--set", f"input={shipped.corpus}",
                           "--set", f"stages.caption_content_filter.config.rules_path={rules}")
    assert result.returncode == 2
    assert result.stderr == (f"error: {JOBS_DIR / 'caption.yaml'}: stages.caption_content_filter.config.rules_path "
                             f"'{rules}' is a path inside the submitting checkout, which the nodes do not have "
                             "there; name a file every node can read (README: artifacts on the nodes)\n")
