#!/usr/bin/env bash
# The Label Studio environment: Label Studio pins its own Django stack, so it gets its own venv; the main
# environment talks to it over HTTP only (tests/annotation starts `label-studio start` on 127.0.0.1).
# Usage: scripts/setup_labelstudio_env.sh ENV_DIR
set -euo pipefail
source "$(dirname "$0")/env_common.sh"
env_dir=$1
require_python311
fresh_venv "$env_dir"
echo "building the Label Studio environment in $env_dir"
pip_install "$env_dir" -r constraints/requirements-labelstudio.txt
"$env_dir/bin/python" -c "import label_studio, label_studio_sdk" \
  || { echo "the Label Studio environment failed its import check" >&2; exit 1; }
touch "$env_dir/.complete"
