"""The model registry: ids, files, pinned revisions and sha256, local folder names."""

from __future__ import annotations

from dataclasses import dataclass

#: File suffixes that count as model weights.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".ckpt")


@dataclass(frozen=True)
class ModelFile:
    """One file of a model: local name (relative path inside a folder model), source URL, pinned hash."""

    filename: str
    url: str
    sha256: str | None = None
    size_bytes: int | None = None


@dataclass(frozen=True)
class ModelSpec:
    """A registry entry. ``kind`` is "sam", "sam2", "ip2p", "editor", "clip", "grounding" or "dino"."""

    name: str
    kind: str
    description: str
    files: tuple[ModelFile, ...]
    hf_repo: str | None = None
    hf_revision: str | None = None
    model_type: str | None = None
    #: diffusers weight variant stored on disk ("fp16" -> ``*.fp16.safetensors``); pass to from_pretrained.
    variant: str | None = None
    clip_model: str | None = None
    clip_pretrained: str | None = None
    #: OpenAI CLIP weights were trained with QuickGELU: load with ``force_quick_gelu=True``.
    clip_quick_gelu: bool = False
    #: kind "editor": the editor family (core/editor_families).
    family: str | None = None
    #: Glob patterns of a snapshot whose file list is not pinned (``files`` then holds the essential ones).
    patterns: tuple[str, ...] = ()
    #: How to get access when the repository is gated (log in, HF_TOKEN); None when public.
    access: str | None = None
    #: kind "editor" published as ONE original-layout checkpoint in ``hf_repo`` (CosXL-Edit): its file
    #: name; ``download`` fetches it with the configs of ``config_repo`` and converts both into a folder.
    single_file: str | None = None
    config_repo: str | None = None

    @property
    def size_bytes(self) -> int | None:
        """Total download size, or None when any file's size is unknown."""
        sizes = [f.size_bytes for f in self.files]
        return None if any(s is None for s in sizes) else sum(s for s in sizes if s is not None)


_SAM_BASE = "https://dl.fbaipublicfiles.com/segment_anything/"


def _sam(name: str, model_type: str, filename: str, sha256: str, size: int, label: str) -> ModelSpec:
    return ModelSpec(
        name=name,
        kind="sam",
        description=f"Segment Anything {label} (Meta, Apache-2.0)",
        files=(ModelFile(filename, _SAM_BASE + filename, sha256, size),),
        model_type=model_type,
    )


_IP2P_REPO = "timbrooks/instruct-pix2pix"
# Commit of timbrooks/instruct-pix2pix seen as the snapshot folder in many public diffusers caches
# (models--timbrooks--instruct-pix2pix/snapshots/31519b5...); main carries the fp16 variant files below.
# Not checked against the live hub (no network here): if a download finds the files missing, the
# DownloadError says so and this pin is the first thing to re-check.
_IP2P_REVISION = "31519b5cb02a7fd89b906d88731cd4d6a7bbf88d"


def _hf_file(repo: str, revision: str, filename: str, sha256: str | None = None) -> ModelFile:
    return ModelFile(filename, f"https://huggingface.co/{repo}/resolve/{revision}/{filename}", sha256)


# The diffusers folder, fp16 variant only (about 2 GB). The safety checker (1.2 GB) is left out: load with
# ``safety_checker=None, requires_safety_checker=False, variant="fp16"``. The weight hashes are the hub's
# LFS sha256 of the files on main (from public pinned manifests); download() checks them after the snapshot.
_IP2P_FILES = tuple(
    _hf_file(_IP2P_REPO, _IP2P_REVISION, f, sha)
    for f, sha in (
        ("model_index.json", None),
        ("scheduler/scheduler_config.json", None),
        ("feature_extractor/preprocessor_config.json", None),
        ("tokenizer/merges.txt", None),
        ("tokenizer/special_tokens_map.json", None),
        ("tokenizer/tokenizer_config.json", None),
        ("tokenizer/vocab.json", None),
        ("text_encoder/config.json", None),
        (
            "text_encoder/model.fp16.safetensors",
            "77795e2023adcf39bc29a884661950380bd093cf0750a966d473d1718dc9ef4e",
        ),
        ("unet/config.json", None),
        (
            "unet/diffusion_pytorch_model.fp16.safetensors",
            "0d6bbc0a95dd125196d327a660b43d24c56f433eb30d2776f1327fb86bd38f78",
        ),
        ("vae/config.json", None),
        (
            "vae/diffusion_pytorch_model.fp16.safetensors",
            "4fbcf0ebe55a0984f5a5e00d8c4521d52359af7229bb4d81890039d2aa16dd7c",
        ),
    )
)

# open_clip.pretrained.get_pretrained_cfg("ViT-B-32", "openai") gives hf_hub
# "timm/vit_base_patch32_clip_224.openai/" (and OpenAI's TorchScript URL); open_clip prefers the hub copy
# and its safetensors file, which needs no pickle. Revision, sha256 and size from public pinned manifests.
_CLIP_REPO = "timm/vit_base_patch32_clip_224.openai"
_CLIP_REVISION = "a6f597a30f7b82c51704746581f9a4e41421e878"
_CLIP_FILE = ModelFile(
    "open_clip_model.safetensors",
    f"https://huggingface.co/{_CLIP_REPO}/resolve/{_CLIP_REVISION}/open_clip_model.safetensors",
    "e6d1bd7789aa45192b3bf90570a789b478bae1b74ebcce7eddd908e83a2b7c31",
    605_143_284,
)

# GroundingDINO (Swin-T) for the auto mask's text grounding, loaded with transformers
# AutoModelForZeroShotObjectDetection from a local folder. The revision is the commit several public
# download scripts pin for IDEA-Research/grounding-dino-tiny; model.safetensors is about 689 MB
# (689,359,096 bytes per a public model catalog). No sha256 was found in a public source we could read,
# so the files are unpinned (None): download() then logs "no sha256 pinned" — pin them from the hub's LFS
# metadata on a connected machine. Not checked against the live hub (no network here).
_GROUNDING_REPO = "IDEA-Research/grounding-dino-tiny"
_GROUNDING_REVISION = "a2bb814dd30d776dcf7e30523b00659f4f141c71"
_GROUNDING_FILES = tuple(
    _hf_file(_GROUNDING_REPO, _GROUNDING_REVISION, f, None)
    for f in (
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
        "added_tokens.json",
    )
)

# SAM 2.1 (Meta, Apache-2.0) in the Hugging Face format, read by transformers' Sam2Model
# (core/sam2_segmenter.py): a folder with these files. UNPINNED: no revision commit, file size or sha256
# of these repositories was available here (no network), so the revision is "main" and no hash is
# checked (download() logs "no sha256 pinned"); pin them from the hub's LFS metadata on a connected
# machine. The sizes in the descriptions are parameter counts of the image model (Sam2Model built from
# the official configs, core/sam2_arch.py), not file sizes.
_SAM2_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")


def _sam2(size: str, label: str, params: str) -> ModelSpec:
    repo = f"facebook/sam2.1-hiera-{size.replace('_', '-')}"
    return ModelSpec(
        name=f"sam2.1_hiera_{size}",
        kind="sam2",
        description=f"SAM 2.1 hiera {label} ({params} parameters; Meta, Apache-2.0; unpinned)",
        files=tuple(_hf_file(repo, "main", f) for f in _SAM2_FILES),
        hf_repo=repo,
        hf_revision="main",
        model_type=f"sam2_hiera_{size}",
    )


# DINO ViTs (Meta, Apache-2.0) in the transformers format (ViTModel), for the benchmark metrics
# (core/metrics/dino.py): ViT-B/8 for PIE-Bench's structure distance, ViT-S/16 for MagicBrush's DINO score.
# UNPINNED: no revision commit, file size or sha256 was available here (no network), so the revision is
# "main" and nothing is hash-checked; both weight formats are listed (the snapshot takes what exists;
# transformers prefers the safetensors file). Sizes in the descriptions are float32 parameter sizes.
_DINO_FILES = ("config.json", "preprocessor_config.json", "model.safetensors", "pytorch_model.bin")


def _dino(name: str, label: str, size: str) -> ModelSpec:
    repo = f"facebook/{name.replace('_', '-')}"
    return ModelSpec(
        name=name,
        kind="dino",
        description=f"DINO {label} for benchmark metrics (Meta, Apache-2.0, ~{size}; unpinned)",
        files=tuple(_hf_file(repo, "main", f) for f in _DINO_FILES),
        hf_repo=repo,
        hf_revision="main",
    )


REGISTRY: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        _sam(
            "sam_vit_h",
            "vit_h",
            "sam_vit_h_4b8939.pth",
            "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
            2_564_550_879,
            "ViT-H (2.4 GB)",
        ),
        _sam(
            "sam_vit_l",
            "vit_l",
            "sam_vit_l_0b3195.pth",
            "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
            1_249_524_607,
            "ViT-L (1.2 GB)",
        ),
        _sam(
            "sam_vit_b",
            "vit_b",
            "sam_vit_b_01ec64.pth",
            "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
            375_042_383,
            "ViT-B (358 MB)",
        ),
        _sam2("tiny", "tiny", "31 M"),
        _sam2("small", "small", "39 M"),
        _sam2("base_plus", "base+", "73 M"),
        _sam2("large", "large", "217 M"),
        ModelSpec(
            name="ip2p",
            kind="ip2p",
            description="InstructPix2Pix (timbrooks/instruct-pix2pix, diffusers, fp16, ~2 GB)",
            files=_IP2P_FILES,
            hf_repo=_IP2P_REPO,
            hf_revision=_IP2P_REVISION,
            variant="fp16",
        ),
        ModelSpec(
            name="clip",
            kind="clip",
            description="OpenAI CLIP ViT-B/32 for CLIP scores (open_clip, 577 MB)",
            files=(_CLIP_FILE,),
            hf_repo=_CLIP_REPO,
            hf_revision=_CLIP_REVISION,
            model_type="ViT-B-32",
            clip_model="ViT-B-32",
            clip_pretrained="openai",
            clip_quick_gelu=True,
        ),
        ModelSpec(
            name="grounding_dino",
            kind="grounding",
            description="GroundingDINO tiny for Auto mask grounding (IDEA-Research, Apache-2.0, ~690 MB)",
            files=_GROUNDING_FILES,
            hf_repo=_GROUNDING_REPO,
            hf_revision=_GROUNDING_REVISION,
        ),
        _dino("dino_vitb8", "ViT-B/8 (PIE-Bench structure distance)", "340 MB"),
        _dino("dino_vits16", "ViT-S/16 (MagicBrush DINO score)", "85 MB"),
    )
}

DEFAULT_SAM = "sam_vit_h"
#: The SAM of a machine without CUDA: SAM 2.1 hiera tiny, the best published quality per second of CPU
#: (its encoder is ~5x cheaper than vit_b's; docs/PERFORMANCE.md, "SAM 2.1").
DEFAULT_SAM_CPU = "sam2.1_hiera_tiny"


def default_sam_for(device: str) -> str:
    """Registry name of the default SAM for a resolved ``device`` ("cuda", "cuda:N", "mps", "cpu"):
    :data:`DEFAULT_SAM` on CUDA, :data:`DEFAULT_SAM_CPU` elsewhere."""
    return DEFAULT_SAM if str(device).startswith("cuda") else DEFAULT_SAM_CPU


DEFAULT_IP2P = "ip2p"
DEFAULT_CLIP = "clip"
DEFAULT_GROUNDING = "grounding_dino"

#: Kinds stored as a folder of files (a Hugging Face snapshot), not a single file.
_FOLDER_KINDS = ("ip2p", "editor", "grounding", "sam2", "dino")

IP2P_FOLDER = "instruct-pix2pix"
CLIP_FOLDER = "clip"
GROUNDING_FOLDER = "grounding-dino-tiny"


def get_spec(name: str) -> ModelSpec:
    """The registry entry for ``name``; ValueError naming the known ids otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"Unknown model {name!r}; known models: {', '.join(sorted(REGISTRY))}") from None


# ----------------------------------------------------------------------------- other editor families
_HF_LOGIN = (
    "gated on Hugging Face: accept the licence on the model page, then log in with `hf auth login` "
    "or set HF_TOKEN to a read token before downloading"
)
#: Files of a diffusers editor folder: configs, tokenizers and processors, safetensors weights (no .bin
#: duplicates, no single-file checkpoints at the repository's top level).
_EDITOR_PATTERNS = (
    "model_index.json",
    "*/*.json",
    "*/*.txt",
    "*/*.model",
    "*/*.jinja",
    "*/*.safetensors",
)


def _editor(name: str, family: str, repo: str, description: str, gated: str | None = None) -> ModelSpec:
    """A diffusers editor folder of another family (issue 17). UNPINNED: no revision commit, size or
    sha256 was available here (no network), so the revision is "main" and nothing is hash-checked
    (download() logs "no sha256 pinned"); pin them from the hub's metadata on a connected machine."""
    return ModelSpec(
        name=name,
        kind="editor",
        description=f"{description}; unpinned",
        files=(_hf_file(repo, "main", "model_index.json"),),
        hf_repo=repo,
        hf_revision="main",
        family=family,
        patterns=_EDITOR_PATTERNS,
        access=gated,
    )


#: The SDXL InstructPix2Pix folder; its configs and tokenizers also complete CosXL-Edit's single file.
SDXL_IP2P_REPO = "diffusers/sdxl-instructpix2pix-768"
#: Files of a diffusers folder without weights: what a single-file checkpoint needs beside it.
CONFIG_PATTERNS = ("model_index.json", "*/*.json", "*/*.txt")


def config_spec(spec: ModelSpec) -> ModelSpec:
    """The snapshot of ``spec.config_repo``'s configs and tokenizers (no weights) that completes the
    single-file checkpoint of ``spec``."""
    repo = str(spec.config_repo)
    return ModelSpec(
        name=f"{spec.name} configs",
        kind=spec.kind,
        description=spec.description,
        files=(_hf_file(repo, "main", "model_index.json"),),
        hf_repo=repo,
        hf_revision="main",
        patterns=CONFIG_PATTERNS,
    )


def _cosxl_edit() -> ModelSpec:
    """CosXL-Edit: one checkpoint file in a gated repository, converted after download (core/cosxl.py)."""
    repo, file = "stabilityai/cosxl", "cosxl_edit.safetensors"
    return ModelSpec(
        name="cosxl-edit",
        kind="editor",
        description="CosXL-Edit (SDXL InstructPix2Pix, EDM v-prediction; Stability AI non-commercial "
        "licence), one checkpoint converted to a diffusers folder after download; unpinned",
        files=(_hf_file(repo, "main", file),),
        hf_repo=repo,
        hf_revision="main",
        family="ip2p_xl",
        patterns=(file,),
        access=_HF_LOGIN,
        single_file=file,
        config_repo=SDXL_IP2P_REPO,
    )


#: Editors beyond SD 1.5 IP2P, by registry name (``maskpix-cli models download NAME``, ``--ip2p NAME``).
EDITORS: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        _editor(
            "sdxl-instructpix2pix",
            "ip2p_xl",
            SDXL_IP2P_REPO,
            "SDXL InstructPix2Pix at 768 px (2.6 B UNet + CLIP-L + OpenCLIP-bigG)",
        ),
        _cosxl_edit(),
        _editor(
            "flux-kontext-dev",
            "kontext",
            "black-forest-labs/FLUX.1-Kontext-dev",
            "FLUX.1 Kontext [dev] (12 B + T5-XXL + CLIP-L; FLUX.1 [dev] non-commercial licence)",
            gated=_HF_LOGIN,
        ),
        _editor(
            "qwen-image-edit",
            "qwen_edit",
            "Qwen/Qwen-Image-Edit",
            "Qwen-Image-Edit (20 B MMDiT + Qwen2.5-VL-7B; Apache-2.0)",
        ),
        _editor(
            "qwen-image-edit-2509",
            "qwen_edit",
            "Qwen/Qwen-Image-Edit-2509",
            "Qwen-Image-Edit-2509, Plus pipeline (20 B MMDiT + Qwen2.5-VL-7B; Apache-2.0)",
        ),
    )
}
REGISTRY.update(EDITORS)
