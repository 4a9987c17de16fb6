"""A tiny random-weight GroundingDINO (about 1.3 M parameters) saved as a transformers folder, offline.

Same architecture family as ``IDEA-Research/grounding-dino-tiny`` (Swin image backbone, BERT text encoder,
deformable encoder/decoder), scaled down so that a forward pass on a 64 px image takes milliseconds. The
BERT WordPiece vocabulary is written locally (special tokens, ASCII letters and a few whole words), so
nothing is downloaded. ``decoder_layers`` must be at least 2: transformers ties the per-layer box heads to
the first one (``bbox_embed.(?![0])\\d+``), and the save/load round trip needs more than one layer to
resolve that pattern.

With random weights the boxes are arbitrary; the model exists to exercise the real loading, processing and
post-processing code (``GroundingDetector.load``) in tests.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

TINY_IMAGE_SIDE = 64

# Whole words the tests use as targets; everything else falls back to single letters (WordPiece "##x").
_WORDS = (
    "a an the and of cat cats dog dogs car cars person man woman people bird tree sky house shirt hat "
    "apple apples flower flowers boat horse cup table chair"
).split()


def tiny_vocab() -> list[str]:
    """WordPiece vocabulary: BERT's special tokens, punctuation, letters (plain and ``##``), digits, words."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list(string.ascii_lowercase) + list(string.digits) + list(".,!?'-:;\"()")
    vocab = specials + chars + ["##" + c for c in string.ascii_lowercase + string.digits]
    for w in _WORDS:
        if w not in vocab:
            vocab.append(w)
    return vocab


def tiny_config(num_queries: int = 16, max_text_len: int = 32) -> Any:
    """The ``GroundingDinoConfig`` of the tiny model (Swin + BERT sub-configs, 2 encoder/decoder layers)."""
    from transformers import BertConfig, GroundingDinoConfig, SwinConfig

    backbone = SwinConfig(
        image_size=TINY_IMAGE_SIDE,
        patch_size=4,
        embed_dim=28,
        depths=[1, 1, 1, 1],
        num_heads=[1, 2, 2, 4],
        window_size=2,
        out_features=["stage2", "stage3", "stage4"],
    )
    text = BertConfig(
        vocab_size=len(tiny_vocab()),
        hidden_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=max_text_len,
    )
    return GroundingDinoConfig(
        backbone_config=backbone,
        text_config=text,
        d_model=64,
        num_queries=num_queries,
        encoder_layers=1,
        decoder_layers=2,  # >= 2: the tied box heads need a second layer to save and load
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        num_feature_levels=3,
        encoder_n_points=2,
        decoder_n_points=2,
        max_text_len=max_text_len,
        disable_custom_kernels=True,
    )


def write_vocab(folder: str | Path) -> Path:
    """Write the tiny WordPiece ``vocab.txt`` into ``folder``; return its path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "vocab.txt"
    path.write_text("\n".join(tiny_vocab()) + "\n", encoding="utf-8")
    return path


def build_tiny_grounding(seed: int = 0, vocab_dir: str | Path | None = None) -> tuple[Any, Any]:
    """(model, processor) with seeded random weights; the global torch RNG is left untouched.

    The tokenizer reads ``vocab.txt`` written into ``vocab_dir`` (a temporary folder when None).
    """
    import tempfile

    import torch
    from transformers import (
        BertTokenizer,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
    )

    cfg = tiny_config()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GroundingDinoForObjectDetection(cfg).eval()
    with tempfile.TemporaryDirectory() as tmp:
        vocab = write_vocab(vocab_dir if vocab_dir is not None else tmp)
        tokenizer = BertTokenizer(str(vocab), do_lower_case=True, model_max_length=cfg.max_text_len)
    image_processor = GroundingDinoImageProcessor(
        size={"shortest_edge": TINY_IMAGE_SIDE, "longest_edge": TINY_IMAGE_SIDE}
    )
    processor = GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer)
    return model, processor


def save_tiny_grounding(folder: str | Path, seed: int = 0) -> Path:
    """Write the tiny model and its processor to ``folder`` (config.json, model.safetensors, vocab.txt,
    tokenizer and processor configs); loads with ``AutoModelForZeroShotObjectDetection`` offline."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model, processor = build_tiny_grounding(seed, vocab_dir=folder)
    model.save_pretrained(folder, safe_serialization=True)
    processor.save_pretrained(folder)
    return folder
