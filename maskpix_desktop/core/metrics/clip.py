"""CLIP scores: :class:`ClipScorer`, an open_clip model loaded from local files only (never downloaded)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from maskpix_desktop.core.errors import MaskPixError, MissingWeightsError, OutOfMemoryError, WeightsError
from maskpix_desktop.core.metrics.pixel import region_crop

if TYPE_CHECKING:
    import torch

CLIP_FETCH_COMMAND = "maskpix-cli models download clip"

_WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")


# ------------------------------------------------------------------------------------------------ CLIP


def _is_weights_path(open_clip: Any, model_name: str, pretrained: str) -> bool:
    """A file path rather than a tag: a weights suffix or a separator, or an existing file that is no tag."""
    if pretrained.lower().endswith(_WEIGHT_SUFFIXES) or "/" in pretrained or os.sep in pretrained:
        return True
    return (
        not open_clip.get_pretrained_cfg(model_name, pretrained) and Path(pretrained).expanduser().is_file()
    )


def _register_config(open_clip: Any, config_path: Path, model_name: str) -> None:
    """Register a JSON model config with open_clip under its file stem (which must be ``model_name``)."""
    import json

    if config_path.stem != model_name:
        raise MaskPixError(
            f"CLIP config {config_path} registers the model '{config_path.stem}', not '{model_name}': "
            "name the file after the model."
        )
    if not config_path.is_file():
        raise MissingWeightsError(f"CLIP model config '{model_name}'", config_path, CLIP_FETCH_COMMAND)
    try:
        cfg = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise WeightsError(f"CLIP model config {config_path} is not readable JSON: {e}") from e
    if not all(k in cfg for k in ("embed_dim", "vision_cfg", "text_cfg")):
        raise WeightsError(f"CLIP model config {config_path} lacks embed_dim / vision_cfg / text_cfg.")
    if open_clip.get_model_config(model_name) != cfg:
        open_clip.add_model_config(config_path)


def _resolve_tag(open_clip: Any, model_name: str, tag: str, cache_dir: Path | None) -> tuple[Path, dict]:
    """Find a tag's weights in the local cache without touching the network; returns (file, tag config)."""
    from huggingface_hub import constants as hf_constants
    from huggingface_hub import try_to_load_from_cache

    cfg = open_clip.get_pretrained_cfg(model_name, tag)
    if not cfg:
        known = ", ".join(open_clip.list_pretrained_tags_by_model(model_name)) or "none"
        raise MaskPixError(
            f"'{tag}' is neither a weights file nor a known open_clip tag for {model_name} (known: {known})."
        )
    expected: Path | None = None
    hf_hub = cfg.get("hf_hub", "")
    if hf_hub:
        repo_id, filename = os.path.split(hf_hub)
        names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        if filename.endswith((".bin", ".pth")):
            names.insert(0, filename[:-4] + ".safetensors")
        for name in names:
            hit = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
            if isinstance(hit, str) and Path(hit).is_file():
                return Path(hit), cfg
        root = Path(cache_dir) if cache_dir is not None else Path(hf_constants.HF_HUB_CACHE)
        expected = root / f"models--{repo_id.replace('/', '--')}" / "snapshots" / "<revision>" / names[0]
    url = cfg.get("url", "")
    if url:
        root = Path(cache_dir) if cache_dir is not None else Path("~/.cache/clip").expanduser()
        target = root / os.path.basename(url)
        if target.is_file():
            return target, cfg
        expected = expected or target
    raise MissingWeightsError(
        f"CLIP {model_name}/{tag}", expected or Path(str(cache_dir)), CLIP_FETCH_COMMAND
    )


class ClipScorer:
    """An open_clip model in eval mode with its preprocessing and tokenizer; loaded only from local files."""

    def __init__(self, model: Any, preprocess: Any, tokenizer: Any, device: str, name: str):
        self.model = model
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.device = device
        self.name = name

    @classmethod
    def load(
        cls,
        model_name: str = "ViT-B-32",
        pretrained: str | Path = "openai",
        device: str = "cpu",
        cache_dir: str | Path | None = None,
        config_path: str | Path | None = None,
    ) -> ClipScorer:
        """Load a CLIP model offline.

        ``pretrained`` is either an open_clip tag, looked up in ``cache_dir`` (open_clip's cache: the
        Hugging Face hub cache layout, or the URL file name) and never downloaded, or a local weights file
        (.safetensors / .bin / .pt / .pth state dict, loaded with ``weights_only=True``). ``config_path``
        registers a JSON model config (file stem = ``model_name``) for architectures open_clip lacks.
        Raises MissingWeightsError when files are absent and WeightsError when they are unusable.
        """
        import open_clip
        import torch

        cache = Path(cache_dir).expanduser() if cache_dir is not None else None
        if config_path is not None:
            _register_config(open_clip, Path(config_path).expanduser(), model_name)
        if open_clip.get_model_config(model_name) is None:
            raise MaskPixError(f"Unknown CLIP architecture '{model_name}' (no open_clip model config).")

        overrides: dict[str, Any] = {}
        pretrained = str(pretrained)
        if _is_weights_path(open_clip, model_name, pretrained):
            weights = Path(pretrained).expanduser()
            if not weights.is_file():
                raise MissingWeightsError(f"CLIP {model_name}", weights, CLIP_FETCH_COMMAND)
            name = f"{model_name}/{weights.name}"
        else:
            weights, tag_cfg = _resolve_tag(open_clip, model_name, pretrained, cache)
            name = f"{model_name}/{pretrained}"
            # What open_clip takes from a tag's config, applied by hand since we pass a file path.
            overrides = {
                "force_quick_gelu": bool(tag_cfg.get("quick_gelu", False)),
                "image_mean": tag_cfg.get("mean"),
                "image_std": tag_cfg.get("std"),
                "image_interpolation": tag_cfg.get("interpolation"),
                "image_resize_mode": tag_cfg.get("resize_mode"),
            }
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                model_name, pretrained=str(weights), device=device, weights_only=True, **overrides
            )
        except torch.cuda.OutOfMemoryError as e:
            raise OutOfMemoryError(f"Out of memory loading CLIP {name} on {device}.") from e
        except Exception as e:
            detail = (str(e).strip().splitlines() or [""])[0][:300]
            raise WeightsError(
                f"CLIP weights {weights} could not be loaded as {model_name} ({type(e).__name__}: {detail})"
            ) from e
        model.eval()
        try:
            tokenizer = open_clip.get_tokenizer(model_name)
        except Exception as e:
            raise MaskPixError(f"The tokenizer of CLIP {model_name} is not available offline: {e}") from e
        return cls(model, preprocess, tokenizer, device, name)

    def image_features(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """L2-normalised image embeddings (N x D, float32, on the model's device) of RGB uint8 images."""
        import torch
        from PIL import Image

        with torch.inference_mode():
            batch = torch.stack([self.preprocess(Image.fromarray(np.ascontiguousarray(im))) for im in images])
            feats = self.model.encode_image(batch.to(self.device)).float()
            return feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        """L2-normalised text embeddings (N x D, float32)."""
        import torch

        with torch.inference_mode():
            feats = self.model.encode_text(self.tokenizer(list(texts)).to(self.device)).float()
            return feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    @staticmethod
    def _score(img_feat: torch.Tensor, txt_feat: torch.Tensor) -> float:
        return max(100.0 * float((img_feat * txt_feat).sum()), 0.0)

    @staticmethod
    def _direction(src_img: Any, edit_img: Any, src_txt: Any, tgt_txt: Any) -> float:
        import torch

        d_img, d_txt = edit_img - src_img, tgt_txt - src_txt
        return float(torch.nn.functional.cosine_similarity(d_img, d_txt, dim=0, eps=1e-8))

    def score(self, image: np.ndarray, text: str) -> float:
        """CLIP score ``max(100 * cos(E_img, E_text), 0)``."""
        return self._score(self.image_features([image])[0], self.text_features([text])[0])

    def region_score(self, image: np.ndarray, mask: np.ndarray, text: str) -> float:
        """CLIP score of :func:`region_crop` (padded mask box, non-mask pixels mean-filled); nan if empty."""
        crop = region_crop(image, mask)
        return float("nan") if crop is None else self.score(crop, text)

    def direction(self, src_img: np.ndarray, edit_img: np.ndarray, src_text: str, tgt_text: str) -> float:
        """CLIP directional similarity ``cos(E(edit) - E(src), E(tgt_text) - E(src_text))``, in -1..1.

        Uses normalised embeddings; 0.0 when either difference vanishes (e.g. an unchanged image).
        """
        img = self.image_features([src_img, edit_img])
        txt = self.text_features([src_text, tgt_text])
        return self._direction(img[0], img[1], txt[0], txt[1])
