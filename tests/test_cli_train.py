"""``maskpix-cli train prepare`` and ``maskpix-cli train``: from edit data to a checkpoint the app loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from maskpix_desktop.cli import main
from maskpix_desktop.cli.train import FORMATS
from maskpix_desktop.core import images
from maskpix_desktop.core.maskcond.sources import FORMATS as CORE_FORMATS
from maskpix_desktop.core.maskcond.synthetic import SyntheticShapes

datasets = pytest.importorskip("datasets")


@pytest.fixture(autouse=True)
def _torch_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)  # --cpu-threads sets it for the process


def _triplets(root: Path, n: int = 4) -> Path:
    for i, it in enumerate(SyntheticShapes(n, seed=5, size=32)):
        d = root / f"t{i}"
        d.mkdir(parents=True)
        images.save_image(d / "input.png", it.image)
        images.save_image(d / "edited.png", it.target)
        (d / "prompt.txt").write_text(it.instruction, encoding="utf-8")
    return root


def _prepare_args(src: Path, out: Path, *extra: str) -> list[str]:
    base = ["train", "prepare", str(src), "--out", str(out), "--size", "32", "--device", "cpu"]
    return [*base, "--cpu-threads", "1", "--no-progress", "--min-quality", "0", *extra]


def test_cli_formats_are_the_core_formats():
    assert FORMATS == CORE_FORMATS


def test_train_prepare_with_a_sam_file_writes_the_arrow_dataset(tmp_path: Path, capsys):
    from maskpix_desktop.testing.tiny_sam import save_tiny_sam

    sam = save_tiny_sam(tmp_path / "tiny-sam.pth")
    src = _triplets(tmp_path / "trip")
    assert main(_prepare_args(src, tmp_path / "out", "--sam", str(sam), "--dilate", "2")) == 0
    assert "kept 4, dropped 0" in capsys.readouterr().out
    ds = datasets.load_from_disk(str(tmp_path / "out" / "dataset"))
    assert len(ds) == 4 and set(ds["mask_origin"]) == {"sam"}
    prov = json.loads(ds[0]["provenance"])
    assert prov["sam"] == str(sam) and prov["options"]["dilate_px"] == 2
    # Run again: every shard is finished, nothing is recomputed, the same dataset comes back.
    assert main(_prepare_args(src, tmp_path / "out", "--sam", str(sam), "--dilate", "2")) == 0
    assert datasets.load_from_disk(str(tmp_path / "out" / "dataset"))["id"] == ds["id"]


def test_train_prepare_without_sam_weights_exits_2_before_any_work(tmp_path: Path, capsys):
    src = _triplets(tmp_path / "trip", n=1)
    code = main(
        _prepare_args(src, tmp_path / "out", "--sam", "vit_b", "--models-dir", str(tmp_path / "none"))
    )
    assert code == 2 and "sam" in capsys.readouterr().err.lower()
    assert not (tmp_path / "out").exists()


def test_train_prepare_exits_1_when_every_item_is_dropped(tmp_path: Path, capsys):
    src = _triplets(tmp_path / "trip", n=2)
    code = main(_prepare_args(src, tmp_path / "out", "--sam", "none", "--min-quality", "1.01"))
    err = capsys.readouterr().err
    assert code == 1 and "no item kept" in err and "prepare.json" in err
