"""Editor memory settings (issue 17): validation, the quantisation config handed to diffusers, where
``place_pipeline`` puts the weights, and ``load_editor`` asking for CPU offload on a (claimed) CUDA device."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch

from maskpix_desktop.core import editor_loader, editor_memory, models
from maskpix_desktop.core.editor_memory import MemorySettings, next_lighter, place_pipeline
from maskpix_desktop.core.errors import WeightsError
from maskpix_desktop.core.service import ModelChoice


class FakePipe:
    """Records what place_pipeline asks of a pipeline."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self.vae = types.SimpleNamespace(enable_tiling=lambda: self.calls.append(("tiling", None)))

    def to(self, device: str) -> FakePipe:
        self.calls.append(("to", device))
        return self

    def enable_model_cpu_offload(self, device: str) -> None:
        self.calls.append(("model_offload", device))

    def enable_sequential_cpu_offload(self, device: str) -> None:
        self.calls.append(("sequential_offload", device))


def test_settings_refuse_unknown_values_and_label_what_is_on() -> None:
    with pytest.raises(ValueError, match="memory 'half'"):
        MemorySettings("half")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="quantize 'int4'"):
        MemorySettings(quantize="int4")  # type: ignore[arg-type]
    assert MemorySettings().label() == "full"
    assert MemorySettings("model_offload", True, "nf4").label() == "model_offload + VAE tiling + nf4"
    with pytest.raises(ValueError, match="memory 'x'"):
        ModelChoice(memory="x").memory_settings()


def test_next_lighter_walks_to_sequential_offload_then_stops() -> None:
    chain, s = [], MemorySettings(quantize="int8")
    while (s := next_lighter(s)) is not None:
        chain.append(s.label())
    assert chain == [
        "full + VAE tiling + int8",
        "model_offload + VAE tiling + int8",
        "sequential_offload + VAE tiling + int8",
    ]


@pytest.mark.parametrize(
    ("memory", "expected"),
    [
        ("full", [("to", "cuda:1"), ("tiling", None)]),
        ("model_offload", [("model_offload", "cuda:1"), ("tiling", None)]),
        ("sequential_offload", [("sequential_offload", "cuda:1"), ("tiling", None)]),
    ],
)
def test_place_pipeline_on_cuda_offloads_to_the_chosen_device(memory: str, expected: list) -> None:
    pipe = FakePipe()
    done = place_pipeline(pipe, MemorySettings(memory, vae_tiling=True), "cuda:1", "kontext")  # type: ignore[arg-type]
    assert pipe.calls == expected
    assert done == f"{memory} + VAE tiling"


def test_place_pipeline_without_cuda_keeps_every_weight_on_the_device_and_says_so() -> None:
    pipe = FakePipe()
    done = place_pipeline(pipe, MemorySettings("model_offload"), "cpu")
    assert pipe.calls == [("to", "cpu")]
    assert done == "full (model_offload needs CUDA)"


def test_quantization_needs_cuda_and_its_package() -> None:
    assert editor_memory.quantization_config("kontext", "none", torch.bfloat16, "cpu") is None
    with pytest.raises(WeightsError, match="needs a CUDA GPU"):
        editor_memory.quantization_config("kontext", "int8", torch.bfloat16, "cpu")
    if not editor_memory.installed("torchao"):
        with pytest.raises(WeightsError, match="pip install torchao"):
            editor_memory.quantization_config("kontext", "fp8", torch.bfloat16, "cuda")


def test_nf4_quantises_the_denoiser_with_bitsandbytes(monkeypatch: pytest.MonkeyPatch) -> None:
    import diffusers

    monkeypatch.setattr(editor_memory, "installed", lambda name: True)
    monkeypatch.setattr(diffusers, "BitsAndBytesConfig", lambda **kw: ("bnb", kw))
    monkeypatch.setattr(diffusers, "PipelineQuantizationConfig", lambda **kw: kw)
    cfg = editor_memory.quantization_config("qwen_edit", "nf4", torch.bfloat16, "cuda:0")
    assert cfg == {
        "quant_mapping": {
            "transformer": (
                "bnb",
                {
                    "load_in_4bit": True,
                    "bnb_4bit_quant_type": "nf4",
                    "bnb_4bit_compute_dtype": torch.bfloat16,
                },
            )
        }
    }
    cfg = editor_memory.quantization_config("ip2p_xl", "nf4", torch.float16, "cuda")
    assert list(cfg["quant_mapping"]) == ["unet"]


@pytest.mark.parametrize(
    ("quantize", "kind"), [("int8", "Int8WeightOnlyConfig"), ("fp8", "Float8WeightOnlyConfig")]
)
def test_int8_and_fp8_quantise_with_torchao(
    monkeypatch: pytest.MonkeyPatch, quantize: str, kind: str
) -> None:
    import diffusers

    quant = types.ModuleType("torchao.quantization")
    quant.Int8WeightOnlyConfig = lambda: "Int8WeightOnlyConfig"  # type: ignore[attr-defined]
    quant.Float8WeightOnlyConfig = lambda: "Float8WeightOnlyConfig"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torchao", types.ModuleType("torchao"))
    monkeypatch.setitem(sys.modules, "torchao.quantization", quant)
    monkeypatch.setattr(editor_memory, "installed", lambda name: True)
    monkeypatch.setattr(diffusers, "TorchAoConfig", lambda q: ("torchao", q))
    monkeypatch.setattr(diffusers, "PipelineQuantizationConfig", lambda **kw: kw)
    cfg = editor_memory.quantization_config("kontext", quantize, torch.bfloat16, "cuda")
    assert cfg == {"quant_mapping": {"transformer": ("torchao", kind)}}


@pytest.fixture(scope="module")
def kontext_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from maskpix_desktop.testing.tiny_kontext import save_tiny_kontext

    return save_tiny_kontext(tmp_path_factory.mktemp("mem_kontext") / "tiny-kontext")


def test_load_editor_requests_model_offload_quantised_on_claimed_cuda(
    kontext_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CUDA claimed by a patched check: the quantisation config reaches from_pretrained, the pipeline is
    offloaded to that device (not moved with .to), VAE tiling is on, and the editor records it."""
    from diffusers import FluxKontextPipeline

    seen: dict[str, object] = {}
    original = FluxKontextPipeline.from_pretrained.__func__  # type: ignore[attr-defined]

    def from_pretrained(cls, *args, **kwargs):
        seen["quantization_config"] = kwargs.pop("quantization_config", None)
        return original(cls, *args, **kwargs)

    def quant(family, quantize, dtype, device):
        seen["quant_args"] = (family, quantize, dtype, device)
        return "QUANT-CONFIG"

    monkeypatch.setattr(models, "resolve_device", lambda pref="auto": "cuda:0")
    monkeypatch.setattr(editor_loader, "quantization_config", quant)
    monkeypatch.setattr(FluxKontextPipeline, "from_pretrained", classmethod(from_pretrained))
    monkeypatch.setattr(FluxKontextPipeline, "to", lambda self, *a, **k: pytest.fail("moved with .to"))
    monkeypatch.setattr(
        FluxKontextPipeline,
        "enable_model_cpu_offload",
        lambda self, device: seen.setdefault("offload", device),
    )
    editor = editor_loader.load_editor(
        str(kontext_dir),
        device="cuda",
        precision="fp32",
        memory=MemorySettings("model_offload", True, "int8"),
    )
    assert seen == {
        "quant_args": ("kontext", "int8", torch.float32, "cuda:0"),
        "quantization_config": "QUANT-CONFIG",
        "offload": "cuda:0",
    }
    assert editor.pipe.vae.use_tiling
    assert editor.memory == "model_offload + VAE tiling + int8 transformer"
