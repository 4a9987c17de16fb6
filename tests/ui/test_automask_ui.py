"""Auto mask in the app: button -> worker job -> proposal as prompts + mask, tau, heatmap, refine, cancel.

The real main window with the tiny models (no GroundingDINO in that folder: the auto mask falls back to
the IP2P relevance map alone and says so).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QSettings, Qt
from test_canvas import click

from maskpix_desktop.core.automask import AutoMasker, AutoMaskParams
from maskpix_desktop.core.automask import masker as automask_masker
from maskpix_desktop.core.errors import Cancelled
from maskpix_desktop.core.service import ModelChoice, ModelService
from maskpix_desktop.ui.automask_controller import proposal_prompts
from maskpix_desktop.ui.main_window import MainWindow

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

H, W = 96, 128
INSTRUCTION = "turn the dog into a cat"
LONG_SIDE = 256


@pytest.fixture
def window(tiny_window):
    return tiny_window


def _messages(win) -> list:
    seen: list = []
    win.client.message.connect(seen.append)
    return seen


def _finished(seen, task: str) -> list:
    return [m for m in seen if m.task == task and m.kind == "finished"]


def _worker_service(win) -> ModelService:
    service = win.client._worker._service  # built by the start-up load job
    assert service is not None
    return service


def _prepare(win, photo) -> np.ndarray:
    assert win.open_image(photo)
    p = win.edit_panel
    p.instruction.setText(INSTRUCTION)
    p.long_side.setCurrentIndex(p.long_side.findData(LONG_SIDE))
    return win.canvas.image()


def test_auto_mask_tau_heatmap_then_a_negative_click_refines(window, qtbot, photo, tiny_models_dir):
    win = window
    seen = _messages(win)
    image = _prepare(win, photo)
    unet_calls: list[int] = []
    handle = (
        _worker_service(win)
        .editor()
        .pipe.unet.register_forward_hook(lambda *_: unet_calls.append(threading.get_ident()))
    )
    try:
        qtbot.mouseClick(win.automask_button, Qt.MouseButton.LeftButton)
        assert win.automask_button.text() == "Cancel auto mask"
        qtbot.waitUntil(lambda: bool(_finished(seen, "automask")), timeout=60_000)
        msgs = [m for m in seen if m.task == "automask"]
        kinds = [m.kind for m in msgs]
        assert kinds[0] == "started" and kinds[-1] == "finished" and "progress" in kinds
        assert {m.stage for m in msgs if m.kind == "progress"} >= {"relevance", "sam"}
        result = msgs[-1].result
        assert win.automask_button.text() == "Auto mask"

        # No GroundingDINO in the tiny folder: the job does not fail, the relevance map proposes alone.
        assert result.source == "relevance"
        assert any("GroundingDINO" in n for n in result.notes)
        assert len(unet_calls) == 1  # one batched UNet call (K = 1 draw on CPU)
        assert threading.get_ident() not in unet_calls  # on the worker thread

        # The same proposal, computed independently on a fresh service, bit for bit.
        ref_service = ModelService(ModelChoice(models_dir=str(tiny_models_dir), device="cpu"))
        ref = AutoMasker.from_service(ref_service)
        expected = ref.run(image, INSTRUCTION, AutoMaskParams(tau=0.5, seed=1234, long_side=LONG_SIDE))
        np.testing.assert_array_equal(result.mask, expected.mask)
        np.testing.assert_allclose(result.relevance.values, expected.relevance.values)

        # Canvas: the mask is the proposal's; the prompts are its points and box; no SAM run replaced it.
        seg_before = win.client.latest_segment_id
        qtbot.wait(4 * 30 + 100)  # longer than the promptsChanged -> segment debounce
        assert win.client.latest_segment_id == seg_before
        np.testing.assert_array_equal(win.canvas.mask() > 0, result.mask)
        pr = win.canvas.prompts()
        assert pr == proposal_prompts(result)
        assert len(pr.points) == len(result.points) > 0 and set(pr.labels) == {1}
        np.testing.assert_allclose(np.array(pr.points), result.points, atol=1e-4)
        assert pr.box == pytest.approx(tuple(result.boxes[0]))
        assert len(win.canvas.point_items) == len(result.points) and win.canvas.box_item.isVisible()
        np.testing.assert_array_equal(win.document.chosen_logits, result.sam_logits)
        conf = f"{result.confidence:.2f}"
        assert win.automask_status.text() == f"Auto mask from relevance, confidence {conf}"

        # Show relevance: a heatmap item under the mask overlay, image-sized; off again.
        win.show_relevance.setChecked(True)
        assert win.canvas.has_heatmap()
        pix = win.canvas.heatmap_item.pixmap()
        assert (pix.width(), pix.height()) == (W, H)
        assert win.canvas.heatmap_item.zValue() < win.canvas.overlay_item.zValue()
        win.show_relevance.setChecked(False)
        assert not win.canvas.has_heatmap()

        # tau slider: SAM re-decodes on the worker, the UNet never runs again, no new automask job.
        n_auto = sum(m.task == "automask" and m.kind == "started" for m in seen)
        win.tau_slider.setValue(75)
        qtbot.waitUntil(lambda: bool(_finished(seen, "rethreshold")), timeout=30_000)
        qtbot.waitUntil(lambda: win.automask_result.params.tau == pytest.approx(0.75), timeout=5_000)
        moved = win.automask_result
        assert len(unet_calls) == 1
        assert sum(m.task == "automask" and m.kind == "started" for m in seen) == n_auto
        again = ref.rethreshold(image, expected, 0.75)
        np.testing.assert_array_equal(moved.mask, again.mask)
        assert not np.array_equal(moved.mask, result.mask)  # tau 0.75 keeps less of the relevance map
        np.testing.assert_array_equal(win.canvas.mask() > 0, moved.mask)
        assert win.canvas.prompts() == proposal_prompts(moved)
        assert moved.sam_logits is not None
    finally:
        handle.remove()

    # A negative click refines from the proposal: SAM gets the previous logits as mask_input.
    jobs = []
    original = win.client.segment
    win.client.segment = lambda job: (jobs.append(job), original(job))[1]
    n_seg = len(_finished(seen, "segment"))
    ys, xs = np.nonzero(moved.mask)
    far = np.argmax((xs - moved.points[:, 0].mean()) ** 2 + (ys - moved.points[:, 1].mean()) ** 2)
    x, y = int(xs[far]), int(ys[far])
    click(qtbot, win.canvas, x, y, button=Qt.MouseButton.RightButton)
    qtbot.waitUntil(lambda: len(_finished(seen, "segment")) > n_seg, timeout=30_000)
    job = jobs[-1]
    assert job.labels.tolist() == [1] * len(moved.points) + [0]
    assert job.points[-1] == pytest.approx((x, y), abs=1.0)
    assert job.box == pytest.approx(moved.boxes[0])
    np.testing.assert_array_equal(job.mask_input, moved.sam_logits)
    last = _finished(seen, "segment")[-1].result
    qtbot.waitUntil(lambda: win.candidate_list.count() == 1, timeout=5_000)
    np.testing.assert_array_equal(win.canvas.mask() > 0, last.masks[0])
    assert len(unet_calls) == 1


def test_auto_mask_needs_an_instruction(window, qtbot, photo):
    win = window
    assert win.open_image(photo)
    win.edit_panel.instruction.setText("")
    win.automask_action.trigger()
    assert win.banner.isVisible() and "instruction" in win.banner.label.text().lower()
    assert win.automasks.job == 0


def test_cancel_a_running_auto_mask(window, qtbot, photo, monkeypatch):
    """Ctrl+M starts it, the button (now "Cancel auto mask") stops it; the mask stays as it was."""
    win = window
    seen = _messages(win)
    _prepare(win, photo)

    def slow_relevance(editor, image, instruction, *, on_step=None, cancel=None, progress_total=None, **kw):
        for _ in range(400):  # ~20 s unless cancelled
            time.sleep(0.05)
            if on_step is not None:
                on_step(1, progress_total or 2, "relevance")
            if cancel is not None and cancel.is_set():
                raise Cancelled("Auto mask cancelled.")
        raise AssertionError("not cancelled")

    monkeypatch.setattr(automask_masker, "compute_relevance", slow_relevance)
    before = win.canvas.mask()
    win.automask_action.trigger()
    qtbot.waitUntil(lambda: any(m.task == "automask" and m.kind == "progress" for m in seen), timeout=30_000)
    t0 = time.perf_counter()
    qtbot.mouseClick(win.automask_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: any(m.task == "automask" and m.final for m in seen), timeout=10_000)
    assert time.perf_counter() - t0 < 5.0
    assert [m.kind for m in seen if m.task == "automask" and m.final] == ["cancelled"]
    assert win.automask_button.text() == "Auto mask"
    assert win.automask_status.text() == "Auto mask cancelled."
    assert win.automask_result is None
    np.testing.assert_array_equal(win.canvas.mask(), before)


# ------------------------------------------------------------------------------ with text grounding


@pytest.fixture(scope="module")
def grounded_models_dir(tmp_path_factory) -> Path:
    from maskpix_desktop.testing.tiny_models import make_tiny_models

    return make_tiny_models(tmp_path_factory.mktemp("tiny_grounded"), seed=0, grounding=True)


def _open_window(qtbot, tmp_path, models_dir: Path, choice: dict | None = None) -> MainWindow:
    import json

    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    if choice is not None:
        settings.setValue("models/choice", json.dumps(choice))
    win = MainWindow(models_dir=str(models_dir), device="cpu", settings=settings, autosave=False)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: "ready" in win.model_label.text(), timeout=60_000)
    return win


def test_grounding_box_becomes_the_prompt_and_refines(qtbot, tmp_path, photo, grounded_models_dir):
    win = _open_window(qtbot, tmp_path, grounded_models_dir)
    try:
        seen = _messages(win)
        _prepare(win, photo)
        win.automask_action.trigger()
        qtbot.waitUntil(lambda: bool(_finished(seen, "automask")), timeout=60_000)
        result = _finished(seen, "automask")[-1].result
        assert result.source in ("grounding", "both") and len(result.detections) == 1
        assert any(m.stage == "grounding" for m in seen if m.task == "automask" and m.kind == "progress")
        pr = win.canvas.prompts()
        assert pr.points == () and pr.box == pytest.approx(tuple(result.detections[0].box))
        np.testing.assert_array_equal(win.canvas.mask() > 0, result.mask)
        assert win.automask_status.text().startswith(f"Auto mask from {result.source}, confidence ")

        jobs = []
        original = win.client.segment
        win.client.segment = lambda job: (jobs.append(job), original(job))[1]
        x0, y0, x1, y1 = result.detections[0].box
        click(qtbot, win.canvas, (x0 + x1) / 2, (y0 + y1) / 2, button=Qt.MouseButton.RightButton)
        qtbot.waitUntil(lambda: bool(jobs) and win.candidate_list.count() == 1, timeout=30_000)
        assert jobs[-1].labels.tolist() == [0]
        np.testing.assert_array_equal(jobs[-1].mask_input, result.sam_logits)
    finally:
        win.close()


def test_a_broken_grounding_folder_falls_back_to_relevance(qtbot, tmp_path, photo, tiny_models_dir):
    broken = tmp_path / "broken-grounding"
    broken.mkdir()
    (broken / "config.json").write_text("{not json", encoding="utf-8")
    win = _open_window(qtbot, tmp_path, tiny_models_dir, {"grounding": str(broken)})
    try:
        seen = _messages(win)
        _prepare(win, photo)
        win.automask_action.trigger()
        qtbot.waitUntil(lambda: any(m.task == "automask" and m.final for m in seen), timeout=60_000)
        last = [m for m in seen if m.task == "automask"][-1]
        assert last.kind == "finished", last.error
        assert last.result.source == "relevance"
        assert any("GroundingDINO" in n for n in last.result.notes)
        assert not win.banner.isVisible()
    finally:
        win.close()
