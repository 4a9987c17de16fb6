"""Training shows itself: validation images and TensorBoard scalars every N steps, resume unharmed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskpix_desktop.core.maskcond import monitor
from maskpix_desktop.core.maskcond.synthetic import SyntheticShapes
from maskpix_desktop.core.maskcond.train import TrainConfig, read_losses, train


def _cfg(base: Path, out: Path, **kw) -> TrainConfig:
    args = dict(steps=4, batch_size=4, lr=1e-3, checkpoint_every=2, cpu=True, cpu_threads=1, progress=False)
    args.update(kw)
    return TrainConfig(base=str(base), output_dir=str(out), **args)


def _scalars(run: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found = []
    for events in sorted((run / "tensorboard").glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events))
        acc.Reload()
        if tag in acc.Tags()["scalars"]:
            found += [(e.step, e.value) for e in acc.Scalars(tag)]
    return found


def test_validation_images_every_n_steps_and_tensorboard_scalars_equal_the_csv(
    tiny_ip2p_dir: Path, tmp_path: Path
):
    pytest.importorskip("tensorboard")
    run = tmp_path / "run"
    items = SyntheticShapes(6, seed=0, size=32)
    cfg = _cfg(tiny_ip2p_dir, run, log_with="tensorboard", validate_every=2, validation_items=2)
    res = train(cfg, items, resume=False)
    shots = sorted(p.name for p in (run / "validation").iterdir())
    assert shots == ["step-0000002.png", "step-0000004.png"]
    grid = np.asarray(Image.open(run / "validation" / shots[0]))
    assert grid.shape == (2 * 32, 5 * 32, 3)  # 2 items x (source, mask, with mask, without, target)
    assert np.array_equal(grid[:32, :32], items[0].image)
    assert np.array_equal(grid[32:, 128:], items[1].target)
    assert np.array_equal(grid[:32, 32:64, 0] > 127, items[0].mask)
    logged = _scalars(run, "loss")
    assert [s for s, _ in logged] == [1, 2, 3, 4]
    assert [v for _, v in logged] == pytest.approx([r["loss"] for r in res.losses], rel=1e-6)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    images = []
    for events in (run / "tensorboard").glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        images += [e.step for e in acc.Images("validation")] if "validation" in acc.Tags()["images"] else []
    assert sorted(images) == [2, 4]


def test_validation_changes_neither_the_losses_nor_the_weights(tiny_ip2p_dir: Path, tmp_path: Path):
    items = SyntheticShapes(6, seed=0, size=32)
    plain = train(_cfg(tiny_ip2p_dir, tmp_path / "plain", steps=3), items, resume=False)
    shown = train(_cfg(tiny_ip2p_dir, tmp_path / "shown", steps=3, validate_every=1), items, resume=False)
    assert [r["loss"] for r in shown.losses] == [r["loss"] for r in plain.losses]
    assert read_losses(tmp_path / "shown") == read_losses(tmp_path / "plain")
    assert len(list((tmp_path / "shown" / "validation").glob("step-*.png"))) == 3


def test_unknown_tracker_and_missing_tensorboard_are_refused(monkeypatch):
    with pytest.raises(ValueError, match="log_with"):
        monitor.check_tracker("wandb")
    assert monitor.check_tracker("") is None
    monkeypatch.setitem(__import__("sys").modules, "tensorboard", None)
    with pytest.raises(ValueError, match="pip install tensorboard"):
        monitor.check_tracker("tensorboard")


def test_tracker_config_keeps_scalars_and_strings_only():
    cfg = {"lr": 1e-4, "steps": 3, "base": "x", "cpu": True, "extra": {"a": 1}, "none": None}
    assert monitor.tracker_config(cfg) == {"lr": 1e-4, "steps": 3, "base": "x", "cpu": True}
