"""One call that writes a complete tiny models folder (IP2P, SAM, CLIP, GroundingDINO if asked + manifest)."""

from __future__ import annotations

import json
from pathlib import Path

from maskpix_desktop.core.service import MANIFEST


def make_tiny_models(folder: str | Path, seed: int = 0, *, grounding: bool = False) -> Path:
    """Write tiny random-weight models into ``folder`` with a ``maskpix-models.json`` manifest.

    ``grounding``: also a tiny GroundingDINO (``tiny-grounding/``, manifest key "grounding"); without it
    the auto mask runs on the relevance map alone, as on a machine without the grounding weights.
    """
    from maskpix_desktop.testing.tiny_clip import build_tiny_clip
    from maskpix_desktop.testing.tiny_ip2p import save_tiny_ip2p
    from maskpix_desktop.testing.tiny_sam import save_tiny_sam

    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    save_tiny_ip2p(root / "tiny-ip2p", seed=seed)
    save_tiny_sam(root / "tiny-sam.pth", seed=seed)
    clip = build_tiny_clip(root / "tiny-clip", seed=seed)
    manifest = {
        "sam": "tiny-sam.pth",
        "ip2p": "tiny-ip2p",
        "clip": {
            "model_name": clip["model_name"],
            "pretrained": str(Path(clip["pretrained"]).relative_to(root)),
            "config_path": str(Path(clip["config_path"]).relative_to(root)),
        },
    }
    if grounding:
        from maskpix_desktop.testing.tiny_grounding import save_tiny_grounding

        save_tiny_grounding(root / "tiny-grounding", seed=seed)
        manifest["grounding"] = "tiny-grounding"
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return root
