"""Hostile exports (issue 13, items 12 and 14): an overwrite failing half-way leaves the old set or the
new one, never a mix; names invalid on Windows are made safe and the change is said, in the return
value and in the export dialog."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest

from maskpix_desktop.core import export, images
from maskpix_desktop.core.errors import ImageSaveError
from maskpix_desktop.core.jobs import EditParams, EditRequest, EditResult

H, W = 24, 32


def result(seed: int) -> EditResult:
    """A small result whose pictures and params (seed) differ per ``seed``."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    baseline = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    mask = np.zeros((H, W), bool)
    mask[4:20, 6:26] = True
    return EditResult(
        request=EditRequest(image=image, mask=mask, params=EditParams("make it gold", seed=seed)),
        baseline=baseline,
        blended=np.where(mask[..., None], baseline, image),
        edit=baseline,
        mask_used=mask,
        working_size=(H, W),
        metrics={"blended": {"leakage_mean": float(seed)}},
    )


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def sidecar_seed(folder: Path) -> int:
    return json.loads((folder / "metadata.json").read_text(encoding="utf-8"))["params"]["seed"]


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


# ---------------------------------------------------------------------------------- all or nothing


def test_overwrite_failing_while_encoding_keeps_the_old_set(tmp_path: Path, monkeypatch) -> None:
    export.export_result(result(1), tmp_path)
    before = snapshot(tmp_path)
    real = images.save_image

    def save_then_fail(path, *args, **kwargs):  # blended/original... are written, then the grid fails
        if "grid" in Path(path).name:
            raise ImageSaveError(f"Could not save '{path}': the disk is full.")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(images, "save_image", save_then_fail)
    with pytest.raises(ImageSaveError, match="the disk is full"):
        export.export_result(result(2), tmp_path, overwrite=True)
    assert snapshot(tmp_path) == before and sidecar_seed(tmp_path) == 1  # old set, no staging folder


def test_overwrite_failing_at_the_last_rename_restores_the_old_set(tmp_path: Path, monkeypatch) -> None:
    export.export_result(result(1), tmp_path)
    before = snapshot(tmp_path)
    real_link, real_replace = os.link, os.replace

    def fail_on_sidecar(real):
        def wrapper(src, dst):
            # Publishing the new sidecar (the last file) fails; putting the old one back works.
            if Path(dst) == tmp_path / "metadata.json" and Path(src).name == "metadata.json":
                _enospc()
            return real(src, dst)

        return wrapper

    monkeypatch.setattr(os, "link", fail_on_sidecar(real_link))
    monkeypatch.setattr(os, "replace", fail_on_sidecar(real_replace))
    with pytest.raises(ImageSaveError, match="the disk is full"):
        export.export_result(result(2), tmp_path, overwrite=True)
    monkeypatch.undo()
    # blended.png etc. had been replaced already: they are put back beside the old metadata.json.
    assert snapshot(tmp_path) == before and sidecar_seed(tmp_path) == 1


def test_interrupt_during_an_overwrite_keeps_the_old_set(tmp_path: Path, monkeypatch) -> None:
    export.export_result(result(1), tmp_path)
    before = snapshot(tmp_path)
    real_place = export._place
    calls = []

    def place_then_interrupt(new, target):
        calls.append(target)
        if len(calls) == 3:
            raise KeyboardInterrupt
        real_place(new, target)

    monkeypatch.setattr(export, "_place", place_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        export.export_result(result(2), tmp_path, overwrite=True)
    assert snapshot(tmp_path) == before


def test_undo_failure_leaves_the_old_files_in_the_staging_folder(tmp_path: Path, monkeypatch) -> None:
    export.export_result(result(1), tmp_path, items=["blended", "json"])
    old_sidecar = (tmp_path / "metadata.json").read_bytes()
    real_link, real_replace = os.link, os.replace
    state = {"undo": False}

    def link(src, dst):
        if Path(dst) == tmp_path / "metadata.json":
            state["undo"] = True  # from now on, putting files back fails too
            _enospc()
        return real_link(src, dst)

    def replace(src, dst):
        if state["undo"] or Path(dst) == tmp_path / "metadata.json":
            _enospc()
        return real_replace(src, dst)

    monkeypatch.setattr(os, "link", link)
    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(ImageSaveError, match="could not be undone") as info:
        export.export_result(result(2), tmp_path, items=["blended", "json"], overwrite=True)
    monkeypatch.undo()
    (stage,) = [p for p in tmp_path.iterdir() if p.name.startswith(".maskpix-export-")]
    assert str(stage) in str(info.value)
    kept = {p.read_bytes() for p in stage.iterdir()}
    assert old_sidecar in kept  # the user's previous sidecar is not lost


def test_folder_where_a_file_goes_is_refused_before_writing(tmp_path: Path) -> None:
    (tmp_path / "blended.png").mkdir()
    with pytest.raises(ImageSaveError, match="a folder of that name is in the way"):
        export.export_result(result(1), tmp_path, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blended.png"]


def test_new_set_after_a_successful_overwrite_is_complete(tmp_path: Path) -> None:
    export.export_result(result(1), tmp_path)
    paths = export.export_result(result(2), tmp_path, overwrite=True)
    assert sidecar_seed(tmp_path) == 2
    assert np.array_equal(images.load_image(paths["blended"]), result(2).blended)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths.values())
    assert paths.renamed == []


# ------------------------------------------------------------------------------------- Windows names


@pytest.mark.parametrize(
    ("stem", "safe", "why"),
    [
        ("a:b", "a_b", "is not a valid file name on Windows"),
        ("a<b>c", "a_b_c", "is not a valid file name on Windows"),
        ("a|b", "a_b", "is not a valid file name on Windows"),
        ('say "hi"', "say _hi_", "is not a valid file name on Windows"),
        ("why?", "why_", "is not a valid file name on Windows"),
        ("a*", "a_", "is not a valid file name on Windows"),
        ("tab\there", "tab_here", "is not a valid file name on Windows"),
        ("../../etc/evil", ".._.._etc_evil", "is not a valid file name on Windows"),
        ("back\\slash", "back_slash", "is not a valid file name on Windows"),
        ("dots...", "dots", "is not a valid file name on Windows"),
        ("space  ", "space", "is not a valid file name on Windows"),
        ("CON", "CON_", "is a device name on Windows"),
        ("nul", "nul_", "is a device name on Windows"),
        ("COM1", "COM1_", "is a device name on Windows"),
        ("lpt9.old", "lpt9_.old", "is a device name on Windows"),
        ("..", "_", "is not a valid file name"),
        ("x" * 300, "x" * 200, "is too long for a file name"),
        ("猫" * 100, "猫" * 66, "is too long for a file name"),
    ],
    ids=lambda v: repr(v)[:24] if isinstance(v, str) else None,
)
def test_export_name_invalid_on_windows_is_made_safe_and_said(
    tmp_path: Path, stem: str, safe: str, why: str
) -> None:
    paths = export.export_result(result(1), tmp_path, items=["blended", "json"], pattern="{stem}", stem=stem)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"{safe}.png", f"{safe}.json"])
    assert all(p.parent == tmp_path for p in paths.values())  # nothing written elsewhere
    shown = stem if len(stem) <= 60 else stem[:57] + "..."
    assert paths.renamed == [
        f"Saved as '{safe}.png' ('{shown}.png' {why})",
        f"Saved as '{safe}.json' ('{shown}.json' {why})",
    ]
    assert (
        json.loads((tmp_path / f"{safe}.json").read_text(encoding="utf-8"))["files"]["blended"]
        == f"{safe}.png"
    )


@pytest.mark.parametrize("stem", ["cat", "a.b", "photo 1", ".hidden", "CONSOLE", "COM10", "naïve"])
def test_valid_export_name_is_kept_as_it_is(tmp_path: Path, stem: str) -> None:
    paths = export.export_result(result(1), tmp_path, items=["blended"], pattern="{stem}", stem=stem)
    assert paths["blended"].name == f"{stem}.png" and paths.renamed == []


def test_pattern_with_a_separator_stays_in_the_folder(tmp_path: Path) -> None:
    paths = export.export_result(result(1), tmp_path, items=["blended"], pattern="{stem}/{item}", stem="cat")
    assert paths["blended"] == tmp_path / "cat_blended.png"
    assert paths.renamed == [
        "Saved as 'cat_blended.png' ('cat/blended.png' is not a valid file name on Windows)"
    ]


# --------------------------------------------------------------------------------------- export dialog


def test_export_dialog_shows_the_windows_safe_names(qtbot, tmp_path: Path) -> None:
    from maskpix_desktop.ui.export_dialog import ExportDialog

    dlg = ExportDialog(result(1), tmp_path / "out", stem="a:b")
    qtbot.addWidget(dlg)
    notices: list[str] = []
    dlg.show_notice = lambda parent, msg: notices.append(msg)
    for item in ("grid", "original", "mask", "baseline", "metrics_csv", "json"):
        dlg.checks[item].setChecked(False)
    preview = dlg.preview_label.text()
    assert "a_b_blended.png" in preview
    assert "Saved as 'a_b_blended.png' ('a:b_blended.png' is not a valid file name on Windows)" in preview
    assert dlg.do_export()
    assert notices == ["Saved as 'a_b_blended.png' ('a:b_blended.png' is not a valid file name on Windows)"]
    assert dlg.renamed == notices and sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "a_b_blended.png"
    ]


def test_export_dialog_says_nothing_for_valid_names(qtbot, tmp_path: Path) -> None:
    from maskpix_desktop.ui.export_dialog import ExportDialog

    dlg = ExportDialog(result(1), tmp_path / "out", stem="cat")
    qtbot.addWidget(dlg)
    dlg.show_notice = lambda parent, msg: pytest.fail(f"unexpected notice {msg}")
    assert dlg.do_export() and dlg.renamed == [] and "Saved as" not in dlg.preview_label.text()
