"""Text grounding with GroundingDINO (transformers ``AutoModelForZeroShotObjectDetection``): phrase -> boxes.

Weights never download at run time: a source is the registry folder (``maskpix-cli models download
grounding_dino``), a local transformers folder, or a Hugging Face id already in the local cache; anything
else raises :class:`MissingWeightsError` with the command that fetches it. No Qt here.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from maskpix_desktop.core import images, models
from maskpix_desktop.core.automask import Detection
from maskpix_desktop.core.errors import MissingWeightsError, OutOfMemoryError, WeightsError

log = logging.getLogger(__name__)

__all__ = ["BOX_THRESHOLD", "TEXT_THRESHOLD", "GroundingDetector", "format_prompt", "resolve_grounding"]

BOX_THRESHOLD = 0.3
TEXT_THRESHOLD = 0.25


def format_prompt(phrases: Sequence[str]) -> str:
    """GroundingDINO's text format: lower-case phrases, each ending with a dot ("a cat. a dog.")."""
    parts = [re.sub(r"\s+", " ", p).strip(" .").lower() for p in phrases]
    return " ".join(f"{p}." for p in parts if p)


def resolve_grounding(source: str | Path | None = None, models_dir: str | Path | None = None) -> Path | str:
    """Where to load GroundingDINO from, always offline.

    None -> the registry folder (MissingWeightsError with the fetch command if absent). An existing folder
    -> itself (it must hold ``config.json``). A Hugging Face id -> the registry folder when it is the
    registry repo and present, else the id when the local Hugging Face cache holds it (loaded with
    ``local_files_only``), else MissingWeightsError naming the command that fetches it.
    """
    spec = models.get_spec(models.DEFAULT_GROUNDING)
    if source is None or not str(source).strip():
        return models.require(models.DEFAULT_GROUNDING, models_dir)
    text = str(source).strip()
    path = Path(text).expanduser()
    if path.exists():
        if path.is_dir() and (path / "config.json").is_file():
            return path
        raise WeightsError(
            f"{path} is not a transformers model folder (no config.json). Give the folder that holds "
            f"config.json and model.safetensors, or a Hugging Face id like {spec.hf_repo}."
        )
    if text == spec.hf_repo and models.is_present(models.DEFAULT_GROUNDING, models_dir):
        return models.local_path(models.DEFAULT_GROUNDING, models_dir)
    if re.match(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$", text) and not text.startswith(("~", ".")):
        from huggingface_hub import try_to_load_from_cache

        if isinstance(try_to_load_from_cache(text, "config.json"), str):
            return text
        hint = (
            models.fetch_command(models.DEFAULT_GROUNDING, models_dir)
            if text == spec.hf_repo
            else f"huggingface-cli download {text}"
        )
        raise MissingWeightsError(text, models.local_path(models.DEFAULT_GROUNDING, models_dir), hint)
    raise MissingWeightsError("grounding_dino", path)


class GroundingDetector:
    """GroundingDINO model + processor; ndarray and phrases in, :class:`Detection` list out."""

    def __init__(self, model: Any, processor: Any, *, device: str = "cpu", model_id: str = "custom"):
        self.model = model.eval()
        self.processor = processor
        self.device = str(device)
        self.model_id = model_id
        self.calls = 0

    @classmethod
    def load(
        cls,
        source: str | Path | None = None,
        device: str = "auto",
        *,
        models_dir: str | Path | None = None,
    ) -> GroundingDetector:
        """Load from the registry folder, a local folder or a cached hub id (``local_files_only=True``)."""
        from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

        where = resolve_grounding(source, models_dir)
        dev = models.resolve_device(device)
        try:
            processor = AutoProcessor.from_pretrained(str(where), local_files_only=True)
            model = AutoModelForZeroShotObjectDetection.from_pretrained(str(where), local_files_only=True)
        except OSError as exc:
            if not Path(str(where)).exists():
                raise MissingWeightsError(
                    str(where),
                    models.local_path(models.DEFAULT_GROUNDING, models_dir),
                    models.fetch_command(models.DEFAULT_GROUNDING, models_dir),
                ) from exc
            raise WeightsError(f"Could not load GroundingDINO from {where}: {exc}") from exc
        except Exception as exc:  # transformers raises many types for broken folders
            raise WeightsError(f"Could not load GroundingDINO from {where}: {exc}") from exc
        try:
            model = model.to(dev)
        except RuntimeError as exc:
            if "out of memory" in str(exc).lower():
                raise OutOfMemoryError(f"Not enough {dev} memory to load GroundingDINO.") from exc
            raise
        return cls(model, processor, device=dev, model_id=str(where))

    def detect(
        self,
        image: np.ndarray,
        phrases: Sequence[str] | str,
        *,
        box_threshold: float = BOX_THRESHOLD,
        text_threshold: float = TEXT_THRESHOLD,
    ) -> list[Detection]:
        """Boxes for ``phrases`` on ``image`` (HxWx3 uint8), in image pixels, best score first."""
        import torch

        prompt = format_prompt([phrases] if isinstance(phrases, str) else phrases)
        if not prompt:
            return []
        h, w = image.shape[:2]
        inputs = self.processor(images=images.to_pil(image), text=prompt, return_tensors="pt")
        inputs = inputs.to(self.device)
        with torch.inference_mode():
            outputs = self.model(**inputs)
        self.calls += 1
        res = self.processor.post_process_grounded_object_detection(
            outputs,
            inputs["input_ids"],
            threshold=box_threshold,
            text_threshold=text_threshold,
            target_sizes=[(h, w)],
        )[0]
        boxes = res["boxes"].detach().float().cpu().numpy().reshape(-1, 4)
        scores = res["scores"].detach().float().cpu().numpy().reshape(-1)
        labels = list(res.get("text_labels", [""] * len(scores)))
        out = []
        for box, score, label in zip(boxes, scores, labels, strict=True):
            x0, y0, x1, y1 = (float(v) for v in box)
            x0, x1 = sorted((min(max(x0, 0.0), w), min(max(x1, 0.0), w)))
            y0, y1 = sorted((min(max(y0, 0.0), h), min(max(y1, 0.0), h)))
            if x1 - x0 < 1.0 or y1 - y0 < 1.0:
                continue
            out.append(Detection((x0, y0, x1, y1), float(score), str(label).strip()))
        out.sort(key=lambda d: -d.score)
        return out
