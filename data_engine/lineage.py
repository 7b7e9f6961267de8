"""Lineage: which outputs a job's output was made from, back to the raw input.

A job that reads another job's output (an `UpstreamShardsReader` kind) records that output's manifest in its
own, under `input.upstream`: where it was (`manifest`, an absolute path or URI), which job and which config
hash made it. Following those records from any output gives the chain of jobs back to the first one, whose
input is raw files (or a generator such as `procedural://`). A recorded hash that differs from the upstream
manifest found there now means the upstream output was remade with another configuration after this one was
written (`changed_since`), so the chain on disk no longer says exactly how these rows were made.

CLI: `python -m pipelines inspect DIR --lineage`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from data_engine.shards import MANIFEST_NAME, ShardDir, ShardDirError, read_manifest
from data_engine.storage import StorageConfig, as_location, is_storage_uri, resolve


def upstream_record(input_uri: str, storage: StorageConfig) -> dict[str, Any] | None:
    """What a manifest records of its input when that input is another job's finished output, else None."""
    if not is_storage_uri(input_uri):
        return None
    manifest_path = resolve(input_uri, storage) / MANIFEST_NAME
    if not manifest_path.is_file():
        return None
    upstream = json.loads(manifest_path.read_bytes())
    return {"manifest": str(manifest_path), "job": upstream.get("job"), "config_hash": upstream.get("config_hash"),
            "schema": upstream.get("schema")}


@dataclass(frozen=True)
class LineageLink:
    """One output of the chain, with the counts of its manifest."""

    directory: str
    manifest: dict[str, Any]
    changed_since: bool = False  # its config hash differs from what the downstream manifest recorded

    @property
    def job(self) -> str:
        return str(self.manifest.get("job"))

    @property
    def input_uri(self) -> str:
        return str((self.manifest.get("input") or {}).get("uri"))

    @property
    def upstream(self) -> dict[str, Any] | None:
        return (self.manifest.get("input") or {}).get("upstream")


def _manifest_object(directory) -> dict[str, Any]:
    manifest = read_manifest(directory)
    if not isinstance(manifest, dict):
        raise ShardDirError(f"{directory}/{MANIFEST_NAME}: not a manifest (top level is {type(manifest).__name__})")
    return manifest


def lineage(shard_dir: ShardDir) -> list[LineageLink]:
    """The output at `shard_dir` first, then each upstream output in turn, ending with the one that read raw
    input. ShardDirError when a recorded upstream manifest is gone or the records loop."""
    directory = as_location(shard_dir)
    chain = [LineageLink(str(directory), _manifest_object(directory))]
    while chain[-1].upstream:
        record = chain[-1].upstream
        manifest_uri = record.get("manifest")
        if not manifest_uri:  # written before manifests recorded where their upstream was
            raise ShardDirError(f"{chain[-1].directory}: its manifest names upstream job {record.get('job')!r} "
                                "but not where its output is; rerun it to record the lineage")
        upstream_dir = as_location(str(manifest_uri)).parent
        if any(link.directory == str(upstream_dir) for link in chain):
            raise ShardDirError(f"{upstream_dir}: lineage loops back to an output already in the chain")
        try:
            manifest = _manifest_object(upstream_dir)
        except ShardDirError as exc:
            raise ShardDirError(f"{chain[-1].directory} was made from {upstream_dir}, which is gone ({exc})") from None
        chain.append(LineageLink(str(upstream_dir), manifest,
                                 changed_since=manifest.get("config_hash") != record.get("config_hash")))
    return chain


def lineage_lines(chain: list[LineageLink]) -> list[str]:
    """The chain as text, raw input last: one line per output with its job, config hash and row counts."""
    lines = []
    for depth, link in enumerate(chain):
        manifest = link.manifest
        changed = " (remade with another config since)" if link.changed_since else ""
        lines.append(f"{'  ' * depth}{link.directory}: job {link.job}, config {str(manifest.get('config_hash'))[:12]}"
                     f"{changed}; {manifest.get('rows_in')} in, {manifest.get('rows_written')} written, "
                     f"{manifest.get('rows_accepted')} accepted")
    lines.append(f"{'  ' * len(chain)}raw input: {chain[-1].input_uri}")
    return lines


# The report's image flow (report 4.1) as funnel steps: a stage's output count where the flow names the stage
# itself, and a job's accepted rows where the flow names what the whole job decides.
STAGE_STEPS = {"decode_image": "decoded", "caption_image": "captioned"}
JOB_STEPS = {"decode_image": "curated", "caption_image": "caption-filtered", "rebalance": "selected by rebalancing",
             "cache_latents": "latents"}


@dataclass(frozen=True)
class FunnelStep:
    label: str
    rows: int
    job: str
    directory: str


def flow_funnel(chain: list[LineageLink]) -> list[FunnelStep]:
    """Rows left at each step of the flow, raw files first, read from the manifests of `chain` (as `lineage`
    returns it, newest first). A job with none of the named stages (tagging alone) adds no step."""
    raw_first = chain[::-1]
    first = raw_first[0]
    steps = [FunnelStep("raw files", first.manifest["rows_in"], first.job, first.directory)]
    for link in raw_first:
        ops = {stage["name"]: stage["op"] for stage in link.manifest.get("config", {}).get("stages", [])
               if isinstance(stage, dict) and "name" in stage and "op" in stage}
        job_step = None
        for stage in link.manifest.get("stages", []):
            op = ops.get(stage["name"], stage["name"])  # an output written without a job names its step itself
            if op in STAGE_STEPS:
                steps.append(FunnelStep(STAGE_STEPS[op], stage["rows_out"], link.job, link.directory))
            job_step = JOB_STEPS.get(op, job_step)
        if job_step is not None:
            steps.append(FunnelStep(job_step, link.manifest["rows_accepted"], link.job, link.directory))
    return steps
