"""The proof's metrics (fast) and the mask-vs-plain comparison on this CPU (slow: ``-m slow``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from maskpix_desktop.core.maskcond.data import EncodedSet
from maskpix_desktop.core.maskcond.pipeline import ddim_from
from maskpix_desktop.core.maskcond.proof import (
    latent_metrics,
    local_vae,
    save_proof_base,
    table,
    task_tokenizer,
)


def _set() -> EncodedSet:
    g = torch.Generator().manual_seed(0)
    src = torch.randn(2, 4, 8, 8, generator=g)
    mask = torch.zeros(2, 1, 64, 64)
    mask[:, :, 8:24, 8:24] = 1  # latent cells (1..2, 1..2)
    tgt = src.clone()
    tgt[:, :, 1:3, 1:3] += 2.0
    return EncodedSet(src, tgt, mask, torch.zeros(2, dtype=torch.long), torch.zeros(2, 77, 32), ["x"])


def test_a_perfect_edit_scores_the_floor_outside_and_full_iou_inside():
    data = _set()
    m = latent_metrics(data.tgt.clone(), data, scale=1.0)
    assert m.outside_change == 0.0 == m.outside_floor
    assert m.change_miou == 1.0 and m.inside_psnr > 100


def test_an_edit_that_also_changes_a_distractor_is_penalised_outside():
    data = _set()
    leaky = data.tgt.clone()
    leaky[:, :, 5:7, 5:7] += 2.0  # the same recolouring on another "shape"
    m = latent_metrics(leaky, data, scale=1.0)
    assert m.outside_change == pytest.approx(2.0 * 4 / 48)  # 64 cells - 16 within 1 cell of the mask
    assert m.change_miou == pytest.approx(0.5)
    nothing = latent_metrics(data.src.clone(), data, scale=1.0)
    assert nothing.outside_change == 0.0 and nothing.change_miou == 0.0
    assert nothing.inside_psnr < m.inside_psnr


class _Oracle(torch.nn.Module):
    """A "UNet" that predicts exactly what ``prediction_type`` asks for, given the clean target ``x0``."""

    def __init__(self, x0: torch.Tensor, sched, ptype: str):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.x0, self.sched, self.ptype = x0, sched, ptype

    def forward(self, x, t, encoder_hidden_states):
        from types import SimpleNamespace

        a = self.sched.alphas_cumprod[t].view(-1, 1, 1, 1)
        eps = (x[:, :4] - a.sqrt() * self.x0) / (1 - a).sqrt()
        out = {"epsilon": eps, "sample": self.x0, "v_prediction": a.sqrt() * eps - (1 - a).sqrt() * self.x0}
        return SimpleNamespace(sample=out[self.ptype] + 0 * self.w)


@pytest.mark.parametrize("ptype", ["epsilon", "v_prediction", "sample"])
def test_the_training_loss_follows_the_base_schedulers_prediction_type(ptype: str):
    from diffusers import DDPMScheduler

    from maskpix_desktop.core.maskcond.train import TrainConfig, micro_loss

    data = _set()
    data.tgt = data.src.clone()  # an identity edit: the oracle's x0 is also the source outside the mask
    sched = DDPMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, prediction_type=ptype
    )
    cfg = TrainConfig(
        base="-", output_dir="-", conditioning="none", p_drop=0.0, p_mask_drop=0.0, consistency_weight=1.0
    )
    right = _Oracle(data.src, sched, ptype)
    loss, eps, cons = micro_loss(right, data, [0, 1], torch.Generator().manual_seed(7), cfg, sched, 1.0)
    assert float(eps) < 1e-6 and float(cons) < 1e-6
    other = "sample" if ptype != "sample" else "epsilon"
    wrong = _Oracle(data.src, sched, other)
    loss, eps, cons = micro_loss(wrong, data, [0, 1], torch.Generator().manual_seed(7), cfg, sched, 1.0)
    assert float(eps) > 1e-2


def test_the_local_vae_has_no_mid_attention_and_keeps_a_recolouring_local(tmp_path: Path):
    from maskpix_desktop.testing.tiny_ip2p import build_tiny_ip2p

    default = build_tiny_ip2p(0).vae
    local = local_vae(default.config, seed=0)
    assert local.config.mid_block_add_attention is False
    img = torch.zeros(1, 3, 64, 64)
    edit = img.clone()
    edit[:, :, 4:16, 4:16] = 1.0  # a recoloured shape in the top-left corner

    def spread(vae) -> float:
        """Mean latent change on cells far from the edit over that on the edited cells."""
        with torch.no_grad():
            d = (vae.encode(edit).latent_dist.mode() - vae.encode(img).latent_dist.mode()).abs()
        return float(d[..., 4:, 4:].mean() / d[..., :2, :2].mean())

    assert spread(local) < 0.5 * spread(default)
    folder = save_proof_base(tmp_path / "base", vae="local", prediction_type="sample")
    cfg = (folder / "scheduler" / "scheduler_config.json").read_text()
    assert '"prediction_type": "sample"' in cfg
    assert '"mid_block_add_attention": false' in (folder / "vae" / "config.json").read_text()


def test_the_evaluation_sampler_keeps_x0_estimates_beyond_one():
    """DDIM's default clips every x0 estimate to [-1, 1]; unit-variance latents must pass unclipped."""
    from diffusers import DDIMScheduler, DDPMScheduler

    config = DDPMScheduler(beta_schedule="scaled_linear", prediction_type="sample").config
    x0 = torch.full((1, 4, 8, 8), 2.5)
    x0[..., :4] = -1.75

    def sample(sched) -> torch.Tensor:
        sched.set_timesteps(10)
        x = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
        for t in sched.timesteps:
            x = sched.step(x0, t, x).prev_sample  # a model that always predicts x0 exactly
        return x

    assert torch.allclose(sample(ddim_from(config)), x0, atol=1e-4)
    assert float(sample(DDIMScheduler.from_config(config)).abs().max()) <= 1.0 + 1e-4  # what it replaces


def test_the_proof_tokenizer_makes_each_instruction_word_one_token(tmp_path: Path):
    from maskpix_desktop.core.maskcond.synthetic import COLOURS, KINDS

    words = task_tokenizer("words")
    for kind in KINDS:
        for colour in COLOURS:
            assert words.tokenize(f"make the {kind} {colour}") == [
                "make</w>",
                "the</w>",
                f"{kind}</w>",
                f"{colour}</w>",
            ]
    assert len(task_tokenizer("bytes").tokenize("make the circle green")) > 4
    assert max(words.get_vocab().values()) < 1000  # tiny_ip2p's text encoder has 1000 embeddings
    folder = save_proof_base(tmp_path / "base", tokens="words")
    from transformers import CLIPTokenizer

    saved = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    assert saved.tokenize("make the triangle green") == ["make</w>", "the</w>", "triangle</w>", "green</w>"]
    with pytest.raises(ValueError, match="tokens"):
        task_tokenizer("chars")


@pytest.mark.slow
def test_mask_unet_changes_at_least_half_less_outside_than_plain_unet(tmp_path: Path):
    """The synthetic comparison with scripts/train_synthetic.py's defaults (docs/TRAINING.md)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    import train_synthetic

    rc = train_synthetic.main(["--out", str(tmp_path / "run"), "--no-progress"])
    import json

    report = json.loads((tmp_path / "run" / "report.json").read_text())
    print(table(report))
    assert report["total_s"] < 600
    assert rc == 0 and report["target_met"], report["runs"]


def test_side_by_side_forks_report_exactly_what_sequential_forks_report(tmp_path: Path):
    """Two spawned processes (one torch thread each) compute what one process computes alone."""
    from dataclasses import replace

    from maskpix_desktop.core.maskcond.proof import EvalConfig, compare
    from maskpix_desktop.core.maskcond.synthetic import SyntheticShapes
    from maskpix_desktop.core.maskcond.train import TrainConfig

    base = save_proof_base(tmp_path / "base")
    cfg = TrainConfig(
        base=str(base), output_dir="-", steps=3, batch_size=2, checkpoint_every=3, cpu=True, cpu_threads=1
    )
    items, held_out, ev = (
        SyntheticShapes(4, size=32),
        SyntheticShapes(2, seed=5, size=32),
        EvalConfig(steps=2),
    )
    reports = [
        compare(
            replace(cfg, output_dir=str(tmp_path / name)), items, held_out, ev, warm_steps=2, parallel=par
        )
        for name, par in (("one", False), ("two", True))
    ]
    keys = ("outside_change", "inside_psnr", "change_miou", "final_loss", "n_items")
    for run in ("mask", "plain"):
        assert [reports[1]["runs"][run][k] for k in keys] == [reports[0]["runs"][run][k] for k in keys]
    assert reports[0]["outside_reduction"] == reports[1]["outside_reduction"]
    assert (tmp_path / "two" / "mask" / "final" / "maskpix_conditioning.json").is_file()
    assert reports[0]["runs"]["mask"]["outside_change"] != reports[0]["runs"]["plain"]["outside_change"]
