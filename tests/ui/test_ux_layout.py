"""Issue 19.4: instruction, Run, Cancel and progress always in view; the main path fits 1366x768."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, QRect
from PySide6.QtWidgets import QAbstractScrollArea
from strip_window import rect_in, strip_window


def _visible_rect(widget, window) -> QRect:
    """``widget``'s rectangle in window coordinates, clipped by every scroll area above it."""
    rect = rect_in(widget, window)
    parent = widget.parentWidget()
    while parent is not None and parent is not window:
        if isinstance(parent, QAbstractScrollArea):
            vp = parent.viewport()
            rect = rect.intersected(rect_in(vp, window))
        parent = parent.parentWidget()
    return rect


def _main_path(win) -> dict[str, object]:
    p = win.edit_panel
    return {
        "instruction": p.instruction,
        "run": p.run_button,
        "cancel": p.cancel_button,
        "progress": p.progress,
        "progress text": p.progress.label,
        "auto mask": win.automask_button,
        "mask mode": p.mask_mode,
        "advanced": p.advanced.header,
        "tabs": win.tabs.tabBar(),
        **{f"tool {n}": b for n, b in win.tool_buttons.items()},
    }


@pytest.mark.parametrize("size", [(1366, 768), (1920, 1080)])
def test_main_path_controls_are_fully_visible(qtbot, tmp_path, photo, size):
    win = strip_window(qtbot, tmp_path, photo, size, 3)  # the filmstrip (3 thumbnails) takes its room too
    assert win.filmstrip.isVisible() and win.filmstrip.count() == 3
    assert (win.width(), win.height()) == size  # the layout's minimum does not push the window larger
    window_rect = QRect(QPoint(0, 0), win.size())
    for name, widget in _main_path(win).items():
        assert widget.isVisible(), name
        full = rect_in(widget, win)
        assert window_rect.contains(full), f"{name} at {full} is outside the {size} window"
        assert _visible_rect(widget, win) == full, f"{name} is scrolled out of view at {size}"
    win.close()


def test_prompt_bar_stays_in_view_on_the_results_tab(tiny_window):
    win = tiny_window
    win.tabs.setCurrentIndex(1)
    bar = win.edit_panel.prompt_bar
    assert bar.isVisible() and win.edit_panel.run_button.isVisible()
    assert not win.tabs.isAncestorOf(bar)


def test_advanced_section_is_collapsed_and_opens(tiny_window):
    p = tiny_window.edit_panel
    advanced = (p.steps, p.text_scale, p.image_scale, p.seed, p.long_side, p.dilate, p.feather, p.poisson)
    assert not p.advanced.is_expanded() and not any(w.isVisible() for w in advanced)
    p.advanced.header.click()
    assert all(w.isVisible() for w in advanced)
    p.steps.setValue(7)
    assert p.params().steps == 7  # collapsed or not, the values are the run's
