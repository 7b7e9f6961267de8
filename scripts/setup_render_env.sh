#!/usr/bin/env bash
# The render environment: bpy 5.0.1 pins numpy<2, so render/ workers run in their own venv.
# Usage: scripts/setup_render_env.sh ENV_DIR
set -euo pipefail
source "$(dirname "$0")/env_common.sh"
env_dir=$1
require_python311
fresh_venv "$env_dir"
echo "building the render environment in $env_dir (about a minute, about 1 GB)"
pip_install "$env_dir" -r constraints/requirements-render.txt
"$env_dir/bin/python" -c "import bpy, OpenEXR, numpy, PIL; assert numpy.__version__ < '2'" \
  || { echo "the render environment failed its import check" >&2; exit 1; }
touch "$env_dir/.complete"
