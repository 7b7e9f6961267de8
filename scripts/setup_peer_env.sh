#!/usr/bin/env bash
# A peer system's environment for `make bench-peers` (benchmarks/peers/): each peer pins its own stack, so
# each gets its own venv in the cache and the main environment never sees it. The benchmark runs the peer's
# side in that venv's python and ours in the main environment, on the same inputs and cores.
# Usage: scripts/setup_peer_env.sh PEER ENV_DIR   (PEER: data-juicer | trl | nemo-curator; the packages are
# constraints/requirements-peer-PEER.txt, the import check below)
set -euo pipefail
source "$(dirname "$0")/env_common.sh"
peer=$1
env_dir=$2
case "$peer" in
  data-juicer) import_check="import data_juicer, aiohttp; from data_juicer.ops.filter import ImageShapeFilter" ;;
  trl) import_check="import trl, torch; from trl import SFTTrainer" ;;
  nemo-curator) import_check="import nemo_curator" ;;
  *) echo "unknown peer '$peer' (known: data-juicer, trl, nemo-curator)" >&2; exit 1 ;;
esac
require_python311
fresh_venv "$env_dir"
echo "building the $peer peer environment in $env_dir"
pip_install "$env_dir" -r "constraints/requirements-peer-$peer.txt"
"$env_dir/bin/python" -c "$import_check" || { echo "the $peer environment failed its import check" >&2; exit 1; }
touch "$env_dir/.complete"
