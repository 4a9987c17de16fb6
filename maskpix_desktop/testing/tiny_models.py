"""One call that writes a complete tiny models folder (IP2P, SAM, CLIP + manifest) for tests and demos."""

from __future__ import annotations

import json
from pathlib import Path

from maskpix_desktop.core.service import MANIFEST


def make_tiny_models(folder: str | Path, seed: int = 0) -> Path:
    """Write tiny random-weight models into ``folder`` with a ``maskpix-models.json`` manifest."""
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
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return root
