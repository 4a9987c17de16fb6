"""ModelChoice (manifest, explicit overrides, registry); ModelService (lazy, load once, CLIP optional)."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pytest

from maskpix_desktop.core import models
from maskpix_desktop.core.errors import MissingWeightsError, WeightsError
from maskpix_desktop.core.service import MANIFEST, SAM_AUTO, ModelChoice, ModelService


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from maskpix_desktop.testing.tiny_models import make_tiny_models

    return make_tiny_models(tmp_path_factory.mktemp("service_tiny_models"))


@pytest.fixture(autouse=True)
def offline_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Offline, and a default models folder that is empty (never the user's real one)."""
    default = tmp_path / "default-models"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv(models.ENV_MODELS_DIR, str(default))
    return default


@pytest.fixture
def empty(tmp_path: Path) -> Path:
    folder = tmp_path / "empty-models"
    folder.mkdir()
    return folder


# ------------------------------------------------------------------------------------------ ModelChoice


def test_with_manifest_picks_the_tiny_paths(tiny_models: Path) -> None:
    choice = ModelChoice(models_dir=str(tiny_models)).with_manifest()
    assert choice.sam == str(tiny_models / "tiny-sam.pth")
    assert choice.ip2p == str(tiny_models / "tiny-ip2p")
    assert choice.clip == {
        "model_name": "maskpix-tiny-clip",
        "pretrained": str(tiny_models / "tiny-clip" / "maskpix-tiny-clip.safetensors"),
        "config_path": str(tiny_models / "tiny-clip" / "maskpix-tiny-clip.json"),
    }
    assert Path(choice.sam).is_file() and Path(choice.clip["pretrained"]).is_file()
    path, model_type = choice.sam_checkpoint()
    assert path == tiny_models / "tiny-sam.pth" and model_type is None  # architecture auto-detected
    assert choice.clip_kwargs() == choice.clip
    assert models.resolve_ip2p(choice.ip2p, choice.models_dir) == (str(tiny_models / "tiny-ip2p"), True)


def test_manifest_from_the_environment_folder(tiny_models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(models.ENV_MODELS_DIR, str(tiny_models))
    choice = ModelChoice().with_manifest()
    assert choice.root == tiny_models and choice.sam == str(tiny_models / "tiny-sam.pth")


def test_explicit_choices_override_the_manifest(tiny_models: Path, tmp_path: Path) -> None:
    own_sam = tmp_path / "my_sam.pth"
    own_sam.write_bytes(b"x")
    clip = {"model_name": "ViT-B-32", "pretrained": "/w/clip.safetensors"}
    choice = ModelChoice(models_dir=str(tiny_models), sam=str(own_sam), ip2p="/my/ip2p", clip=clip)
    applied = choice.with_manifest()
    assert (applied.sam, applied.ip2p, applied.clip) == (str(own_sam), "/my/ip2p", clip)
    assert applied.sam_checkpoint() == (own_sam, None)
    # a registry variant other than the default is an explicit choice too
    assert ModelChoice(models_dir=str(tiny_models), sam="vit_b").with_manifest().sam == "vit_b"


def test_no_manifest_changes_nothing(empty: Path) -> None:
    choice = ModelChoice(models_dir=str(empty))
    assert choice.with_manifest() == choice


def test_default_sam_follows_the_device(monkeypatch) -> None:
    """No choice made: vit_h with CUDA, SAM 2.1 hiera tiny (the best quality per CPU second) without."""
    assert ModelChoice().sam == SAM_AUTO
    assert ModelChoice(device="cpu").sam_name() == "sam2.1_hiera_tiny"
    assert ModelChoice(device="mps").sam_name() == "sam2.1_hiera_tiny"
    assert ModelChoice(device="cpu", sam="vit_b").sam_name() == "vit_b"  # a choice made stays
    monkeypatch.setattr(models, "resolve_device", lambda device: "cuda:0")  # as on a CUDA machine
    assert ModelChoice(device="cuda").sam_name() == "vit_h"


def test_auto_sam_on_a_cpu_asks_for_sam2_tiny(tmp_path: Path) -> None:
    with pytest.raises(MissingWeightsError) as info:
        ModelChoice(models_dir=str(tmp_path), device="cpu").sam_checkpoint()
    assert info.value.path == models.local_path("sam2.1_hiera_tiny", tmp_path)
    assert "maskpix-cli models download sam2.1_hiera_tiny" in str(info.value)


def test_partial_manifest(tmp_path: Path) -> None:
    (tmp_path / MANIFEST).write_text(json.dumps({"ip2p": "folder"}), encoding="utf-8")
    choice = ModelChoice(models_dir=str(tmp_path)).with_manifest()
    assert (choice.sam, choice.ip2p, choice.clip) == (SAM_AUTO, str(tmp_path / "folder"), None)


def test_broken_manifest_is_a_weights_error(tmp_path: Path) -> None:
    (tmp_path / MANIFEST).write_text("{not json", encoding="utf-8")
    with pytest.raises(WeightsError, match="maskpix-models.json is not valid JSON"):
        ModelChoice(models_dir=str(tmp_path)).with_manifest()


@pytest.mark.parametrize(
    ("variant", "filename"),
    [("vit_h", "sam_vit_h_4b8939.pth"), ("vit_l", "sam_vit_l_0b3195.pth"), ("vit_b", "sam_vit_b_01ec64.pth")],
)
def test_registry_sam_missing_names_file_and_fetch_command(empty: Path, variant: str, filename: str) -> None:
    with pytest.raises(MissingWeightsError) as info:
        ModelChoice(models_dir=str(empty), sam=variant).sam_checkpoint()
    err = info.value
    assert err.name == f"sam_{variant}" and err.path == empty / filename
    assert err.fetch_command == f"maskpix-cli models download sam_{variant} --models-dir {empty}"
    assert filename in str(err) and err.fetch_command in str(err) and "missing" in str(err)


def test_registry_sam_present(tmp_path: Path) -> None:
    spec = models.get_spec("sam_vit_b")
    target = models.local_path("sam_vit_b", tmp_path)
    with open(target, "wb") as fh:  # sparse file of the registered size: "present" for the registry
        fh.truncate(spec.size_bytes)
    assert ModelChoice(models_dir=str(tmp_path), sam="vit_b").sam_checkpoint() == (target, "vit_b")


def test_missing_sam_file_path(tmp_path: Path) -> None:
    with pytest.raises(MissingWeightsError, match="nope.pth") as info:
        ModelChoice(models_dir=str(tmp_path), sam=str(tmp_path / "nope.pth")).sam_checkpoint()
    assert info.value.path == tmp_path / "nope.pth"


def test_registry_clip_missing(empty: Path) -> None:
    with pytest.raises(MissingWeightsError, match="maskpix-cli models download clip"):
        ModelChoice(models_dir=str(empty)).clip_kwargs()


# ----------------------------------------------------------------------------------------- ModelService


def test_check_reports_missing_weights_before_any_work(empty: Path) -> None:
    service = ModelService(ModelChoice(models_dir=str(empty), device="cpu"))
    with pytest.raises(MissingWeightsError, match="sam2.1-hiera-tiny"):  # SAM_AUTO on a CPU
        service.check()
    with pytest.raises(MissingWeightsError) as info:
        service.check(sam=False)
    assert info.value.path == empty / models.IP2P_FOLDER
    assert "maskpix-cli models download ip2p" in str(info.value)
    service.check(sam=False, ip2p=False)
    assert service._segmenter is None and service._editor is None  # nothing was loaded


def test_service_loads_each_model_once(tiny_models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from maskpix_desktop.core import editor_loader
    from maskpix_desktop.core.metrics import ClipScorer
    from maskpix_desktop.core.segmenter import Segmenter

    calls = {"sam": 0, "ip2p": 0, "clip": 0}

    def counting(key: str, original):
        def load(*args, **kwargs):
            calls[key] += 1
            return original(*args, **kwargs)

        return load

    monkeypatch.setattr(Segmenter, "from_checkpoint", counting("sam", Segmenter.from_checkpoint))
    monkeypatch.setattr(editor_loader, "load_editor", counting("ip2p", editor_loader.load_editor))
    monkeypatch.setattr(ClipScorer, "load", counting("clip", ClipScorer.load))

    service = ModelService(ModelChoice(models_dir=str(tiny_models), device="cpu"))
    assert service.device == "cpu" and calls == {"sam": 0, "ip2p": 0, "clip": 0}  # lazy
    service.check()

    # Several threads asking at once still load each model exactly once.
    got: dict[str, list] = {"sam": [], "ip2p": [], "clip": []}

    def worker() -> None:
        got["sam"].append(service.segmenter())
        got["ip2p"].append(service.editor())
        got["clip"].append(service.clip())

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == {"sam": 1, "ip2p": 1, "clip": 1}
    for key, objs in got.items():
        assert len(objs) == 3 and all(o is objs[0] for o in objs), key
    assert service.segmenter() is got["sam"][0] and service.editor() is got["ip2p"][0]
    assert service.clip() is got["clip"][0] and service.clip_error is None
    assert calls == {"sam": 1, "ip2p": 1, "clip": 1}

    info = service.model_info()
    sam_sha = hashlib.sha256((tiny_models / "tiny-sam.pth").read_bytes()).hexdigest()
    assert info == {
        "device": "cpu",
        "sam": "custom",
        "sam_fingerprint": sam_sha,
        "clip": "maskpix-tiny-clip/maskpix-tiny-clip.safetensors",
    }

    service.unload()
    assert service.model_info() == {"device": "cpu"}
    assert service.segmenter() is not got["sam"][0] and calls["sam"] == 2  # reloaded after unload


def test_clip_missing_is_optional(empty: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from maskpix_desktop.core.metrics import ClipScorer

    monkeypatch.setenv(models.ENV_MODELS_DIR, str(empty))
    service = ModelService(ModelChoice(device="cpu"))  # no models_dir: the (empty) env folder, no manifest
    assert service.choice.root == empty and service.choice.clip is None
    assert service.clip() is None
    assert service.clip_error is not None
    assert "missing" in service.clip_error and "maskpix-cli models download clip" in service.clip_error
    assert str(models.local_path("clip", empty)) in service.clip_error

    def must_not_load(*args, **kwargs):
        raise AssertionError("a failed CLIP load is not retried on every call")

    monkeypatch.setattr(ClipScorer, "load", must_not_load)
    assert service.clip() is None
    service.unload()  # a model-settings change clears the error and allows a new try
    assert service.clip_error is None


def test_broken_clip_weights_are_reported_not_raised(tmp_path: Path, tiny_models: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not safetensors")
    clip = {
        "model_name": "maskpix-tiny-clip",
        "pretrained": str(bad),
        "config_path": str(tiny_models / "tiny-clip" / "maskpix-tiny-clip.json"),
    }
    service = ModelService(ModelChoice(models_dir=str(tmp_path), clip=clip, device="cpu"))
    assert service.clip() is None and "could not be loaded" in (service.clip_error or "")


@pytest.mark.parametrize(
    ("precision", "sam_precision"), [("auto", "auto"), ("fp16", "auto"), ("fp32", "fp32")]
)
def test_precision_choice_reaches_sams_encoder(
    tiny_models: Path, monkeypatch: pytest.MonkeyPatch, precision: str, sam_precision: str
) -> None:
    from maskpix_desktop.core.segmenter import Segmenter

    seen: list[str] = []
    original = Segmenter.from_checkpoint

    def load(*args, **kwargs):
        seen.append(kwargs["encoder_precision"])
        return original(*args, **kwargs)

    monkeypatch.setattr(Segmenter, "from_checkpoint", load)
    service = ModelService(ModelChoice(models_dir=str(tiny_models), device="cpu", precision=precision))
    seg = service.segmenter()
    assert seen == [sam_precision]
    assert seg.encoder_precision == "fp32"  # the CPU always encodes in float32
