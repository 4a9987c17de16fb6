"""The PyInstaller lab bundle end to end: build it (or take ``$MASKPIX_BUNDLE_DIR``) and run its self-tests.

Slow (a build from the lock takes 10-15 minutes and writes several GB): skipped by default; ``make
test-all`` runs it, and CI (``scripts/ci_bundle.sh``) runs it against the bundle it built from the lock.
``MASKPIX_BUNDLE_DIR=dist/maskpix pytest -m slow tests/test_bundle.py`` checks an existing bundle only.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from maskpix_desktop.selftest import CHECK_NAMES

ROOT = Path(__file__).resolve().parents[1]
EXE = ".exe" if sys.platform == "win32" else ""

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bundle() -> Path:
    given = os.environ.get("MASKPIX_BUNDLE_DIR")
    if given:
        path = Path(given).resolve()
        if not (path / f"maskpix{EXE}").is_file():
            pytest.fail(f"MASKPIX_BUNDLE_DIR={given} holds no maskpix{EXE}")
        return path
    env = dict(os.environ, SKIP_SELFTEST="1")  # from requirements/bundle.lock, in .venv-bundle
    env.pop("VENV", None)
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build_bundle.sh")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    return ROOT / "dist" / "maskpix"


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", HOME=str(tmp_path))
    for var in ("MASKPIX_MODELS", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
        env.pop(var, None)
    return env


def _assert_all_passed(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in CHECK_NAMES:
        assert f"PASS  {name} " in proc.stdout, proc.stdout


def test_frozen_app_self_test(bundle: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(bundle / f"maskpix{EXE}"), "--self-test"],
        cwd=tmp_path,  # nothing from the repository on the path: only what the bundle carries
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    _assert_all_passed(proc)
    assert "frozen            yes" in proc.stdout


def test_frozen_cli_self_test_and_models_dir(bundle: Path, tmp_path: Path) -> None:
    env = _env(tmp_path)
    proc = subprocess.run(
        [str(bundle / f"maskpix-cli{EXE}"), "self-test", "--quiet"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    _assert_all_passed(proc)
    shared = tmp_path / "lab-models"
    listed = subprocess.run(
        [str(bundle / f"maskpix-cli{EXE}"), "models", "list"],
        cwd=tmp_path,
        env=dict(env, MASKPIX_MODELS=str(shared)),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert f"models folder: {shared}" in listed.stdout
