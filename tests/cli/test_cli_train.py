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


def _train_args(data: Path, base: Path, out: Path, *extra: str) -> list[str]:
    args = [
        "train",
        "--data",
        str(data),
        "--base",
        str(base),
        "--out",
        str(out),
        "--cpu",
        "--cpu-threads",
        "1",
    ]
    return [*args, "--batch-size", "2", "--checkpoint-every", "1", "--no-progress", *extra]


def test_cli_defaults_are_the_train_config_defaults():
    from dataclasses import fields

    from maskpix_desktop.cli.train import TRAIN_DEFAULTS
    from maskpix_desktop.core.maskcond.train import TrainConfig

    defaults = {f.name: f.default for f in fields(TrainConfig)}
    names = [n for n in vars(TRAIN_DEFAULTS) if not n.startswith("_")]
    assert names and all(getattr(TRAIN_DEFAULTS, n) == defaults[n] for n in names)


def test_prepare_then_train_2_steps_gives_a_checkpoint_the_app_loads_as_a_mask_model(
    tmp_path: Path, tiny_ip2p_dir: Path, capsys
):
    from maskpix_desktop.core.editor_loader import load_editor
    from maskpix_desktop.core.maskcond.model import is_mask_checkpoint
    from maskpix_desktop.core.maskcond.train import read_losses

    src = _triplets(tmp_path / "trip", n=3)
    assert main(_prepare_args(src, tmp_path / "data", "--sam", "none")) == 0
    run = tmp_path / "run"
    assert main(_train_args(tmp_path / "data", tiny_ip2p_dir, run, "--steps", "2")) == 0
    final = run / "final"
    assert f"--ip2p {final}" in capsys.readouterr().out
    assert is_mask_checkpoint(final) and len(read_losses(run)) == 2
    editor = load_editor(str(final), device="cpu")  # the loader behind --ip2p and the Models dialog
    assert editor.takes_mask is True
    # Checkpoints exist: a second call must say --resume or --overwrite, then --resume continues.
    assert main(_train_args(tmp_path / "data", tiny_ip2p_dir, run, "--steps", "3")) == 1
    assert "--resume" in capsys.readouterr().err
    first = read_losses(run)
    assert main(_train_args(tmp_path / "data", tiny_ip2p_dir, run, "--steps", "3", "--resume")) == 0
    rows = read_losses(run)
    assert len(rows) == 3 and rows[:2] == first
    code = main(_train_args(tmp_path / "data", tiny_ip2p_dir, run, "--steps", "4", "--resume", "--lr", "0.5"))
    assert code == 1 and "other options (lr)" in capsys.readouterr().err


def test_lora_adapter_starts_at_zero_and_merges_into_the_same_function():
    pytest.importorskip("peft")
    from maskpix_desktop.core.maskcond.model import grow_conv_in
    from maskpix_desktop.core.maskcond.train import add_lora, merge_lora
    from maskpix_desktop.testing.tiny_ip2p import build_tiny_ip2p

    torch.set_num_threads(1)
    unet = grow_conv_in(build_tiny_ip2p(seed=0).unet)
    gen = torch.Generator().manual_seed(0)
    x, e = torch.randn(1, 9, 4, 4, generator=gen), torch.randn(1, 77, 32, generator=gen)
    t = torch.tensor([10])
    with torch.no_grad():
        before = unet(x, t, encoder_hidden_states=e).sample
        trainable = {id(p) for p in add_lora(unet, 4)}
        assert torch.equal(unet(x, t, encoder_hidden_states=e).sample, before)  # B starts at zero
        names = [n for n, p in unet.named_parameters() if id(p) in trainable]
        assert names[:2] == ["conv_in.weight", "conv_in.bias"]
        assert all("lora_" in n for n in names[2:]) and len(names) > 2
        for n, p in unet.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1, generator=gen)
        adapted = unet(x, t, encoder_hidden_states=e).sample
        merged = merge_lora(unet)(x, t, encoder_hidden_states=e).sample
    assert not torch.allclose(adapted, before, atol=1e-3)
    torch.testing.assert_close(merged, adapted, atol=1e-5, rtol=1e-5)
    assert not any("lora" in k for k in unet.state_dict())


def test_lora_run_changes_only_attention_and_conv_in_and_saves_a_loadable_mask_checkpoint(
    tmp_path: Path, tiny_ip2p_dir: Path
):
    pytest.importorskip("peft")
    from safetensors.torch import load_file

    from maskpix_desktop.core.editor_loader import load_editor
    from maskpix_desktop.core.maskcond.train import LORA_TARGETS

    run = tmp_path / "lora"
    args = ["train", "--synthetic", "4", "--synthetic-size", "32", "--base", str(tiny_ip2p_dir)]
    args += ["--out", str(run), "--cpu", "--cpu-threads", "1", "--batch-size", "2", "--steps", "2"]
    assert main([*args, "--lr", "0.01", "--lora-rank", "4", "--no-progress"]) == 0
    weights = "unet/diffusion_pytorch_model.safetensors"
    base, new = load_file(tiny_ip2p_dir / weights), load_file(run / "final" / weights)
    assert set(new) == set(base) and new["conv_in.weight"].shape[1] == 9  # merged: no LoRA keys left
    changed = {k for k in base if k != "conv_in.weight" and not torch.equal(base[k], new[k])}
    assert changed and all(
        k.startswith("conv_in") or any(f".{t}." in k for t in LORA_TARGETS) for k in changed
    )
    assert load_editor(str(run / "final"), device="cpu").takes_mask is True


def test_train_needs_exactly_one_data_source_and_peft_for_lora(
    tmp_path: Path, tiny_ip2p_dir: Path, monkeypatch, capsys
):
    base = ["train", "--base", str(tiny_ip2p_dir), "--out", str(tmp_path / "r")]
    assert main(base) == 1 and "--data DIR" in capsys.readouterr().err
    monkeypatch.setitem(__import__("sys").modules, "peft", None)
    assert main([*base, "--synthetic", "4", "--lora-rank", "4"]) == 1
    assert "install peft" in capsys.readouterr().err
    assert main([*base, "--data", str(tmp_path / "nothing")]) == 1
    assert "not a prepared dataset" in capsys.readouterr().err


def test_cli_conditionings_are_the_core_types_plus_none():
    from maskpix_desktop.cli.train import CONDITIONINGS
    from maskpix_desktop.core.maskcond.model import TYPES

    assert CONDITIONINGS == (*TYPES, "none")


def test_train_both_with_validation_and_tensorboard_then_resume_with_other_monitoring(
    tmp_path: Path, tiny_ip2p_dir: Path, capsys
):
    pytest.importorskip("tensorboard")
    from maskpix_desktop.core.editor_loader import load_editor

    run = tmp_path / "both"
    args = ["train", "--synthetic", "4", "--synthetic-size", "32", "--base", str(tiny_ip2p_dir)]
    args += ["--out", str(run), "--cpu", "--cpu-threads", "1", "--batch-size", "2", "--no-progress"]
    args += ["--conditioning", "both", "--attention-tokens", "4", "--attention-dim", "16"]
    assert main([*args, "--steps", "2", "--validate-every", "1", "--log-with", "tensorboard"]) == 0
    assert sorted(p.name for p in (run / "validation").iterdir()) == ["step-0000001.png", "step-0000002.png"]
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    cond = json.loads((run / "final" / "maskpix_conditioning.json").read_text())
    assert (cond["type"], cond["attention_tokens"], cond["attention_dim"]) == ("both", 4, 16)
    assert load_editor(str(run / "final"), device="cpu").takes_mask is True
    # Monitoring options may change on resume; the conditioning may not.
    assert main([*args, "--steps", "3", "--resume", "--validate-every", "3"]) == 0
    assert (run / "validation" / "step-0000003.png").is_file()
    capsys.readouterr()
    args[args.index("both")] = "attention"
    assert main([*args, "--steps", "4", "--resume"]) == 1
    assert "conditioning" in capsys.readouterr().err
    assert main([*args, "--steps", "1", "--overwrite", "--attention-tokens", "10"]) == 1
    assert "square" in capsys.readouterr().err
