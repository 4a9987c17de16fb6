"""Editor families (issue 17): detection from model_index.json, clear errors, and the SDXL IP2P editor."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from maskpix_desktop.core import editor_families
from maskpix_desktop.core.editor import Editor
from maskpix_desktop.core.errors import WeightsError


def _index(folder: Path, class_name: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model_index.json"
    path.write_text(json.dumps({"_class_name": class_name, "_diffusers_version": "0.36.0"}), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("class_name", "family"),
    [
        ("StableDiffusionInstructPix2PixPipeline", "ip2p"),
        ("MaskPix2PixPipeline", "ip2p"),
        ("StableDiffusionXLInstructPix2PixPipeline", "ip2p_xl"),
        ("FluxKontextPipeline", "kontext"),
        ("QwenImageEditPipeline", "qwen_edit"),
        ("QwenImageEditPlusPipeline", "qwen_edit"),
    ],
)
def test_family_detected_from_class_name(tmp_path, class_name, family):
    _index(tmp_path / "m", class_name)
    assert editor_families.folder_family(tmp_path / "m") == family
    assert editor_families.detect_family(str(tmp_path / "m")) == family


@pytest.mark.parametrize("class_name", ["StableDiffusionPipeline", None, 3])
def test_unknown_class_names_file_field_and_families(tmp_path, class_name):
    path = _index(tmp_path / "m", class_name)
    with pytest.raises(WeightsError) as info:
        editor_families.folder_family(tmp_path / "m")
    msg = str(info.value)
    assert str(path) in msg and "_class_name" in msg
    for family in editor_families.FAMILIES:
        assert family in msg
    assert "FluxKontextPipeline" in msg and "StableDiffusionXLInstructPix2PixPipeline" in msg


def test_missing_model_index_names_the_file(tmp_path):
    with pytest.raises(WeightsError) as info:
        editor_families.folder_family(tmp_path)
    assert str(tmp_path / "model_index.json") in str(info.value) and "missing" in str(info.value)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", ""])
def test_broken_model_index_names_the_file(tmp_path, text):
    (tmp_path / "model_index.json").write_text(text, encoding="utf-8")
    with pytest.raises(WeightsError) as info:
        editor_families.folder_family(tmp_path)
    assert str(tmp_path / "model_index.json") in str(info.value)


def test_uncached_hub_id_offline_is_undetected_not_an_error():
    assert editor_families.detect_family("no-such-org/no-such-model", local_only=True) is None


def test_tiny_ip2p_and_mask_checkpoint_are_ip2p(tiny_ip2p_dir, tmp_path):
    from maskpix_desktop.core.maskcond.model import mask_pipeline_from_ip2p, save_mask_checkpoint
    from maskpix_desktop.testing.tiny_ip2p import build_tiny_ip2p

    assert editor_families.folder_family(tiny_ip2p_dir) == "ip2p"
    ckpt = save_mask_checkpoint(mask_pipeline_from_ip2p(build_tiny_ip2p(seed=0)), tmp_path / "ckpt")
    assert json.loads((ckpt / "model_index.json").read_text())["_class_name"] == "MaskPix2PixPipeline"
    assert editor_families.folder_family(ckpt) == "ip2p"


@pytest.mark.parametrize(
    ("class_name", "family"),
    [("FluxKontextPipeline", "kontext"), ("QwenImageEditPlusPipeline", "qwen_edit")],
)
def test_load_unsupported_family_says_not_supported_yet(
    tmp_path, tiny_ip2p_dir, monkeypatch, class_name, family
):
    import diffusers

    folder = tmp_path / "model"
    shutil.copytree(tiny_ip2p_dir, folder)
    _index(folder, class_name)

    def never(*a, **k):
        raise AssertionError("diffusers must not be asked to load an unsupported family")

    monkeypatch.setattr(diffusers.DiffusionPipeline, "from_pretrained", never)
    monkeypatch.setattr(diffusers.StableDiffusionInstructPix2PixPipeline, "from_pretrained", never)
    with pytest.raises(WeightsError) as info:
        Editor.load(str(folder), device="cpu")
    msg = str(info.value)
    assert f"not supported yet in this version: {family}" in msg and str(folder) in msg
    for supported in editor_families.SUPPORTED:
        assert supported in msg


def test_load_unknown_pipeline_names_the_families(tmp_path, tiny_ip2p_dir):
    folder = tmp_path / "model"
    shutil.copytree(tiny_ip2p_dir, folder)
    _index(folder, "StableDiffusionPipeline")
    with pytest.raises(WeightsError) as info:
        Editor.load(str(folder), device="cpu")
    assert str(folder / "model_index.json") in str(info.value) and "ip2p_xl" in str(info.value)


def test_loaded_ip2p_editor_records_its_family(editor):
    assert editor.family == "ip2p"
