#!/usr/bin/env bash
# Start a Ray node the way every job expects to find it (README, "Running on a Ray cluster"); every argument
# goes to `ray start`:
#   scripts/ray_node.sh --head --port=6379 --dashboard-host=0.0.0.0    # the head
#   scripts/ray_node.sh --address=HEAD:6379                            # each worker node
# The node's processes inherit this environment, and it is what a job sees there:
# - the project environment's bin/ first on PATH, so the `python` a submitted job runs is the project's;
# - where the node finds its artifacts, as absolute paths (shared storage, or the same paths built on each
#   node): JOYAI_TINY_MODELS (`make tiny-models`), JOYAI_NIQE_PARAMS (`python -m data_engine.ops.niqe
#   --fetch`), JOYAI_RENDER_PYTHON (`make render-env`). Defaults: this checkout's .cache/ and .venv-render;
#   a value already set wins. Jobs check them on every node before any shard runs.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
env_dir=${JOYAI_ENV:-$repo/.venv}
if [[ ! -x $env_dir/bin/ray ]]; then
    echo "scripts/ray_node.sh: no project environment at $env_dir (run make setup, or set JOYAI_ENV)" >&2
    exit 2
fi

export PATH="$env_dir/bin:$PATH"
export PYTHONPATH=$repo  # `pipelines run --address` drivers: the workers import this checkout
export HF_HUB_OFFLINE=1
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled}
export JOYAI_TINY_MODELS=${JOYAI_TINY_MODELS:-$repo/.cache/tiny-models}
export JOYAI_NIQE_PARAMS=${JOYAI_NIQE_PARAMS:-$repo/.cache/niqe/niqe_pris_params.npz}
export JOYAI_RENDER_PYTHON=${JOYAI_RENDER_PYTHON:-$repo/.venv-render/bin/python}
exec "$env_dir/bin/ray" start "$@"
