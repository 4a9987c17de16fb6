"""CosXL-Edit from the command line (issue 17): ``models convert-cosxl`` makes a folder of the file, never
over one; ``models download cosxl-edit`` fetches the file and the configs and converts both in one step."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from maskpix_desktop.cli import main
from maskpix_desktop.cli.exit_codes import EXIT_ERROR, EXIT_OK
from maskpix_desktop.testing.ldm_checkpoint import save_tiny_cosxl


def test_convert_cosxl_writes_a_folder_once(tmp_path: Path, capsys) -> None:
    file, config = save_tiny_cosxl(tmp_path / "src", seed=0)
    out = tmp_path / "cosxl-edit"
    args = ["models", "convert-cosxl", str(file), "--config", str(config), "--out", str(out)]
    assert main(args) == EXIT_OK
    assert f"--ip2p {out}" in capsys.readouterr().out
    assert json.loads((out / "model_index.json").read_text(encoding="utf-8"))["is_cosxl_edit"] is True
    assert main(args) == EXIT_ERROR  # never over an existing folder
    assert "exists" in capsys.readouterr().err


# ------------------------------------------------------------- `models download cosxl-edit`: fetch + convert


def _fake_hub(monkeypatch, file: Path, config: Path, *, fail_configs: Exception | None = None) -> list[dict]:
    """huggingface_hub.snapshot_download offline: stabilityai/cosxl serves ``file``, the SDXL IP2P repository
    serves the configs (json / txt) of ``config``."""
    import huggingface_hub

    from maskpix_desktop.core.models.registry import CONFIG_PATTERNS, SDXL_IP2P_REPO

    calls: list[dict] = []

    def snapshot_download(**kw):
        calls.append(kw)
        dest = Path(kw["local_dir"])
        dest.mkdir(parents=True, exist_ok=True)
        if kw["repo_id"] == "stabilityai/cosxl":
            assert kw["allow_patterns"] == ["cosxl_edit.safetensors"]
            shutil.copy(file, dest / "cosxl_edit.safetensors")
        else:
            assert kw["repo_id"] == SDXL_IP2P_REPO and kw["allow_patterns"] == list(CONFIG_PATTERNS)
            if fail_configs is not None:
                raise fail_configs
            for f in config.rglob("*"):
                if f.suffix in (".json", ".txt"):
                    (dest / f.relative_to(config)).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(f, dest / f.relative_to(config))
        return str(dest)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return calls


def _unet_weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "unet" / "diffusion_pytorch_model.safetensors")


def test_models_download_cosxl_edit_fetches_the_file_and_configs_and_converts_them(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    from maskpix_desktop.core import models
    from maskpix_desktop.core.cosxl import convert_cosxl_edit
    from maskpix_desktop.core.editor_families import folder_family

    file, config = save_tiny_cosxl(tmp_path / "hub", seed=0)
    calls = _fake_hub(monkeypatch, file, config)
    mdir = tmp_path / "models"
    assert main(["models", "download", "cosxl-edit", "--models-dir", str(mdir)]) == EXIT_OK
    out = mdir / "cosxl"
    assert f"cosxl-edit: {out}" in capsys.readouterr().out
    assert [c["repo_id"] for c in calls] == ["stabilityai/cosxl", "diffusers/sdxl-instructpix2pix-768"]
    assert models.is_present("cosxl-edit", mdir) and folder_family(out) == "ip2p_xl"
    assert json.loads((out / "model_index.json").read_text(encoding="utf-8"))["is_cosxl_edit"] is True
    assert not (mdir / ".cosxl.download").exists()  # the 7 GB source file is not kept beside the folder
    direct = _unet_weights(convert_cosxl_edit(file, config, tmp_path / "direct"))
    got = _unet_weights(out)
    assert got.keys() == direct.keys() and all(torch.equal(got[k], direct[k]) for k in got)
    assert models.resolve_ip2p("cosxl-edit", mdir)[0] == str(out)  # --ip2p cosxl-edit
    assert main(["models", "download", "cosxl-edit", "--models-dir", str(mdir)]) == EXIT_OK
    assert len(calls) == 2  # present: nothing fetched again


def test_cosxl_download_cut_keeps_the_checkpoint_and_a_bad_file_is_removed(
    tmp_path: Path, monkeypatch
) -> None:
    from maskpix_desktop.core import models
    from maskpix_desktop.core.errors import DownloadError

    file, config = save_tiny_cosxl(tmp_path / "hub", seed=0)
    mdir = tmp_path / "models"
    staged = mdir / ".cosxl.download" / "checkpoint" / "cosxl_edit.safetensors"
    _fake_hub(monkeypatch, file, config, fail_configs=OSError("connection reset"))
    with pytest.raises(DownloadError, match="connection reset"):
        models.download("cosxl-edit", mdir)
    assert staged.is_file() and not (mdir / "cosxl").exists()  # the next try resumes

    bad = tmp_path / "bad.safetensors"
    save_file({"first_stage_model.whatever": torch.zeros(2)}, bad)
    _fake_hub(monkeypatch, bad, config)
    with pytest.raises(DownloadError, match="could not be converted.*removed"):
        models.download("cosxl-edit", mdir)
    assert not (mdir / ".cosxl.download").exists() and not (mdir / "cosxl").exists()

    _fake_hub(monkeypatch, file, config)
    assert models.download("cosxl-edit", mdir) == mdir / "cosxl" and models.is_present("cosxl-edit", mdir)


def test_a_float16_checkpoint_converts_to_float16_weights(tmp_path: Path) -> None:
    """CosXL-Edit's file is float16: the folder keeps float16 (half the disk and memory of float32), with
    exactly the file's values."""
    from maskpix_desktop.core.cosxl import convert_cosxl_edit

    file, config = save_tiny_cosxl(tmp_path / "src", seed=0)
    half = {k: v.half() for k, v in load_file(file).items()}
    save_file(half, tmp_path / "cosxl_fp16.safetensors")
    out = convert_cosxl_edit(tmp_path / "cosxl_fp16.safetensors", config, tmp_path / "fp16")
    unet = _unet_weights(out)
    assert {v.dtype for v in unet.values()} == {torch.float16}
    full = _unet_weights(convert_cosxl_edit(file, config, tmp_path / "fp32"))
    assert {v.dtype for v in full.values()} == {torch.float32}
    assert all(torch.equal(unet[k], full[k].half()) for k in unet)
