"""Editor families from the CLI (issue 17): ``--ip2p <registry name>`` runs the tiny Kontext folder with the
mask guarantee and records family and memory setting; ``models download <editor>`` fetches the folder
with its file patterns; a missing editor names its fetch command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskpix_desktop.cli import main
from maskpix_desktop.core import images, models
from maskpix_desktop.core.errors import MissingWeightsError

H, W = 64, 96


@pytest.fixture(autouse=True)
def offline_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv(models.ENV_MODELS_DIR, str(tmp_path / "no-default-models"))


@pytest.fixture(scope="module")
def kontext_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder holding the tiny Kontext where the registry's flux-kontext-dev lives."""
    from maskpix_desktop.testing.tiny_kontext import save_tiny_kontext

    root = tmp_path_factory.mktemp("editor_models")
    save_tiny_kontext(models.local_path("flux-kontext-dev", root))
    return root


def test_registry_name_resolves_to_its_folder_or_names_the_fetch_command(
    kontext_models: Path, tmp_path: Path
):
    folder = models.local_path("flux-kontext-dev", kontext_models)
    assert models.resolve_ip2p("flux-kontext-dev", kontext_models) == (str(folder), True)
    with pytest.raises(MissingWeightsError, match="maskpix-cli models download qwen-image-edit"):
        models.resolve_ip2p("qwen-image-edit", tmp_path)


def test_cli_run_kontext_by_name_is_exact_outside_the_mask(
    kontext_models: Path, tmp_path: Path, rng_image, capsys
) -> None:
    image = rng_image(H, W, seed=4)
    mask = np.zeros((H, W), bool)
    mask[16:48, 24:72] = True
    Image.fromarray(image).save(tmp_path / "img.png")
    Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "mask.png")
    (tmp_path / "cases.toml").write_text(
        '[[case]]\nname = "winter"\nimage = "img.png"\nmask = "mask.png"\ninstruction = "make it winter"\n'
        'seed = 5\nsteps = 2\nguidance = 3.0\nmask_mode = "pixel"\nfeather = 0.0\ndilate = 0\n',
        encoding="utf-8",
    )
    out = tmp_path / "out"
    argv = ["run", str(tmp_path / "cases.toml"), "--out", str(out), "--models-dir", str(kontext_models)]
    rc = main(
        [*argv, "--ip2p", "flux-kontext-dev", "--no-clip", "--device", "cpu", "--memory", "model_offload"]
    )
    assert rc == 0, capsys.readouterr().err
    folder = out / "winter"
    original = images.load_image(folder / "original.png")
    blended = images.load_image(folder / "blended.png")
    baseline = images.load_image(folder / "baseline.png")
    np.testing.assert_array_equal(original, image)
    np.testing.assert_array_equal(blended[~mask], image[~mask])
    np.testing.assert_array_equal(blended[mask], baseline[mask])
    assert not np.array_equal(baseline[~mask], image[~mask])  # the plain edit leaked: the mask did the work
    meta = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
    assert meta["model"]["editor_family"] == "kontext"
    assert meta["params"]["guidance"] == 3.0  # the family's parameter, in the sidecar as in the case
    assert meta["model"]["memory"] == "full (model_offload needs CUDA)"  # CPU: said, not pretended


def test_models_download_fetches_an_editor_folder_by_its_patterns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import huggingface_hub

    from maskpix_desktop.testing.tiny_kontext import save_tiny_kontext

    calls: list[dict] = []

    def snapshot_download(**kw):  # the hub, offline: the tiny Kontext stands for the repository
        calls.append(kw)
        save_tiny_kontext(kw["local_dir"])
        return kw["local_dir"]

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    rc = main(["models", "download", "flux-kontext-dev", "--models-dir", str(tmp_path)])
    assert rc == 0
    spec = models.get_spec("flux-kontext-dev")
    assert len(calls) == 1 and calls[0]["repo_id"] == "black-forest-labs/FLUX.1-Kontext-dev"
    assert calls[0]["revision"] == "main" and calls[0]["allow_patterns"] == list(spec.patterns)
    assert models.is_present("flux-kontext-dev", tmp_path)
    assert str(models.local_path("flux-kontext-dev", tmp_path)) in capsys.readouterr().out
