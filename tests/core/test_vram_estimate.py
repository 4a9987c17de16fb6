"""The VRAM estimate (issue 17): parameter counts from safetensors headers equal the loaded modules'
parameter counts on every tiny family, and the per-setting arithmetic on a small hand-made config."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from maskpix_desktop.core import vram_estimate as ve
from maskpix_desktop.core.errors import WeightsError


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from maskpix_desktop.testing.tiny_ip2p import save_tiny_ip2p
    from maskpix_desktop.testing.tiny_ip2p_xl import save_tiny_ip2p_xl
    from maskpix_desktop.testing.tiny_kontext import save_tiny_kontext
    from maskpix_desktop.testing.tiny_qwen_edit import save_tiny_qwen_edit

    root = tmp_path_factory.mktemp("vram")
    return {
        "ip2p": save_tiny_ip2p(root / "ip2p"),
        "ip2p_xl": save_tiny_ip2p_xl(root / "xl"),
        "kontext": save_tiny_kontext(root / "kontext"),
        "qwen_edit": save_tiny_qwen_edit(root / "qwen"),
    }


@pytest.mark.parametrize("family", ["ip2p", "ip2p_xl", "kontext", "qwen_edit"])
def test_header_counts_equal_the_loaded_modules(folders: dict[str, Path], family: str) -> None:
    import diffusers

    folder = folders[family]
    sizes = ve.sizes_of_folder(folder)
    cls = getattr(diffusers, json.loads((folder / "model_index.json").read_text())["_class_name"])
    pipe = cls.from_pretrained(folder)
    loaded = {c: sum(p.numel() for p in getattr(pipe, c).parameters()) for c in sizes.params}
    assert sizes.family == family
    assert sizes.params == loaded
    assert {"vae", "text_encoder"} <= set(loaded) and ("unet" in loaded or "transformer" in loaded)
    biggest = max(
        sum(p.numel() for p in m.parameters(recurse=False))
        for c in loaded
        for m in getattr(pipe, c).modules()
    )
    assert sizes.largest_layer == biggest
    denoiser = pipe.unet if hasattr(pipe, "unet") else pipe.transformer
    if family in ("kontext", "qwen_edit"):
        assert sizes.width == denoiser.config.num_attention_heads * denoiser.config.attention_head_dim
        assert sizes.vae_scale * sizes.patch == 2 * pipe.vae_scale_factor
    else:
        assert sizes.width == denoiser.config.block_out_channels[0]
        assert sizes.vae_scale == pipe.vae_scale_factor


def test_estimate_arithmetic_per_setting() -> None:
    sizes = ve.ModelSizes(
        family="kontext",
        params={"transformer": 1000, "text_encoder": 300, "text_encoder_2": 500, "vae": 100},
        largest_layer=50,
        width=4,
        vae_channels=2,
        vae_scale=8,
        patch=2,
    )
    est = ve.estimate(sizes, (64, 32), precision="bf16")
    tokens = (64 // 16) * (32 // 16) * 2 + 512  # image + condition tokens + T5 tokens
    den = tokens * 4 * 1 * ve.DENOISER_ACT * 2
    vae = 64 * 32 * 2 * ve.VAE_ACT * 2
    assert (est.denoiser_act, est.vae_act) == (den, vae)
    assert est.weights == {"transformer": 2000, "text_encoder": 600, "text_encoder_2": 1000, "vae": 200}
    assert est.peak == {
        "full": 3800 + max(den, vae),
        "model_offload": max(1000, 2000 + den, 200 + vae),
        "sequential_offload": 50 * 2 + max(den, vae),
    }
    q = ve.estimate(sizes, (64, 32), precision="bf16", quantize="nf4")
    assert q.weights["transformer"] == 1000 * (0.5 + 4 / 64) and q.weights["vae"] == 200
    big = ve.estimate(sizes, (2048, 2048), precision="fp32")
    tiled = ve.estimate(sizes, (2048, 2048), precision="fp32", vae_tiling=True)
    assert big.vae_act == 2048 * 2048 * 2 * ve.VAE_ACT * 4
    assert tiled.vae_act == ve.VAE_TILE**2 * 2 * ve.VAE_ACT * 4
    assert big.peak["full"] > big.peak["model_offload"] > big.peak["sequential_offload"]


def test_settings_order_on_a_tiny_folder(folders: dict[str, Path]) -> None:
    est = ve.estimate(ve.sizes_of_folder(folders["kontext"]), (1024, 1024))
    assert est.peak["full"] > est.peak["model_offload"] >= est.peak["sequential_offload"]
    assert "GiB peak with model_offload" in ve.describe(est, "model_offload")


def test_a_broken_safetensors_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(struct.pack("<Q", 10) + b"{not json")
    with pytest.raises(WeightsError, match="x.safetensors"):
        ve.read_header(bad)
