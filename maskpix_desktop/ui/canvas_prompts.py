"""SAM prompts on the canvas: the ``Prompts`` value and the layer that keeps points, box and their items."""

from __future__ import annotations

import math
from dataclasses import dataclass

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPen, QTransform
from PySide6.QtWidgets import QGraphicsEllipseItem, QGraphicsItem, QGraphicsRectItem, QGraphicsScene

__all__ = [
    "BOX_COLOR",
    "DRAG_THRESHOLD_PX",
    "NEGATIVE_COLOR",
    "POSITIVE_COLOR",
    "PromptLayer",
    "PromptPress",
    "Prompts",
    "make_box_item",
]

DRAG_THRESHOLD_PX = 4.0  # screen px a left drag must travel before it becomes a box
PICK_RADIUS_PX = 8.0  # screen px around a point that Ctrl+click removes
POINT_RADIUS_PX = 6.0

POSITIVE_COLOR = QColor(40, 200, 80)
NEGATIVE_COLOR = QColor(20, 20, 24)  # near black with a white ring: distinct from any overlay colour
BOX_COLOR = QColor(255, 210, 0)

BoxXY = tuple[float, float, float, float]


@dataclass(frozen=True)
class Prompts:
    """SAM prompts in image pixel coordinates."""

    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()  # 1 keep, 0 exclude
    box: BoxXY | None = None  # x0, y0, x1, y1

    def __post_init__(self) -> None:
        if len(self.points) != len(self.labels):
            raise ValueError(f"{len(self.points)} points but {len(self.labels)} labels")

    def is_empty(self) -> bool:
        """True when there is no point and no box."""
        return not self.points and self.box is None


@dataclass
class PromptPress:
    """A prompt-tool press waiting to become a click or a box drag."""

    button: Qt.MouseButton
    view_pos: QPointF
    scene_pos: QPointF
    negative: bool
    can_box: bool
    dragging: bool = False


@dataclass
class _Point:
    x: float
    y: float
    label: int
    serial: int


def make_box_item(scene: QGraphicsScene, z: float) -> QGraphicsRectItem:
    """A hidden dashed rectangle (a box prompt or its drag preview) added to ``scene``."""
    item = QGraphicsRectItem()
    pen = QPen(BOX_COLOR, 1.5, Qt.PenStyle.DashLine)
    pen.setCosmetic(True)  # same on-screen width at every zoom
    item.setPen(pen)
    item.setZValue(z)
    item.setVisible(False)
    item.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
    scene.addItem(item)
    return item


class PromptLayer:
    """The points and box of one image and their scene items; the box remembers when it was added."""

    def __init__(self, scene: QGraphicsScene) -> None:
        self._scene = scene
        self._points: list[_Point] = []
        self._box: tuple[BoxXY, int] | None = None
        self._serial = 0
        self._visible = True
        self._point_items: list[QGraphicsEllipseItem] = []
        self.box_item = make_box_item(scene, z=2)

    def prompts(self) -> Prompts:
        return Prompts(
            points=tuple((p.x, p.y) for p in self._points),
            labels=tuple(p.label for p in self._points),
            box=self._box[0] if self._box is not None else None,
        )

    def is_empty(self) -> bool:
        return not self._points and self._box is None

    def set(self, prompts: Prompts) -> None:
        """Replace all prompts (the box counts as added last)."""
        self._points = []
        for (x, y), label in zip(prompts.points, prompts.labels, strict=True):
            self._points.append(_Point(float(x), float(y), 1 if label else 0, self._next_serial()))
        if prompts.box is not None:
            x0, y0, x1, y1 = (float(v) for v in prompts.box)
            self._box = ((x0, y0, x1, y1), self._next_serial())
        else:
            self._box = None
        self._sync()

    def clear(self) -> bool:
        """Remove every point and the box; True if there was any."""
        had = not self.is_empty()
        self._points.clear()
        self._box = None
        self._sync()
        return had

    def remove_last(self) -> bool:
        """Remove the most recently added point or box; True if one was removed."""
        last_point = self._points[-1].serial if self._points else -1
        if self._box is not None and self._box[1] > last_point:
            self._box = None
        elif self._points:
            self._points.pop()
        else:
            return False
        self._sync()
        return True

    def add_point(self, x: float, y: float, label: int) -> None:
        self._points.append(_Point(x, y, label, self._next_serial()))
        self._sync()

    def remove_point(self, index: int) -> None:
        del self._points[index]
        self._sync()

    def set_box(self, box: BoxXY) -> None:
        self._box = (box, self._next_serial())
        self._sync()

    def point_near(self, view_transform: QTransform, view_pos: QPointF) -> int | None:
        """Index of the point nearest to ``view_pos`` within PICK_RADIUS_PX screen pixels."""
        best, best_d = None, PICK_RADIUS_PX
        for i, p in enumerate(self._points):
            q = view_transform.map(QPointF(p.x, p.y))
            d = math.hypot(q.x() - view_pos.x(), q.y() - view_pos.y())
            if d <= best_d:
                best, best_d = i, d
        return best

    def set_visible(self, visible: bool) -> None:
        self._visible = bool(visible)
        for item in self._point_items:
            item.setVisible(self._visible)
        self.box_item.setVisible(self._visible and self._box is not None)

    @property
    def point_items(self) -> list[QGraphicsEllipseItem]:
        return list(self._point_items)

    def _next_serial(self) -> int:
        self._serial += 1
        return self._serial

    def _sync(self) -> None:
        for item in self._point_items:
            self._scene.removeItem(item)
        self._point_items = []
        r = POINT_RADIUS_PX
        outline = QPen(QColor(255, 255, 255), 1.5)
        for p in self._points:
            item = QGraphicsEllipseItem(-r, -r, 2 * r, 2 * r)
            item.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations, True)
            item.setPen(outline)
            item.setBrush(POSITIVE_COLOR if p.label else NEGATIVE_COLOR)
            item.setPos(p.x, p.y)
            item.setZValue(3)
            item.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
            item.setVisible(self._visible)
            self._scene.addItem(item)
            self._point_items.append(item)
        if self._box is not None:
            x0, y0, x1, y1 = self._box[0]
            self.box_item.setRect(QRectF(QPointF(x0, y0), QPointF(x1, y1)))
        self.box_item.setVisible(self._box is not None and self._visible)
