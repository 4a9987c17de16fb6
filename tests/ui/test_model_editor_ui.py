"""Issue 17 in the Models dialog: the editor choice lists every family, a tiny Kontext folder shows its
detected family, the memory setting changes the VRAM estimate shown, and the choice carries it all."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from maskpix_desktop.core import models, vram_estimate
from maskpix_desktop.core.service import ModelChoice
from maskpix_desktop.ui.model_dialog import ModelDialog
from maskpix_desktop.ui.model_editor import CUSTOM_EDITOR


@pytest.fixture(autouse=True)
def _no_models_env(monkeypatch):
    monkeypatch.delenv(models.ENV_MODELS_DIR, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def kontext_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from maskpix_desktop.testing.tiny_kontext import save_tiny_kontext

    return save_tiny_kontext(tmp_path_factory.mktemp("ui_kontext") / "tiny-kontext")


def test_editor_choice_lists_every_family_and_picks_a_registry_editor(qtbot, tmp_path: Path) -> None:
    dlg = ModelDialog(ModelChoice(models_dir=str(tmp_path)))
    qtbot.addWidget(dlg)
    rows = dlg.editor_rows
    items = [rows.combo.itemText(i) for i in range(rows.combo.count())]
    for family in ("ip2p", "ip2p_xl", "kontext", "qwen_edit"):
        assert any(f"— {family}:" in text for text in items), (family, items)
    assert rows.combo.currentData() == models.DEFAULT_IP2P and "Family: ip2p" in rows.family_label.text()
    rows.combo.setCurrentIndex(rows.combo.findData("qwen-image-edit"))
    assert dlg.ip2p_edit.text() == "qwen-image-edit"
    assert "Family: qwen_edit" in rows.family_label.text() and "not downloaded" in rows.family_label.text()
    assert rows.memory_combo.currentData() == "auto"  # the estimate's source is in the tooltip
    assert (
        rows.estimate_label.toolTip()
        == "An estimate from published parameter counts; without CUDA automatic is full."
    )
    assert dlg.choice().ip2p == "qwen-image-edit"
    assert "qwen-image-edit" in [dlg.table.item(r, 0).text() for r in range(dlg.table.rowCount())]


def test_tiny_folder_shows_detected_family_and_the_estimate_per_memory_setting(
    qtbot, tmp_path: Path, kontext_dir: Path
) -> None:
    choice = ModelChoice(models_dir=str(tmp_path), ip2p=str(kontext_dir))
    dlg = ModelDialog(choice)
    qtbot.addWidget(dlg)
    rows = dlg.editor_rows
    assert rows.combo.currentData() == CUSTOM_EDITOR
    assert "Family: kontext" in rows.family_label.text() and "model_index.json" in rows.family_label.text()
    sizes = vram_estimate.sizes_of_folder(kontext_dir)
    side = vram_estimate.USUAL_SIZE["kontext"]
    shown = {}
    for memory in ("full", "sequential_offload"):
        rows.memory_combo.setCurrentIndex(rows.memory_combo.findData(memory))
        est = vram_estimate.estimate(sizes, (side, side))
        assert vram_estimate.describe(est, memory) in rows.estimate_label.text()
        assert "this folder's weights" in rows.estimate_label.text()
        shown[memory] = rows.estimate_label.text()
    assert shown["full"] != shown["sequential_offload"]
    rows.tiling_check.setChecked(True)
    rows.quant_combo.setCurrentText("nf4")
    assert dlg.choice() == replace(choice, memory="sequential_offload", vae_tiling=True, quantize="nf4")


def test_a_folder_that_is_no_editor_says_so(qtbot, tmp_path: Path) -> None:
    folder = tmp_path / "other"
    folder.mkdir()
    (folder / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}', encoding="utf-8")
    dlg = ModelDialog(ModelChoice(models_dir=str(tmp_path), ip2p=str(folder)))
    qtbot.addWidget(dlg)
    assert "Not an editor MaskPix runs" in dlg.editor_rows.family_label.text()
    assert "Supported families" in dlg.editor_rows.family_label.text()
    assert "needs the model's family" in dlg.editor_rows.estimate_label.text()


def test_compile_checkbox_round_trips_through_the_choice(qtbot, tmp_path: Path) -> None:
    dlg = ModelDialog(ModelChoice(models_dir=str(tmp_path), compile=True))
    qtbot.addWidget(dlg)
    assert dlg.editor_rows.compile_check.isChecked() and dlg.choice().compile is True
    dlg.editor_rows.compile_check.setChecked(False)
    assert dlg.choice() == ModelChoice(models_dir=str(tmp_path), compile=False)


def test_auto_memory_is_the_default_and_lists_every_settings_estimate(qtbot, tmp_path: Path) -> None:
    dlg = ModelDialog(ModelChoice(models_dir=str(tmp_path)))
    qtbot.addWidget(dlg)
    rows = dlg.editor_rows
    assert rows.memory_combo.currentData() == "auto" and dlg.choice().memory == "auto"
    est = vram_estimate.estimate(vram_estimate.PUBLISHED["ip2p"], (512, 512), quantize="none")
    text = rows.estimate_label.text()
    for memory in ("full", "model_offload", "sequential_offload"):
        assert f"{memory} ~{est.gib(memory):.1f}" in text
    assert text.endswith("GiB; automatic: the fastest that fits.")


def test_gguf_file_round_trips_through_the_choice(qtbot, tmp_path: Path) -> None:
    dlg = ModelDialog(ModelChoice(models_dir=str(tmp_path), gguf="/data/kontext-Q4_K_S.gguf"))
    qtbot.addWidget(dlg)
    assert dlg.gguf_edit.text() == "/data/kontext-Q4_K_S.gguf"
    assert dlg.choice().gguf == "/data/kontext-Q4_K_S.gguf"
    dlg.gguf_edit.setText("  ")
    assert dlg.choice().gguf is None
