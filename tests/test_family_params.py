"""Issue 17: each editor family's guidance parameter is an ``EditParams`` field (``guidance`` for FLUX.1
Kontext, ``true_cfg_scale`` for Qwen-Image-Edit), kept by projects (older ones open with the defaults),
shown by the edit panel for the loaded family only, and read back exactly."""

from __future__ import annotations

import json
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from project_files import rewrite_member

from maskpix_desktop.core.automask.relevance import unsupported_reason
from maskpix_desktop.core.errors import ProjectError
from maskpix_desktop.core.job_protocol import JobMessage, LoadResult, MessageKind, Task
from maskpix_desktop.core.jobs import EditParams, ParamError
from maskpix_desktop.core.session import Session, load_project, save_project
from maskpix_desktop.ui.edit_panel import FAMILY_ROWS, EditPanel
from maskpix_desktop.ui.model_editor import editor_choices
from maskpix_desktop.ui.window_layout import AUTOMASK_TIP

FAMILY = EditParams("make it winter", guidance=3.25, true_cfg_scale=5.75, negative_prompt="blurry")


def test_defaults_are_the_families_examples_and_ranges_are_checked() -> None:
    p = EditParams("x")
    assert (p.guidance, p.true_cfg_scale) == (2.5, 4.0)
    with pytest.raises(ParamError, match="guidance must be a finite number in 0..100"):
        EditParams("x", guidance=-1.0)
    with pytest.raises(ParamError, match="true_cfg_scale must be a finite number in 0..100"):
        EditParams("x", true_cfg_scale=float("nan"))
    assert EditParams.from_dict(FAMILY.to_dict()) == FAMILY


def _project(tmp_path: Path, params: EditParams) -> Path:
    image = np.full((8, 12, 3), 90, np.uint8)
    return save_project(tmp_path / "p.maskpix", Session(image=image, image_name="a.png", params=params))


def test_project_keeps_family_params_and_older_projects_get_the_defaults(tmp_path: Path) -> None:
    path = _project(tmp_path, FAMILY)
    assert load_project(path).params == FAMILY

    def drop_family_fields(data: bytes) -> bytes:  # a project written before the fields existed
        obj = json.loads(data)
        del obj["guidance"], obj["true_cfg_scale"]
        return json.dumps(obj).encode()

    rewrite_member(path, "params.json", drop_family_fields)
    with zipfile.ZipFile(path) as zf:
        assert "guidance" not in json.loads(zf.read("params.json"))
    assert load_project(path).params == replace(FAMILY, guidance=2.5, true_cfg_scale=4.0)


def test_project_with_a_bad_family_value_names_the_field(tmp_path: Path) -> None:
    path = _project(tmp_path, FAMILY)
    rewrite_member(path, "params.json", lambda b: json.dumps({**json.loads(b), "guidance": "high"}).encode())
    with pytest.raises(ProjectError, match="params.guidance"):
        load_project(path)


def test_panel_shows_only_the_loaded_familys_rows_and_keeps_the_others(qtbot) -> None:
    panel = EditPanel()
    qtbot.addWidget(panel)
    assert panel.family_rows() == FAMILY_ROWS["ip2p"] == ("text_scale", "image_scale", "negative_prompt")
    panel.set_params(FAMILY)
    for family, rows in FAMILY_ROWS.items():
        panel.set_editor_family(family)
        assert panel.family_rows() == rows
        assert panel.params() == FAMILY  # hidden rows still carry their values
    panel.set_editor_family("something-new")
    assert panel.family_rows() == FAMILY_ROWS["ip2p"]


def test_panel_reads_the_family_widgets(qtbot) -> None:
    panel = EditPanel()
    qtbot.addWidget(panel)
    panel.set_editor_family("qwen_edit")
    panel.true_cfg_scale.setValue(6.5)
    panel.negative_prompt.setText("lowres")
    panel.set_editor_family("kontext")
    panel.guidance.setValue(4.0)
    p = panel.params()
    assert (p.true_cfg_scale, p.negative_prompt, p.guidance) == (6.5, "lowres", 4.0)
    panel.set_params(replace(p, guidance=1.2345))  # more decimals than the spin box shows: kept exactly
    assert panel.guidance.value() == 1.2 and panel.params().guidance == 1.2345


def test_window_shows_the_rows_of_the_editor_a_load_reports(tiny_window) -> None:
    win = tiny_window
    assert win.edit_panel.family_rows() == FAMILY_ROWS["ip2p"]  # the tiny models: an IP2P folder
    job = win.models.load_job
    assert win.model_label.toolTip() == "Editor memory: full (auto, no CUDA)"  # the app's default: auto
    memory = "model_offload + VAE tiling (auto: ~20.1 GiB estimated, 23.0 GiB free)"
    info = LoadResult("cpu", "CPU", sam=True, ip2p=True, editor_family="qwen_edit", editor_memory=memory)
    win._on_message(JobMessage(job, Task.LOAD, MessageKind.FINISHED, result=info))
    assert win.edit_panel.family_rows() == ("true_cfg_scale", "negative_prompt")
    assert win.model_label.toolTip() == f"Editor memory: {memory}"
    assert win.statusBar().currentMessage() == f"Models ready; editor memory: {memory}"
    assert win.automask_button.isEnabled() and win.automask_button.toolTip() == AUTOMASK_TIP  # Qwen reads
    other = LoadResult("cpu", "CPU", sam=True, ip2p=True, editor_family="other")  # a family without a reader
    win._on_message(JobMessage(job, Task.LOAD, MessageKind.FINISHED, result=other))
    assert not win.automask_button.isEnabled() and not win.automask_action.isEnabled()
    assert win.automask_button.toolTip() == unsupported_reason("other") == win.automask_status.text()
    assert "the loaded editor is other" in win.automask_button.toolTip()
    back = LoadResult("cpu", "CPU", sam=True, ip2p=True, editor_family="kontext")
    win._on_message(JobMessage(job, Task.LOAD, MessageKind.FINISHED, result=back))
    assert win.automask_button.isEnabled() and win.automask_action.isEnabled()
    assert win.automask_button.toolTip() == AUTOMASK_TIP and win.automask_status.text() == ""
    assert win.edit_panel.family_rows() == ("guidance",)  # Kontext: its rows, and auto mask works


def test_editor_choice_in_the_edit_panel_switches_the_loaded_editor(tiny_window, qtbot) -> None:
    win = tiny_window
    combo = win.edit_panel.editor_combo
    values = [combo.itemData(i) for i in range(combo.count())]
    assert values == [value for _label, value in editor_choices()] and values[0] == "ip2p"
    assert combo.currentData() == "ip2p"
    chosen: list[str] = []
    win.edit_panel.editorChosen.connect(chosen.append)
    combo.activated.emit(values.index("flux-kontext-dev"))  # as the user picks it
    assert chosen == ["flux-kontext-dev"] and win.models.choice.ip2p == "flux-kontext-dev"
    assert json.loads(win.settings.value("models/choice"))["ip2p"] == "flux-kontext-dev"
    qtbot.waitUntil(lambda: win.models.load_job == 0 or "missing" in win.model_label.text(), timeout=30_000)
    assert win.model_label.text() == "models: missing"  # the tiny models folder has no Kontext
    assert combo.currentData() == "flux-kontext-dev"
    combo.activated.emit(0)
    assert win.models.choice.ip2p is None  # the registry default again
    qtbot.waitUntil(lambda: "ready" in win.model_label.text(), timeout=60_000)
    assert win.edit_panel.family_rows() == FAMILY_ROWS["ip2p"]


def test_set_editors_shows_a_folder_that_is_not_listed(qtbot) -> None:
    panel = EditPanel()
    qtbot.addWidget(panel)
    chosen: list[str] = []
    panel.editorChosen.connect(chosen.append)
    panel.set_editors([("ip2p — ip2p", "ip2p")], "/data/my-editor")
    assert [panel.editor_combo.itemData(i) for i in range(2)] == ["ip2p", "/data/my-editor"]
    assert panel.editor_combo.currentText() == "folder: /data/my-editor" and chosen == []
