"""A learnable toy editing task where the instruction alone is ambiguous and the mask decides.

Each item is a small image with 3-4 coloured shapes on a grey background, one per cell of a 2x2 grid
(so shapes never overlap). The instruction is "make the <shape> <colour>"; at least one *other* shape
of the same kind is always present (a distractor), so only the mask says which one to recolour. The
target recolours the masked shape only; everything else is bit-identical to the source.

Items are a pure function of ``(seed, index)``: the same call gives the same arrays on any machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KINDS = ("circle", "square", "triangle")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (40, 70, 220),
    "yellow": (230, 210, 40),
    "magenta": (210, 50, 200),
    "cyan": (40, 200, 210),
}
BACKGROUND = (128, 128, 128)


@dataclass(frozen=True)
class Shape:
    kind: str
    colour: str
    cy: int
    cx: int
    r: int


@dataclass(frozen=True)
class SyntheticItem:
    """One quadruplet: ``image`` / ``target`` HxWx3 uint8, ``mask`` HxW bool, ``instruction``."""

    image: np.ndarray
    target: np.ndarray
    mask: np.ndarray
    instruction: str
    shapes: tuple[Shape, ...]
    target_index: int
    new_colour: str


def shape_mask(shape: Shape, size: int) -> np.ndarray:
    """Boolean ``size x size`` mask of one shape."""
    yy, xx = np.mgrid[0:size, 0:size]
    dy, dx = yy - shape.cy, xx - shape.cx
    if shape.kind == "circle":
        return dy * dy + dx * dx <= shape.r * shape.r
    if shape.kind == "square":
        return (np.abs(dy) <= shape.r * 0.8) & (np.abs(dx) <= shape.r * 0.8)
    if shape.kind == "triangle":  # apex up, base at cy + r
        return (dy <= shape.r) & (dy >= -shape.r) & (np.abs(dx) <= (dy + shape.r) / 2)
    raise ValueError(f"unknown shape kind {shape.kind!r}")


def render(shapes: tuple[Shape, ...], size: int) -> np.ndarray:
    """The shapes drawn in order on the grey background (HxWx3 uint8)."""
    img = np.empty((size, size, 3), np.uint8)
    img[:] = BACKGROUND
    for s in shapes:
        img[shape_mask(s, size)] = COLOURS[s.colour]
    return img


def make_item(seed: int, index: int, size: int = 64) -> SyntheticItem:
    """Item ``index`` of the stream ``seed`` (deterministic)."""
    if size < 32 or size % 8:
        raise ValueError(f"size must be a multiple of 8 and at least 32, got {size}")
    rng = np.random.default_rng([int(seed), int(index)])
    n = int(rng.integers(3, 5))
    cells = rng.permutation(4)[:n]
    target_kind = str(rng.choice(KINDS))
    kinds = [target_kind, target_kind] + [str(rng.choice(KINDS)) for _ in range(n - 2)]
    order = rng.permutation(n)
    kinds = [kinds[i] for i in order]
    target_index = int(order.tolist().index(0))  # the first of the two same-kind shapes
    colour_names = list(COLOURS)
    half = size // 2
    shapes = []
    for cell, kind in zip(cells, kinds, strict=True):
        r = int(rng.integers(size // 8, size // 5 + 1))
        margin = r + 1
        cy = int((cell // 2) * half + rng.integers(margin, half - margin + 1))
        cx = int((cell % 2) * half + rng.integers(margin, half - margin + 1))
        shapes.append(Shape(kind, str(rng.choice(colour_names)), cy, cx, r))
    old = shapes[target_index].colour
    new_colour = str(rng.choice([c for c in colour_names if c != old]))
    shapes_t = tuple(shapes)
    image = render(shapes_t, size)
    mask = shape_mask(shapes_t[target_index], size)
    target = image.copy()
    target[mask] = COLOURS[new_colour]
    return SyntheticItem(
        image=image,
        target=target,
        mask=mask,
        instruction=f"make the {target_kind} {new_colour}",
        shapes=shapes_t,
        target_index=target_index,
        new_colour=new_colour,
    )


class SyntheticShapes:
    """``n`` items of the stream ``seed`` as a sequence (train and held-out sets use different seeds)."""

    def __init__(self, n: int, seed: int = 0, size: int = 64):
        self.n, self.seed, self.size = int(n), int(seed), int(size)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> SyntheticItem:
        if not 0 <= i < self.n:
            raise IndexError(i)
        return make_item(self.seed, i, self.size)
