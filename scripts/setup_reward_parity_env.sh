#!/usr/bin/env bash
# The side environment of `make test-reward-parity`: the published human-preference packages (hpsv2,
# image-reward, hpsv3) with the stack they run on, which does not fit the main environment. The parity tests
# build each package's own model class there on tiny random weights, save its checkpoint in the published
# format and score with the package's code; the main environment converts that checkpoint and scores it too.
# Usage: scripts/setup_reward_parity_env.sh ENV_DIR
set -euo pipefail
source "$(dirname "$0")/env_common.sh"
env_dir=$1
require_python311
fresh_venv "$env_dir"
echo "building the reward-parity environment in $env_dir"
pip_install "$env_dir" -r constraints/requirements-reward-parity.txt
# Without their declared dependencies: they conflict with each other (see the requirements file).
pip_install "$env_dir" --no-deps hpsv2==1.2.0 image-reward==1.5 hpsv3==1.0.0
# hpsv2's wheel omits the BPE vocabulary its tokenizer loads at import; OpenAI's clip package ships the same
# file (the one open_clip bundles).
site=$("$env_dir/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
cp "$site/clip/bpe_simple_vocab_16e6.txt.gz" "$site/hpsv2/src/open_clip/"
"$env_dir/bin/python" -c "import hpsv2.src.open_clip, ImageReward, hpsv3" \
  || { echo "the reward-parity environment failed its import check" >&2; exit 1; }
touch "$env_dir/.complete"
