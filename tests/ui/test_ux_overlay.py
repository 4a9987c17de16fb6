"""Issue 19.7: an outline overlay, a default colour contrasting with the masked region, distinct negatives."""

from __future__ import annotations

import numpy as np
from test_canvas import click

from maskpix_desktop.ui.canvas import contrast_color, mask_edges
from maskpix_desktop.ui.canvas_prompts import NEGATIVE_COLOR


def _red_square_image() -> tuple[np.ndarray, np.ndarray]:
    image = np.full((60, 80, 3), (40, 120, 40), np.uint8)  # green background
    image[10:40, 20:60] = (220, 30, 30)  # a red object
    mask = np.zeros((60, 80), np.uint8)
    mask[10:40, 20:60] = 255
    return image, mask


def _hue(color) -> float:
    return color.hsvHueF() * 360.0


def test_contrast_colour_is_opposite_the_masked_hue():
    image, mask = _red_square_image()
    assert abs(_hue(contrast_color(image, mask)) - 180.0) < 15  # red object -> cyan overlay
    blue = np.zeros_like(image)
    blue[..., 2] = 230
    assert abs(_hue(contrast_color(blue, mask)) - 60.0) < 15  # blue -> yellow


def test_default_overlay_contrasts_with_a_red_object_until_the_user_picks(tiny_window):
    from PySide6.QtGui import QColor

    win = tiny_window
    image, mask = _red_square_image()
    win.opener.show_image(image, None, name="red")
    win.canvas.set_mask(mask)
    hue = _hue(win.canvas.overlay_color())
    assert 150 < hue < 210  # not the old red, which vanished on red objects
    win.canvas.set_overlay_color(QColor(255, 0, 0))
    win.canvas.set_mask(255 - mask)
    assert win.canvas.overlay_color() == QColor(255, 0, 0)  # the user's choice stays


def test_outline_mode_draws_only_the_edge_and_follows_the_brush(tiny_window):
    win = tiny_window
    image, mask = _red_square_image()
    win.opener.show_image(image, None, name="red")
    win.canvas.set_mask(mask)
    win.outline_overlay.setChecked(True)
    alpha = _alpha(win)
    np.testing.assert_array_equal(alpha, mask_edges(mask))
    assert alpha[25, 40] == 0 and alpha[10, 40] == 255  # inside clear, edge drawn
    win.set_tool("brush")
    win.canvas.brush_size = 6
    win.canvas.apply_mask_op("dilate")
    np.testing.assert_array_equal(_alpha(win), mask_edges(win.canvas.mask()))
    win.outline_overlay.setChecked(False)
    np.testing.assert_array_equal(_alpha(win), win.canvas.mask())


def _alpha(win) -> np.ndarray:
    img = win.canvas.overlay_item.image()
    w, h = img.width(), img.height()
    return (
        np.frombuffer(img.constBits(), np.uint8)
        .reshape(h, img.bytesPerLine())[:, : 4 * w]
        .reshape(h, w, 4)[..., 3]
        .copy()
    )


def test_negative_points_are_not_overlay_coloured(tiny_window, photo, qtbot):
    from PySide6.QtCore import Qt

    win = tiny_window
    assert win.open_image(photo)
    click(qtbot, win.canvas, 30, 30, button=Qt.MouseButton.RightButton)
    (item,) = win.canvas.point_items
    fill = item.brush().color()
    assert fill == NEGATIVE_COLOR and fill.valueF() < 0.2  # dark, with a white ring: never lost in a tint
