"""Shared pytest fixtures: tiny offline models, a loaded tiny editor, deterministic test images.

Everything expensive is session-scoped and built lazily (only when a test asks for it), so test files
that do not need models pay nothing. Keep fixtures here generic; file-specific ones live in the file.
"""

from __future__ import annotations

import os

# Before anything imports Qt or huggingface_hub (both read these at import time).
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HF_HUB_OFFLINE"] = "1"

from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def make_rng_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Deterministic ``HxWx3`` uint8 image: smooth colour ramps plus seeded noise (never constant)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    ramps = np.stack(
        [
            255.0 * xx / max(w - 1, 1),
            255.0 * yy / max(h - 1, 1),
            127.5 + 100.0 * np.sin((xx + 2 * yy + 7 * seed) / 9.0),
        ],
        axis=-1,
    )
    noisy = ramps + rng.normal(0.0, 24.0, size=(h, w, 3))
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def rng_image() -> Callable[..., np.ndarray]:
    """``rng_image(h, w, seed=0)`` -> deterministic HxWx3 uint8 image (see :func:`make_rng_image`)."""
    return make_rng_image


@pytest.fixture(scope="session")
def tiny_ip2p_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight InstructPix2Pix diffusers folder (model_index.json, unet/, vae/, ...)."""
    from maskpix_desktop.testing.tiny_ip2p import save_tiny_ip2p

    return save_tiny_ip2p(tmp_path_factory.mktemp("tiny_ip2p") / "tiny-ip2p", seed=0)


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete tiny models folder (IP2P, SAM, CLIP and the maskpix-models.json manifest)."""
    from maskpix_desktop.testing.tiny_models import make_tiny_models

    return make_tiny_models(tmp_path_factory.mktemp("tiny_models"), seed=0)


@pytest.fixture(scope="session")
def editor(tiny_ip2p_dir: Path):
    """One :class:`~maskpix_desktop.core.editor.Editor` on the tiny IP2P folder, on CPU, for the session.

    Shared: tests must not leave it modified (use ``monkeypatch`` for any patching).
    """
    from maskpix_desktop.core.editor_loader import load_editor

    return load_editor(str(tiny_ip2p_dir), device="cpu")


@pytest.fixture(scope="session", autouse=True)
def _private_data_dir(tmp_path_factory: pytest.TempPathFactory):
    """Windows built by any test autosave into a temporary folder, never the user's data folder."""
    before = os.environ.get("MASKPIX_DATA_DIR")
    os.environ["MASKPIX_DATA_DIR"] = str(tmp_path_factory.mktemp("maskpix-data"))
    yield
    if before is None:
        os.environ.pop("MASKPIX_DATA_DIR", None)
    else:
        os.environ["MASKPIX_DATA_DIR"] = before


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    """A 96x128 PNG of :func:`make_rng_image` (seed 3) for the main-window tests."""
    from maskpix_desktop.core import images

    path = tmp_path / "photo.png"
    images.save_image(path, make_rng_image(96, 128, seed=3))
    return path


@pytest.fixture
def tiny_window(qtbot, tmp_path: Path, tiny_models_dir: Path):
    """The real main window on the tiny models (loaded), settings isolated, autosave off."""
    from PySide6.QtCore import QSettings

    from maskpix_desktop.ui.main_window import MainWindow

    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(models_dir=str(tiny_models_dir), device="cpu", settings=settings, autosave=False)
    qtbot.addWidget(win)
    win.resize(1300, 850)
    win.show()
    qtbot.waitExposed(win)
    qtbot.waitUntil(lambda: "ready" in win.model_label.text(), timeout=60_000)
    yield win
    win.close()


@pytest.fixture
def window(qtbot, tmp_path: Path):
    """The real main window on the fake model service (tests/fakes.py): no models load, autosave off,
    settings isolated. Closed after the file thread's save/open/export work has finished."""
    from fakes import FakeService
    from PySide6.QtCore import QSettings

    from maskpix_desktop.ui.main_window import MainWindow

    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    win = MainWindow(settings=settings, service_factory=FakeService, load_models=False, autosave=False)
    qtbot.addWidget(win)
    win.resize(1000, 700)
    win.show()
    yield win
    qtbot.waitUntil(lambda: not win.file_jobs.busy(), timeout=120_000)
    win.close()


@pytest.fixture(autouse=True)
def _window_questions_answered(request: pytest.FixtureRequest):
    """Qt tests never block on the window's modal questions: unsaved work is discarded, a run with an
    empty mask goes ahead (tests of the questions themselves set their own answers on the window)."""
    if "qtbot" not in request.fixturenames:
        yield
        return
    from maskpix_desktop.ui.main_window import MainWindow

    mp = pytest.MonkeyPatch()
    mp.setattr(MainWindow, "ask_save_changes", staticmethod(lambda parent, action: "discard"))
    mp.setattr(MainWindow, "ask_run_without_mask", staticmethod(lambda parent: True))
    yield
    mp.undo()
