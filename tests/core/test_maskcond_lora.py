"""A LoRA run's unmerged adapter (``RUN/lora``): loaded on top of its base IP2P at run time, it computes what
the merged ``RUN/final`` computes; the app's loader takes it like any mask checkpoint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from maskpix_desktop.core.errors import WeightsError
from maskpix_desktop.core.maskcond import CONDITIONING_FILE
from maskpix_desktop.core.maskcond.model import (
    LORA_FILE,
    is_mask_checkpoint,
    load_mask_pipeline,
    relative_base,
)
from maskpix_desktop.core.maskcond.synthetic import SyntheticShapes
from maskpix_desktop.core.maskcond.train import TrainConfig, train

peft = pytest.importorskip("peft")


def _train_lora(base: Path, run: Path) -> Path:
    """A 2-step LoRA mask run of ``base`` into ``run`` (its adapter: ``run/lora``)."""
    torch.set_num_threads(1)
    cfg = TrainConfig(
        base=str(base),
        output_dir=str(run),
        conditioning="both",
        attention_tokens=4,
        attention_dim=16,
        lora_rank=4,
        steps=2,
        batch_size=2,
        lr=1e-2,
        cpu=True,
        cpu_threads=1,
        progress=False,
    )
    train(cfg, SyntheticShapes(4, size=32), resume=False)
    return run


@pytest.fixture(scope="module")
def lora_run(tiny_ip2p_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train_lora(tiny_ip2p_dir, tmp_path_factory.mktemp("lora") / "run")


def test_unmerged_adapter_on_the_base_computes_what_the_merged_checkpoint_computes(lora_run: Path):
    adapter = lora_run / "lora"
    assert is_mask_checkpoint(adapter) and not (adapter / "unet").exists()  # no pipeline of its own
    cond = json.loads((adapter / CONDITIONING_FILE).read_text())
    assert cond["lora"]["rank"] == 4 and cond["type"] == "both" and Path(cond["base_model"]).is_dir()
    unet_bytes = (lora_run / "final" / "unet" / "diffusion_pytorch_model.safetensors").stat().st_size
    assert (adapter / LORA_FILE).stat().st_size < unet_bytes
    runtime, merged = load_mask_pipeline(adapter), load_mask_pipeline(lora_run / "final")
    assert any("lora_A" in k for k in runtime.unet.state_dict())  # applied at run time, not merged
    assert runtime.vae.config.scaling_factor == merged.vae.config.scaling_factor
    gen = torch.Generator().manual_seed(0)
    x, e = torch.randn(2, 9, 4, 4, generator=gen), torch.randn(2, 77, 32, generator=gen)
    x[:, 8] = torch.sign(x[:, 8])
    t = torch.tensor([10, 500])
    with torch.no_grad():
        a = runtime.unet(x, t, encoder_hidden_states=e).sample
        b = merged.unet(x, t, encoder_hidden_states=e).sample
        base = load_mask_pipeline(adapter).unet
        base.disable_adapters()
        c = base(x, t, encoder_hidden_states=e).sample
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(a, c, atol=1e-3)  # the adapter does change the UNet


def test_app_loader_takes_the_adapter_folder(lora_run: Path):
    from maskpix_desktop.core.editor_loader import load_editor

    editor = load_editor(str(lora_run / "lora"), device="cpu")
    assert editor.takes_mask and editor.pipe.conditioning.lora["rank"] == 4


def test_adapter_without_its_base_or_with_a_damaged_file_is_refused_naming_it(lora_run: Path, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / LORA_FILE).write_bytes((lora_run / "lora" / LORA_FILE).read_bytes())
    cond = json.loads((lora_run / "lora" / CONDITIONING_FILE).read_text())
    (bad / CONDITIONING_FILE).write_text(json.dumps({**cond, "base_model": str(tmp_path / "gone")}))
    with pytest.raises(WeightsError, match="base_model"):
        load_mask_pipeline(bad)
    (bad / CONDITIONING_FILE).write_text(json.dumps({**cond, "lora": {"rank": 4}}))
    with pytest.raises(WeightsError, match="'lora'"):
        load_mask_pipeline(bad)
    (bad / CONDITIONING_FILE).write_text(json.dumps({**cond, "base_model_rel": 3}))
    with pytest.raises(WeightsError, match="'base_model_rel' is 3"):
        load_mask_pipeline(bad)
    (bad / CONDITIONING_FILE).write_text(json.dumps({**cond, "attention_dim": 32}))
    with pytest.raises(WeightsError, match=LORA_FILE):
        load_mask_pipeline(bad)


def _edit(pipe) -> tuple[torch.Tensor, object]:
    """The UNet's output on fixed inputs and a whole 2-step masked edit (VAE, text encoder, UNet)."""
    import numpy as np

    gen = torch.Generator().manual_seed(0)
    x, e = torch.randn(2, 9, 4, 4, generator=gen), torch.randn(2, 77, 32, generator=gen)
    x[:, 8] = torch.sign(x[:, 8])
    mask = np.zeros((32, 32), bool)
    mask[8:24, 4:20] = True
    image = np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    with torch.no_grad():
        unet = pipe.unet(x, torch.tensor([10, 500]), encoder_hidden_states=e).sample
    out = pipe(
        prompt="make it red",
        image=image,
        mask=mask,
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(7),
        output_type="np",
    ).images[0]
    return unet, out


@pytest.fixture(scope="module")
def moved_template(
    tiny_ip2p_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, tuple[torch.Tensor, object]]:
    """A project folder (base + LoRA run) trained in one place, its output there, then moved elsewhere:
    its absolute base path no longer exists."""
    root = tmp_path_factory.mktemp("moved")
    project = root / "machine-a" / "project"
    shutil.copytree(tiny_ip2p_dir, project / "models" / "base")
    adapter = _train_lora(project / "models" / "base", project / "runs" / "run") / "lora"
    cond = json.loads((adapter / CONDITIONING_FILE).read_text())
    assert cond["base_model"] == str((project / "models" / "base").resolve())
    assert cond["base_model_rel"] == "../../../models/base"
    before = _edit(load_mask_pipeline(adapter))
    moved = root / "machine-b" / "project"
    shutil.move(project, moved)
    assert not Path(cond["base_model"]).exists()
    return moved, before


@pytest.fixture
def moved_project(moved_template, tmp_path: Path) -> tuple[Path, tuple[torch.Tensor, object]]:
    """A copy of the moved project of one's own (a copied project folder, another path again)."""
    moved, before = moved_template
    copy = tmp_path / "copied project"
    shutil.copytree(moved, copy)
    return copy, before


def test_adapter_and_base_moved_together_load_from_the_relative_path_with_the_same_output(moved_project):
    moved, (unet_before, out_before) = moved_project
    pipe = load_mask_pipeline(moved / "runs" / "run" / "lora")
    unet_after, out_after = _edit(pipe)
    assert torch.equal(unet_after, unet_before)
    assert (out_after == out_before).all() and out_after.shape == (32, 32, 3)


def test_old_metadata_without_the_relative_path_still_loads_from_the_absolute_one(moved_project):
    moved, (unet_before, _) = moved_project
    adapter = moved / "runs" / "run" / "lora"
    cond = json.loads((adapter / CONDITIONING_FILE).read_text())
    del cond["base_model_rel"]  # written by an older MaskPix
    (adapter / CONDITIONING_FILE).write_text(
        json.dumps({**cond, "base_model": str(moved / "models" / "base")})
    )
    assert torch.equal(_edit(load_mask_pipeline(adapter))[0], unet_before)
    (adapter / CONDITIONING_FILE).write_text(json.dumps(cond))  # the old absolute path: gone
    with pytest.raises(WeightsError) as info:
        load_mask_pipeline(adapter)
    msg = str(info.value)
    assert str(adapter / CONDITIONING_FILE) in msg and repr(cond["base_model"]) in msg
    assert "no 'base_model_rel'" in msg and "set 'base_model' in that file" in msg


def test_a_missing_base_names_both_paths_tried_and_the_fix(moved_project):
    moved, _ = moved_project
    adapter = moved / "runs" / "run" / "lora"
    cond = json.loads((adapter / CONDITIONING_FILE).read_text())
    shutil.rmtree(moved / "models" / "base")
    with pytest.raises(WeightsError) as info:
        load_mask_pipeline(adapter)
    msg = str(info.value)
    assert msg.startswith(
        f"{adapter / CONDITIONING_FILE}: the LoRA adapter's base InstructPix2Pix is missing"
    )
    assert f"field 'base_model' is {cond['base_model']!r}" in msg
    resolved = str((moved / "models" / "base").resolve())
    assert f"field 'base_model_rel' '../../../models/base' resolves to {resolved!r}" in msg
    assert "keeping their relative layout" in msg and "set 'base_model' in that file" in msg


def test_relative_base_is_portable_and_empty_without_a_relative_path(tmp_path: Path, monkeypatch):
    (tmp_path / "base").mkdir()
    assert relative_base(str(tmp_path / "base"), tmp_path / "a" / "lora") == "../../base"
    assert relative_base(str(tmp_path / "not-there"), tmp_path / "lora") == ""
    assert relative_base("", tmp_path) == ""

    def other_drive(*a):
        raise ValueError("path is on mount 'D:', start on mount 'C:'")

    monkeypatch.setattr("os.path.relpath", other_drive)
    assert relative_base(str(tmp_path / "base"), tmp_path / "lora") == ""
