"""Issue 19.8: the progress bar names every stage after the denoising steps (resize, blend, seam, metrics),
and the history records the real elapsed time of the whole job."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt

from maskpix_desktop.core.jobs import EditParams, EditRequest
from maskpix_desktop.core.pipeline import run_edit


def _masked_run(win, qtbot, **fields) -> list[str]:
    """Start a 3-step run with a mask; returns the bar's text after every edit message (live list)."""
    mask = np.zeros((96, 128), np.uint8)
    mask[20:60, 30:90] = 255
    win.canvas.set_mask(mask)
    texts: list[str] = []
    win.client.message.connect(lambda m: m.task == "edit" and texts.append(win.edit_panel.progress.format()))
    p = win.edit_panel
    p.instruction.setText("make it red")
    params = {**p.params().to_dict(), "steps": 3, "seam": "poisson", "feather": 0.0, **fields}
    p.set_params(EditParams(**{**params, "instruction": "make it red"}))
    qtbot.mouseClick(p.run_button, Qt.MouseButton.LeftButton)
    return texts


def test_progress_bar_names_every_stage_after_the_steps(tiny_window, qtbot, photo):
    win = tiny_window
    assert win.open_image(photo)
    texts = _masked_run(win, qtbot)
    qtbot.waitUntil(lambda: win.edits.job == 0, timeout=60_000)
    assert win.results.history(), texts
    stages = [t.split("…")[0] for t in texts if "…" in t and "step" in t]
    assert stages == [
        "resizing to full size",
        "blending into the photo",
        "smoothing the seam",
        "computing metrics",
    ]
    assert all(t.endswith("step 3/3") for t in texts if t.split("…")[0] in stages)


def test_history_records_the_elapsed_time_of_the_whole_job(tiny_window, qtbot, photo):
    win = tiny_window
    assert win.open_image(photo)
    finished = []
    win.client.message.connect(lambda m: m.task == "edit" and m.kind == "finished" and finished.append(m))
    _masked_run(win, qtbot)
    qtbot.waitUntil(lambda: bool(finished) and win.edits.job == 0, timeout=60_000)
    (result,) = win.results.history()
    job_s = result.timings["job_s"]
    assert job_s == finished[0].seconds and job_s >= result.timings["total_s"]
    assert win.results.history_list.item(0).text().endswith(f" · {job_s:.1f}s")


def test_editor_reports_resize_blend_and_seam_after_its_steps(editor, rng_image):
    image = rng_image(64, 80, seed=1)
    mask = np.zeros((64, 80), bool)
    mask[10:40, 20:60] = True
    params = EditParams(
        instruction="x", steps=2, mask_mode="latent", seam="poisson", long_side=64, feather=0.0
    )
    seen: list[tuple[int, int, str]] = []
    run_edit(editor, EditRequest(image, mask, params), metrics=True, progress=lambda *a: seen.append(a))
    assert [s for _, _, s in seen] == [
        "baseline",
        "baseline",
        "resize",
        "latent",
        "latent",
        "resize",
        "blend",
        "seam",
        "metrics",
    ]
    assert seen[2][:2] == (2, 4) and seen[-1][:2] == (4, 4)
