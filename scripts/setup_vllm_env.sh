#!/usr/bin/env bash
# Build the vLLM environment in a cache outside the clone (same scheme as scripts/setup_env.sh): vLLM pins
# its own torch, so it gets its own venv; the main environment reaches it through `vllm serve` (HTTP) or a
# subprocess only. The project runs from the clone via PYTHONPATH, so the vLLM backend module is importable
# there without installing the project.
# Usage: scripts/setup_vllm_env.sh ENV_DIR
set -euo pipefail
env_dir=$1
here=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3.11}
if ! command -v "$python" >/dev/null; then python=python3; fi
if [ -f "$env_dir/.complete" ]; then exit 0; fi
rm -rf "$env_dir"
mkdir -p "$(dirname "$env_dir")"
echo "building the vLLM environment in $env_dir (about 3.5 GB)"
started=$(date +%s)
"$python" -m venv "$env_dir"
"$env_dir/bin/pip" install -q --disable-pip-version-check -r "$here/constraints/requirements-vllm.txt" 2>&1 \
  | grep -v "is ignored: it is neither a file nor a directory" || true
"$env_dir/bin/python" -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__)" \
  || { echo "the vLLM environment failed its import check" >&2; exit 1; }
echo "vLLM environment built in $(( $(date +%s) - started )) s; $(du -sh "$env_dir" | cut -f1)"
touch "$env_dir/.complete"
