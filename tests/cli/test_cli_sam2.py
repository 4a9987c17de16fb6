"""SAM 2.1 by name or folder through the headless commands: ``run --sam``, ``eval-automask --sam`` and
``models download sam2.1_hiera_tiny`` (the hub call monkeypatched: the code path up to the network)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from maskpix_desktop.cli import main
from maskpix_desktop.core import images, masks, models
from maskpix_desktop.core.sam2_segmenter import Sam2Segmenter, app_precision
from maskpix_desktop.core.service import ModelChoice, ModelService
from maskpix_desktop.testing.tiny_sam2 import save_tiny_sam2

TINY = "sam2.1_hiera_tiny"
SAMPLES = Path(__file__).resolve().parents[2] / "resources" / "samples"
# (name, SAM prompts as TOML, the same prompts for Sam2Segmenter.predict, candidate)
CASES = [
    (
        "point",
        "points = [[255, 380]]\nlabels = [1]\ncandidate = 2",
        {"points": [[255, 380]], "labels": [1]},
        2,
    ),
    (
        "points-box",
        "points = [[255, 380], [255, 180]]\nlabels = [1, 0]\nbox = [150, 200, 400, 560]",
        {"points": [[255, 380], [255, 180]], "labels": [1, 0], "box": [150, 200, 400, 560]},
        None,
    ),
]


@pytest.fixture(scope="module")
def models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny models folder (its manifest names a SAM 1 .pth) plus a tiny SAM 2 where the registry
    expects sam2.1_hiera_tiny: an explicit --sam must win over the manifest."""
    from maskpix_desktop.testing.tiny_models import make_tiny_models

    root = make_tiny_models(tmp_path_factory.mktemp("sam2_cli_models"))
    save_tiny_sam2(models.local_path(TINY, root), seed=0)
    return root


@pytest.fixture(autouse=True)
def _offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv(models.ENV_MODELS_DIR, str(tmp_path / "no-default-models"))


@pytest.mark.parametrize("how", ["name", "folder"])
def test_run_with_sam2_masks_equal_the_segmenter(tmp_path: Path, models_root: Path, how: str) -> None:
    folder = models.local_path(TINY, models_root)
    body = "".join(
        f'[[case]]\nname = "{name}"\nimage = "{(SAMPLES / "person.jpg").as_posix()}"\n'
        f'instruction = "make it red"\n{prompts}\nseed = 1\nsteps = 1\nlong_side = 64\n\n'
        for name, prompts, _, _ in CASES
    )
    (tmp_path / "cases.toml").write_text(body, encoding="utf-8")
    out = tmp_path / "out"
    sam = TINY if how == "name" else str(folder)
    args = ["run", str(tmp_path / "cases.toml"), "--out", str(out), "--models-dir", str(models_root)]
    assert main([*args, "--sam", sam, "--device", "cpu", "--no-clip"]) == 0

    seg = Sam2Segmenter.from_pretrained(folder, device="cpu", encoder_precision=app_precision("auto", "cpu"))
    image = images.load_image(SAMPLES / "person.jpg")
    seg.set_image(image)
    for name, _, prompts, candidate in CASES:
        res = seg.predict(**{k: np.asarray(v, np.float32) for k, v in prompts.items()})
        want = res.mask(res.best if candidate is None else candidate)
        got = images.load_mask(out / name / "mask.png")
        assert want.any() and np.array_equal(got, want), name
        model = json.loads((out / name / "metadata.json").read_text(encoding="utf-8"))["model"]
        assert model["sam"] == seg.model_type
        assert model["sam_fingerprint"] == models.file_fingerprint(folder)


def _pie_folder(root: Path, rng_image) -> dict:
    """Two 512x512 PIE-Bench items (mapping_file.json + annotation_images/), rectangle masks."""
    entries = {}
    for i, (instruction, (x0, y0, x1, y1)) in enumerate(
        [("Change the cat to a dog", (100, 120, 300, 360)), ("remove the lamp", (300, 30, 500, 200))]
    ):
        key = f"00000000000{i}"
        rel = f"1_type/{key}.jpg"
        (root / "annotation_images" / rel).parent.mkdir(parents=True, exist_ok=True)
        images.save_image(root / "annotation_images" / rel, rng_image(512, 512, seed=20 + i))
        gt = np.zeros((512, 512), bool)
        gt[y0:y1, x0:x1] = True
        entries[key] = {
            "image_path": rel,
            "original_prompt": "a photo",
            "editing_prompt": "a photo",
            "editing_instruction": instruction,
            "editing_type_id": "1",
            "blended_word": "cat dog",
            "mask": masks.pie_rle_encode(gt),
        }
    (root / "mapping_file.json").write_text(json.dumps(entries), encoding="utf-8")
    return entries


def test_eval_automask_with_sam2_writes_the_masks_of_the_app_path(
    tmp_path: Path, models_root: Path, tiny_ip2p_dir: Path, rng_image
) -> None:
    """``eval-automask --sam sam2.1_hiera_tiny``: every written mask equals AutoMasker.run with the same
    engines in this process (relevance from the tiny IP2P, SAM 2 fusion), and the run record names the
    SAM 2 weights."""
    from maskpix_desktop.core.automask import AutoMasker, AutoMaskParams

    data = tmp_path / "pie"
    entries = _pie_folder(data, rng_image)
    out = tmp_path / "out"
    args = ["eval-automask", str(data), "--out", str(out), "--ip2p", str(tiny_ip2p_dir), "--sam", TINY]
    args += ["--models-dir", str(models_root), "--device", "cpu", "--long-side", "64", "--no-progress"]
    args += ["--no-grounding"]
    assert main(args) == 0
    run = json.loads((out / "automask_run.json").read_text(encoding="utf-8"))
    assert run["models"]["sam_fingerprint"] == models.file_fingerprint(models.local_path(TINY, models_root))

    service = ModelService(ModelChoice(models_dir=str(models_root), sam=TINY, ip2p=str(tiny_ip2p_dir)))
    seg = service.segmenter()
    assert isinstance(seg, Sam2Segmenter)
    masker = AutoMasker(editor=service.editor(), segmenter=seg)
    params = AutoMaskParams(**{k: v for k, v in run["params"].items()})
    with open(out / "automask.csv", encoding="utf-8", newline="") as fh:
        rows = {r["key"]: r for r in csv.DictReader(fh)}
    assert sorted(rows) == sorted(entries)
    used_sam = 0
    for key, entry in entries.items():
        image = images.load_image(data / "annotation_images" / entry["image_path"])
        result = masker.run(image, entry["editing_instruction"], params)
        used_sam += result.sam_logits is not None
        assert np.array_equal(images.load_mask(out / rows[key]["mask_png"]), result.mask), key
    assert used_sam  # SAM 2 shaped at least one mask (not the relevance mask alone)


def test_models_download_sam2_up_to_the_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rng_image
) -> None:
    """``maskpix-cli models download sam2.1_hiera_tiny``: the registry's repo, revision and files go to the
    hub's snapshot call (here a stand-in that writes a tiny SAM 2); the folder is then complete, listed as
    present and loads by name."""
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE")
    calls: list[dict] = []

    def fake_snapshot(**kw) -> str:
        calls.append(kw)
        save_tiny_sam2(kw["local_dir"], seed=0)
        return kw["local_dir"]

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    root = tmp_path / "models"
    assert not models.is_present(TINY, root)
    assert main(["models", "download", TINY, "--models-dir", str(root)]) == 0
    spec = models.get_spec(TINY)
    assert len(calls) == 1
    assert (calls[0]["repo_id"], calls[0]["revision"]) == ("facebook/sam2.1-hiera-tiny", spec.hf_revision)
    assert sorted(calls[0]["allow_patterns"]) == sorted(f.filename for f in spec.files)
    assert Path(calls[0]["local_dir"]) == models.local_path(TINY, root)
    assert models.is_present(TINY, root)
    assert main(["models", "download", TINY, "--models-dir", str(root)]) == 0 and len(calls) == 1  # present
    seg = ModelService(ModelChoice(models_dir=str(root), sam=TINY, device="cpu")).segmenter()
    assert isinstance(seg, Sam2Segmenter)
    seg.set_image(rng_image(48, 64, seed=3))
    assert len(seg.predict(np.array([[20, 30]]), np.array([1]))) == 3
