"""ExportDialog (files, overwrite question, errors, preview); ModelDialog (table, choice, downloads)."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from maskpix_desktop.core import export, models
from maskpix_desktop.core.errors import DownloadError, ImageSaveError
from maskpix_desktop.core.images import read_png_text
from maskpix_desktop.core.jobs import EditParams, EditRequest, EditResult
from maskpix_desktop.core.service import ModelChoice
from maskpix_desktop.ui.export_dialog import ExportDialog
from maskpix_desktop.ui.model_dialog import ModelDialog, format_size

H, W = 32, 40


def make_result(seed: int = 7, offset: int = 30) -> EditResult:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 200, size=(H, W, 3), dtype=np.uint8)
    mask = np.zeros((H, W), bool)
    mask[8:24, 10:30] = True
    baseline = (image.astype(np.int16) + offset).clip(0, 255).astype(np.uint8)
    blended = np.where(mask[..., None], baseline, image)
    params = EditParams(instruction="make it red", seed=seed, mask_mode="pixel")
    return EditResult(
        request=EditRequest(image=image, mask=mask, params=params),
        baseline=baseline,
        blended=blended,
        edit=baseline,
        mask_used=mask,
        working_size=(H, W),
        timings={"total_s": 1.0},
        metrics={"baseline": {"leakage_mean": 30.0}, "blended": {"leakage_mean": 0.0}},
    )


# --------------------------------------------------------------------------------------------- export


@pytest.fixture
def export_dialog(qtbot, tmp_path: Path) -> ExportDialog:
    dlg = ExportDialog(make_result(), tmp_path / "out", stem="cat")
    qtbot.addWidget(dlg)
    return dlg


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.iterdir())}


def test_export_writes_checked_items(export_dialog: ExportDialog, tmp_path: Path) -> None:
    labels = [box.text() for box in export_dialog.checks.values()]
    assert labels == [
        "Blended",
        "Baseline",
        "Mask",
        "Original",
        "Comparison grid",
        "Metrics CSV",
        "JSON sidecar",
    ]
    assert all(box.isChecked() for box in export_dialog.checks.values())
    assert export_dialog.do_export()
    out = tmp_path / "out"
    assert set(export_dialog.exported_paths) == set(export.EXPORT_ITEMS)
    names = ("blended.png", "baseline.png", "mask.png", "original.png", "grid.png", "metadata.json")
    assert sorted(p.name for p in out.iterdir()) == sorted(f"cat_{n}" for n in (*names, "metrics.csv"))
    meta = json.loads(read_png_text(out / "cat_blended.png")["maskpix"])
    assert meta["params"]["instruction"] == "make it red" and meta["params"]["seed"] == 7
    assert "leakage_mean" in (out / "cat_metrics.csv").read_text()


def test_unchecked_items_are_not_written(export_dialog: ExportDialog, tmp_path: Path) -> None:
    for item in ("grid", "original", "json"):
        export_dialog.checks[item].setChecked(False)
    assert export_dialog.selected_items() == ["mask", "baseline", "blended", "metrics_csv"]
    assert export_dialog.do_export()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "cat_baseline.png",
        "cat_blended.png",
        "cat_mask.png",
        "cat_metrics.csv",
    ]


def test_existing_files_ask_before_overwrite(qtbot, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "out"
    first = ExportDialog(make_result(offset=30), out, stem="cat")
    qtbot.addWidget(first)
    first.checks["grid"].setChecked(False)
    assert first.do_export()
    before = snapshot(out)

    asked: list[list[str]] = []
    answer = [False]

    def ask(parent, names: list[str]) -> bool:
        asked.append(list(names))
        return answer[0]

    monkeypatch.setattr(ExportDialog, "ask_overwrite", ask)
    second = ExportDialog(make_result(offset=60), out, stem="cat")
    qtbot.addWidget(second)
    assert "cat_blended.png  (exists)" in second.preview_label.text()
    assert not second.do_export()
    assert sorted(asked[0]) == sorted(before)  # the grid was not there: not asked about
    assert snapshot(out) == before
    assert second.exported_paths == {}

    answer[0] = True
    assert second.do_export()
    after = snapshot(out)
    assert set(after) == set(before) | {"cat_grid.png"}
    assert after["cat_blended.png"][1] != before["cat_blended.png"][1]
    assert after["cat_baseline.png"][1] != before["cat_baseline.png"][1]
    assert len(asked) == 2


def test_accept_stays_open_on_no_and_on_errors(qtbot, tmp_path: Path, monkeypatch) -> None:
    dlg = ExportDialog(make_result(), tmp_path, stem="x")
    qtbot.addWidget(dlg)
    errors: list[str] = []
    dlg.show_error = lambda parent, msg: errors.append(msg)  # instance hook works too
    dlg.show()

    def fail(*args, **kwargs):
        raise ImageSaveError("Could not save 'x_blended.png': disk full")

    monkeypatch.setattr(export, "export_result", fail)
    dlg.export_button.click()
    assert errors == ["Could not save 'x_blended.png': disk full"]
    assert dlg.isVisible() and dlg.result() == 0

    monkeypatch.setattr(export, "export_result", lambda *a, **k: (_ for _ in ()).throw(OSError("read-only")))
    dlg.export_button.click()
    assert errors[-1] == "read-only" and dlg.isVisible()

    monkeypatch.undo()
    dlg.export_button.click()
    assert not dlg.isVisible() and dlg.result() == dlg.DialogCode.Accepted
    assert (tmp_path / "x_blended.png").is_file()


def test_preview_pattern_and_format(export_dialog: ExportDialog) -> None:
    text = export_dialog.preview_label.text()
    assert "cat_blended.png" in text and "cat_metadata.json" in text
    export_dialog.pattern_edit.setText("{stem}-{seed}-{mode}-{item}")
    assert "cat-7-pixel-blended.png" in export_dialog.preview_label.text()
    assert not export_dialog.quality_spin.isEnabled()
    export_dialog.format_combo.setCurrentIndex(export_dialog.format_combo.findData("jpeg"))
    assert export_dialog.quality_spin.isEnabled()
    assert "cat-7-pixel-grid.jpg" in export_dialog.preview_label.text()
    export_dialog.pattern_edit.setText("{nope}_{item}")
    assert "Invalid pattern" in export_dialog.preview_label.text()
    assert not export_dialog.export_button.isEnabled()
    export_dialog.pattern_edit.setText("{stem}")  # images would collide
    assert not export_dialog.export_button.isEnabled()
    for box in export_dialog.checks.values():
        box.setChecked(False)
    assert export_dialog.preview_label.text() == "Nothing selected."
    assert not export_dialog.export_button.isEnabled()


# --------------------------------------------------------------------------------------------- models


@pytest.fixture
def online(monkeypatch) -> None:
    monkeypatch.setattr(models, "offline_mode", lambda: False)


def make_dialog(qtbot, folder: Path, **kw) -> ModelDialog:
    dlg = ModelDialog(ModelChoice(models_dir=str(folder), **kw))
    qtbot.addWidget(dlg)
    return dlg


def fake_sam_b(folder: Path) -> Path:
    """A sparse file of exactly the registry size: is_present() checks the size only."""
    path = models.local_path("sam_vit_b", folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.truncate(models.REGISTRY["sam_vit_b"].size_bytes)
    return path


def test_model_table_present_and_missing(qtbot, tmp_path: Path) -> None:
    empty, full = tmp_path / "empty", tmp_path / "full"
    empty.mkdir()
    fake_sam_b(full)
    dlg = make_dialog(qtbot, empty)
    assert dlg.table.rowCount() == len(models.REGISTRY)
    assert [dlg.table.item(r, 0).text() for r in range(dlg.table.rowCount())] == list(models.REGISTRY)
    assert all(dlg.model_status(name) == "Missing" for name in models.REGISTRY)
    row = list(models.REGISTRY).index("sam_vit_b")
    assert dlg.table.item(row, 1).text() == models.REGISTRY["sam_vit_b"].description
    assert dlg.table.item(row, 2).text() == "358 MB"
    dlg.folder_edit.setText(str(full))  # refreshed on change
    assert dlg.model_status("sam_vit_b") == "Present"
    assert dlg.model_status("sam_vit_h") == "Missing"
    assert format_size(2_564_550_879) == "2.4 GB" and format_size(None) == "?"


def test_default_choice_is_the_automatic_sam(qtbot, tmp_path: Path) -> None:
    dlg = make_dialog(qtbot, tmp_path)
    assert dlg.sam_combo.currentData() == "auto" and dlg.sam_combo.currentIndex() == 0
    assert dlg.sam_combo.currentText() == "Automatic (ViT-H with CUDA, SAM 2.1 tiny without)"
    assert dlg.choice().sam == "auto"
    dlg.sam_combo.setCurrentIndex(dlg.sam_combo.findData("sam2.1_hiera_small"))
    assert dlg.choice().sam == "sam2.1_hiera_small"


def test_choice_reflects_edits(qtbot, tmp_path: Path) -> None:
    dlg = make_dialog(qtbot, tmp_path, sam="vit_h", extra={"keep": 1})
    assert dlg.choice() == ModelChoice(models_dir=str(tmp_path), sam="vit_h", extra={"keep": 1})
    dlg.sam_combo.setCurrentIndex(dlg.sam_combo.findData("vit_b"))
    ip2p = tmp_path / "my-ip2p"
    dlg.ip2p_edit.setText(str(ip2p))
    dlg.device_combo.setCurrentText("cpu")
    dlg.precision_combo.setCurrentText("fp32")
    c = dlg.choice()
    assert (c.sam, c.ip2p, c.device, c.precision, c.clip) == ("vit_b", str(ip2p), "cpu", "fp32", None)
    assert c.extra == {"keep": 1}

    ok = dlg.buttons.button(dlg.buttons.StandardButton.Ok)
    dlg.sam_combo.setCurrentIndex(dlg.sam_combo.findData("custom"))
    assert dlg.sam_path_edit.isEnabled() and not ok.isEnabled()
    dlg.sam_path_edit.setText("/w/sam_ft.pth")
    assert ok.isEnabled() and dlg.choice().sam == "/w/sam_ft.pth"

    assert not dlg.clip_model_edit.isEnabled()
    dlg.clip_combo.setCurrentIndex(1)
    dlg.clip_model_edit.setText("tiny-clip")
    dlg.clip_weights_edit.setText("/w/clip.safetensors")
    dlg.clip_config_edit.setText("/w/tiny-clip.json")
    assert dlg.choice().clip == {
        "model_name": "tiny-clip",
        "pretrained": "/w/clip.safetensors",
        "config_path": "/w/tiny-clip.json",
    }
    dlg.folder_edit.setText("")
    assert dlg.choice().models_dir is None


def test_choice_round_trips_custom_values(qtbot, tmp_path: Path) -> None:
    clip = {"model_name": "ViT-B-16", "pretrained": "/w/c.bin"}
    dlg = make_dialog(qtbot, tmp_path, sam="/w/s.pth", ip2p="org/model", clip=clip, device="cuda:1")
    c = dlg.choice()
    assert (c.sam, c.ip2p, c.clip, c.device) == ("/w/s.pth", "org/model", clip, "cuda:1")


def test_sam2_variants_are_offered_and_round_trip(qtbot, tmp_path: Path) -> None:
    dlg = make_dialog(qtbot, tmp_path, sam="sam2.1_hiera_tiny")
    offered = [dlg.sam_combo.itemData(i) for i in range(dlg.sam_combo.count())]
    assert {"sam2.1_hiera_tiny", "sam2.1_hiera_large", "vit_b"} <= set(offered)
    assert dlg.sam_combo.currentData() == "sam2.1_hiera_tiny" and dlg.choice().sam == "sam2.1_hiera_tiny"
    dlg.sam_combo.setCurrentIndex(dlg.sam_combo.findData("sam2.1_hiera_small"))
    assert dlg.choice().sam == "sam2.1_hiera_small"


class FakeDownload:
    """Stands in for models.download: reports progress in small steps and honours the cancel event."""

    def __init__(self, steps: int = 400, delay: float = 0.005, fail: str | None = None):
        self.steps, self.delay, self.fail = steps, delay, fail
        self.saw_cancel = threading.Event()
        self.started = threading.Event()
        self.thread_name = ""

    def __call__(self, name, models_dir=None, *, progress=None, cancel=None):
        self.started.set()
        self.thread_name = threading.current_thread().name
        total = 3_000_000_000  # bigger than a 32-bit int
        for i in range(self.steps + 1):
            if cancel is not None and cancel.is_set():
                self.saw_cancel.set()
                raise DownloadError(f"Download of '{name}' was cancelled; nothing was kept.")
            if self.fail and i == 3:
                raise DownloadError(self.fail)
            progress(total * i // self.steps, total)
            time.sleep(self.delay)
        return fake_sam_b(Path(models_dir))


def test_download_progress_and_cancel(qtbot, tmp_path: Path, monkeypatch, online) -> None:
    fake = FakeDownload()
    monkeypatch.setattr(models, "download", fake)
    dlg = make_dialog(qtbot, tmp_path)
    assert not dlg.cancel_button.isEnabled()
    assert dlg.download_button.text() == "Download missing (3)"  # nothing selected: SAM, IP2P and CLIP
    dlg.select_model("sam_vit_b")
    assert dlg.download_button.isEnabled() and dlg.download_button.text() == "Download sam_vit_b"
    dlg.download_button.click()
    assert dlg.is_downloading() and dlg.cancel_button.isEnabled() and not dlg.download_button.isEnabled()
    qtbot.waitUntil(lambda: dlg.progress_bar.value() > 20, timeout=5000)
    assert fake.thread_name != threading.main_thread().name
    dlg.cancel_button.click()
    qtbot.waitUntil(lambda: not dlg.is_downloading(), timeout=5000)
    assert fake.saw_cancel.is_set()
    assert dlg.status_label.text() == "Download cancelled."
    assert dlg.progress_bar.value() < 1000
    assert dlg.model_status("sam_vit_b") == "Missing"
    assert not dlg.offline_label.isVisibleTo(dlg)


def test_download_success_refreshes_table(qtbot, tmp_path: Path, monkeypatch, online) -> None:
    monkeypatch.setattr(models, "download", FakeDownload(steps=5, delay=0.0))
    dlg = make_dialog(qtbot, tmp_path)
    dlg.select_model("sam_vit_b")
    dlg.start_download()
    qtbot.waitUntil(lambda: not dlg.is_downloading(), timeout=5000)
    assert dlg.model_status("sam_vit_b") == "Present"
    assert dlg.progress_bar.value() == 1000
    assert dlg.status_label.text().startswith("Downloaded sam_vit_b to ")
    assert dlg.download_button.text() == "Download missing (3)"  # the selected row is present now


def test_real_downloader_from_file_url(qtbot, tmp_path: Path, monkeypatch, online) -> None:
    payload = bytes(range(256)) * 5000
    src = tmp_path / "weights.pth"
    src.write_bytes(payload)
    spec = models.ModelSpec(
        name="tiny_sam",
        kind="sam",
        description="Tiny test SAM",
        files=(
            models.ModelFile("tiny_sam.pth", src.as_uri(), hashlib.sha256(payload).hexdigest(), len(payload)),
        ),
        model_type="vit_b",
    )
    for name in list(models.REGISTRY):  # the one dict every models module reads
        monkeypatch.delitem(models.REGISTRY, name)
    monkeypatch.setitem(models.REGISTRY, "tiny_sam", spec)
    folder = tmp_path / "models"
    dlg = make_dialog(qtbot, folder)
    assert dlg.table.rowCount() == 1 and dlg.model_status("tiny_sam") == "Missing"
    dlg.select_model("tiny_sam")
    dlg.download_button.click()
    qtbot.waitUntil(lambda: not dlg.is_downloading(), timeout=10000)
    assert dlg.model_status("tiny_sam") == "Present", dlg.status_label.text()
    assert (folder / "tiny_sam.pth").read_bytes() == payload


def test_closing_while_downloading_stops_thread(qtbot, tmp_path: Path, monkeypatch, online) -> None:
    fake = FakeDownload(steps=100_000, delay=0.002)
    monkeypatch.setattr(models, "download", fake)
    dlg = make_dialog(qtbot, tmp_path)
    dlg.show()
    dlg.select_model("sam_vit_h")
    dlg.start_download()
    thread = dlg._thread
    assert thread is not None
    qtbot.waitUntil(lambda: dlg.progress_bar.value() > 0 or fake.started.is_set(), timeout=5000)
    dlg.close()
    assert fake.saw_cancel.is_set()
    assert thread.isFinished() and not thread.isRunning()
    assert not dlg.is_downloading()
    qtbot.wait(20)  # queued signals from the finished worker arrive harmlessly


def test_network_failure_explains_offline_route(qtbot, tmp_path: Path, monkeypatch, online) -> None:
    msg = "Could not download 'sam_vit_b' from https://x after 3 attempts: timed out. Are you offline?"
    monkeypatch.setattr(models, "download", FakeDownload(fail=msg, delay=0.0))
    dlg = make_dialog(qtbot, tmp_path)
    dlg.select_model("sam_vit_b")
    dlg.start_download()
    qtbot.waitUntil(lambda: not dlg.is_downloading(), timeout=5000)
    assert dlg.status_label.text() == msg
    assert dlg.offline_label.isVisibleTo(dlg)
    assert dlg.offline_label.text() == (
        f"This machine is offline: copy the files to {tmp_path} (see README 'Models') or run "
        "`maskpix-cli models download sam_vit_b` on a connected machine."
    )


def test_offline_mode_disables_download(qtbot, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(models, "offline_mode", lambda: True)
    called: list[str] = []
    monkeypatch.setattr(models, "download", lambda name, *a, **k: called.append(name))
    dlg = make_dialog(qtbot, tmp_path)
    dlg.select_model("clip")
    assert not dlg.download_button.isEnabled()
    assert dlg.offline_label.isVisibleTo(dlg)
    assert "This machine is offline: copy the files to" in dlg.offline_label.text()
    assert "maskpix-cli models download clip" in dlg.offline_label.text()
    dlg.start_download()
    assert called == [] and not dlg.is_downloading()
