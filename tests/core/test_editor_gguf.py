"""A GGUF file as a flow editor's transformer (issue 17): the tiny Kontext with a Q8_0 GGUF transformer
runs, its baseline equals diffusers' own pipeline with the same GGUF transformer bit for bit, pixels
outside a hard mask stay the original, and wrong combinations are refused with a reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from maskpix_desktop.core import images
from maskpix_desktop.core.editor_loader import load_editor
from maskpix_desktop.core.editor_memory import MemorySettings
from maskpix_desktop.core.errors import WeightsError
from maskpix_desktop.core.jobs import EditParams, EditRequest

pytest.importorskip("gguf", reason="the gguf package is a test dependency (pip install -e '.[test]')")

H, W = 48, 64
PARAMS = EditParams("make it winter", steps=2, seed=5, guidance=3.0, feather=0.0)


@pytest.fixture(scope="module")
def kontext_gguf(tmp_path_factory) -> tuple[Path, Path]:
    from maskpix_desktop.testing.tiny_gguf import save_tiny_gguf
    from maskpix_desktop.testing.tiny_kontext import save_tiny_kontext

    root = tmp_path_factory.mktemp("gguf")
    folder = save_tiny_kontext(root / "tiny-kontext", seed=0)
    return folder, save_tiny_gguf(folder, root / "transformer-Q8_0.gguf")


def test_gguf_transformer_baseline_equals_diffusers_and_the_mask_holds(kontext_gguf, rng_image) -> None:
    from diffusers import FluxKontextPipeline, FluxTransformer2DModel, GGUFQuantizationConfig

    folder, file = kontext_gguf
    editor = load_editor(str(folder), device="cpu", precision="fp32", gguf=str(file))
    weights = [p for p in editor.pipe.transformer.parameters() if type(p).__name__ == "GGUFParameter"]
    assert weights and {p.quant_type.name for p in weights} == {"Q8_0"}
    assert editor.memory == f"full + GGUF transformer (Q8_0 x{len(weights)})"
    image = rng_image(H, W, seed=3)
    mask = np.zeros((H, W), bool)
    mask[8:40, 16:48] = True
    res = editor.run(EditRequest(image, mask, PARAMS))

    transformer = FluxTransformer2DModel.from_single_file(
        str(file),
        quantization_config=GGUFQuantizationConfig(compute_dtype=torch.float32),
        config=str(folder),
        subfolder="transformer",
        torch_dtype=torch.float32,
    )
    pipe = FluxKontextPipeline.from_pretrained(
        str(folder), transformer=transformer, torch_dtype=torch.float32
    )
    pipe.set_progress_bar_config(disable=True)
    ref = pipe(
        prompt=PARAMS.instruction,
        image=images.to_pil(image),
        height=H,
        width=W,
        num_inference_steps=PARAMS.steps,
        guidance_scale=PARAMS.guidance,
        max_area=H * W,
        _auto_resize=False,
        generator=torch.Generator("cpu").manual_seed(PARAMS.seed),
    ).images[0]
    np.testing.assert_array_equal(res.baseline, np.asarray(ref))
    np.testing.assert_array_equal(res.blended[~mask], image[~mask])
    np.testing.assert_array_equal(res.blended[mask], res.edit[mask])


def test_gguf_is_refused_for_other_families_missing_files_and_with_quantize(
    kontext_gguf, tiny_ip2p_dir: Path, tmp_path: Path
) -> None:
    folder, file = kontext_gguf
    with pytest.raises(
        WeightsError, match="replaces the transformer of kontext or qwen_edit editors.*is ip2p"
    ):
        load_editor(str(tiny_ip2p_dir), device="cpu", gguf=str(file))
    with pytest.raises(WeightsError, match="does not exist"):
        load_editor(str(folder), device="cpu", gguf=str(tmp_path / "none.gguf"))
    with pytest.raises(WeightsError, match="already quantised.*quantize int8"):
        load_editor(str(folder), device="cpu", gguf=str(file), memory=MemorySettings("full", False, "int8"))
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF not really")
    with pytest.raises(WeightsError, match="Could not load the GGUF transformer"):
        load_editor(str(folder), device="cpu", gguf=str(bad))


def test_cli_passes_the_gguf_file() -> None:
    from maskpix_desktop.cli import build_parser

    args = build_parser().parse_args(["run", "c.toml", "--out", "o", "--gguf", "t.gguf"])
    assert args.gguf == "t.gguf"
