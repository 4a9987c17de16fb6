"""Sessions that lose nothing: autosave, a real process killed mid-session and restored on the next launch,
the restore question, and project files through the window (File > Save / Open project)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from fakes import FakeService
from project_files import rewrite_member
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QMessageBox
from test_reliability import _busy_session, _photo, _run_edit

from maskpix_desktop.core import images
from maskpix_desktop.core import session as sessions
from maskpix_desktop.core.errors import ProjectError
from maskpix_desktop.core.jobs import EditParams
from maskpix_desktop.ui import app as app_module
from maskpix_desktop.ui.canvas import Prompts
from maskpix_desktop.ui.main_window import MainWindow

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

H, W = 48, 64

# The first launch: the real start-up (run_app) with a photo on the command line; once SAM has answered
# the prompts, brush a stroke over its mask, type an instruction and a seed, and write down what the
# window holds. The test then waits for the autosave to hold exactly that and kills the process.
DRIVER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from PySide6.QtCore import QTimer
    from maskpix_desktop.ui.app import create_app, run_app
    from maskpix_desktop.ui.canvas import Prompts
    from maskpix_desktop.ui.main_window import MainWindow

    spec = json.loads(sys.argv[1])
    app = create_app()

    def window():
        return next(w for w in app.topLevelWidgets() if isinstance(w, MainWindow))

    def drive():
        win = window()

        def on_message(msg):
            if msg.task == "segment" and msg.kind == "finished" and msg.result is not None:
                win.client.message.disconnect(on_message)
                QTimer.singleShot(0, finish)
            elif msg.kind == "failed":
                print("FAILED", msg.error, flush=True)

        win.client.message.connect(on_message)
        win.canvas.set_prompts(Prompts(tuple(map(tuple, spec["points"])), tuple(spec["labels"]), None))

    def finish():
        win = window()
        mask = win.canvas.mask()
        mask[30:40, 5:60] = 255
        mask[40, 5:60] = 77
        win.canvas.set_mask(mask, text="stroke")
        win.edit_panel.instruction.setText(spec["instruction"])
        win.edit_panel.seed.setValue(spec["seed"])
        s = win.session()
        np.savez(spec["state"], image=s.image, mask=s.mask)
        with open(spec["state"] + ".json", "w") as fh:
            json.dump({"points": s.points, "labels": s.labels, "params": s.params.to_dict()}, fh)
        print("READY", flush=True)

    QTimer.singleShot(0, drive)
    sys.exit(run_app(spec["argv"]))
    """
)


def _isolated_env(tmp_path: Path, data: Path) -> dict[str, str]:
    home = tmp_path / "home"
    env = dict(os.environ)
    env.update(
        QT_QPA_PLATFORM="offscreen",
        HF_HUB_OFFLINE="1",
        MASKPIX_DATA_DIR=str(data),
        MASKPIX_AUTOSAVE_MS="200",
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_DATA_HOME=str(home / "data"),
        XDG_STATE_HOME=str(home / "state"),
        XDG_CACHE_HOME=str(home / "cache"),
    )
    return env


def _autosave_matches(path: Path, state: dict, arrays) -> bool:
    try:
        s = sessions.load_project(path)
    except ProjectError:
        return False  # not written yet
    return (
        s.params.instruction == state["params"]["instruction"]
        and s.params.seed == state["params"]["seed"]
        and s.mask is not None
        and np.array_equal(s.mask, arrays["mask"])
    )


def test_killed_session_is_restored_exactly(qtbot, tmp_path, rng_image, tiny_models_dir, monkeypatch):
    data = tmp_path / "data"
    photo = _photo(tmp_path, rng_image)
    state_path = tmp_path / "state.npz"
    spec = {
        "argv": [str(photo), "--models-dir", str(tiny_models_dir), "--device", "cpu", "--no-models"],
        "points": [[20.0, 15.0], [50.0, 40.0]],
        "labels": [1, 0],
        "instruction": "make the sky purple",
        "seed": 4242,
        "state": str(state_path)[: -len(".npz")],
    }
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    proc = subprocess.Popen(
        [sys.executable, str(script), json.dumps(spec)],
        env=_isolated_env(tmp_path, data),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    autosave = data / "autosave" / "session.maskpix"
    lock = data / "autosave" / "session.lock"
    try:
        deadline = time.monotonic() + 90
        while not (state_path.exists() and Path(spec["state"] + ".json").exists()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the app never got ready"
            time.sleep(0.1)
        time.sleep(0.1)
        state = json.loads(Path(spec["state"] + ".json").read_text())
        arrays = dict(np.load(state_path))
        while not _autosave_matches(autosave, state, arrays):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the autosave never caught up"
            time.sleep(0.1)
        assert lock.exists()
    finally:
        proc.kill()  # SIGKILL on POSIX (no handler, no atexit, no clean-up), TerminateProcess on Windows
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == (-signal.SIGKILL if os.name == "posix" else 1)
    assert "FAILED" not in err and "Traceback" not in err, err
    assert lock.exists() and autosave.exists()  # a kill leaves the marker behind

    # The second launch: the same start-up path, the restore question answered yes by the environment.
    monkeypatch.setenv("MASKPIX_DATA_DIR", str(data))
    monkeypatch.setenv("MASKPIX_RESTORE", "yes")
    args = app_module.parse_args(["--models-dir", str(tiny_models_dir), "--device", "cpu", "--no-models"])
    settings = QSettings(str(tmp_path / "second.ini"), QSettings.Format.IniFormat)
    win = app_module.build_window(args, settings=settings)
    qtbot.addWidget(win)
    try:
        np.testing.assert_array_equal(win.canvas.image(), arrays["image"])
        np.testing.assert_array_equal(win.canvas.image(), images.load_image(photo))
        prompts = win.canvas.prompts()
        assert [list(p) for p in prompts.points] == state["points"] and list(prompts.labels) == [1, 0]
        assert win.edit_panel.params() == EditParams.from_dict(state["params"])
        assert win.edit_panel.instruction.text() == "make the sky purple"
        assert "(recovered)" in win.windowTitle() and win.image_path == photo
        qtbot.wait(300)  # SAM is not re-run over the restored mask
        np.testing.assert_array_equal(win.canvas.mask(), arrays["mask"])
        assert sessions.find_recoverable(data / "autosave") == []
        # The restored session autosaves in its turn; a clean exit removes the marker.
        win.autosave_now(wait=True)
        assert lock.exists() and sessions.sessions_equal(win.session(), sessions.load_project(autosave))
    finally:
        win.close()
    assert not lock.exists() and autosave.exists()


def _crashed_autosave(folder: Path, s: sessions.Session) -> Path:
    saver = sessions.Autosaver(folder)
    saver.save_now(s)
    os.close(saver._fd)  # what a kill does: the OS drops the lock, the marker file stays
    saver._fd = None
    return saver.path


@pytest.fixture
def crashed(tmp_path, rng_image, monkeypatch) -> tuple[Path, sessions.Session]:
    data = tmp_path / "data"
    monkeypatch.setenv("MASKPIX_DATA_DIR", str(data))
    monkeypatch.delenv("MASKPIX_RESTORE", raising=False)
    image = rng_image(H, W, seed=8)
    mask = np.zeros((H, W), np.uint8)
    mask[4:20, 6:30] = 255
    s = sessions.Session(
        image=image, image_name="beach.png", points=[(10.0, 12.0)], labels=[1], mask=mask,
        params=EditParams("add a boat", seed=99),
    )  # fmt: skip
    return _crashed_autosave(data / "autosave", s), s


def _launch(qtbot, tmp_path, ask=None, image: str | None = None) -> MainWindow:
    argv = ["--no-models", "--device", "cpu"] + ([image] if image else [])
    settings = QSettings(str(tmp_path / "launch.ini"), QSettings.Format.IniFormat)
    win = app_module.build_window(
        app_module.parse_args(argv), ask_restore=ask, settings=settings, service_factory=FakeService
    )
    qtbot.addWidget(win)
    return win


def test_restore_question_yes(qtbot, tmp_path, crashed, monkeypatch):
    path, s = crashed
    asked = []
    monkeypatch.setattr(
        QMessageBox, "question", lambda *a, **k: asked.append(a[2]) or QMessageBox.StandardButton.Yes
    )
    win = _launch(qtbot, tmp_path)
    assert len(asked) == 1 and "did not close cleanly" in asked[0] and "beach.png" in asked[0]
    assert sessions.sessions_equal(win.session(), s)
    win.close()


def test_restore_declined_keeps_a_copy(qtbot, tmp_path, crashed, rng_image):
    path, s = crashed
    photo = _photo(tmp_path, rng_image, seed=1)
    win = _launch(qtbot, tmp_path, ask=lambda w, text: False, image=str(photo))
    np.testing.assert_array_equal(win.canvas.image(), images.load_image(photo))  # the argument opens
    assert not path.with_suffix(".lock").exists()
    kept = path.with_name("previous.maskpix")
    assert sessions.sessions_equal(sessions.load_project(kept), s)
    win.close()
    again = _launch(qtbot, tmp_path, ask=lambda w, text: pytest.fail("asked twice"))
    again.close()


def test_restored_session_wins_over_the_command_line_image(qtbot, tmp_path, crashed, rng_image):
    path, s = crashed
    photo = _photo(tmp_path, rng_image, seed=1)
    win = _launch(qtbot, tmp_path, ask=lambda w, text: True, image=str(photo))
    assert sessions.sessions_equal(win.session(), s)
    assert "was not opened" in win.banner.label.text()
    win.close()


def test_unreadable_autosave_is_explained_and_kept(qtbot, tmp_path, crashed):
    path, _ = crashed
    path.write_bytes(path.read_bytes()[:100])
    win = _launch(qtbot, tmp_path, ask=lambda w, text: True)
    assert win.banner.isVisible() and "damaged" in win.banner.label.text()
    assert win.canvas.image() is None
    assert list(path.parent.glob("unreadable-*.maskpix")) and not path.with_suffix(".lock").exists()
    win.close()


def test_nothing_to_offer_after_a_clean_exit(qtbot, tmp_path, monkeypatch, rng_image):
    monkeypatch.setenv("MASKPIX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MASKPIX_AUTOSAVE_MS", "50")
    win = _launch(qtbot, tmp_path, ask=lambda w, text: pytest.fail("nothing to restore"))
    assert win.open_image(_photo(tmp_path, rng_image))
    qtbot.waitUntil(lambda: win.autosaver.saves > 0, timeout=10_000)  # debounced autosave
    assert (tmp_path / "data" / "autosave" / "session.lock").exists()
    win.close()
    assert not (tmp_path / "data" / "autosave" / "session.lock").exists()
    again = _launch(qtbot, tmp_path, ask=lambda w, text: pytest.fail("nothing to restore"))
    again.close()


def test_autosave_follows_every_kind_of_change(qtbot, tmp_path, rng_image):
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    win = MainWindow(
        settings=settings, service_factory=FakeService, load_models=False, autosave_dir=tmp_path / "auto"
    )
    qtbot.addWidget(win)
    win.autosaves.timer.setInterval(20)
    win.show()
    saved = tmp_path / "auto" / "session.maskpix"

    def autosaved():
        win.autosaver.flush(10)
        return sessions.load_project(saved)

    assert win.open_image(_photo(tmp_path, rng_image))
    qtbot.waitUntil(lambda: saved.exists(), timeout=5_000)
    steps = [
        (  # the prompts, then SAM's mask (the fake answers with a square around the point)
            lambda: win.canvas.set_prompts(Prompts(((5.0, 6.0),), (1,))),
            lambda s: s.points == [(5.0, 6.0)] and s.mask[6, 5] == 255,
        ),
        (lambda: win.canvas.apply_mask_op("invert"), lambda s: s.mask[0, -1] == 255),
        (lambda: win.edit_panel.instruction.setText("snow"), lambda s: s.params.instruction == "snow"),
        (lambda: win.edit_panel.feather.setValue(3.5), lambda s: s.params.feather == 3.5),
        (lambda: _run_edit(qtbot, win, "snow"), lambda s: len(s.history) == 1),
    ]
    for change, check in steps:
        change()
        qtbot.waitUntil(lambda c=check: c(autosaved()), timeout=10_000)
        assert sessions.sessions_equal(autosaved(), win.session())
    win.close()


def test_save_and_open_project_in_the_window(qtbot, tmp_path, rng_image, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    win = MainWindow(settings=settings, service_factory=FakeService, load_models=False, autosave=False)
    qtbot.addWidget(win)
    win.show()
    _busy_session(qtbot, win, _photo(tmp_path, rng_image))
    before = win.session()
    target = tmp_path / "trip"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    assert win.save_project()  # first save asks where
    saved = tmp_path / "trip.maskpix"
    assert win.project_path == saved and not win.modified and win.windowTitle().startswith("trip.maskpix")
    win.edit_panel.instruction.setText("changed")
    assert win.modified and "trip.maskpix *" in win.windowTitle()
    assert win.save_project()  # then saves in place
    assert sessions.load_project(saved).params.instruction == "changed"
    win.edit_panel.instruction.setText(before.params.instruction)
    win.write_project(saved)
    win.close()

    other = MainWindow(settings=settings, service_factory=FakeService, load_models=False, autosave=False)
    qtbot.addWidget(other)
    other.show()
    assert other.open_project(saved)
    after = other.session()
    assert sessions.sessions_equal(before, after)
    assert other.results.current_result() is not None and other.results.views["blended"].has_image()
    # A project made by a newer MaskPix is refused with the reason, and the session stays as it was.
    newer = tmp_path / "newer.maskpix"
    sessions.save_project(newer, sessions.Session())
    rewrite_member(newer, "manifest.json", lambda raw: json.dumps({**json.loads(raw), "version": 2}).encode())
    assert not other.open_image(newer)  # .maskpix files go to open_project
    assert "newer MaskPix (format 2); this version reads format 1" in other.banner.label.text()
    assert sessions.sessions_equal(after, other.session())
    other.close()
