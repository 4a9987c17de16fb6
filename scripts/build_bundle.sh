#!/usr/bin/env bash
# Build the lab bundle dist/maskpix/ with PyInstaller (build.spec), then run its self-tests.
#
#   scripts/build_bundle.sh              # uses the repository's .venv (pip-installs pyinstaller into it)
#   VENV=/path/to/venv scripts/build_bundle.sh
#   SKIP_SELFTEST=1 scripts/build_bundle.sh
#
# The bundle carries the torch build of that venv: the default PyPI torch on Linux is the CUDA build
# (a bundle of several GB). For CPU-only lab machines build from a venv with the CPU wheel
# (pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu), see README.
# Exit status: 0 when the build and both self-tests passed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
[ -x "$PY" ] || PY="$VENV/Scripts/python.exe"  # Windows (Git Bash)
DIST="$ROOT/dist"
WORK="$ROOT/build"
BUNDLE="$DIST/maskpix"

if [ ! -x "$PY" ]; then
    echo "no Python in $VENV: run 'make test' (or 'python3 -m venv .venv && .venv/bin/pip install -e .') first" >&2
    exit 2
fi
if ! "$PY" -c "import maskpix_desktop, torch, PySide6" >/dev/null 2>&1; then
    echo "installing MaskPix into $VENV" >&2
    "$PY" -m pip install --quiet -e "$ROOT"
fi
if ! "$PY" -c "import PyInstaller" >/dev/null 2>&1; then
    echo "installing PyInstaller into $VENV" >&2
    "$PY" -m pip install --quiet -e "$ROOT[bundle]"
fi

echo "building $BUNDLE with $("$PY" -m PyInstaller --version) ($("$PY" -c 'import torch; print("torch", torch.__version__)'))"
start=$(date +%s)
"$PY" -m PyInstaller "$ROOT/build.spec" --noconfirm --clean --distpath "$DIST" --workpath "$WORK" \
    --log-level "${PYI_LOG_LEVEL:-WARN}"
built=$(date +%s)
echo "build time: $((built - start)) s"

exe_suffix=""
[ -f "$BUNDLE/maskpix.exe" ] && exe_suffix=".exe"
status=0
if [ -z "${SKIP_SELFTEST:-}" ]; then
    echo "== maskpix --self-test (offscreen)"
    QT_QPA_PLATFORM=offscreen "$BUNDLE/maskpix$exe_suffix" --self-test || status=$?
    echo "== maskpix-cli self-test"
    QT_QPA_PLATFORM=offscreen "$BUNDLE/maskpix-cli$exe_suffix" self-test --quiet || status=$?
    echo "self-test time: $(($(date +%s) - built)) s"
fi
echo "bundle size: $(du -sh "$BUNDLE" | cut -f1)  ($BUNDLE)"
if [ "$status" -ne 0 ]; then
    echo "bundle self-test FAILED (exit $status)" >&2
fi
exit "$status"
