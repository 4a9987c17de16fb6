#!/usr/bin/env bash
# CI: build the lab bundle from requirements/bundle.lock in a fresh venv of its own, then run its frozen
# self-tests; exit non-zero when the build or either self-test fails. Runs on every CI run (.ci/run, after
# `make test`): any change to the app, not only to build.spec/pyproject.toml/the lock, can break the frozen
# bundle (a new lazy import, a new data file), and the whole check fits CI's time (README, Lab machines).
#
# The self-tests run through tests/test_bundle.py with the dev venv's pytest (each program from an empty
# folder with an empty HOME, so only what the bundle carries counts); without a dev venv, through
# scripts/build_bundle.sh. build/, dist/ and the bundle venv (together ~15 GB with the CUDA torch) are
# removed afterwards, pass or fail.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export BUNDLE_VENV="$ROOT/.venv-bundle"
cleanup() { rm -rf "$ROOT/build" "$ROOT/dist" "$BUNDLE_VENV"; }
trap cleanup EXIT
rm -rf "$BUNDLE_VENV"  # always installed from the lock: the check is of the lock, not of a leftover venv

start=$(date +%s)
DEV_PY="$ROOT/.venv/bin/python"
if [ -x "$DEV_PY" ] && "$DEV_PY" -c "import pytest" 2>/dev/null; then
    SKIP_SELFTEST=1 bash scripts/build_bundle.sh
    QT_QPA_PLATFORM=offscreen MASKPIX_BUNDLE_DIR="$ROOT/dist/maskpix" \
        "$DEV_PY" -m pytest -q -m slow -p no:cacheprovider tests/test_bundle.py
else
    bash scripts/build_bundle.sh
fi
echo "ci_bundle: locked bundle built and self-tested in $(($(date +%s) - start)) s"
