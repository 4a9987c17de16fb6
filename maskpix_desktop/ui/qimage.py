"""ndarray <-> QImage conversions shared by every widget (always copies: safe across threads)."""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QColor, QImage, QPixmap


def to_qimage(arr: np.ndarray) -> QImage:
    """HxWx3 uint8 RGB, HxWx4 RGBA or HxW uint8 gray -> an owning QImage copy."""
    a = np.ascontiguousarray(arr)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    if a.dtype != np.uint8:
        raise TypeError(f"expected uint8 image, got {a.dtype}")
    h, w = a.shape[:2]
    if a.ndim == 2:
        fmt, bpl = QImage.Format.Format_Grayscale8, w
    elif a.shape[2] == 3:
        fmt, bpl = QImage.Format.Format_RGB888, 3 * w
    elif a.shape[2] == 4:
        fmt, bpl = QImage.Format.Format_RGBA8888, 4 * w
    else:
        raise ValueError(f"unsupported image shape {a.shape}")
    return QImage(a.data, w, h, bpl, fmt).copy()


def to_pixmap(arr: np.ndarray) -> QPixmap:
    return QPixmap.fromImage(to_qimage(arr))


def from_qimage(img: QImage) -> np.ndarray:
    """QImage -> HxWx3 uint8 RGB copy."""
    img = img.convertToFormat(QImage.Format.Format_RGB888)
    h, w, bpl = img.height(), img.width(), img.bytesPerLine()
    buf = np.frombuffer(img.constBits(), np.uint8, count=bpl * h).reshape(h, bpl)
    return buf[:, : 3 * w].reshape(h, w, 3).copy()


def overlay_rgba(mask: np.ndarray, color: QColor | tuple[int, int, int]) -> np.ndarray:
    """HxW mask (bool, uint8 0..255 or float 0..1) -> HxWx4 RGBA uint8 tinted with ``color``."""
    if isinstance(color, QColor):
        color = (color.red(), color.green(), color.blue())
    if mask.dtype == bool:
        alpha = mask.astype(np.uint8) * 255
    elif mask.dtype == np.uint8:
        alpha = mask
    else:
        alpha = np.clip(np.rint(mask * 255), 0, 255).astype(np.uint8)
    out = np.empty((*mask.shape, 4), np.uint8)
    out[..., :3] = color
    out[..., 3] = alpha
    return out
