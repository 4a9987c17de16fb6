"""ResultStore (issue 20): older results' arrays on disk as read-only memory maps, same values everywhere."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from maskpix_desktop.core.export import export_result
from maskpix_desktop.core.images import load_image
from maskpix_desktop.core.jobs import EditParams, EditRequest, EditResult
from maskpix_desktop.core.result_store import ResultStore, is_spilled, result_nbytes
from maskpix_desktop.core.session import Session, load_project, save_project

H, W = 40, 56
FIELDS = ("baseline", "blended", "edit", "mask_used")


def _result(image: np.ndarray, seed: int) -> EditResult:
    rng = np.random.default_rng(seed)
    baseline = rng.integers(0, 256, image.shape, dtype=np.uint8)
    mask = np.zeros((H, W), bool)
    mask[5:20, 8:30] = True
    feathered = rng.random((H, W), dtype=np.float32)
    return EditResult(
        request=EditRequest(image=image, mask=mask, params=EditParams("x", seed=seed)),
        baseline=baseline,
        blended=rng.integers(0, 256, image.shape, dtype=np.uint8),
        edit=baseline,  # pixel mode: the edit is the baseline
        mask_used=feathered,
        working_size=(H, W),
    )


def _copies(result: EditResult) -> dict[str, np.ndarray]:
    out = {name: np.array(getattr(result, name)) for name in FIELDS}
    out["request.mask"] = np.array(result.request.mask)
    return out


def _assert_values(result: EditResult, before: dict[str, np.ndarray]) -> None:
    for name in FIELDS:
        a = getattr(result, name)
        assert a.dtype == before[name].dtype and a.shape == before[name].shape, name
        np.testing.assert_array_equal(a, before[name], err_msg=name)
    np.testing.assert_array_equal(result.request.mask, before["request.mask"])


@pytest.fixture
def store(tmp_path):
    s = ResultStore(tmp_path / "results", keep=2)
    yield s
    s.close()


@pytest.fixture
def results(rng_image) -> list[EditResult]:
    image = rng_image(H, W, seed=9)
    return [_result(image, seed) for seed in range(5)]


def test_keep_newest_moves_older_results_to_memory_maps_with_the_same_values(store, results):
    before = [_copies(r) for r in results]
    assert store.keep_newest(results, wait=True) == 3
    for r, b in zip(results, before, strict=True):
        _assert_values(r, b)
    assert all(is_spilled(r) for r in results[:3])
    assert not any(is_spilled(r) for r in results[3:])
    old = results[0]
    assert isinstance(old.baseline, np.memmap) and not old.baseline.flags.writeable
    assert old.edit is old.baseline  # one file for one array
    assert old.request.image is results[4].request.image  # the shared original stays in memory
    assert result_nbytes(old) == 0 and result_nbytes(old, in_memory_only=False) > 0
    files = sorted(p.name for p in store.folder.rglob("*.npy"))
    assert len(files) == 3 * 4  # baseline (= edit), blended, mask_used, request mask per result
    assert store.folder.parent == store.root
    assert store.keep_newest(results, wait=True) == 0  # already on disk: nothing written again


def test_keep_zero_and_spill_now(tmp_path, results):
    s = ResultStore(tmp_path, keep=0)
    try:
        before = _copies(results[-1])
        s.spill(results[-1])
        assert is_spilled(results[-1])
        _assert_values(results[-1], before)
        assert s.keep_newest(results, wait=True) == len(results) - 1
    finally:
        s.close()
    with pytest.raises(ValueError, match="keep"):
        ResultStore(tmp_path, keep=-1)


def test_forget_deletes_the_files_and_close_the_folder(store, results):
    store.keep_newest(results, wait=True)
    folder = store.folder
    assert len(list(folder.rglob("*.npy"))) == 12
    store.forget(results[:1])
    assert len(list(folder.rglob("*.npy"))) == 8
    np.testing.assert_array_equal(results[0].blended, results[0].blended.copy())  # the map stays readable
    store.close()
    assert not folder.exists()


def test_forget_while_the_write_is_queued_leaves_the_result_in_memory(store, results, monkeypatch):
    import threading

    gate = threading.Event()
    real = np.save

    def slow_save(*args, **kwargs):
        gate.wait(5)
        return real(*args, **kwargs)

    monkeypatch.setattr(np, "save", slow_save)
    store.keep_newest(results[:3])  # results[0] queued
    store.forget(results[:1])
    gate.set()
    store.flush()
    assert not is_spilled(results[0])
    assert not any(store.folder.rglob("r0001/*"))


def test_a_failed_write_keeps_the_result_in_memory(tmp_path, results, monkeypatch, caplog):
    s = ResultStore(tmp_path / "r", keep=1)

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "save", full_disk)
    before = _copies(results[0])
    try:
        s.keep_newest(results[:2], wait=True)
        assert not is_spilled(results[0])
        _assert_values(results[0], before)
        assert "could not move an edit result to disk" in caplog.text
    finally:
        s.close()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX process check")
def test_folders_of_dead_sessions_are_removed_live_ones_kept(tmp_path, results):
    root = tmp_path / "results"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    gone = root / "session-crashed"
    gone.mkdir(parents=True)
    (gone / "pid").write_text(dead.stdout.decode().strip())
    (gone / "x.npy").write_bytes(b"0" * 10)
    live = root / "session-other"
    live.mkdir()
    (live / "pid").write_text(str(os.getppid()))
    s = ResultStore(root, keep=0)
    try:
        s.spill(results[0])
        assert not gone.exists() and live.exists()
    finally:
        s.close()


def test_project_save_and_load_read_spilled_results_bit_for_bit(tmp_path, store, results):
    before = [_copies(r) for r in results]
    store.keep_newest(results, wait=True)
    session = Session(image=results[0].request.image, image_name="p.png", history=results, current=1)
    loaded = load_project(save_project(tmp_path / "p.maskpix", session))
    for r, b in zip(loaded.history, before, strict=True):
        _assert_values(r, b)


def test_export_reads_a_spilled_result(tmp_path, store, results):
    before = _copies(results[0])
    store.keep_newest(results, wait=True)
    assert is_spilled(results[0])
    paths = export_result(results[0], tmp_path / "out", items=("baseline", "blended"))
    np.testing.assert_array_equal(load_image(paths["baseline"]), before["baseline"])
    np.testing.assert_array_equal(load_image(paths["blended"]), before["blended"])


def test_results_panel_keeps_two_in_memory_and_shows_an_older_row_from_disk(qtbot, tmp_path, results):
    from maskpix_desktop.ui.qimage import from_qimage
    from maskpix_desktop.ui.results import ResultsPanel

    panel = ResultsPanel(store=ResultStore(tmp_path / "results", keep=2))
    qtbot.addWidget(panel)
    panel.resize(900, 600)
    panel.show()
    before = [_copies(r) for r in results]
    for r in results:
        panel.add_result(r)
    panel.store.flush()
    assert panel.history() == results  # the same objects: callers need no change
    assert [is_spilled(r) for r in panel.history()] == [True, True, True, False, False]
    panel.history_list.setCurrentRow(0)  # what a click does
    assert panel.current_result() is results[0]
    shown = from_qimage(panel.views["blended"].pixmap_item.pixmap().toImage())
    np.testing.assert_array_equal(shown, before[0]["blended"])
    folder = panel.store.folder
    panel.clear()
    assert not list(folder.rglob("*.npy"))
    panel.store.close()


def test_autosave_cache_does_not_keep_a_spilled_results_arrays_alive(tmp_path, store, results):
    """The save cache remembers frozen arrays weakly: once a result is on disk its in-memory copy goes."""
    import gc
    import weakref

    from maskpix_desktop.core.session import SaveCache

    cache = SaveCache()
    for r in results:
        for name in FIELDS:
            getattr(r, name).flags.writeable = False  # what the window's freeze() does
    session = Session(image=results[0].request.image, image_name="p.png", history=results)
    save_project(tmp_path / "a.maskpix", session, cache=cache)
    old = weakref.ref(results[0].blended)
    key = cache.key(results[0].blended)
    store.keep_newest(results, wait=True)
    gc.collect()
    assert old() is None  # freed: only the memory map is left
    assert cache.key(results[0].blended) == key  # same content, same key
    save_project(tmp_path / "b.maskpix", session, cache=cache)
    _assert_values(load_project(tmp_path / "b.maskpix").history[0], _copies(results[0]))
