"""Tiny synthetic dataset folders in the PIE-Bench and MagicBrush layouts (tests, demos of ``eval``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from maskpix_desktop.core import images, masks

PIE_PROMPTS = [
    ("a cat sitting on a wall", "a [tiger] sitting on a wall", "turn the cat into a tiger", "1"),
    ("a red car on a road", "a [blue] car on a road", "make the car blue", "6"),
    ("a bowl of fruit", "a bowl of fruit [and a banana]", "add a banana", "2"),
    ("a house in a field", "a house in a field [at night]", "make it night", "8"),
    ("a dog on the grass", "a [wooden] dog on the grass", "make the dog wooden", "7"),
    (
        "a portrait of a woman",
        "a portrait of a woman [in van gogh style]",
        "make it a van gogh painting",
        "9",
    ),
    ("a vase with flowers", "a vase with [tulips]", "replace the flowers with tulips", "1"),
    ("a boat on a lake", "a [golden] boat on a lake", "make the boat golden", "6"),
]


def synthetic_image(h: int, w: int, seed: int) -> np.ndarray:
    """Smooth colour ramps, a few discs and seeded noise: deterministic, never constant."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack(
        [
            255.0 * xx / max(w - 1, 1),
            255.0 * yy / max(h - 1, 1),
            127.5 + 90.0 * np.sin((xx + 2 * yy + 13 * seed) / (0.05 * w + 1)),
        ],
        axis=-1,
    )
    for _ in range(3):
        cy, cx, r = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w, rng.uniform(0.08, 0.2) * min(h, w)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0, 255, 3)
    img += rng.normal(0.0, 12.0, size=img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def ellipse_mask(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(1000 + seed)
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    ry, rx = rng.uniform(0.12, 0.3) * h, rng.uniform(0.12, 0.3) * w
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def make_pie_folder(root: str | Path, n: int = 8, *, bad: bool = True) -> Path:
    """A PIE-Bench-style folder: ``mapping_file.json`` + ``annotation_images/`` with ``n`` 512x512 items.

    With ``bad``, two more records: ``bad_unreadable`` (a file that is not an image) and
    ``bad_size`` (a 256x256 image: PIE masks are defined at 512x512).
    """
    root = Path(root)
    img_dir = root / "annotation_images" / "0_random_140"
    img_dir.mkdir(parents=True, exist_ok=True)
    mapping: dict[str, dict] = {}
    for i in range(n):
        src, tgt, instr, etype = PIE_PROMPTS[i % len(PIE_PROMPTS)]
        key = f"{int(etype)}{i:011d}"
        images.save_image(img_dir / f"{key}.jpg", synthetic_image(512, 512, i), quality=95)
        mapping[key] = {
            "image_path": f"0_random_140/{key}.jpg",
            "original_prompt": src,
            "editing_prompt": tgt,
            "editing_instruction": instr,
            "editing_type_id": etype,
            "blended_word": "",
            "mask": masks.pie_rle_encode(ellipse_mask(512, 512, i)),
        }
    if bad:
        (img_dir / "broken.jpg").write_bytes(b"this is not a jpeg")
        small = "0_random_140/small.png"
        images.save_image(root / "annotation_images" / small, synthetic_image(256, 256, 99))
        for key, path in (("bad_unreadable", "0_random_140/broken.jpg"), ("bad_size", small)):
            mapping[key] = {
                "image_path": path,
                "original_prompt": "a thing",
                "editing_prompt": "a [red] thing",
                "editing_instruction": "make it red",
                "editing_type_id": "6",
                "mask": masks.pie_rle_encode(ellipse_mask(512, 512, 7)),
            }
    (root / "mapping_file.json").write_text(json.dumps(mapping, indent=1), encoding="utf-8")
    return root


def magicbrush_hf_record(img_id: str, instruction: str, turn: int = 1, **extra: object) -> dict:
    """One ``metadata.jsonl`` record of the Hugging Face MagicBrush layout for turn ``turn`` of an image in
    ``images/`` (as :func:`make_magicbrush_folder` writes them); ``extra`` adds or overrides columns."""
    base = f"images/{img_id}/{img_id}"
    return {
        "img_id": img_id,
        "turn_index": turn,
        "source_img": f"{base}-input.png" if turn == 1 else f"{base}-output{turn - 1}.png",
        "mask_img": f"{base}-mask{turn}.png",
        "instruction": instruction,
        "target_img": f"{base}-output{turn}.png",
        **extra,
    }


def make_magicbrush_folder(root: str | Path, size: int = 128) -> Path:
    """A MagicBrush-test-style folder: ``edit_sessions.json``, ``global_descriptions.json`` (captions
    ``a picture after: <instruction>``), ``local_descriptions.json`` (other captions, ``the edited part:
    <instruction>``; CLIP-T's) and ``images/<id>/<id>-input.png``, ``-maskK.png`` (RGBA, the edit region
    transparent, at half the image's resolution as some MagicBrush masks are), ``-outputK.png``. Three turns
    over two images."""
    root = Path(root)
    sessions: dict[str, list] = {}
    captions: dict[str, dict] = {}
    local: dict[str, dict] = {}
    specs = {"327726": ["put a hat on the man", "make the hat red"], "242679": ["turn the sky pink"]}
    for s, (img_id, instructions) in enumerate(specs.items()):
        folder = root / "images" / img_id
        folder.mkdir(parents=True, exist_ok=True)
        source = synthetic_image(size, size, 50 + s)
        images.save_image(folder / f"{img_id}-input.png", source)
        turns, caps, local_caps = [], {}, {}
        current = source
        for k, instr in enumerate(instructions, start=1):
            m = ellipse_mask(size, size, 60 + 10 * s + k)
            target = current.copy()
            target[m] = (np.asarray(current[m], np.int16) // 2 + np.array([120, 20, 40])).clip(0, 255)
            small = masks.resize_mask(m, (size // 2, size // 2))
            rgba = np.dstack([images.resize_image(current, (size // 2, size // 2)), np.where(small, 0, 255)])
            images.save_image(folder / f"{img_id}-mask{k}.png", rgba.astype(np.uint8))
            images.save_image(folder / f"{img_id}-output{k}.png", target)
            name_in = f"{img_id}-input.png" if k == 1 else f"{img_id}-output{k - 1}.png"
            turns.append(
                {
                    "input": name_in,
                    "mask": f"{img_id}-mask{k}.png",
                    "instruction": instr,
                    "output": f"{img_id}-output{k}.png",
                }
            )
            caps[f"{img_id}-output{k}.png"] = f"a picture after: {instr}"
            local_caps[f"{img_id}-output{k}.png"] = f"the edited part: {instr}"
            current = target
        sessions[img_id] = turns
        captions[img_id] = caps
        local[img_id] = local_caps
    (root / "edit_sessions.json").write_text(json.dumps(sessions, indent=1), encoding="utf-8")
    (root / "global_descriptions.json").write_text(json.dumps(captions, indent=1), encoding="utf-8")
    (root / "local_descriptions.json").write_text(json.dumps(local, indent=1), encoding="utf-8")
    return root
