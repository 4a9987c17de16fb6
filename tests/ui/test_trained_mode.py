"""Mask mode ``trained``: a MaskPix mask checkpoint loaded through ``load_editor`` gets the mask.

Tiny random models only: a zero-initialised mask checkpoint (the mask channel has no effect, so the
trained edit must equal the baseline: the wiring passes the mask without changing the maths) and one
whose mask weights are non-zero (the mask then changes the edit inside, never a pixel outside).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from maskpix_desktop.cli import main
from maskpix_desktop.core import models
from maskpix_desktop.core.blend import MASK_MODES
from maskpix_desktop.core.editor import NO_MASK_INPUT, POST_STAGES, Editor
from maskpix_desktop.core.editor_loader import load_editor
from maskpix_desktop.core.errors import MaskPixError
from maskpix_desktop.core.evaluation import DEFAULT_MODES, MODES
from maskpix_desktop.core.jobs import EditParams, EditRequest
from maskpix_desktop.core.maskcond.model import mask_pipeline_from_ip2p, save_mask_checkpoint
from maskpix_desktop.testing.tiny_ip2p import build_tiny_ip2p

H, W = 64, 96
REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "resources" / "samples"


def _params(**kw: Any) -> EditParams:
    base: dict[str, Any] = {"instruction": "make it red", "steps": 3, "seed": 5, "mask_mode": "trained"}
    return EditParams(**{**base, **kw})


def _mask() -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[12:44, 20:70] = True
    return m


def _save_checkpoint(folder: Path, mask_weight: float = 0.0) -> Path:
    """A mask checkpoint grown from the tiny IP2P; ``mask_weight`` fills the mask channel's weights."""
    pipe = mask_pipeline_from_ip2p(build_tiny_ip2p(seed=0))
    if mask_weight:
        with torch.no_grad():
            pipe.unet.conv_in.weight[:, 8:] = mask_weight
    return save_mask_checkpoint(pipe, folder)


@pytest.fixture(scope="module")
def zero_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save_checkpoint(tmp_path_factory.mktemp("mask_ckpt") / "zero")


@pytest.fixture(scope="module")
def mask_editor(zero_ckpt: Path) -> Editor:
    return load_editor(str(zero_ckpt), device="cpu")


@pytest.fixture(scope="module")
def image(rng_image) -> np.ndarray:
    return rng_image(H, W, seed=21)


class _SpyPipe:
    """Forwards to the real pipeline and records the ``mask`` each call was given."""

    def __init__(self, pipe: Any):
        self._pipe = pipe
        self.masks: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pipe, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.masks.append(kwargs.get("mask", "absent"))
        return self._pipe(*args, **kwargs)


# ------------------------------------------------------------------------------------------ the editor


def test_trained_is_a_mask_mode_everywhere_modes_are_listed() -> None:
    assert "trained" in MASK_MODES and "trained" in MODES and "trained" not in DEFAULT_MODES
    assert EditParams("x", mask_mode="trained").mask_mode == "trained"


def test_project_keeps_a_trained_result_and_its_params(mask_editor, image, tmp_path: Path) -> None:
    from maskpix_desktop.core.session import Session, load_project, save_project

    params = _params()
    res = mask_editor.run(EditRequest(image, mask=_mask(), params=params))
    mask = _mask().astype(np.uint8) * 255
    session = Session(image=image, mask=mask, params=params, history=[res], current=0)
    loaded = load_project(save_project(tmp_path / "t.maskpix", session))
    assert loaded.params.mask_mode == "trained"
    assert loaded.history[0].request.params == params
    assert np.array_equal(loaded.history[0].blended, res.blended)


def test_mask_checkpoint_loads_through_editor_load_and_takes_a_mask(mask_editor, editor) -> None:
    assert mask_editor.takes_mask and mask_editor.pipe.unet.config.in_channels == 9
    assert not editor.takes_mask


def test_trained_hard_mask_leaves_every_pixel_outside_unchanged(mask_editor, image) -> None:
    m = _mask()
    res = mask_editor.run(EditRequest(image, mask=m, params=_params(feather=0.0)))
    assert np.array_equal(res.blended[~m], image[~m])
    assert np.array_equal(res.blended[m], res.edit[m])
    assert not np.array_equal(res.blended[m], image[m])


def test_zero_init_trained_edit_equals_the_baseline_and_the_pipeline_got_the_mask(
    mask_editor, image, monkeypatch
) -> None:
    spy = _SpyPipe(mask_editor.pipe)
    monkeypatch.setattr(mask_editor, "pipe", spy)
    steps: list[tuple[int, int, str]] = []
    m = _mask()
    res = mask_editor.run(
        EditRequest(image, mask=m, params=_params(feather=0.0)), on_step=lambda *a: steps.append(a)
    )
    # Two pipeline calls: the baseline without a mask ("no mask" = 0), then one with the mask.
    assert len(spy.masks) == 2 and spy.masks[0] is None
    given = spy.masks[1]
    assert isinstance(given, np.ndarray) and given.shape == (H, W) and given.dtype == np.float32
    assert np.array_equal(given > 0.5, m)  # the working size is the image size here
    assert np.array_equal(res.edit, res.baseline)  # zero-init: the mask channel changes nothing
    steps = [s for s in steps if s[2] not in POST_STAGES]  # resize / blend / seam: once each
    assert [s for *_, s in steps] == ["baseline"] * 3 + ["trained"] * 3 and steps[-1][:2] == (6, 6)


def test_trained_mask_changes_the_edit_inside_when_the_mask_weights_are_not_zero(
    tmp_path: Path, image
) -> None:
    ed = load_editor(str(_save_checkpoint(tmp_path / "hot", mask_weight=0.5)), device="cpu")
    m = _mask()
    res = ed.run(EditRequest(image, mask=m, params=_params(feather=0.0)))
    assert not np.array_equal(res.edit, res.baseline)  # the mask reached the UNet
    assert np.array_equal(res.blended[~m], image[~m])
    # The baseline is the maskless call: the same as loading the checkpoint and editing with pixel mode.
    pixel = ed.run(EditRequest(image, mask=m, params=_params(feather=0.0, mask_mode="pixel")))
    assert np.array_equal(pixel.baseline, res.baseline)


def test_trained_without_a_mask_is_the_baseline_and_an_empty_mask_the_original(mask_editor, image) -> None:
    res = mask_editor.run(EditRequest(image, mask=None, params=_params()))
    assert np.array_equal(res.blended, res.baseline)
    empty = mask_editor.run(EditRequest(image, mask=np.zeros((H, W), bool), params=_params()))
    assert np.array_equal(empty.blended, image)


def test_plain_ip2p_editor_refuses_trained_with_the_message(editor, image) -> None:
    with pytest.raises(MaskPixError) as exc:
        editor.run(EditRequest(image, mask=_mask(), params=_params()))
    assert str(exc.value) == NO_MASK_INPUT
    assert "does not take a mask" in NO_MASK_INPUT and "docs/TRAINING.md" in NO_MASK_INPUT


# ------------------------------------------------------------------------------------------ the CLI


def _trained_case(folder: Path) -> Path:
    case = (
        f'[[case]]\nname = "car-trained"\nimage = "{(SAMPLES / "car.jpg").as_posix()}"\n'
        f'mask = "{(SAMPLES / "car_mask.png").as_posix()}"\ninstruction = "make the car red"\n'
        'seed = 1\nsteps = 1\nlong_side = 64\nmask_mode = "trained"\n'
    )
    path = folder / "cases.toml"
    path.write_text(case, encoding="utf-8")
    return path


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv(models.ENV_MODELS_DIR, str(tmp_path / "no-default-models"))


def test_cli_run_trained_case_with_a_mask_checkpoint_writes_its_files(
    offline, tmp_path: Path, tiny_models_dir: Path, zero_ckpt: Path
) -> None:
    out = tmp_path / "out"
    args = ["run", str(_trained_case(tmp_path)), "--out", str(out), "--models-dir", str(tiny_models_dir)]
    assert main([*args, "--ip2p", str(zero_ckpt), "--no-clip", "--device", "cpu"]) == 0
    folder = out / "car-trained"
    for name in ("original.png", "mask.png", "baseline.png", "blended.png", "metadata.json"):
        assert (folder / name).is_file(), name
    meta = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
    assert meta["params"]["mask_mode"] == "trained"


def test_cli_run_trained_case_with_plain_ip2p_fails_naming_the_case(
    offline, tmp_path: Path, tiny_models_dir: Path, capsys
) -> None:
    out = tmp_path / "out"
    args = ["run", str(_trained_case(tmp_path)), "--out", str(out), "--models-dir", str(tiny_models_dir)]
    assert main([*args, "--no-clip", "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "case 'car-trained'" in err and "does not take a mask" in err
    assert not (out / "car-trained").exists()


def test_cli_eval_runs_the_trained_mode_beside_the_others(
    offline, tmp_path: Path, tiny_models_dir: Path, zero_ckpt: Path
) -> None:
    from maskpix_desktop.core import evaluation as ev
    from maskpix_desktop.testing.eval_data import make_magicbrush_folder

    data = make_magicbrush_folder(tmp_path / "mb")
    out = tmp_path / "eval"
    fast = ["--long-side", "64", "--steps", "1", "--threads", "1", "--device", "cpu", "--no-progress"]
    argv = ["eval", str(data), "--out", str(out), "--models-dir", str(tiny_models_dir), *fast]
    assert main([*argv, "--ip2p", str(zero_ckpt), "--modes", "baseline,pixel,trained", "--no-clip"]) == 0
    rows = ev.read_rows(out / "results.jsonl")
    assert {r["mode"] for r in rows} == {"baseline", "pixel", "trained"}
    assert all(r["status"] == "ok" for r in rows)
    assert "| trained |" in (out / "summary.md").read_text(encoding="utf-8")


def test_cli_eval_trained_with_plain_ip2p_fails_with_the_message(
    offline, tmp_path: Path, tiny_models_dir: Path, capsys
) -> None:
    from maskpix_desktop.testing.eval_data import make_magicbrush_folder

    data = make_magicbrush_folder(tmp_path / "mb")
    argv = ["eval", str(data), "--out", str(tmp_path / "eval"), "--models-dir", str(tiny_models_dir)]
    rc = main([*argv, "--device", "cpu", "--no-progress", "--modes", "trained", "--no-clip"])
    assert rc == 1 and "does not take a mask" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ the app


def test_edit_panel_trained_item_follows_the_loaded_editor(qtbot) -> None:
    from PySide6.QtCore import Qt

    from maskpix_desktop.ui.edit_panel import TRAINED_OFF_TIP, EditPanel

    panel = EditPanel()
    qtbot.addWidget(panel)
    idx = panel.mask_mode.findData("trained")
    item = panel.mask_mode.model().item(idx)
    assert idx >= 0 and not item.isEnabled() and not panel.trained_enabled()
    assert panel.mask_mode.itemData(idx, Qt.ItemDataRole.ToolTipRole) == TRAINED_OFF_TIP
    panel.set_editor_takes_mask(True)
    assert item.isEnabled() and "mask checkpoint" in panel.mask_mode.itemData(
        idx, Qt.ItemDataRole.ToolTipRole
    )
    panel.set_params(_params())  # a project's "trained" is shown and returned as it was
    assert panel.params().mask_mode == "trained"
    panel.set_editor_takes_mask(False)
    assert not item.isEnabled() and panel.params().mask_mode == "trained"


def test_window_enables_trained_after_a_mask_checkpoint_load_message(tiny_window) -> None:
    from maskpix_desktop.core.job_protocol import JobMessage, LoadResult, MessageKind, Task

    win = tiny_window
    assert not win.edit_panel.trained_enabled()  # the tiny models folder holds a plain IP2P

    def load(takes_mask: bool) -> None:
        info = LoadResult("cpu", "CPU", sam=True, ip2p=True, editor_takes_mask=takes_mask)
        win.models.on_message(JobMessage(win.models.load_job, Task.LOAD, MessageKind.FINISHED, result=info))

    load(True)
    assert win.edit_panel.trained_enabled()
    load(False)
    assert not win.edit_panel.trained_enabled()


def test_worker_load_reports_that_a_mask_checkpoint_takes_a_mask(
    qtbot, tiny_models_dir: Path, zero_ckpt: Path
) -> None:
    from maskpix_desktop.core.service import ModelChoice, ModelService
    from maskpix_desktop.ui.worker import LoadResult, ModelClient

    got: list[Any] = []
    client = ModelClient(
        lambda: ModelService(ModelChoice(models_dir=str(tiny_models_dir), ip2p=str(zero_ckpt), device="cpu"))
    )
    client.message.connect(lambda msg: got.append(msg) if msg.final else None)
    client.start()
    try:
        client.load_models(sam=False, ip2p=True, clip=False)
        qtbot.waitUntil(lambda: bool(got), timeout=60_000)
    finally:
        assert client.shutdown(10000)
    info = got[0].result
    assert isinstance(info, LoadResult), got[0].error
    assert info.ip2p and info.editor_takes_mask
