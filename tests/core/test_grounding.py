"""GroundingDINO: the tiny random model through the real loading code; registry, service, boxes -> SAM."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from maskpix_desktop.core import models
from maskpix_desktop.core.automask import AutoMasker, AutoMaskParams, Detection
from maskpix_desktop.core.errors import MissingWeightsError, WeightsError
from maskpix_desktop.core.grounding import GroundingDetector, format_prompt, resolve_grounding
from maskpix_desktop.core.segmenter import SegmentResult


@pytest.fixture(scope="module")
def tiny_grounding_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from maskpix_desktop.testing.tiny_grounding import save_tiny_grounding

    return save_tiny_grounding(tmp_path_factory.mktemp("grounding") / "tiny-grounding", seed=0)


@pytest.fixture(scope="module")
def detector(tiny_grounding_dir: Path) -> GroundingDetector:
    return GroundingDetector.load(tiny_grounding_dir, "cpu")


def test_tiny_config_saves_loads_and_post_processes_offline(tiny_grounding_dir: Path, rng_image) -> None:
    import torch
    from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

    from maskpix_desktop.testing.tiny_grounding import tiny_config, tiny_vocab

    cfg = tiny_config()
    assert cfg.decoder_layers >= 2
    assert cfg.backbone_config.model_type == "swin" and cfg.text_config.model_type == "bert"
    names = {p.name for p in tiny_grounding_dir.iterdir()}
    assert {"config.json", "model.safetensors", "vocab.txt"} <= names
    vocab = (tiny_grounding_dir / "vocab.txt").read_text(encoding="utf-8").split("\n")
    assert vocab[: len(tiny_vocab())] == tiny_vocab() and "[CLS]" in vocab and "##s" in vocab
    model = AutoModelForZeroShotObjectDetection.from_pretrained(tiny_grounding_dir, local_files_only=True)
    processor = AutoProcessor.from_pretrained(tiny_grounding_dir, local_files_only=True)
    n_params = sum(p.numel() for p in model.parameters())
    assert 1.0e6 < n_params < 1.6e6  # about 1.3 M
    assert models.transformers_folder_complete(tiny_grounding_dir)
    image = rng_image(40, 56, seed=2)
    inputs = processor(images=image, text="a cat.", return_tensors="pt")
    with torch.inference_mode():
        out = model(**inputs)
    assert out.logits.shape[:2] == (1, cfg.num_queries) and out.pred_boxes.shape == (1, cfg.num_queries, 4)
    res = processor.post_process_grounded_object_detection(
        out, inputs["input_ids"], threshold=0.0, text_threshold=0.0, target_sizes=[(40, 56)]
    )[0]
    assert res["boxes"].shape == (cfg.num_queries, 4)
    boxes = res["boxes"].numpy()
    assert (boxes[:, [0, 2]] >= -1e-3).all() and (boxes[:, [0, 2]] <= 56 + 1e-3).all()


def test_detector_boxes_are_in_image_pixels(detector: GroundingDetector, rng_image) -> None:
    image = rng_image(48, 80, seed=1)
    dets = detector.detect(image, ["cat"], box_threshold=0.0, text_threshold=0.0)
    assert dets and all(isinstance(d, Detection) for d in dets)
    assert [d.score for d in dets] == sorted((d.score for d in dets), reverse=True)
    for d in dets:
        x0, y0, x1, y1 = d.box
        assert 0 <= x0 < x1 <= 80 and 0 <= y0 < y1 <= 48 and isinstance(d.label, str)
    again = detector.detect(image, "cat", box_threshold=0.0, text_threshold=0.0)
    assert [d.box for d in again] == [d.box for d in dets]  # deterministic
    assert detector.detect(image, [" "]) == [] and detector.calls == 2
    assert detector.detect(image, ["cat"], box_threshold=1.0) == []  # nothing passes a threshold of 1


def test_format_prompt() -> None:
    assert format_prompt(["Cat", "red  car."]) == "cat. red car."
    assert format_prompt([]) == ""


def test_missing_and_broken_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "models"
    with pytest.raises(MissingWeightsError) as ei:
        GroundingDetector.load(None, "cpu", models_dir=empty)
    msg = str(ei.value)
    assert "maskpix-cli models download grounding_dino" in msg and "grounding-dino-tiny" in msg
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(MissingWeightsError, match="models download grounding_dino"):
        resolve_grounding("IDEA-Research/grounding-dino-tiny", empty)
    with pytest.raises(MissingWeightsError, match="huggingface-cli download someone/dino"):
        resolve_grounding("someone/dino", empty)
    not_model = tmp_path / "folder"
    not_model.mkdir()
    with pytest.raises(WeightsError, match="config.json"):
        GroundingDetector.load(not_model, "cpu")
    (not_model / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(WeightsError, match="Could not load GroundingDINO"):
        GroundingDetector.load(not_model, "cpu")


def test_registry_entry_and_local_folder(tmp_path: Path, tiny_grounding_dir: Path) -> None:
    spec = models.get_spec(models.DEFAULT_GROUNDING)
    assert spec.kind == "grounding" and spec.hf_repo == "IDEA-Research/grounding-dino-tiny"
    assert len(spec.hf_revision or "") == 40
    names = [f.filename for f in spec.files]
    assert {"config.json", "model.safetensors", "vocab.txt", "preprocessor_config.json"} <= set(names)
    assert all(
        f.url.startswith("https://huggingface.co/IDEA-Research/grounding-dino-tiny/resolve/")
        for f in spec.files
    )
    assert all(f.sha256 is None or len(f.sha256) == 64 for f in spec.files)
    folder = models.local_path("grounding_dino", tmp_path)
    assert folder == tmp_path / "grounding-dino-tiny"
    assert not models.is_present("grounding_dino", tmp_path)
    shutil.copytree(tiny_grounding_dir, folder)
    assert (
        models.is_present("grounding_dino", tmp_path) and models.require("grounding_dino", tmp_path) == folder
    )
    assert models.verify("grounding_dino", tmp_path)
    assert resolve_grounding(None, tmp_path) == folder
    assert resolve_grounding("IDEA-Research/grounding-dino-tiny", tmp_path) == folder
    det = GroundingDetector.load(None, "cpu", models_dir=tmp_path)
    assert det.model_id == str(folder)
    (folder / "model.safetensors").unlink()
    assert not models.is_present("grounding_dino", tmp_path)


def test_service_loads_grounding_from_the_manifest(tmp_path: Path, tiny_grounding_dir: Path) -> None:
    from maskpix_desktop.core.service import ModelChoice, ModelService

    shutil.copytree(tiny_grounding_dir, tmp_path / "g")
    (tmp_path / "maskpix-models.json").write_text(json.dumps({"grounding": "g"}), encoding="utf-8")
    service = ModelService(ModelChoice(models_dir=str(tmp_path), device="cpu"))
    assert service.choice.grounding == str(tmp_path / "g")
    det = service.grounding()
    assert isinstance(det, GroundingDetector) and service.grounding() is det
    assert service.model_info()["grounding"] == str(tmp_path / "g")
    service.unload()
    assert "grounding" not in service.model_info()
    bare = ModelService(ModelChoice(models_dir=str(tmp_path / "none"), device="cpu"))
    with pytest.raises(MissingWeightsError):
        bare.grounding()


class SpySegmenter:
    """Records every prompt; answers each box with the box itself as all three candidates."""

    def __init__(self) -> None:
        self.boxes: list[list[float]] = []
        self.shape = (0, 0)

    def set_image(self, image: np.ndarray) -> bool:
        self.shape = image.shape[:2]
        return True

    def predict(self, points=None, labels=None, box=None, mask_input=None, multimask=None) -> SegmentResult:
        assert box is not None and multimask is True
        self.boxes.append([float(v) for v in box])
        m = np.zeros(self.shape, bool)
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        m[y0:y1, x0:x1] = True
        return SegmentResult(
            np.stack([m, m, m]), np.array([0.3, 0.2, 0.1], np.float32), np.zeros((3, 16, 16), np.float32)
        )


@pytest.mark.parametrize(("instruction", "plural"), [("remove the cats", True), ("remove the cat", False)])
def test_grounding_boxes_reach_sam(
    detector: GroundingDetector, rng_image, instruction: str, plural: bool
) -> None:
    image = rng_image(48, 64, seed=5)
    p = AutoMaskParams(box_threshold=0.0, text_threshold=0.0, remove_dilate=0)
    expected = detector.detect(image, [instruction.split()[-1]], box_threshold=0.0, text_threshold=0.0)
    assert len(expected) > 1
    spy = SpySegmenter()
    res = AutoMasker(segmenter=spy, detector=detector).run(image, instruction, p)
    want = expected if plural else expected[:1]  # plural: every box; singular: the best-scored one
    assert spy.boxes == [pytest.approx(list(d.box)) for d in want]
    assert res.source == "grounding" and res.detections == tuple(want)
    assert np.allclose(res.boxes, [d.box for d in want])
    assert res.mask.any() and res.timings["grounding_s"] > 0


def test_download_fetches_the_pinned_snapshot(
    tmp_path: Path, tiny_grounding_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    calls: list[dict] = []

    def fake_snapshot(**kwargs):
        calls.append(kwargs)
        shutil.copytree(tiny_grounding_dir, kwargs["local_dir"], dirs_exist_ok=True)
        (Path(kwargs["local_dir"]) / "preprocessor_config.json").write_text("{}", encoding="utf-8")
        return kwargs["local_dir"]

    monkeypatch.delenv(models.ENV_OFFLINE, raising=False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    out = models.download("grounding_dino", tmp_path)
    assert out == tmp_path / "grounding-dino-tiny" and models.is_present("grounding_dino", tmp_path)
    (call,) = calls
    spec = models.get_spec("grounding_dino")
    assert call["repo_id"] == spec.hf_repo and call["revision"] == spec.hf_revision
    assert set(call["allow_patterns"]) == {f.filename for f in spec.files}
    assert models.download("grounding_dino", tmp_path) == out and len(calls) == 1  # present: no refetch

    def broken_snapshot(**kwargs):
        Path(kwargs["local_dir"]).mkdir(parents=True, exist_ok=True)
        (Path(kwargs["local_dir"]) / "config.json").write_text("{}", encoding="utf-8")
        return kwargs["local_dir"]

    monkeypatch.setattr(huggingface_hub, "snapshot_download", broken_snapshot)
    from maskpix_desktop.core.errors import DownloadError

    with pytest.raises(DownloadError, match="incomplete"):
        models.download("grounding_dino", tmp_path / "other")
