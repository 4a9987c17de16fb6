"""A trained checkpoint folder (here: the attention branch) loads in the app through the model service and
edits in mask mode ``trained``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from maskpix_desktop.core.jobs import EditParams, EditRequest
from maskpix_desktop.core.maskcond.synthetic import SyntheticShapes
from maskpix_desktop.core.maskcond.train import TrainConfig, train
from maskpix_desktop.core.service import ModelChoice, ModelService


def test_service_loads_a_trained_attention_checkpoint_and_the_mask_reaches_the_unet(
    tiny_ip2p_dir: Path, tmp_path: Path, rng_image
):
    torch.set_num_threads(1)
    cfg = TrainConfig(
        base=str(tiny_ip2p_dir),
        output_dir=str(tmp_path / "run"),
        conditioning="attention",
        attention_tokens=4,
        attention_dim=16,
        steps=2,
        batch_size=2,
        lr=1e-2,
        cpu=True,
        cpu_threads=1,
        progress=False,
    )
    final = train(cfg, SyntheticShapes(4, size=32), resume=False).final_dir
    service = ModelService(ModelChoice(models_dir=str(tmp_path / "models"), ip2p=str(final), device="cpu"))
    editor = service.editor()
    assert editor.takes_mask and editor.pipe.conditioning.type == "attention"
    assert service.editor() is editor  # loaded once
    image = rng_image(64, 64, seed=3)
    mask = np.zeros((64, 64), bool)
    mask[8:40, 16:48] = True
    params = EditParams("make the circle red", steps=3, seed=5, mask_mode="trained", feather=0.0)
    res = editor.run(EditRequest(image, mask=mask, params=params))
    assert not np.array_equal(res.edit, res.baseline)  # the trained branch read the mask
    assert np.array_equal(res.blended[~mask], image[~mask])  # and nothing outside it changed
    other = editor.run(EditRequest(image, mask=~mask, params=params))
    assert not np.array_equal(other.edit, res.edit)  # another mask, another edit
