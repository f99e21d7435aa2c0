#!/usr/bin/env bash
# Builds (or reuses) the Python 3.10 TFX virtualenv pinned by
# requirements/tfx-py310.lock and prints its path as the last line of stdout.
#
# Why a separate venv: TFX (tfx 1.16, ml-metadata, tfx-bsl) has no wheels for
# Python 3.11 with TF 2.21, so keras-prompt's TFX support is tested on the
# stack TFX does install on: Python 3.10, TF 2.16, keras 3.12, keras-hub 0.25.
#
# The venv is cached in $KERAS_PROMPT_CACHE/tfx-venv-<hash> (default
# ~/.cache/keras-prompt), <hash> covering the lock file, this script and the
# interpreter version, so CI runs on the same machine reuse it and any change
# to the lock builds a fresh one. pip's resolver backtracks for >20 minutes on
# TFX, so the lock is resolved and installed with uv (itself from PyPI,
# bootstrapped into the cache).
#
# Usage:
#   VENV=$(bash scripts/tfx_env.sh | tail -n 1)   # build or reuse
#   bash scripts/tfx_env.sh --compile              # re-resolve the lock
#
# Environment:
#   TFX_PYTHON          Python 3.10 interpreter (default: python3.10 on PATH,
#                       else pyenv's 3.10.x)
#   KERAS_PROMPT_CACHE  cache root (default ~/.cache/keras-prompt)
#   UV_VERSION          uv release to bootstrap (default below)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
IN_FILE="$REPO/requirements/tfx-py310.in"
LOCK_FILE="$REPO/requirements/tfx-py310.lock"
CACHE=${KERAS_PROMPT_CACHE:-$HOME/.cache/keras-prompt}
UV_VERSION=${UV_VERSION:-0.13.9}
# uv's download cache lives beside the venv (hard-linked into it), so caching
# $KERAS_PROMPT_CACHE between CI runs caches everything.
export UV_CACHE_DIR=${UV_CACHE_DIR:-$CACHE/uv-cache}
# Interpreters come from this machine, never from uv's downloads (no network
# but the package registries).
export UV_PYTHON_DOWNLOADS=never
log() { echo "tfx_env: $*" >&2; }

find_python() {
  if [ -n "${TFX_PYTHON:-}" ]; then
    echo "$TFX_PYTHON"
    return
  fi
  local candidate
  for candidate in python3.10 "$HOME"/.pyenv/versions/3.10.*/bin/python \
    /root/.pyenv/versions/3.10.*/bin/python /usr/bin/python3.10; do
    # pyenv shims exist for every version but fail for inactive ones, so
    # run the candidate rather than trusting `command -v`.
    if "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 10)' \
      >/dev/null 2>&1; then
      echo "$candidate"
      return
    fi
  done
  log "no Python 3.10 found; set TFX_PYTHON (requirements/tfx-py310.lock is"
  log "resolved for Python 3.10)."
  exit 3
}

mkdir -p "$CACHE"
UV_DIR="$CACHE/uv-$UV_VERSION"
UV="$UV_DIR/bin/uv"
(
  # Serialise concurrent bootstraps (two CI runs on one machine).
  flock 9
  if [ ! -x "$UV" ]; then
    log "bootstrapping uv $UV_VERSION into $UV_DIR"
    rm -rf "$UV_DIR"
    python3 -m venv "$UV_DIR"
    "$UV_DIR/bin/python" -m pip install -q "uv==$UV_VERSION" >&2
  fi
) 9>"$CACHE/.uv.lock"

if [ "${1:-}" = "--compile" ]; then
  log "resolving $IN_FILE for Python 3.10 (linux x86_64)"
  "$UV" pip compile --quiet --python-version 3.10 \
    --python-platform x86_64-manylinux_2_28 \
    --custom-compile-command "bash scripts/tfx_env.sh --compile" \
    "$IN_FILE" -o "$LOCK_FILE"
  log "wrote $LOCK_FILE"
  exit 0
fi

PYTHON=$(find_python)
PY_VERSION=$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
case "$PY_VERSION" in
  3.10.*) ;;
  *) log "$PYTHON is Python $PY_VERSION; the TFX lock needs 3.10."; exit 3 ;;
esac
HASH=$(cat "$LOCK_FILE" "$0" <(echo "$PY_VERSION") | sha256sum | cut -c1-12)
VENV="$CACHE/tfx-venv-$HASH"
(
  flock 9
  if [ -f "$VENV/.complete" ]; then
    log "reusing cached $VENV"
  else
    start=$(date +%s)
    log "building $VENV with $PYTHON ($PY_VERSION); cold builds download ~2 GB"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    # sync (not install): the venv holds exactly the lock, nothing stale.
    "$UV" pip sync --quiet --python "$VENV/bin/python" "$LOCK_FILE" >&2
    date -u +%FT%TZ >"$VENV/.complete"
    log "built in $(( $(date +%s) - start )) s"
    # Keep this venv and the previous one (a concurrent run of an older
    # checkout may still use it); drop older ones, ~3 GB each.
    ls -dt "$CACHE"/tfx-venv-* | tail -n +3 | while read -r old; do
      rm -rf "$old"
    done
  fi
) 9>"$CACHE/.tfx-venv.lock"
echo "$VENV"
