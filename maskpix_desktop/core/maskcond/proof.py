"""Mask UNet vs plain UNet on held-out synthetic items, measured in latent space.

A random tiny VAE does not reconstruct images, so pixels would measure the VAE, not the UNet. Every
metric here compares the pipeline's final latents (scaled, ``output_type="latent"``) with the VAE
encodings (posterior modes, scaled) of the source and of the target:

* ``outside_change``: mean |pred - src| over latent cells at least ``margin`` (1) cells away from any
  cell a mask pixel touches (lower is better; the same region the consistency loss uses);
  ``outside_floor`` is the same for the encoded target itself (the random encoder, with a self-attention
  mid-block, spreads a recolouring over the whole latent, so even a perfect edit is not 0 there).
* ``inside_psnr``: PSNR of pred vs target over the cells the mask touches, peak = the peak-to-peak range
  of the held-out targets' latents.
* ``change_miou``: IoU of the change map (channel-mean |pred - src| > tau, tau = half the mean
  |target - src| inside the masks) with the touched cells, averaged over items.

The proof's base (:func:`save_proof_base`) can swap the tiny IP2P's VAE for a *local* one: no mid-block
self-attention and every encoder residual branch initialised to zero (SkipInit), so the random encoder is
a chain of convolutions whose only global operation is its output GroupNorm. The default random VAE
spreads one recolouring over every latent cell, so its floor alone caps what any UNet can show outside
the mask (docs/TRAINING.md, "Proof on this CPU"). :func:`compare` can also train one shared plain warm
start and fork both UNets from it (``warm_steps``).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from maskpix_desktop.core.maskcond.augment import latent_cover
from maskpix_desktop.core.maskcond.data import EncodedSet, encode_items


@dataclass(frozen=True)
class EvalConfig:
    steps: int = 20
    text_scale: float = 1.0  # 1.0 = no classifier-free guidance (one branch)
    image_scale: float = 1.0
    seed: int = 1234
    batch: int = 32
    scheduler: str = "ddim"  # deterministic sampling ("ddim"), or "pipeline" for the folder's own


@dataclass
class Metrics:
    outside_change: float
    outside_floor: float
    inside_psnr: float
    change_miou: float
    n_items: int


@torch.no_grad()
def predict_latents(pipe: Any, data: EncodedSet, use_mask: bool, ev: EvalConfig) -> torch.Tensor:
    """Final scaled latents for every item (batched, one generator per batch: deterministic)."""
    outs = []
    for lo in range(0, len(data), ev.batch):
        sl = slice(lo, min(lo + ev.batch, len(data)))
        kw = {"mask": data.mask[sl]} if use_mask else {}
        out = pipe(
            prompt=[data.prompts[i] for i in data.prompt_idx[sl].tolist()],
            image=data.src[sl],
            num_inference_steps=ev.steps,
            guidance_scale=ev.text_scale,
            image_guidance_scale=ev.image_scale,
            generator=torch.Generator().manual_seed(ev.seed + lo),
            output_type="latent",
            **kw,
        )
        outs.append(out.images.float().cpu())
    return torch.cat(outs)


def latent_metrics(pred: torch.Tensor, data: EncodedSet, scale: float, margin: int = 1) -> Metrics:
    """The metrics of the module docstring for predicted (scaled) latents ``pred``."""
    src, tgt = data.src * scale, data.tgt * scale
    inside = latent_cover(data.mask, tuple(src.shape[-2:]))  # (N,1,h,w)
    outside = 1.0 - latent_cover(data.mask, tuple(src.shape[-2:]), margin)
    c = src.shape[1]

    def masked_mean(x: torch.Tensor, region: torch.Tensor) -> float:
        return float((x * region).sum() / (region.sum() * c).clamp_min(1))

    peak = float(tgt.max() - tgt.min())
    mse_in = masked_mean((pred - tgt).pow(2), inside)
    tau = 0.5 * masked_mean((tgt - src).abs(), inside)
    change = ((pred - src).abs().mean(1, keepdim=True) > tau).float()
    inter = (change * inside).flatten(1).sum(1)
    union = ((change + inside) > 0).float().flatten(1).sum(1)
    return Metrics(
        outside_change=masked_mean((pred - src).abs(), outside),
        outside_floor=masked_mean((tgt - src).abs(), outside),
        inside_psnr=10 * math.log10(peak * peak / max(mse_in, 1e-12)),
        change_miou=float((inter / union.clamp_min(1)).mean()),
        n_items=len(data),
    )


def local_vae(config: Any, seed: int = 0) -> Any:
    """A random ``AutoencoderKL`` like ``config`` but without mid-block attention and with every encoder
    resnet's second convolution zeroed, so each encoder resnet is the identity (decoder untouched)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    vae = AutoencoderKL(**{**dict(config), "mid_block_add_attention": False})
    with torch.no_grad():
        for name, param in vae.encoder.named_parameters():
            if ".conv2." in name:
                param.zero_()
    return vae


def task_tokenizer(tokens: str = "words") -> Any:
    """The tiny IP2P's CLIP tokenizer; ``"words"`` makes every word of the synthetic instructions one
    token (as in real CLIP's vocabulary), ``"bytes"`` keeps tiny_ip2p's byte-level one."""
    import tempfile

    from transformers import CLIPTokenizer

    from maskpix_desktop.core.maskcond.synthetic import COLOURS, KINDS
    from maskpix_desktop.testing.tiny_ip2p import write_clip_tokenizer

    if tokens not in ("words", "bytes"):
        raise ValueError(f"tokens must be 'words' or 'bytes', got {tokens!r}")
    words = ("make", "the", *KINDS, *COLOURS) if tokens == "words" else ()
    with tempfile.TemporaryDirectory() as tmp:
        return CLIPTokenizer.from_pretrained(write_clip_tokenizer(Path(tmp), words=words))


def save_proof_base(
    folder: str | Path,
    seed: int = 0,
    vae: str = "local",
    prediction_type: str = "sample",
    tokens: str = "words",
) -> Path:
    """The tiny random IP2P (``tiny_ip2p``, ``seed``) as a diffusers folder; ``vae="local"`` swaps in
    :func:`local_vae`, ``"default"`` keeps tiny_ip2p's VAE; ``prediction_type`` goes into the scheduler
    config (training and sampling follow it); ``tokens`` picks the tokenizer (:func:`task_tokenizer`)."""
    from maskpix_desktop.testing.tiny_ip2p import build_tiny_ip2p

    if vae not in ("local", "default"):
        raise ValueError(f"vae must be 'local' or 'default', got {vae!r}")
    pipe = build_tiny_ip2p(seed)
    if vae == "local":
        pipe.register_modules(vae=local_vae(pipe.vae.config, seed))
    pipe.register_modules(tokenizer=task_tokenizer(tokens))
    if prediction_type != pipe.scheduler.config.prediction_type:
        sched = type(pipe.scheduler).from_config(pipe.scheduler.config, prediction_type=prediction_type)
        pipe.register_modules(scheduler=sched)
    folder = Path(folder)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def evaluate(final_dir: Path, items: Any, use_mask: bool, ev: EvalConfig = EvalConfig()) -> Metrics:
    """Load a trained folder (mask checkpoint or plain IP2P) and score it on ``items``."""
    from maskpix_desktop.core.maskcond.model import is_mask_checkpoint, load_mask_pipeline
    from maskpix_desktop.core.maskcond.pipeline import MaskPix2PixPipeline, ddim_from
    from maskpix_desktop.core.maskcond.train import _load_base

    if is_mask_checkpoint(final_dir):
        pipe = load_mask_pipeline(final_dir)
    else:
        pipe = MaskPix2PixPipeline(**_load_base(str(final_dir)).components)
    pipe.set_progress_bar_config(disable=True)
    if ev.scheduler == "ddim":
        pipe.scheduler = ddim_from(pipe.scheduler.config)
    data = encode_items(pipe, items)
    pred = predict_latents(pipe, data, use_mask and pipe.unet.config.in_channels == 9, ev)
    return latent_metrics(pred, data, pipe.vae.config.scaling_factor)


def warm_start(cfg: Any, items: Any, steps: int, lr: float = 0.0) -> tuple[Path, dict]:
    """Train one plain UNet from ``cfg.base`` for ``steps`` (seed ``cfg.seed + 1``, lr ``lr`` or ``cfg.lr``)
    into ``<cfg.output_dir>/warm``; return its final folder and a summary (time, lr, final loss)."""
    from maskpix_desktop.core.maskcond.train import train

    t0 = time.perf_counter()
    warm_cfg = replace(
        cfg,
        output_dir=str(Path(cfg.output_dir) / "warm"),
        conditioning="none",
        steps=steps,
        seed=cfg.seed + 1,
        lr=lr or cfg.lr,
        checkpoint_every=steps,
    )
    res = train(warm_cfg, items, resume=False)
    summary = {"train_s": round(time.perf_counter() - t0, 1), "lr": warm_cfg.lr, "final_loss": res.final_loss}
    return Path(res.final_dir), summary


def train_and_score(cfg: Any, train_items: Any, test_items: Any, ev: EvalConfig = EvalConfig()) -> dict:
    """Train ``cfg`` and score its final folder on ``test_items`` (with the mask unless ``conditioning`` is
    "none"): the :class:`Metrics` fields, ``train_s``, ``eval_s`` and ``final_loss``."""
    from maskpix_desktop.core.maskcond.train import train

    t0 = time.perf_counter()
    res = train(cfg, train_items, resume=False)
    t1 = time.perf_counter()
    m = evaluate(res.final_dir, test_items, use_mask=cfg.conditioning != "none", ev=ev)
    return {
        **asdict(m),
        "train_s": round(t1 - t0, 1),
        "eval_s": round(time.perf_counter() - t1, 1),
        "final_loss": res.final_loss,
    }


def _score_in_threads(cfg: Any, train_items: Any, test_items: Any, ev: EvalConfig) -> dict:
    """:func:`train_and_score` with ``cfg.cpu_threads`` for the evaluation too (one run of :func:`compare`,
    maybe in a child process); the caller's thread count is restored after."""
    threads = torch.get_num_threads()
    if cfg.cpu_threads > 0:
        torch.set_num_threads(cfg.cpu_threads)
    try:
        return train_and_score(cfg, train_items, test_items, ev)
    finally:
        torch.set_num_threads(threads)


def compare(
    cfg: Any,
    train_items: Any,
    test_items: Any,
    ev: EvalConfig = EvalConfig(),
    warm_steps: int = 0,
    warm_lr: float = 0.0,
    parallel: bool = False,
) -> dict:
    """Train (i) the mask UNet and (ii) the plain UNet from the same base on the same data and steps
    (same loss, same seeds); score both on ``test_items``; write ``report.json`` in ``cfg.output_dir``.

    ``warm_steps`` > 0: first train one plain UNet from ``cfg.base`` for that many steps (seed
    ``cfg.seed + 1``, lr ``warm_lr`` or ``cfg.lr``), then fork both runs from it: (i) grows ``conv_in`` by
    the zero-initialised mask channel (:func:`~.model.grow_conv_in`), (ii) stays plain. ``parallel``
    trains the two forks side by side in two spawned processes (no progress bars); each run computes
    exactly what it computes alone, so the report is the same as a sequential one (timings aside)."""
    root = Path(cfg.output_dir)
    report: dict = {"config": asdict(cfg), "eval": asdict(ev), "runs": {}, "warm_steps": warm_steps}
    if warm_steps > 0:
        warm_dir, report["warm"] = warm_start(cfg, train_items, warm_steps, warm_lr)
        cfg = replace(cfg, base=str(warm_dir))
    runs = {
        name: replace(cfg, output_dir=str(root / name), conditioning=cond)
        for name, cond in (("mask", "concat"), ("plain", "none"))
    }
    if parallel:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(len(runs), mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {
                name: pool.submit(
                    _score_in_threads, replace(run, progress=False), train_items, test_items, ev
                )
                for name, run in runs.items()
            }
            report["runs"] = {name: f.result() for name, f in futures.items()}
    else:
        report["runs"] = {
            name: _score_in_threads(run, train_items, test_items, ev) for name, run in runs.items()
        }
    mk, pl = report["runs"]["mask"], report["runs"]["plain"]
    report["outside_reduction"] = 1.0 - mk["outside_change"] / max(pl["outside_change"], 1e-12)
    report["target_met"] = report["outside_reduction"] >= 0.5 and mk["inside_psnr"] >= pl["inside_psnr"]
    (root / "report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    return report


def table(report: dict) -> str:
    """The comparison as a Markdown table."""
    lines = [
        "| model | outside change (mean abs, lower better) | inside PSNR dB | change-map mIoU | train s |",
        "|---|---|---|---|---|",
    ]
    for name, label in (("mask", "(i) mask UNet"), ("plain", "(ii) plain UNet")):
        r = report["runs"][name]
        lines.append(
            f"| {label} | {r['outside_change']:.4f} | {r['inside_psnr']:.2f} | {r['change_miou']:.3f} "
            f"| {r['train_s']:.0f} |"
        )
    floor = report["runs"]["mask"]["outside_floor"]
    lines.append(f"| encoded target (floor) | {floor:.4f} | - | - | - |")
    return "\n".join(lines)
