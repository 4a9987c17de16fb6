"""Regenerate docs/screenshots/*.png: the main states of the window at 1366x768 (offscreen Qt).

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots]

Runs the real window on tiny random-weight models (``maskpix_desktop.testing``), so the edited pixels
and the SAM candidates are noise: the screenshots show the layout and the states (start, mask with the
SAM candidate thumbnails and three images in the filmstrip, running, results with the before/after split
view beside the grid, the split view zoomed in with its divider moved, models dialog), not what real
weights produce. The mask shown is the sample's own mask, set after
the click's candidates arrived. No network, no display, no weights needed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HF_HUB_OFFLINE"] = "1"

ROOT = Path(__file__).resolve().parents[1]
SIZE = (1366, 768)
SAMPLE = "dog"
OTHERS = ("car", "person")  # queued in the filmstrip
COMPARE_AT = (440.0, 210.0)  # the split view's close-up: the dog's head (image pixels)


def _wait(app, done: Callable[[], bool], timeout_s: float = 120.0) -> None:
    end = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > end:
            raise TimeoutError("the window did not reach the expected state in time")
        app.processEvents()
        time.sleep(0.01)


def _settle(app, seconds: float = 0.3) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="maskpix-shots-"))
    os.environ["MASKPIX_DATA_DIR"] = str(tmp / "data")
    os.environ.pop("MASKPIX_MODELS", None)

    from PySide6.QtCore import QSettings

    from maskpix_desktop.core import images
    from maskpix_desktop.paths import resources_dir
    from maskpix_desktop.testing.tiny_models import make_tiny_models
    from maskpix_desktop.ui.app import create_app
    from maskpix_desktop.ui.canvas import Prompts
    from maskpix_desktop.ui.main_window import MainWindow
    from maskpix_desktop.ui.model_dialog import ModelDialog

    app = create_app()
    models_dir = make_tiny_models(tmp / "maskpix-models")
    settings = QSettings(str(tmp / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(models_dir=str(models_dir), device="cpu", settings=settings, autosave=False)
    win.resize(*SIZE)
    win.show()
    _wait(app, lambda: "ready" in win.model_label.text())
    _settle(app)

    def shot(name: str, widget=None) -> None:
        _settle(app)
        path = args.out / f"{name}.png"
        if not (widget or win).grab().save(str(path)):
            raise OSError(f"could not write {path}")
        print(path)

    shot("start")

    samples = resources_dir() / "samples"
    sample = samples / f"{SAMPLE}.jpg"
    if not win.opener.open_images([sample, *(samples / f"{n}.jpg" for n in OTHERS)], ask=False):
        raise RuntimeError(f"could not open {sample}")
    _wait(app, lambda: not win.segments.preparing())
    win.canvas.set_prompts(Prompts(points=((320.0, 290.0),), labels=(1,)))  # a click on the dog
    _wait(app, lambda: win.segments.strip.isVisible())
    win.canvas.set_mask(images.load_mask(sample.with_name(f"{SAMPLE}_mask.png")))
    win.edit_panel.instruction.setText("turn the dog into a tiger")
    shot("mask")

    win.edit_panel.steps.setValue(40)
    win.edit_panel.run_button.click()
    _wait(app, lambda: "step" in win.edit_panel.progress.format() and win.edit_panel.progress.value() >= 8)
    shot("running")
    _wait(app, lambda: win.edits.job == 0)
    win.tabs.setCurrentIndex(1)
    shot("results")  # the grid and, beside it, the before/after split view
    split = win.results.compare_view
    split.zoom(2.0)
    split.centerOn(*COMPARE_AT)
    split.set_divider_x(COMPARE_AT[0])  # the divider across the head
    shot("compare")

    os.environ.pop("HF_HUB_OFFLINE", None)  # the dialog only looks: no "offline" notice in the picture
    dialog = ModelDialog(win.choice, win, source=win.models_source)
    dialog.resize(960, 760)
    dialog.show()
    shot("models", dialog)
    dialog.close()

    win.modified = False  # nothing to save: close without the question
    win.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
