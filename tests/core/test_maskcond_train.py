"""Training the mask UNet with accelerate on CPU: loss falls, exact resume, checkpoints, augmentations."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from maskpix_desktop.core.maskcond import augment
from maskpix_desktop.core.maskcond.data import sample_indices, step_generator
from maskpix_desktop.core.maskcond.model import is_mask_checkpoint, load_mask_pipeline
from maskpix_desktop.core.maskcond.synthetic import SyntheticShapes
from maskpix_desktop.core.maskcond.train import TrainConfig, checkpoints, loss_drop, read_losses, train


def _cfg(base: Path, out: Path, **kw) -> TrainConfig:
    args = dict(steps=6, batch_size=4, lr=1e-3, checkpoint_every=3, cpu=True, cpu_threads=1, progress=False)
    args.update(kw)
    return TrainConfig(base=str(base), output_dir=str(out), **args)


def test_loss_falls_over_30_steps_on_the_synthetic_task(tiny_ip2p_dir: Path, tmp_path: Path):
    cfg = _cfg(
        tiny_ip2p_dir, tmp_path / "run", steps=30, batch_size=8, checkpoint_every=10, keep_checkpoints=2
    )
    res = train(cfg, SyntheticShapes(32, seed=0), resume=False)
    assert len(res.losses) == 30 and loss_drop(res.losses) < 0.7
    assert read_losses(tmp_path / "run") == res.losses  # floats round-trip exactly
    assert [c.name for c in checkpoints(tmp_path / "run")] == ["step-0000020", "step-0000030"]  # pruned
    assert is_mask_checkpoint(res.final_dir)
    pipe = load_mask_pipeline(res.final_dir)
    assert pipe.unet.conv_in.weight[:, 8].abs().sum() > 0  # the mask weights were trained
    assert pipe.vae.config.scaling_factor == pytest.approx(res.scaling_factor)


def test_killed_and_resumed_run_logs_the_same_losses_as_an_uninterrupted_one(tiny_ip2p_dir: Path, tmp_path):
    items = SyntheticShapes(12, seed=1)
    kw = dict(grad_accum=2, ema_decay=0.9)
    whole = train(_cfg(tiny_ip2p_dir, tmp_path / "whole", **kw), items, resume=False)
    # "Killed" after step 5: the checkpoint at 3 survives, steps 4-5 are in the CSV but not in a checkpoint.
    train(_cfg(tiny_ip2p_dir, tmp_path / "cut", **kw), items, resume=False, stop_after=5)
    assert [c.name for c in checkpoints(tmp_path / "cut")] == ["step-0000003"]
    assert len(read_losses(tmp_path / "cut")) == 5
    resumed = train(_cfg(tiny_ip2p_dir, tmp_path / "cut", **kw), items, resume=True)
    assert [r["loss"] for r in resumed.losses] == [r["loss"] for r in whole.losses]  # bit for bit
    assert read_losses(tmp_path / "cut") == read_losses(tmp_path / "whole")
    a = load_mask_pipeline(whole.final_dir).unet.state_dict()
    b = load_mask_pipeline(resumed.final_dir).unet.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_half_written_checkpoints_are_ignored(tmp_path: Path):
    root = tmp_path / "checkpoints"
    for name, complete in [("step-0000002", True), ("step-0000004", True), ("step-0000006.tmp", True)]:
        (root / name).mkdir(parents=True)
        if complete:
            (root / name / "train_state.json").write_text(json.dumps({"step": int(name[5:12])}))
    (root / "step-0000008").mkdir()  # no train_state.json: killed mid-write
    assert [c.name for c in checkpoints(tmp_path)] == ["step-0000002", "step-0000004"]


def test_plain_conditioning_trains_an_8_channel_unet(tiny_ip2p_dir: Path, tmp_path: Path):
    res = train(_cfg(tiny_ip2p_dir, tmp_path / "plain", steps=2, conditioning="none"), SyntheticShapes(8))
    assert not is_mask_checkpoint(res.final_dir)
    cfg = json.loads((res.final_dir / "unet" / "config.json").read_text())
    assert cfg["in_channels"] == 8


def test_8bit_adam_on_cpu_and_unknown_conditioning_are_refused(tiny_ip2p_dir: Path, tmp_path: Path):
    with pytest.raises(ValueError, match="CUDA"):
        train(_cfg(tiny_ip2p_dir, tmp_path / "a", adam_8bit=True), SyntheticShapes(4))
    with pytest.raises(ValueError, match="conditioning"):
        train(_cfg(tiny_ip2p_dir, tmp_path / "b", conditioning="tokens"), SyntheticShapes(4))


@dataclass
class _Bad:
    image: np.ndarray
    target: np.ndarray
    mask: np.ndarray
    instruction: str


def test_a_bad_item_is_refused_naming_its_index_and_field(tiny_ip2p_dir: Path, tmp_path: Path):
    img = np.zeros((32, 32, 3), np.uint8)
    bad = [_Bad(img, img, np.zeros((16, 16), bool), "make it red")]
    with pytest.raises(ValueError, match="item 0: field 'mask'"):
        train(_cfg(tiny_ip2p_dir, tmp_path / "bad"), bad)


def test_dilate_erode_and_shift_masks():
    m = torch.zeros(1, 1, 16, 16)
    m[..., 5:10, 5:10] = 1
    assert augment.dilate(m, 1).sum() == 49 and augment.dilate(m, -1).sum() == 9
    s = augment.shift(m, 2, -3)
    assert s[..., 7:12, 2:7].sum() == 25 and s.sum() == 25
    edge = augment.shift(m, 0, 9)  # pushed partly off the image: no wrap-around
    assert edge.sum() == 5 * 2 and edge[..., :, :5].sum() == 0


def test_jitter_changes_masks_but_never_empties_them():
    m = torch.zeros(64, 1, 32, 32)
    m[..., 10:14, 10:14] = 1
    j = augment.jitter_masks(m, torch.Generator().manual_seed(0), max_px=3, max_shift=2)
    sums = j.flatten(1).sum(1)
    assert (sums > 0).all() and len(set(sums.tolist())) > 2


def test_conditioning_dropout_follows_instructpix2pix_rates():
    d = augment.conditioning_dropout(200_000, torch.Generator().manual_seed(0), p=0.05, p_mask=0.1)
    assert d.text.float().mean() == pytest.approx(0.10, abs=0.005)
    assert d.image.float().mean() == pytest.approx(0.10, abs=0.005)
    assert (d.text & d.image).float().mean() == pytest.approx(0.05, abs=0.005)
    assert d.mask.float().mean() == pytest.approx(0.10, abs=0.005)


def test_latent_cover_marks_any_touched_cell_and_grows_by_margin():
    m = torch.zeros(1, 1, 64, 64)
    m[..., 17, 17] = 1  # one pixel in latent cell (2, 2)
    cov = augment.latent_cover(m, (8, 8))
    assert cov.sum() == 1 and cov[0, 0, 2, 2] == 1
    assert augment.latent_cover(m, (8, 8), margin=1).sum() == 9


def test_data_order_and_step_randomness_are_pure_functions_of_seed_and_step():
    assert sample_indices(10, 3, 7, 8) == sample_indices(10, 3, 0, 20)[7:15]
    first_epoch = sample_indices(10, 3, 0, 10)
    assert sorted(first_epoch) == list(range(10))
    a = torch.rand(4, generator=step_generator(0, 5, 1))
    assert torch.equal(a, torch.rand(4, generator=step_generator(0, 5, 1)))
    assert not torch.equal(a, torch.rand(4, generator=step_generator(0, 6, 1)))
