# Sourced by scripts/setup_*_env.sh. Environments live in a cache outside the clone, keyed by the caller
# (the Makefile) with a hash of the files that define them, so CI and other clones on the same machine reuse
# them while a fresh machine builds them from nothing. pip only: uv and poetry skip the local torch wheels.

# Sets $python to a Python 3.11 interpreter or exits with the reason.
require_python311() {
  python=${PYTHON:-python3.11}
  command -v "$python" >/dev/null || python=python3
  local version
  version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  if [ "$version" != "3.11" ]; then
    echo "Python 3.11 is required (found $version at $(command -v "$python")); set PYTHON=/path/to/python3.11" >&2
    exit 1
  fi
}

# Exits 0 when $1 is already complete; otherwise creates a fresh venv there.
fresh_venv() {
  local env_dir=$1
  [ -f "$env_dir/.complete" ] && exit 0
  rm -rf "$env_dir"
  mkdir -p "$(dirname "$env_dir")"
  "$python" -m venv "$env_dir"
}

# pip install into the venv at $1, without the noise of the registry mirror's missing-folder warnings.
pip_install() {
  local env_dir=$1
  shift
  "$env_dir/bin/pip" install -q --disable-pip-version-check "$@" 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" || true
}
