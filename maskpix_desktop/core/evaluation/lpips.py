"""LPIPS as PIE-Bench computes it, built from local weights only (torch is imported when it is used)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from maskpix_desktop.core import masks


class LpipsScorer:
    """LPIPS as PIE-Bench computes it (``net='squeeze'``, both images x (1 - M), inputs scaled to [-1, 1]),
    built only from local files: the ``lpips`` package's linear layers and torchvision's backbone
    checkpoint in the torch hub cache. Nothing is downloaded."""

    BACKBONES = {
        "squeeze": ("squeezenet1_1", "squeezenet1_1-b8a52dc0.pth"),
        "alex": ("alexnet", "alexnet-owt-7be5be79.pth"),
        "vgg": ("vgg16", "vgg16-397923af.pth"),
    }

    def __init__(self, model: Any, net: str, device: str):
        self.model = model
        self.net = net
        self.device = device
        self.name = f"lpips/{net}"

    @classmethod
    def load(cls, net: str = "squeeze", device: str = "cpu") -> tuple[LpipsScorer | None, str | None]:
        """``(scorer, None)``, or ``(None, reason)`` when the package or any weights file is absent."""
        try:
            import lpips  # type: ignore[import-not-found]
        except ImportError:
            return None, "the 'lpips' package is not installed (pip install lpips)"
        if net not in cls.BACKBONES:
            return None, f"unknown LPIPS net {net!r}"
        import torch
        import torchvision

        linear = Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth"
        if not linear.is_file():
            return None, f"LPIPS linear weights not found: {linear}"
        arch, fname = cls.BACKBONES[net]
        backbone = Path(torch.hub.get_dir()) / "checkpoints" / fname
        if not backbone.is_file():
            return None, f"LPIPS backbone weights not found locally: {backbone} (torchvision {arch})"
        try:
            # pnet_rand=True: lpips builds the backbone without fetching it; we load the local copy.
            model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
            tv = getattr(torchvision.models, arch)(weights=None)
            tv.load_state_dict(torch.load(backbone, map_location="cpu", weights_only=True))
            for name, block in model.net.named_children():
                if name.startswith("slice"):
                    for idx, layer in block.named_children():
                        layer.load_state_dict(tv.features[int(idx)].state_dict())
            model = model.eval().to(device)
        except Exception as exc:  # a broken install must not stop the evaluation
            return None, f"LPIPS could not be built from local weights: {type(exc).__name__}: {exc}"
        return cls(model, net, device), None

    def __call__(self, orig: np.ndarray, edit: np.ndarray, mask: np.ndarray) -> float:
        import torch

        keep = (~masks.as_bool(mask))[..., None].astype(np.float32)

        def tensor(a: np.ndarray) -> Any:
            x = torch.from_numpy(a.astype(np.float32) / 255.0 * keep).permute(2, 0, 1)[None]
            return (x * 2 - 1).to(self.device)

        with torch.inference_mode():
            return float(self.model(tensor(orig), tensor(edit)).flatten()[0])
