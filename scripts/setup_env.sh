#!/usr/bin/env bash
# Build the main Python environment in a cache outside the clone, keyed by the hash of the files that
# define it, so CI and other clones on the same machine reuse it while a fresh machine builds it from
# nothing. The project itself is not installed into it: code runs from the clone via PYTHONPATH.
# Usage: scripts/setup_env.sh ENV_DIR
set -euo pipefail
env_dir=$1
python=${PYTHON:-python3.11}
if ! command -v "$python" >/dev/null; then python=python3; fi
version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$version" != "3.11" ]; then
  echo "Python 3.11 is required (found $version at $(command -v "$python")); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
if [ -f "$env_dir/.complete" ]; then exit 0; fi
rm -rf "$env_dir"
mkdir -p "$(dirname "$env_dir")"
echo "building the main environment in $env_dir (a few minutes, about 7 GB)"
"$python" -m venv "$env_dir"
# pip, not uv/poetry: only pip takes the torch 2.14.1 / torchvision 0.29.1 wheels from the local disk.
"$env_dir/bin/pip" install -q --disable-pip-version-check -c constraints/dev.txt \
  -r constraints/requirements-main.txt 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
"$env_dir/bin/python" -c "import torch, torchvision, ray, pyarrow, transformers, diffusers, open3d, deepspeed" \
  || { echo "the main environment failed its import check" >&2; exit 1; }
touch "$env_dir/.complete"
