"""What a job's workers see on each Ray node, checked before any shard runs; stage failures that name the node.

On a cluster every node runs the job with its own Python and its own environment: `scripts/ray_node.sh`
starts Ray from the project environment and exports where the node's artifacts are (tiny models, NIQE
parameters, the render environment). The driver's view proves nothing about a worker's, so `check_nodes`
runs each stage's `preflight()` on every alive node, and a node whose Python cannot import the project is
named too. This module imports only the standard library at the top: it must load on such a node to say so.
"""

from __future__ import annotations

import re
import sys

# Logged by the driver once every node passed; `pipelines submit` returns when it appears in the job's log.
NODES_READY = "nodes ready:"
NODE_SCRIPT = "scripts/ray_node.sh"
NODE_CHECK_TIMEOUT_S = 600.0  # a node's first worker may have to unpack the job's working directory first


class StageSetupFailed(RuntimeError):
    """A stage could not be set up on a node (missing artifact, bad model directory); one line naming the
    stage, the node and the cause. Its cause (with the traceback) stays in the worker's log."""


def node_address() -> str:
    """This worker's Ray node address (its --node-ip-address)."""
    import ray

    return ray.util.get_node_ip_address()


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def stage_setup_failed(stage_name: str, exc: BaseException) -> StageSetupFailed:
    return StageSetupFailed(f"stage {stage_name} on node {node_address()}: {one_line(exc)}")


def check_this_node(stage_specs_json: list[str], registrations: str) -> list[str]:
    """Runs on one node: why its workers could not run these stages, one line per problem (empty: ready).
    `registrations` are the job's stage modules (`registry.job_registrations`): nodes never run the
    composition root, so the check registers what the job needs as its workers do."""
    node = node_address()
    try:
        from data_engine.job import StageSpec
        from data_engine.registry import register_json
    except ImportError as exc:
        return [f"node {node}: {sys.executable} cannot import the project ({one_line(exc)}); start the node "
                f"with {NODE_SCRIPT}, which puts the project environment first on PATH"]
    try:
        register_json(registrations)
    except ImportError as exc:
        return [f"node {node}: {sys.executable} cannot import the job's stages ({one_line(exc)})"]
    problems = []
    for spec_json in stage_specs_json:
        spec = StageSpec.model_validate_json(spec_json)
        try:
            spec.build().preflight()
        except Exception as exc:  # anything a stage's preflight raises means the stage cannot run here
            problems.append(f"stage {spec.name} on node {node}: {one_line(exc)}")
    return problems


def check_nodes(stage_specs_json: list[str], registrations: str) -> list[str]:
    """On the driver: run `check_this_node` once on every alive node; returns the nodes' addresses."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from data_engine.stage import StageUnavailable

    nodes = [node for node in ray.nodes() if node["Alive"]]
    check = ray.remote(check_this_node)
    pending = {node["NodeManagerAddress"]: check.options(
        num_cpus=0, max_retries=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False),
    ).remote(stage_specs_json, registrations) for node in nodes}
    problems: list[str] = []
    for address, ref in pending.items():
        try:
            problems += ray.get(ref, timeout=NODE_CHECK_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            problems.append(f"node {address}: no worker started within {NODE_CHECK_TIMEOUT_S:.0f} s")
        except ray.exceptions.RayError as exc:
            # The check itself could not run there: typically the node's Python lacks a package the task
            # needs to be unpickled, or the job's runtime environment failed to install.
            cause = str(exc).strip().splitlines()[-1:] or [type(exc).__name__]
            problems.append(f"node {address}: the project cannot run there ({cause[0].strip()}); start the node "
                            f"with {NODE_SCRIPT}")
    if problems:
        for problem in problems[1:]:
            print(problem, file=sys.stderr, flush=True)
        more = f" (and {len(problems) - 1} more above)" if len(problems) > 1 else ""
        raise StageUnavailable(problems[0] + more)
    return sorted(pending)


def setup_failure(exc: BaseException) -> StageSetupFailed | None:
    """The StageSetupFailed behind an error from a Ray execution, however Ray wrapped it (a task error keeps
    the exception type; an actor that died in its constructor keeps only the text)."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if type(current) is StageSetupFailed:
            return current
        found = _SETUP_FAILED_LINE.search(str(current))
        if found:
            return StageSetupFailed(found.group(1).strip())
        pending += [current.__cause__, current.__context__, getattr(current, "cause", None)]
    return None


# How a StageSetupFailed reads inside the text of the Ray error that carried it.
_SETUP_FAILED_LINE = re.compile(rf"{StageSetupFailed.__name__}: (stage \S+ on node \S+: .*)$", re.MULTILINE)
