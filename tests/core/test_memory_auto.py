"""Issue 17: ``memory = "auto"`` picks the fastest setting whose VRAM estimate fits the free VRAM (shown in
the editor's memory text, overridable by any explicit setting), and a run-time out-of-memory error names
the next setting to try."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from maskpix_desktop.core import editor_loader, vram_estimate
from maskpix_desktop.core.editor_memory import MemorySettings
from maskpix_desktop.core.errors import OutOfMemoryError
from maskpix_desktop.core.jobs import EditParams, EditRequest
from maskpix_desktop.core.service import ModelChoice
from maskpix_desktop.core.vram_estimate import GIB, LADDER, PUBLISHED, choose_memory, estimate

KONTEXT = PUBLISHED["kontext"]
SIDE = vram_estimate.USUAL_SIZE["kontext"]


def _peaks() -> list[float]:
    """The estimated peak of every rung of the ladder, in ladder order."""
    est = {t: estimate(KONTEXT, (SIDE, SIDE), vae_tiling=t) for t in (False, True)}
    return [est[tiling].peak[memory] for memory, tiling in LADDER]


def test_the_ladder_gets_lighter_at_every_rung() -> None:
    peaks = _peaks()
    assert peaks == sorted(peaks, reverse=True) and len(set(peaks)) == len(peaks)


@pytest.mark.parametrize("rung", range(len(LADDER)))
def test_auto_picks_the_fastest_rung_that_fits(rung: int) -> None:
    peaks = _peaks()
    free = peaks[rung] / vram_estimate.HEADROOM * 1.0001  # this rung just fits, the one before does not
    choice = choose_memory(KONTEXT, (SIDE, SIDE), free)
    assert (choice.memory, choice.vae_tiling, choice.fits) == (*LADDER[rung], True)
    assert choice.peak == peaks[rung]
    assert choice.describe() == f"auto: ~{peaks[rung] / GIB:.1f} GiB estimated, {free / GIB:.1f} GiB free"


def test_auto_falls_back_to_the_lightest_and_says_it_may_not_fit() -> None:
    choice = choose_memory(KONTEXT, (SIDE, SIDE), 0.5 * GIB)
    assert (choice.memory, choice.vae_tiling, choice.fits) == ("sequential_offload", True, False)
    assert choice.describe().startswith("auto: the lightest setting, may not fit: ~")


def test_auto_without_cuda_is_full_and_explicit_settings_are_kept(tmp_path: Path) -> None:
    auto = MemorySettings("auto", False, "none")
    assert editor_loader.resolve_auto(auto, "kontext", tmp_path, "cpu", "fp32") == (
        MemorySettings("full", False, "none"),
        "auto, no CUDA",
    )
    explicit = MemorySettings("model_offload", True, "none")
    assert editor_loader.resolve_auto(explicit, "kontext", tmp_path, "cuda:0", "bf16") == (explicit, "")
    assert ModelChoice().memory == "auto"


def test_auto_on_cuda_asks_for_the_free_memory_of_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    peaks = _peaks()
    free = peaks[2] / vram_estimate.HEADROOM * 1.0001  # model offload + VAE tiling fits, full does not
    asked: list[torch.device] = []
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda dev: (asked.append(dev), (int(free), 80 * GIB))[1])
    settings, note = editor_loader.resolve_auto(
        MemorySettings("auto", False, "none"), "kontext", Path("/no/such/folder"), "cuda:1", "bf16"
    )
    assert asked == [torch.device("cuda:1")]
    assert settings == MemorySettings("model_offload", True, "none")
    assert note == choose_memory(KONTEXT, (SIDE, SIDE), float(int(free))).describe()


def test_a_loaded_editor_says_auto_chose_full_on_a_cpu(tiny_ip2p_dir: Path) -> None:
    editor = editor_loader.load_editor(
        str(tiny_ip2p_dir), device="cpu", memory=MemorySettings("auto", False, "none")
    )
    assert editor.memory == "full (auto, no CUDA)"
    assert editor.memory_settings == MemorySettings("full", False, "none")


def test_out_of_memory_during_a_run_names_the_next_setting(
    tiny_ip2p_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    editor = editor_loader.load_editor(str(tiny_ip2p_dir), device="cpu")

    def oom(*_a, **_k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(editor, "_run", oom)
    request = EditRequest(np.zeros((32, 48, 3), np.uint8), None, EditParams("x", long_side=512))
    editor.memory_settings = MemorySettings("full", True, "none")
    with pytest.raises(OutOfMemoryError) as info:
        editor.run(request)
    assert str(info.value) == (
        "The GPU ran out of memory editing a 48x32 image at working size 512. Lower the working size, "
        "choose the memory setting model_offload + VAE tiling (Model settings) or close other GPU programs."
    )
    editor.memory_settings = MemorySettings("sequential_offload", True, "none")  # nothing lighter
    with pytest.raises(OutOfMemoryError, match=r"Lower the working size or close other GPU programs\.$"):
        editor.run(request)
