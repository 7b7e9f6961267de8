"""NeMo Curator beside our curation job: which of its image stages could do the Data-Juicer comparison's work
(minimum side, aspect ratio, file size, MD5 / pHash duplicates) on a CPU.

The peer environment's python lists the stage classes of `nemo_curator.stages.image` with the GPU share each
asks for when CUDA is present (without CUDA they ask for none and run on the CPU); the result records them. A figure is written only if a stage for one of those operators exists;
NeMo Curator 1.4.0 has none (its image stages are the DALI tar reader, CLIP embeddings, the aesthetic and
NSFW classifiers on those embeddings, embedding-based semantic deduplication and the writer), so the result
holds the reason in one line and no figure.

    python -m benchmarks.peers.nemo_curator --peer-env ~/.cache/joyai-envs/peer-nemo-curator-KEY
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

from benchmarks.common import write_result

NAME = "peer_nemo_curator"
# Words in a stage's name that would make it one of the compared operators.
COMPARED_OPERATORS = ("shape", "aspect", "size", "resolution", "phash", "md5", "hash", "exact")

PROBE = r"""
import dataclasses, importlib, inspect, json, pkgutil
import nemo_curator, nemo_curator.stages.image as image
from nemo_curator.stages.base import ProcessingStage
stages = {}
for info in pkgutil.walk_packages(image.__path__, image.__name__ + "."):
    try:
        module = importlib.import_module(info.name)
    except Exception as exc:
        stages[info.name] = {"import_error": f"{type(exc).__name__}: {exc}"[:200]}
        continue
    for name, cls in inspect.getmembers(module, inspect.isclass):
        if cls.__module__ != info.name or not issubclass(cls, ProcessingStage):
            continue
        fields = {f.name: f.default for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else {}
        stages[f"{info.name}.{name}"] = {"doc": (inspect.getdoc(cls) or "").split("\n")[0],
                                         "num_gpus_per_worker": fields.get("num_gpus_per_worker")}
print(json.dumps({"version": nemo_curator.__version__, "stages": stages}))
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer-env", type=Path, required=True, help="the NeMo Curator venv (scripts/setup_peer_env.sh)")
    args = parser.parse_args(argv)
    result = subprocess.run([str(args.peer_env / "bin" / "python"), "-c", PROBE], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"the NeMo Curator probe failed: {result.stderr.strip().splitlines()[-1]}")
    found = json.loads(result.stdout.strip().splitlines()[-1])
    matching = [name for name in found["stages"]
                if any(word in name.rsplit(".", 1)[-1].lower() for word in COMPARED_OPERATORS)]
    if matching:
        raise SystemExit(f"NeMo Curator {found['version']} has stages that may match the compared operators "
                         f"({', '.join(matching)}): time them against ours before writing a result")
    reason = (f"no figure: NeMo Curator {found['version']} has no image stage for the compared operators (minimum "
              f"side, aspect ratio, file size, MD5/pHash dedup): its image stages are CLIP embedding and the "
              f"aesthetic and NSFW filters (models; a GPU share each where CUDA is present), removal of the IDs its "
              f"embedding dedup finds, and DALI tar I/O")
    write_result(NAME, {}, baseline=reason, command="make bench-peers (python -m benchmarks.peers.nemo_curator)",
                 notes={"nemo_curator_version": found["version"], "image_stages": found["stages"],
                        "compared_operators": list(COMPARED_OPERATORS)})


if __name__ == "__main__":
    main()
