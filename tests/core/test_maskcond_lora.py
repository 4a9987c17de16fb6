"""A LoRA run's unmerged adapter (``RUN/lora``): loaded on top of its base IP2P at run time, it computes what
the merged ``RUN/final`` computes; the app's loader takes it like any mask checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from maskpix_desktop.core.errors import WeightsError
from maskpix_desktop.core.maskcond import CONDITIONING_FILE
from maskpix_desktop.core.maskcond.model import LORA_FILE, is_mask_checkpoint, load_mask_pipeline
from maskpix_desktop.core.maskcond.synthetic import SyntheticShapes
from maskpix_desktop.core.maskcond.train import TrainConfig, train

peft = pytest.importorskip("peft")


@pytest.fixture(scope="module")
def lora_run(tiny_ip2p_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("lora") / "run"
    cfg = TrainConfig(
        base=str(tiny_ip2p_dir),
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
    (bad / CONDITIONING_FILE).write_text(json.dumps({**cond, "attention_dim": 32}))
    with pytest.raises(WeightsError, match=LORA_FILE):
        load_mask_pipeline(bad)
