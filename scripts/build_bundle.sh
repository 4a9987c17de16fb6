#!/usr/bin/env bash
# Build the lab bundle dist/maskpix/ with PyInstaller (build.spec) from the locked versions, then run its
# self-tests.
#
#   scripts/build_bundle.sh                 # venv .venv-bundle from requirements/bundle.lock (hash-checked),
#                                           #   build, both frozen self-tests
#   scripts/build_bundle.sh --refresh-lock  # today's versions: a fresh venv from pyproject's .[bundle],
#                                           #   build, self-tests; the new lock replaces requirements/bundle.lock
#                                           #   only if the self-tests pass (else: requirements/bundle.lock.rejected)
#   VENV=/path/to/venv scripts/build_bundle.sh   # an existing venv as it is, no lock (e.g. a CPU-only torch)
#   SKIP_SELFTEST=1 scripts/build_bundle.sh      # build only (not with --refresh-lock)
#
# Also: BUNDLE_VENV (default .venv-bundle), LOCK (default requirements/bundle.lock), PYTHON (default python3).
# The bundle carries the torch build of the venv: the locked PyPI torch on Linux is the CUDA build (a bundle
# of several GB). Exit status: 0 when the build and both self-tests passed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
REFRESH=""
for arg in "$@"; do
    case "$arg" in
        --refresh-lock) REFRESH=1 ;;
        *) echo "usage: $0 [--refresh-lock]" >&2; exit 2 ;;
    esac
done
PYTHON="${PYTHON:-python3}"
LOCK="${LOCK:-$ROOT/requirements/bundle.lock}"
DIST="$ROOT/dist"
WORK="$ROOT/build"
BUNDLE="$DIST/maskpix"

# pip without the index warnings of machines whose extra index lacks a package
pip_in() { "$PY" -m pip "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
venv_python() { if [ -x "$1/bin/python" ]; then echo "$1/bin/python"; else echo "$1/Scripts/python.exe"; fi; }

if [ -n "${VENV:-}" ]; then  # unlocked: the given venv as it is
    [ -z "$REFRESH" ] || { echo "--refresh-lock builds its own venv: unset VENV" >&2; exit 2; }
    PY="$(venv_python "$VENV")"
    [ -x "$PY" ] || { echo "no Python in $VENV" >&2; exit 2; }
    "$PY" -c "import maskpix_desktop, torch, PySide6" >/dev/null 2>&1 || pip_in install --quiet -e "$ROOT"
    "$PY" -c "import PyInstaller" >/dev/null 2>&1 || pip_in install --quiet -e "$ROOT[bundle]"
    echo "WARNING: building from $VENV as it is, not from $LOCK" >&2
else
    BUNDLE_VENV="${BUNDLE_VENV:-$ROOT/.venv-bundle}"
    PY="$(venv_python "$BUNDLE_VENV")"
    here="$("$PYTHON" "$ROOT/scripts/bundle_deps.py" platform)"
    start=$(date +%s)
    if [ -n "$REFRESH" ]; then
        [ -z "${SKIP_SELFTEST:-}" ] || { echo "--refresh-lock needs the self-tests: unset SKIP_SELFTEST" >&2; exit 2; }
        echo "resolving today's versions of .[bundle] into a fresh $BUNDLE_VENV"
        rm -rf "$BUNDLE_VENV"
        "$PYTHON" -m venv "$BUNDLE_VENV"
        PY="$(venv_python "$BUNDLE_VENV")"
        pip_in install --quiet --ignore-installed --report "$BUNDLE_VENV/pip-report.json" -e "$ROOT[bundle]"
        "$PY" "$ROOT/scripts/bundle_deps.py" lock "$BUNDLE_VENV/pip-report.json" >"$LOCK.new"
        sha256sum "$LOCK.new" | cut -d' ' -f1 >"$BUNDLE_VENV/.lock-sha256"
    else
        [ -f "$LOCK" ] || { echo "no $LOCK: run $0 --refresh-lock" >&2; exit 2; }
        locked="$(sed -n 's/^# platform: //p' "$LOCK")"
        if [ "$locked" != "$here" ]; then
            echo "$LOCK is for $locked, this machine is $here: its hashes name other files." >&2
            echo "Make a lock here: LOCK=$ROOT/requirements/bundle-$here.lock $0 --refresh-lock" >&2
            exit 2
        fi
        want="$(sha256sum "$LOCK" | cut -d' ' -f1)"
        if [ "$(cat "$BUNDLE_VENV/.lock-sha256" 2>/dev/null)" != "$want" ]; then
            echo "installing $LOCK into a fresh $BUNDLE_VENV"
            rm -rf "$BUNDLE_VENV"
            "$PYTHON" -m venv "$BUNDLE_VENV"
            PY="$(venv_python "$BUNDLE_VENV")"
            # Hash-checking mode: every package of the closure must be in the lock, with a matching file.
            pip_in install --quiet --require-hashes -r "$LOCK"
            pip_in install --quiet --no-deps -e "$ROOT"
            echo "$want" >"$BUNDLE_VENV/.lock-sha256"
        fi
    fi
    "$PY" -m pip check
    echo "venv $BUNDLE_VENV ready in $(($(date +%s) - start)) s"
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
if [ -n "$REFRESH" ]; then
    if [ "$status" -eq 0 ]; then
        mv "$LOCK.new" "$LOCK"
        echo "self-tests passed: $LOCK now pins these versions (review: git diff -- $LOCK)"
    else
        mv "$LOCK.new" "$LOCK.rejected"
        echo "self-tests FAILED: $LOCK kept; the versions tried are in $LOCK.rejected" >&2
    fi
fi
if [ "$status" -ne 0 ]; then
    echo "bundle self-test FAILED (exit $status)" >&2
fi
exit "$status"
