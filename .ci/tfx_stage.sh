#!/usr/bin/env bash
# CI stage: keras-prompt as a TFX Trainer. The slowest stage.
#
# 1. Builds, or reuses from ~/.cache/keras-prompt, the Python 3.10 venv pinned
#    by requirements/tfx-py310.lock (scripts/tfx_env.sh; uv resolves nothing
#    here, it only installs the lock).
# 2. Installs this checkout into it (a wheel, --no-deps: the lock pins every
#    dependency, and a test checks install_requires admits those pins).
# 3. Runs tests/tfx there: a real LocalDagRunner pipeline CsvExampleGen ->
#    Trainer(module_file) -> Pusher on a small SST-2 CSV, the pushed
#    SavedModel queried from a TF-only process (TF 2.16, and the main stack's
#    TF when .venv exists), bad inputs failing the Trainer and pushing nothing.
# 4. Runs the tests/tfx files that need no TFX on the main stack (.venv).
#
# Env: KERAS_PROMPT_CACHE (venv cache root), MAIN_PYTHON (default
# .venv/bin/python), KERAS_PROMPT_ASSETS (default ../shared/assets).
set -euo pipefail
cd "$(dirname "$0")/.."
export KERAS_BACKEND=tensorflow TF_CPP_MIN_LOG_LEVEL=2
start=$(date +%s)
elapsed() { echo "$(( $(date +%s) - start )) s"; }

VENV=$(bash scripts/tfx_env.sh | tail -n 1)
echo "tfx stage: venv $VENV ready after $(elapsed)"

work=$(mktemp -d "${TMPDIR:-/tmp}/keras-prompt-tfx-stage.XXXXXX")
trap 'rm -rf "$work"' EXIT
# A wheel, not an editable install: the cached venv is shared by every
# checkout on this machine, and the tests must exercise the installed package.
# Built from a copy of the source files, so no build/ folder is left in the
# checkout (setuptools would package stale modules from it next time).
mkdir "$work/src"
git ls-files -z --cached --others --exclude-standard |
  tar --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -xf - -C "$work/src"
"$VENV/bin/python" -m pip wheel -q --no-deps --no-build-isolation \
  -w "$work/dist" "$work/src" >/dev/null
"$VENV/bin/python" -m pip install -q --no-deps --force-reinstall \
  "$work"/dist/keras_prompt-*.whl
echo "tfx stage: keras-prompt installed after $(elapsed)"

MAIN_PYTHON=${MAIN_PYTHON:-.venv/bin/python}
main_python=""
if [ -x "$MAIN_PYTHON" ]; then
  main_python=$(cd "$(dirname "$MAIN_PYTHON")" && pwd)/$(basename "$MAIN_PYTHON")
fi

# The venv's pytest entry point (not `python -m pytest`, which would put the
# checkout first on sys.path and test it instead of the installed wheel).
status=0
KERAS_PROMPT_TFX_REPORT="$work/figures.json" \
KERAS_PROMPT_MAIN_PYTHON="$main_python" \
  "$VENV/bin/pytest" tests/tfx -p no:cacheprovider -o addopts="" \
  --durations=5 -q -W "ignore::FutureWarning" || status=$?
if [ -f "$work/figures.json" ]; then
  echo "tfx stage: figures of the pipeline run on the small task:"
  cat "$work/figures.json"
fi
echo "tfx stage: TFX venv tests done after $(elapsed)"

if [ -n "$main_python" ]; then
  KERAS_PROMPT_TFX_TESTS=main-stack "$main_python" -m pytest tests/tfx \
    -p no:cacheprovider -o addopts="" -q || status=$?
else
  echo "tfx stage: $MAIN_PYTHON not found; main-stack run of tests/tfx skipped"
fi
echo "tfx stage: total $(elapsed)"
exit "$status"
