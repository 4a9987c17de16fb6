"""Train the mask UNet (``conditioning`` "concat", "attention" or "both"; see :mod:`.model`) or, for
comparison, the plain IP2P UNet (``"none"``) with Hugging Face accelerate: CPU, one GPU, or
``accelerate launch`` on many. Validation images and TensorBoard: :mod:`.monitor`.

Loss = prediction MSE (the base scheduler's ``prediction_type``: epsilon as in IP2P, v_prediction or
sample) + ``consistency_weight`` * mask consistency, where the consistency
term is ``abar_t * |x0_pred - src|^2`` over the latent cells outside the mask (outside both the true
mask and the jittered mask the model was fed, grown by ``keep_margin`` cells; only for items that kept
their image conditioning). Weighting by ``abar_t`` equals ``|x_t - sqrt(1-abar_t) eps_pred - sqrt(abar_t)
src|^2``, which stays finite at high noise levels.

Exact resume: each step's data (:func:`~.data.sample_indices`) and randomness
(:func:`~.data.step_generator`) are pure functions of ``(seed, step)``; model, optimizer and EMA come
back from ``accelerator.load_state``. A run killed after any checkpoint and resumed logs the same
losses, bit for bit, as one that never stopped (on the same device and software).
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from maskpix_desktop.core.maskcond import augment, monitor
from maskpix_desktop.core.maskcond.attention import ATTR, has_mask_attention, install_mask_attention
from maskpix_desktop.core.maskcond.data import EncodedSet, encode_items, sample_indices, step_generator
from maskpix_desktop.core.maskcond.model import (
    TYPES,
    MaskConditioning,
    grow_conv_in,
    save_mask_checkpoint,
    uses_attention,
)
from maskpix_desktop.core.maskcond.pipeline import mask_channel

CSV_FIELDS = ("step", "loss", "eps_loss", "consistency", "lr")


@dataclass
class TrainConfig:
    """Every knob of a run; saved as ``train_config.json`` in the output folder."""

    base: str
    output_dir: str
    conditioning: str = "concat"  # concat | attention | both: the mask UNet (model.py); none: plain IP2P
    attention_tokens: int = 16  # attention / both: mask tokens (a square number)
    attention_dim: int = 64  # attention / both: token width
    steps: int = 200
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 1e-4
    seed: int = 0
    consistency_weight: float = 0.5
    keep_margin: int = 1
    p_drop: float = 0.05  # IP2P conditioning dropout (text / image / both)
    p_mask_drop: float = 0.1
    jitter_px: int = 2
    jitter_shift: int = 2
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    calibrate_scaling: bool = True  # set the VAE scaling factor to 1/std(latents), as SD's 0.18215 was
    mixed_precision: str = "no"  # accelerate: no | fp16 | bf16
    gradient_checkpointing: bool = False
    adam_8bit: bool = False  # bitsandbytes AdamW8bit, CUDA only
    ema_decay: float = 0.0  # 0: no EMA; else EMA weights are the ones saved as final
    lora_rank: int = 0  # >0: LoRA (peft) on the attention projections + all of conv_in; 0: full fine-tune
    lora_alpha: float = 0.0  # LoRA scale numerator; 0: the rank (scale 1)
    cpu: bool = False
    cpu_threads: int = 0  # >0: torch.set_num_threads on CPU (1 avoids thrashing on a busy 2-core machine)
    progress: bool = True
    log_with: str = ""  # "tensorboard": accelerate's tracker in output_dir/tensorboard (needs tensorboard)
    validate_every: int = 0  # >0: validation images (output_dir/validation) every N steps
    validation_items: int = 4  # the first N training items, sampled with and without their mask
    extra: dict = field(default_factory=dict)


@dataclass
class TrainResult:
    losses: list[dict]
    final_dir: Path
    scaling_factor: float

    @property
    def final_loss(self) -> float:
        """The mean loss of the last 20 steps (0 when there are none)."""
        tail = self.losses[-20:]
        return sum(r["loss"] for r in tail) / max(len(tail), 1)


def _load_base(base: str) -> Any:
    from diffusers import StableDiffusionInstructPix2PixPipeline
    from diffusers.pipelines import pipeline_utils

    key = "dtype" if hasattr(pipeline_utils, "_resolve_dtype") else "torch_dtype"
    pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(
        base, **{key: torch.float32}, safety_checker=None, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def checkpoints(out: Path) -> list[Path]:
    """Complete checkpoints in ``out/checkpoints``, oldest first (half-written ``.tmp`` ones ignored)."""
    root = out / "checkpoints"
    found = [
        p
        for p in root.glob("step-*")
        if p.name[5:].isdigit() and p.is_dir() and (p / "train_state.json").is_file()
    ]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def read_losses(out: Path) -> list[dict]:
    """The rows of ``out/losses.csv`` (numbers as floats, step as int)."""
    path = Path(out) / "losses.csv"
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as fh:
        return [
            {k: (int(v) if k == "step" else float(v)) for k, v in row.items()} for row in csv.DictReader(fh)
        ]


def _write_losses(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)


#: The modules LoRA adapts: every attention projection of the UNet (self- and cross-attention).
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


def add_lora(unet: Any, rank: int, alpha: float = 0.0) -> list[torch.nn.Parameter]:
    """Freeze ``unet``, give its attention projections a LoRA adapter (peft; B starts at zero, so the UNet
    still computes what it did) and keep ``conv_in`` (with the mask channel's weights) and the mask
    attention branch, if any, trainable; return the trainable parameters."""
    try:
        from peft import LoraConfig
    except ImportError as exc:
        raise ValueError("lora_rank needs the peft package: install peft (pip install peft)") from exc
    unet.requires_grad_(False)
    unet.add_adapter(
        LoraConfig(
            r=rank, lora_alpha=alpha or rank, init_lora_weights="gaussian", target_modules=list(LORA_TARGETS)
        )
    )
    unet.conv_in.requires_grad_(True)
    if has_mask_attention(unet):  # the new branch trains in full, like conv_in (peft froze it)
        getattr(unet, ATTR).requires_grad_(True)
    return [p for p in unet.parameters() if p.requires_grad]


def merge_lora(unet: Any) -> Any:
    """Fold the LoRA adapter into the base weights and remove it: a plain UNet that saves and loads as
    any diffusers UNet."""
    unet.fuse_lora()
    unet.unload_lora()
    return unet


def _optimizer(cfg: TrainConfig, params: Any, device: torch.device) -> torch.optim.Optimizer:
    if cfg.adam_8bit:
        if device.type != "cuda":
            raise ValueError("adam_8bit needs a CUDA device (bitsandbytes); use the default AdamW here")
        try:
            import bitsandbytes as bnb
        except ImportError as exc:
            raise ValueError("adam_8bit needs the bitsandbytes package: pip install bitsandbytes") from exc
        return bnb.optim.AdamW8bit(params, lr=cfg.lr)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-2)


def micro_loss(
    unet: Any,
    data: EncodedSet,
    idx: list[int],
    gen: torch.Generator,
    cfg: TrainConfig,
    sched: Any,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, eps loss, consistency) of one micro-batch; all randomness drawn from ``gen``."""
    dev = next(unet.parameters()).device
    ix = torch.tensor(idx)
    src, tgt, m_px = data.src[ix] * scale, data.tgt[ix] * scale, data.mask[ix]
    b, hw = len(idx), tuple(src.shape[-2:])
    noise = torch.randn(tgt.shape, generator=gen)
    t = torch.randint(0, sched.config.num_train_timesteps, (b,), generator=gen)
    drop = augment.conditioning_dropout(b, gen, cfg.p_drop, cfg.p_mask_drop)
    fed = augment.jitter_masks(m_px, gen, cfg.jitter_px, cfg.jitter_shift)
    noisy = sched.add_noise(tgt, noise, t)
    emb = data.embeds[torch.where(drop.text, data.null_index, data.prompt_idx[ix])]
    img = (src / scale) * (~drop.image).float()[:, None, None, None]  # IP2P feeds unscaled image latents
    parts = [noisy, img]
    if cfg.conditioning != "none":
        ch = mask_channel(fed, hw, b)
        parts.append(ch * (~drop.mask).float()[:, None, None, None])
    pred = unet(torch.cat(parts, 1).to(dev), t.to(dev), encoder_hidden_states=emb.to(dev)).sample.float()
    ptype = sched.config.prediction_type  # the base's: epsilon (IP2P), v_prediction or sample
    if ptype not in ("epsilon", "v_prediction", "sample"):
        raise ValueError(f"unsupported prediction_type {ptype!r}")
    goal = {"epsilon": noise, "sample": tgt}.get(ptype)
    goal = sched.get_velocity(tgt, noise, t) if goal is None else goal  # v_prediction
    eps = F.mse_loss(pred, goal.to(dev))
    cons = torch.zeros((), device=dev)
    if cfg.consistency_weight > 0:
        abar = sched.alphas_cumprod[t].float().view(b, 1, 1, 1).to(dev)
        if ptype == "epsilon":
            resid = noisy.to(dev) - (1 - abar).sqrt() * pred - abar.sqrt() * src.to(dev)
        else:  # sqrt(abar) * (x0_pred - src), as for epsilon
            x0 = pred if ptype == "sample" else abar.sqrt() * noisy.to(dev) - (1 - abar).sqrt() * pred
            resid = abar.sqrt() * (x0 - src.to(dev))
        fed_eff = torch.where(drop.mask[:, None, None, None], m_px, fed)
        keep = 1.0 - augment.latent_cover(torch.maximum(m_px, fed_eff), hw, cfg.keep_margin)
        keep = (keep * (~drop.image).float()[:, None, None, None]).to(dev)
        cons = (keep * resid.pow(2)).sum() / (keep.sum() * resid.shape[1]).clamp_min(1.0)
    return eps + cfg.consistency_weight * cons, eps.detach(), cons.detach()


def train(
    cfg: TrainConfig, items: Sequence[Any], *, resume: bool = True, stop_after: int | None = None
) -> TrainResult:
    """Run (or resume) training on ``items``; ``stop_after`` ends the process early (tests: a "kill").

    ``cfg.cpu_threads`` applies for the run only: the caller's torch thread count is restored after it.
    """
    threads = torch.get_num_threads()
    try:
        return _train(cfg, items, resume=resume, stop_after=stop_after)
    finally:
        torch.set_num_threads(threads)


def _train(cfg: TrainConfig, items: Sequence[Any], *, resume: bool, stop_after: int | None) -> TrainResult:
    from accelerate import Accelerator
    from diffusers import DDPMScheduler
    from tqdm.auto import tqdm

    if cfg.conditioning not in (*TYPES, "none"):
        raise ValueError(f"conditioning must be one of {[*TYPES, 'none']}, got {cfg.conditioning!r}")
    if cfg.lora_rank > 0:
        try:
            import peft  # noqa: F401
        except ImportError as exc:  # before any model loads
            raise ValueError("lora_rank needs the peft package: install peft (pip install peft)") from exc
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    log_with = monitor.check_tracker(cfg.log_with)
    acc = Accelerator(
        cpu=cfg.cpu, mixed_precision=cfg.mixed_precision, project_dir=str(out), log_with=log_with
    )
    if cfg.cpu_threads > 0 and acc.device.type == "cpu":
        torch.set_num_threads(cfg.cpu_threads)
    pipe = _load_base(cfg.base).to(acc.device)
    data = encode_items(pipe, items)
    scale = round(1.0 / data.latent_std(), 5) if cfg.calibrate_scaling else pipe.vae.config.scaling_factor
    pipe.vae.register_to_config(scaling_factor=scale)
    sched = DDPMScheduler.from_config(pipe.scheduler.config)
    unet = pipe.unet
    if cfg.conditioning != "none":
        grow_conv_in(unet)
    if uses_attention(cfg.conditioning):
        tok, dim = cfg.attention_tokens, cfg.attention_dim
        install_mask_attention(unet, tokens=tok, dim=dim, concat=cfg.conditioning == "both", seed=cfg.seed)
    if cfg.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    params = add_lora(unet, cfg.lora_rank, cfg.lora_alpha) if cfg.lora_rank > 0 else list(unet.parameters())
    unet.train()
    opt = _optimizer(cfg, params, acc.device)
    unet, opt = acc.prepare(unet, opt)
    ema = None
    if cfg.ema_decay > 0:
        from diffusers.training_utils import EMAModel

        ema = EMAModel(acc.unwrap_model(unet).parameters(), decay=cfg.ema_decay)
        acc.register_for_checkpointing(ema)

    start = 0
    done = checkpoints(out) if resume else []
    if done:
        acc.load_state(str(done[-1]))
        start = json.loads((done[-1] / "train_state.json").read_text())["step"]
    elif acc.is_main_process:
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    if log_with:
        acc.init_trackers("tensorboard", config=monitor.tracker_config(asdict(cfg)))
    if acc.is_main_process:
        (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=1), encoding="utf-8")
    rows = [r for r in read_losses(out) if r["step"] <= start] if done else []
    csv_path = out / "losses.csv"
    if acc.is_main_process:
        _write_losses(csv_path, rows)
    world, rank, bsz = acc.num_processes, acc.process_index, cfg.batch_size
    bar = tqdm(
        total=cfg.steps, initial=start, disable=not (cfg.progress and acc.is_main_process), unit="step"
    )
    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    for step in range(start, end):
        tot = eps_sum = cons_sum = 0.0
        for micro in range(cfg.grad_accum):
            first = ((step * cfg.grad_accum + micro) * world + rank) * bsz
            idx = sample_indices(len(data), cfg.seed, first, bsz)
            gen = step_generator(cfg.seed, step, micro, rank)
            sync = nullcontext() if micro == cfg.grad_accum - 1 else acc.no_sync(unet)
            with sync, acc.autocast():
                loss, eps, cons = micro_loss(unet, data, idx, gen, cfg, sched, scale)
                acc.backward(loss / cfg.grad_accum)
            tot, eps_sum, cons_sum = tot + float(loss.detach()), eps_sum + float(eps), cons_sum + float(cons)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if ema is not None:
            ema.step(acc.unwrap_model(unet).parameters())
        stats = torch.tensor([tot, eps_sum, cons_sum], device=acc.device) / cfg.grad_accum
        stats = acc.reduce(stats, reduction="mean") if world > 1 else stats
        row = dict(zip(CSV_FIELDS, [step + 1, *map(float, stats.tolist()), cfg.lr], strict=True))
        rows.append(row)
        bar.update(1)
        bar.set_postfix(loss=f"{row['loss']:.4f}")
        if acc.is_main_process:
            with csv_path.open("a", newline="", encoding="utf-8") as fh:
                csv.DictWriter(fh, fieldnames=CSV_FIELDS).writerow(row)
        if log_with:
            acc.log({k: v for k, v in row.items() if k != "step"}, step=step + 1)
        if cfg.validate_every > 0 and ((step + 1) % cfg.validate_every == 0 or step + 1 == cfg.steps):
            if acc.is_main_process:
                monitor.validate(acc, pipe, acc.unwrap_model(unet), items, cfg, step + 1)
            acc.wait_for_everyone()
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
            _save_checkpoint(acc, out, step + 1, cfg.keep_checkpoints)
    bar.close()
    if log_with:
        acc.end_training()
    final = out / "final"
    if end == cfg.steps and acc.is_main_process:
        _save_final(acc, pipe, unet, ema, cfg, final)
    acc.wait_for_everyone()
    return TrainResult(losses=rows, final_dir=final, scaling_factor=scale)


def _save_checkpoint(acc: Any, out: Path, step: int, keep: int) -> Path:
    """accelerate state into ``step-N.tmp``, then renamed: a kill leaves the previous checkpoint usable."""
    root = out / "checkpoints"
    final, tmp = root / f"step-{step:07d}", root / f"step-{step:07d}.tmp"
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    acc.wait_for_everyone()
    acc.save_state(str(tmp))
    if acc.is_main_process:
        (tmp / "train_state.json").write_text(json.dumps({"step": step}), encoding="utf-8")
        shutil.rmtree(final, ignore_errors=True)
        tmp.replace(final)
        for old in checkpoints(out)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    acc.wait_for_everyone()
    return final


def _save_final(acc: Any, pipe: Any, unet: Any, ema: Any, cfg: TrainConfig, final: Path) -> None:
    """The trained pipeline as a diffusers folder (+ ``maskpix_conditioning.json`` for a mask UNet); a LoRA
    mask run also writes ``output_dir/lora`` (the unmerged adapter, loaded on top of the base)."""
    from maskpix_desktop.core.maskcond.model import mask_pipeline_from_ip2p, save_lora_checkpoint

    model = acc.unwrap_model(unet)
    if ema is not None:
        ema.copy_to(model.parameters())
    model.eval()
    keys = ("steps", "batch_size", "lr", "consistency_weight", "seed", "lora_rank", "p_mask_drop")
    base = str(Path(cfg.base).resolve()) if Path(cfg.base).is_dir() else cfg.base
    cond = MaskConditioning(
        type=cfg.conditioning if cfg.conditioning != "none" else "concat",
        attention_tokens=cfg.attention_tokens,
        attention_dim=cfg.attention_dim,
        base_model=base,
        training={k: getattr(cfg, k) for k in keys},
    )
    if cfg.lora_rank > 0:
        if cfg.conditioning != "none":
            scale = float(pipe.vae.config.scaling_factor)
            lora = {
                "rank": cfg.lora_rank,
                "alpha": cfg.lora_alpha or cfg.lora_rank,
                "targets": list(LORA_TARGETS),
            }
            save_lora_checkpoint(
                model, final.parent / "lora", replace(cond, lora={**lora, "vae_scaling_factor": scale})
            )
        merge_lora(model)
    pipe.unet = model
    if cfg.conditioning != "none":
        save_mask_checkpoint(mask_pipeline_from_ip2p(pipe, copy_unet=False), final, cond)
    else:
        pipe.save_pretrained(final, safe_serialization=True)


def loss_drop(rows: list[dict], window: int = 5) -> float:
    """Mean loss of the last ``window`` steps divided by that of the first ``window``."""
    head = [r["loss"] for r in rows[:window]]
    tail = [r["loss"] for r in rows[-window:]]
    return (sum(tail) / len(tail)) / max(sum(head) / len(head), 1e-12) if rows else math.nan
