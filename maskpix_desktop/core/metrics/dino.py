"""DINO ViT metrics through transformers' ``ViTModel``, loaded from a local folder only (never downloaded).

- :meth:`DinoScorer.structure_distance`: PIE-Bench's "structure distance" as its official evaluation
  computes it (PnPInversion ``evaluation/matrics_calculator.py``: ``LossG.calculate_global_ssim_loss``,
  the "Splicing ViT features" self-similarity loss of Tumanyan et al. 2022, with DINO ViT-B/8): both
  images as float ``0..255`` arrays (the official code does not divide by 255), resized so the short
  side is 224 (long side at most 480, bilinear, no antialias: torchvision 0.13's tensor ``Resize``),
  normalised with the ImageNet mean/std, then the keys of the last block (CLS token included, heads
  concatenated) -> their cosine self-similarity matrix (T x T; norms clamped at 1e-8) -> the MSE
  between the two images' matrices.
- :meth:`DinoScorer.cls_similarity`: MagicBrush's "DINO" (``evaluation/image_eval.py``, with DINO ViT-S/16):
  PIL RGB, resize the short side to 256 (bicubic), centre crop 224, ``ToTensor`` (/255), ImageNet
  normalisation, the CLS token of the final layer norm; cosine similarity of the two embeddings.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from maskpix_desktop.core.errors import MissingWeightsError, OutOfMemoryError, WeightsError

if TYPE_CHECKING:
    import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: PIE-Bench: ``Resize(224, max_size=480)`` (``dino_global_patch_size``); MagicBrush: 256 then crop 224.
PIE_SHORT_SIDE, PIE_MAX_SIZE = 224, 480
MB_RESIZE, MB_CROP = 256, 224
#: The DINO hub models' LayerNorm eps (``partial(nn.LayerNorm, eps=1e-6)``), set on load.
DINO_LN_EPS = 1e-6


def fetch_command(name: str) -> str:
    return f"maskpix-cli models download {name}"


def pie_resized_size(h: int, w: int) -> tuple[int, int]:
    """torchvision ``Resize(224, max_size=480)``'s output size (``_compute_resized_output_size``)."""
    short, long = (h, w) if h <= w else (w, h)
    new_short, new_long = PIE_SHORT_SIDE, int(PIE_SHORT_SIDE * long / short)
    if new_long > PIE_MAX_SIZE:
        new_short, new_long = int(PIE_MAX_SIZE * new_short / new_long), PIE_MAX_SIZE
    return (new_short, new_long) if h <= w else (new_long, new_short)


def cosine_self_similarity(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """PnPInversion's ``attn_cosine_sim`` of a ``T x D`` matrix: ``x x^T / clamp(|x| |x|^T, eps)``."""
    norm = x.norm(dim=1, keepdim=True)
    return (x @ x.T) / (norm @ norm.T).clamp(min=eps)


class DinoScorer:
    """A DINO ``ViTModel`` in eval mode (float32) with the two benchmark transforms."""

    def __init__(self, model: Any, device: str, name: str):
        self.model = model
        self.device = device
        self.name = name

    @classmethod
    def load(cls, folder: str | Path, device: str = "cpu", fetch: str = "dino_vitb8") -> DinoScorer:
        """Load a transformers ViT folder (``config.json`` + weights) offline.

        :class:`MissingWeightsError` (with the download command) when the folder lacks its files,
        :class:`WeightsError` when they cannot be loaded as a ViT.
        """
        folder = Path(folder).expanduser()
        if not (folder / "config.json").is_file():
            raise MissingWeightsError(f"DINO ViT ({fetch})", folder, fetch_command(fetch))
        import torch
        from transformers import ViTModel

        try:
            model = ViTModel.from_pretrained(
                str(folder), add_pooling_layer=False, local_files_only=True, layer_norm_eps=DINO_LN_EPS
            )
            model = model.to(device=device, dtype=torch.float32).eval()
        except torch.cuda.OutOfMemoryError as e:
            raise OutOfMemoryError(f"Out of memory loading DINO {folder} on {device}.") from e
        except Exception as e:
            detail = (str(e).strip().splitlines() or [""])[0][:300]
            raise WeightsError(
                f"DINO weights in {folder} could not be loaded ({type(e).__name__}: {detail})"
            ) from e
        return cls(model, device, folder.name)

    def _forward(self, x: torch.Tensor) -> Any:
        """The ViT on ``x``; position embeddings interpolated when ``x`` is not the model's native size
        (PIE-Bench's 512 x 512 images become 224 x 224, DINO's native size: no interpolation)."""
        import torch

        cfg = self.model.config.image_size
        native = (cfg, cfg) if isinstance(cfg, int) else tuple(cfg)
        with torch.inference_mode():
            return self.model(pixel_values=x, interpolate_pos_encoding=tuple(x.shape[2:]) != native)

    # ------------------------------------------------------------------------------------ PIE-Bench
    def _last_key_module(self) -> Any:
        layers = getattr(self.model, "layers", None)  # transformers 5; 4: encoder.layer
        if layers is None:
            layers = self.model.encoder.layer
        att = layers[-1].attention
        for path in ("k_proj", "attention.key", "key"):  # transformers 5 / 4 names
            mod: Any = att
            for part in path.split("."):
                mod = getattr(mod, part, None)
                if mod is None:
                    break
            if mod is not None:
                return mod
        raise WeightsError(f"DINO {self.name}: cannot find the key projection of the last ViT block")

    def pie_input(self, image: np.ndarray) -> torch.Tensor:
        """PIE-Bench's input: the 0..255 float image, resized (bilinear, no antialias), normalised."""
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]
        size = pie_resized_size(x.shape[2], x.shape[3])
        if size != tuple(x.shape[2:]):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=False)
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        return ((x - mean) / std).to(self.device)

    def key_self_similarity(self, image: np.ndarray) -> torch.Tensor:
        """The ``T x T`` cosine self-similarity of the last block's keys (heads concatenated, CLS first)."""

        x = self.pie_input(image)
        keys: list[torch.Tensor] = []
        handle = self._last_key_module().register_forward_hook(lambda _m, _i, out: keys.append(out))
        try:
            self._forward(x)
        finally:
            handle.remove()
        return cosine_self_similarity(keys[-1][0].float())

    def structure_distance(self, a: np.ndarray, b: np.ndarray) -> float:
        """PIE-Bench structure distance of two RGB uint8 images (MSE of the key self-similarities)."""
        sa, sb = self.key_self_similarity(a), self.key_self_similarity(b)
        return float(((sa - sb) ** 2).mean())

    # ----------------------------------------------------------------------------------- MagicBrush
    def mb_input(self, image: np.ndarray) -> torch.Tensor:
        """MagicBrush's input: PIL Resize(256, bicubic), CenterCrop(224), ToTensor, normalise."""
        import torch
        from PIL import Image

        img = Image.fromarray(np.ascontiguousarray(image)).convert("RGB")
        w, h = img.size
        if w <= h:
            size = (MB_RESIZE, int(MB_RESIZE * h / w))
        else:
            size = (int(MB_RESIZE * w / h), MB_RESIZE)
        img = img.resize(size, Image.Resampling.BICUBIC)
        w, h = img.size
        top, left = int(round((h - MB_CROP) / 2.0)), int(round((w - MB_CROP) / 2.0))
        img = img.crop((left, top, left + MB_CROP, top + MB_CROP))
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        return ((x - mean) / std).to(self.device)

    def cls_embedding(self, image: np.ndarray) -> torch.Tensor:
        """The final-norm CLS token (D,) of MagicBrush's DINO input."""

        return self._forward(self.mb_input(image)).last_hidden_state[0, 0].float()

    def cls_similarity(self, a: np.ndarray, b: np.ndarray) -> float:
        """MagicBrush DINO: cosine of the two CLS embeddings."""
        ea, eb = self.cls_embedding(a).double(), self.cls_embedding(b).double()
        return float((ea @ eb) / (ea.norm() * eb.norm()))
