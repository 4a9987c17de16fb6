"""The device's default SAM: vit_h with CUDA, SAM 2.1 hiera tiny without (registry, ModelChoice, CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from maskpix_desktop.cli import build_parser, main
from maskpix_desktop.core import models
from maskpix_desktop.core.errors import MissingWeightsError
from maskpix_desktop.core.sam2_segmenter import Sam2Segmenter
from maskpix_desktop.core.service import MANIFEST, SAM_AUTO, ModelChoice, ModelService
from maskpix_desktop.testing.tiny_sam2 import save_tiny_sam2

TINY = "sam2.1_hiera_tiny"


@pytest.mark.parametrize(
    ("device", "name"),
    [("cuda", "sam_vit_h"), ("cuda:1", "sam_vit_h"), ("cpu", TINY), ("mps", TINY)],
)
def test_default_sam_for_device(device: str, name: str) -> None:
    assert models.default_sam_for(device) == name
    assert models.get_spec(name).name == name  # a registry entry
    assert models.DEFAULT_SAM == "sam_vit_h" and models.DEFAULT_SAM_CPU == TINY


def test_auto_choice_resolves_per_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    choice = ModelChoice(models_dir=str(tmp_path), sam=SAM_AUTO, device="cpu")
    assert choice.sam_name() == TINY
    with pytest.raises(MissingWeightsError, match=f"maskpix-cli models download {TINY}"):
        choice.sam_checkpoint()
    monkeypatch.setattr(models, "resolve_device", lambda pref="auto": "cuda")
    cuda = ModelChoice(models_dir=str(tmp_path), sam=SAM_AUTO, device="cuda")
    assert cuda.sam_name() == "vit_h"
    with pytest.raises(MissingWeightsError, match="maskpix-cli models download sam_vit_h"):
        cuda.sam_checkpoint()
    assert ModelChoice(sam="vit_b").sam_name() == "vit_b"  # an explicit choice is kept


def test_manifest_sam_overrides_auto(tmp_path: Path) -> None:
    (tmp_path / MANIFEST).write_text(json.dumps({"sam": "mine.pth"}), encoding="utf-8")
    choice = ModelChoice(models_dir=str(tmp_path), sam=SAM_AUTO).with_manifest()
    assert choice.sam == str(tmp_path / "mine.pth")
    kept = ModelChoice(models_dir=str(tmp_path), sam=TINY).with_manifest()
    assert kept.sam == TINY


def test_service_loads_sam2_tiny_by_default_without_cuda(tmp_path: Path, rng_image) -> None:
    save_tiny_sam2(models.local_path(TINY, tmp_path), seed=0)
    service = ModelService(ModelChoice(models_dir=str(tmp_path), sam=SAM_AUTO, device="cpu"))
    seg = service.segmenter()
    assert isinstance(seg, Sam2Segmenter) and seg.fast_decoder
    seg.set_image(rng_image(64, 80, seed=1))
    assert len(seg.predict([[30, 20]], [1])) == 3


def test_cli_sam_default_is_auto_and_download_defaults_follow_the_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert build_parser().parse_args(["run", "cases.toml", "--out", "o"]).sam == SAM_AUTO
    got: list[str] = []

    def fake_download(name: str, models_dir=None, progress=None) -> Path:
        got.append(name)
        return Path(tmp_path) / name

    monkeypatch.setattr(models, "download", fake_download)
    for device, sam in (("cpu", TINY), ("cuda", "sam_vit_h")):
        got.clear()
        monkeypatch.setattr(models, "resolve_device", lambda pref="auto", d=device: d)
        assert main(["models", "download", "--models-dir", str(tmp_path)]) == 0
        assert got == [sam, models.DEFAULT_IP2P, models.DEFAULT_CLIP]
