"""Atomic apply (issue 13): a project or re-run sidecar with a field the window cannot show is refused as a
whole. The window (image, mask, prompts, parameters, results, project path, title) and the user's own
project file stay as they were, and the banner names the file and the field."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from project_files import rewrite_member
from test_reliability import _busy_session, _photo

from maskpix_desktop.core import images
from maskpix_desktop.core import session as sessions
from maskpix_desktop.core.jobs import EditParams
from maskpix_desktop.ui.main_window import MainWindow

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _patched(src: Path, dst: Path, member: str, edit) -> Path:
    """A copy of project ``src`` with one JSON member rewritten as text by ``edit(dict) -> str``."""
    shutil.copyfile(src, dst)
    rewrite_member(dst, member, lambda raw: edit(json.loads(raw)).encode())
    return dst


def _with(**fields):
    def edit(data: dict) -> str:
        data.update(fields)
        return json.dumps(data)

    return edit


def _raw(key: str, text: str):
    """Put ``key`` with a raw JSON token (e.g. ``NaN``) that json.dumps would not write."""

    def edit(data: dict) -> str:
        data[key] = "@@"
        return json.dumps(data).replace('"@@"', text)

    return edit


def _image_path_123(data: dict) -> str:
    data["image"]["path"] = 123
    return json.dumps(data)


BAD_FIELDS = [
    ("feather_nan", "params.json", _raw("feather", "NaN"), "feather"),
    ("seed_abc", "params.json", _with(seed="abc"), "seed"),
    ("steps_2_5", "params.json", _with(steps=2.5), "steps"),
    ("steps_1e999", "params.json", _raw("steps", "1e999"), "steps"),
    ("instruction_5", "params.json", _with(instruction=5), "instruction"),
    ("image_path_123", "manifest.json", _image_path_123, "path"),
    ("nan_points", "prompts.json", _raw("points", "[[NaN, 3.0]]"), "points"),
]


def _state(win: MainWindow):
    return (
        win.session(),
        win.project_path,
        win.windowTitle(),
        win.modified,
        win.canvas.mask().copy(),
        win.edit_panel.seed_lock.isChecked(),
    )


def _assert_unchanged(win: MainWindow, before) -> None:
    s, project_path, title, modified, mask, lock = before
    assert sessions.sessions_equal(win.session(), s)
    np.testing.assert_array_equal(win.canvas.mask(), mask)
    assert win.project_path == project_path and win.windowTitle() == title and win.modified == modified
    assert win.edit_panel.seed_lock.isChecked() == lock


@pytest.fixture
def mine(qtbot, window, tmp_path, rng_image) -> Path:
    """The user's own project, open in the window and saved: image, prompts, mask, params, one result."""
    _busy_session(qtbot, window, _photo(tmp_path, rng_image))
    path = tmp_path / "mine.maskpix"
    assert window.write_project(path)
    return path


@pytest.fixture
def other(tmp_path, rng_image) -> Path:
    """Another valid project (a different, smaller image) to corrupt."""
    image = rng_image(32, 40, seed=9)
    mask = np.zeros((32, 40), np.uint8)
    mask[3:9, 4:12] = 255
    s = sessions.Session(
        image=image, image_name="other.png", image_path=str(tmp_path / "other.png"), points=[(4.0, 5.0)],
        labels=[1], box=(1.0, 1.0, 20.0, 20.0), mask=mask, params=EditParams("other", seed=7),
    )  # fmt: skip
    return sessions.save_project(tmp_path / "other.maskpix", s)


@pytest.mark.parametrize(("case", "member", "edit", "field"), BAD_FIELDS, ids=[c[0] for c in BAD_FIELDS])
def test_project_with_a_bad_field_changes_nothing(window, mine, other, tmp_path, case, member, edit, field):
    win = window
    before = _state(win)
    bad = _patched(other, tmp_path / f"bad-{case}.maskpix", member, edit)
    assert not win.open_project(bad)
    text = win.banner.label.text()
    assert win.banner.isVisible() and bad.name in text and field in text, text
    _assert_unchanged(win, before)
    # The next Ctrl+S writes the user's own document to the user's own file, not a mix.
    assert win.save_project()
    assert sessions.sessions_equal(sessions.load_project(mine), before[0])
    assert win.project_path == mine


def test_a_failure_while_applying_rolls_back(window, mine, other, monkeypatch):
    win = window
    before = _state(win)
    real = win.edit_panel.set_params
    calls = []

    def flaky(p):
        calls.append(p)
        if len(calls) == 1:  # the new document's parameters: fails after image and results were replaced
            raise RuntimeError("widget refused the value")
        real(p)

    monkeypatch.setattr(win.edit_panel, "set_params", flaky)
    assert not win.open_project(other)
    assert len(calls) == 2  # applied once, then the previous parameters were put back
    text = win.banner.label.text()
    assert "other.maskpix" in text and "widget refused the value" in text and "Nothing was changed" in text
    _assert_unchanged(win, before)
    assert win.results.current_result() is not None


def test_rollback_to_an_empty_window(window, other, monkeypatch):
    win = window
    real, calls = win.edit_panel.set_params, []

    def flaky(p):
        calls.append(p)
        if len(calls) == 1:
            raise RuntimeError("no")
        real(p)

    monkeypatch.setattr(win.edit_panel, "set_params", flaky)
    assert not win.open_project(other)
    assert win.canvas.image() is None and win.results.history() == [] and win.project_path is None
    assert win.windowTitle() == "MaskPix Desktop"


def _sidecar(tmp_path: Path, rng_image, params: dict) -> Path:
    image = rng_image(24, 30, seed=5)
    images.save_image(tmp_path / "x_original.png", image)
    images.save_image(tmp_path / "x_mask.png", np.full((24, 30), 255, np.uint8))
    meta = {"params": params, "files": {"original": "x_original.png", "mask": "x_mask.png"}}
    path = tmp_path / "x.json"
    path.write_text(json.dumps(meta))
    return path


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"seed": "abc"}, "seed"),
        ({"steps": 2.5}, "steps"),
        ({"steps": 5000}, "steps"),
        ({"dilate": -0.5}, "dilate"),
    ],
)
def test_rerun_sidecar_with_a_bad_field_changes_nothing(window, mine, tmp_path, rng_image, params, field):
    win = window
    before = _state(win)
    side = _sidecar(tmp_path, rng_image, {"instruction": "x", **params})
    assert not win.rerun_from_file(side)
    text = win.banner.label.text()
    assert "x.json" in text and field in text, text
    _assert_unchanged(win, before)


def test_good_project_and_sidecar_still_open(window, mine, other, tmp_path, rng_image):
    win = window
    assert win.open_project(other)
    assert win.project_path == other and win.canvas.image().shape == (32, 40, 3)
    assert win.edit_panel.params().seed == 7 and win.canvas.prompts().box == (1.0, 1.0, 20.0, 20.0)
    side = _sidecar(tmp_path, rng_image, {"instruction": "x", "seed": 11})
    assert win.rerun_from_file(side)
    assert win.edit_panel.params().seed == 11 and win.canvas.image().shape == (24, 30, 3)
