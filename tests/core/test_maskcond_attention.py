"""The mask-attention branch: zero-init equality with diffusers' IP2P, the concat path cut in "attention"
mode, save / load, and what training changes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from maskpix_desktop.core.errors import WeightsError
from maskpix_desktop.core.maskcond import CONDITIONING_FILE
from maskpix_desktop.core.maskcond.attention import (
    ATTENTION_FILE,
    MaskAttnProcessor,
    has_mask_attention,
    install_mask_attention,
)
from maskpix_desktop.core.maskcond.model import (
    grow_conv_in,
    load_mask_pipeline,
    mask_pipeline_from_ip2p,
    save_mask_checkpoint,
)
from maskpix_desktop.core.maskcond.synthetic import SyntheticShapes
from maskpix_desktop.core.maskcond.train import TrainConfig, checkpoints, read_losses, train
from maskpix_desktop.testing.tiny_ip2p import build_tiny_ip2p


@pytest.fixture(scope="module")
def ip2p():
    torch.set_num_threads(1)
    return build_tiny_ip2p(seed=0)


def _image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)


def _mask() -> np.ndarray:
    m = np.zeros((64, 64), bool)
    m[10:40, 20:50] = True
    return m


def _run(pipe, image, out: str = "np", **kw):
    res = pipe(
        prompt="make the circle red",
        image=image,
        num_inference_steps=3,
        guidance_scale=4.0,
        image_guidance_scale=1.5,
        generator=torch.Generator().manual_seed(7),
        output_type=out,
        **kw,
    )
    return res.images[0]


def _perturb_outputs(unet, std: float = 0.5) -> None:
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in unet.maskpix_attention.output_params():
            p.normal_(0, std, generator=gen)


@pytest.mark.parametrize("kind", ["attention", "both"])
def test_zero_init_attention_branch_is_bit_equal_to_diffusers_ip2p(ip2p, kind: str):
    pipe = mask_pipeline_from_ip2p(ip2p, conditioning=kind)
    assert has_mask_attention(pipe.unet) and pipe.unet.maskpix_attention.concat is (kind == "both")
    procs = pipe.unet.attn_processors
    wrapped = [k for k, p in procs.items() if isinstance(p, MaskAttnProcessor)]
    assert wrapped and all(k.endswith("attn2.processor") for k in wrapped)
    assert len(wrapped) == sum(k.endswith("attn2.processor") for k in procs)
    base = _run(ip2p, _image())
    assert np.array_equal(_run(pipe, _image(), mask=_mask()), base)
    assert np.array_equal(_run(pipe, _image(), mask=None), base)


def test_trained_branch_reads_the_mask_and_attention_mode_cuts_the_concat_path(ip2p):
    pipe = mask_pipeline_from_ip2p(ip2p, conditioning="attention")
    _perturb_outputs(pipe.unet)
    with_mask = _run(pipe, _image(), mask=_mask())
    assert not np.array_equal(with_mask, _run(pipe, _image(), mask=~_mask()))  # the mask decides
    assert not np.array_equal(with_mask, _run(ip2p, _image()))
    with torch.no_grad():
        pipe.unet.conv_in.weight[:, 8] = 5.0  # "attention": conv_in never sees the mask channel
    assert np.array_equal(_run(pipe, _image(), mask=_mask()), with_mask)
    both = mask_pipeline_from_ip2p(ip2p, conditioning="both")
    _perturb_outputs(both.unet)
    before = _run(both, _image(), mask=_mask())
    with torch.no_grad():
        both.unet.conv_in.weight[:, 8] = 5.0  # "both": it does
    assert not np.array_equal(_run(both, _image(), mask=_mask()), before)


def test_branch_weights_depend_on_the_seed_only():
    a = install_mask_attention(grow_conv_in(build_tiny_ip2p(seed=0).unet), seed=1)
    torch.randn(10)  # the global generator's state does not matter
    b = install_mask_attention(grow_conv_in(build_tiny_ip2p(seed=0).unet), seed=1)
    c = install_mask_attention(grow_conv_in(build_tiny_ip2p(seed=0).unet), seed=2)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["encoder.pos"], sc["encoder.pos"])
    with pytest.raises(ValueError, match="9-channel"):
        install_mask_attention(build_tiny_ip2p(seed=0).unet)
    with pytest.raises(ValueError, match="square"):
        install_mask_attention(grow_conv_in(build_tiny_ip2p(seed=0).unet), tokens=10)


def test_attention_checkpoint_round_trip_and_its_errors(ip2p, tmp_path: Path):
    pipe = mask_pipeline_from_ip2p(ip2p, conditioning="both", attention_tokens=4, attention_dim=16)
    _perturb_outputs(pipe.unet)
    folder = save_mask_checkpoint(pipe, tmp_path / "ckpt")
    cond = json.loads((folder / CONDITIONING_FILE).read_text())
    assert (cond["type"], cond["attention_tokens"], cond["attention_dim"]) == ("both", 4, 16)
    unet_keys = json.loads((folder / "unet" / "config.json").read_text())
    assert unet_keys["in_channels"] == 9
    from safetensors.torch import load_file

    assert not any("maskpix" in k for k in load_file(folder / "unet" / "diffusion_pytorch_model.safetensors"))
    loaded = load_mask_pipeline(folder)
    a, b = pipe.unet.state_dict(), loaded.unet.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with torch.no_grad():  # same image latents for both (see test_maskcond_model's round trip)
        lat = pipe.vae.encode(pipe.image_processor.preprocess(_image(4))).latent_dist.mode()
    assert torch.equal(
        _run(loaded, lat, mask=_mask(), out="latent"), _run(pipe, lat, mask=_mask(), out="latent")
    )

    (folder / "unet" / ATTENTION_FILE).rename(tmp_path / "aside")
    with pytest.raises(WeightsError, match=ATTENTION_FILE):
        load_mask_pipeline(folder)
    (tmp_path / "aside").rename(folder / "unet" / ATTENTION_FILE)
    (folder / CONDITIONING_FILE).write_text(json.dumps({**cond, "attention_tokens": 16}))
    with pytest.raises(WeightsError, match="does not fit"):
        load_mask_pipeline(folder)
    (folder / CONDITIONING_FILE).write_text(json.dumps({**cond, "attention_dim": "wide"}))
    with pytest.raises(WeightsError, match="attention_dim"):
        load_mask_pipeline(folder)


def _cfg(base: Path, out: Path, **kw) -> TrainConfig:
    args = dict(steps=4, batch_size=4, lr=1e-2, checkpoint_every=2, cpu=True, cpu_threads=1, progress=False)
    args.update(conditioning="attention", attention_tokens=4, attention_dim=16, **kw)
    return TrainConfig(base=str(base), output_dir=str(out), **args)


def test_attention_training_moves_the_branch_never_the_concat_weights_and_resumes_exactly(
    tiny_ip2p_dir: Path, tmp_path: Path
):
    items = SyntheticShapes(8, seed=0, size=32)
    whole = train(_cfg(tiny_ip2p_dir, tmp_path / "whole"), items, resume=False)
    pipe = load_mask_pipeline(whole.final_dir)
    assert pipe.conditioning.type == "attention"
    assert torch.count_nonzero(pipe.unet.conv_in.weight[:, 8]) == 0  # the concat path never trained
    outs = pipe.unet.maskpix_attention.output_params()
    assert all(torch.count_nonzero(p) > 0 for p in outs)  # the branch did
    train(_cfg(tiny_ip2p_dir, tmp_path / "cut"), items, resume=False, stop_after=3)
    assert [c.name for c in checkpoints(tmp_path / "cut")] == ["step-0000002"]
    resumed = train(_cfg(tiny_ip2p_dir, tmp_path / "cut"), items, resume=True)
    assert [r["loss"] for r in resumed.losses] == [r["loss"] for r in whole.losses]
    assert read_losses(tmp_path / "cut") == read_losses(tmp_path / "whole")
    a, b = pipe.unet.state_dict(), load_mask_pipeline(resumed.final_dir).unet.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_lora_with_attention_trains_only_lora_conv_in_and_the_branch(tiny_ip2p_dir: Path, tmp_path: Path):
    pytest.importorskip("peft")
    from safetensors.torch import load_file

    from maskpix_desktop.core.maskcond.train import LORA_TARGETS, add_lora

    unet = grow_conv_in(build_tiny_ip2p(seed=0).unet)
    install_mask_attention(unet, tokens=4, dim=16)
    trainable = {id(p) for p in add_lora(unet, 4)}
    names = [n for n, p in unet.named_parameters() if id(p) in trainable]
    assert all(n.startswith(("conv_in.", "maskpix_attention.")) or "lora_" in n for n in names)
    assert any(n.startswith("maskpix_attention.") for n in names)
    assert not any("maskpix_attention" in n and "lora_" in n for n in names)  # LoRA leaves the branch alone

    res = train(_cfg(tiny_ip2p_dir, tmp_path / "lora", steps=2, lora_rank=4), SyntheticShapes(4, size=32))
    weights = "unet/diffusion_pytorch_model.safetensors"
    base, new = load_file(tiny_ip2p_dir / weights), load_file(res.final_dir / weights)
    assert set(new) == set(base)
    changed = {k for k in base if k != "conv_in.weight" and not torch.equal(base[k], new[k])}
    assert changed and all(
        k.startswith("conv_in") or any(f".{t}." in k for t in LORA_TARGETS) for k in changed
    )
    assert torch.count_nonzero(new["conv_in.weight"][:, 8]) == 0
    branch = load_file(res.final_dir / "unet" / ATTENTION_FILE)
    assert any(torch.count_nonzero(v) for k, v in branch.items() if ".out." in k)
