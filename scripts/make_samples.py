"""Draw the bundled sample images (resources/samples/*.jpg) and their masks; CC0, made by this project.

Run: python scripts/make_samples.py  (deterministic; re-running rewrites identical files)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

OUT = Path(__file__).resolve().parents[1] / "resources" / "samples"


def _sky_ground(w: int, h: int, horizon: float, sky=(120, 170, 225), ground=(96, 140, 70)) -> Image.Image:
    y = np.linspace(0, 1, h)[:, None, None]
    top = np.array(sky, float) * (0.75 + 0.25 * y / horizon)
    bottom = np.array(ground, float) * (1.1 - 0.3 * (y - horizon))
    arr = np.where(y < horizon, top, bottom) * np.ones((1, w, 1))
    rng = np.random.default_rng(7)
    arr += rng.normal(0, 4, arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def person() -> tuple[Image.Image, Image.Image]:
    w, h = 512, 640
    img = _sky_ground(w, h, 0.7, sky=(205, 200, 190), ground=(150, 130, 110))
    d = ImageDraw.Draw(img)
    mask = Image.new("L", (w, h), 0)
    md = ImageDraw.Draw(mask)
    d.rectangle([205, 470, 245, 640], fill=(40, 50, 90))  # legs
    d.rectangle([265, 470, 305, 640], fill=(40, 50, 90))
    shirt = [(170, 250), (340, 250), (370, 330), (330, 340), (325, 480), (185, 480), (180, 340), (140, 330)]
    d.polygon(shirt, fill=(235, 235, 228))
    md.polygon(shirt, fill=255)
    d.line([(255, 260), (255, 470)], fill=(200, 200, 195), width=2)
    d.rectangle([240, 215, 270, 255], fill=(225, 180, 150))  # neck
    d.ellipse([205, 120, 305, 230], fill=(230, 188, 158))  # head
    d.pieslice([200, 110, 310, 200], 180, 360, fill=(70, 45, 30))  # hair
    d.ellipse([232, 165, 242, 175], fill=(40, 30, 25))
    d.ellipse([268, 165, 278, 175], fill=(40, 30, 25))
    d.ellipse([135, 325, 165, 355], fill=(230, 188, 158))  # hands
    d.ellipse([345, 325, 375, 355], fill=(230, 188, 158))
    return img.filter(ImageFilter.GaussianBlur(0.7)), mask


def dog() -> tuple[Image.Image, Image.Image]:
    w, h = 640, 480
    img = _sky_ground(w, h, 0.55)
    d = ImageDraw.Draw(img)
    mask = Image.new("L", (w, h), 0)
    parts = [
        ("ellipse", [200, 230, 430, 340]),  # body
        ("ellipse", [390, 170, 490, 260]),  # head
        ("ellipse", [455, 205, 515, 245]),  # snout
        ("rect", [220, 310, 245, 400]),
        ("rect", [260, 310, 285, 405]),
        ("rect", [360, 310, 385, 405]),
        ("rect", [395, 305, 420, 400]),
        ("poly", [(200, 260), (150, 220), (160, 210), (210, 250)]),  # tail
        ("poly", [(400, 185), (395, 140), (430, 175)]),  # ears
        ("poly", [(445, 175), (470, 135), (475, 185)]),
    ]
    for layer, colour in ((d, (160, 105, 55)), (ImageDraw.Draw(mask), 255)):
        for kind, geom in parts:
            if kind == "ellipse":
                layer.ellipse(geom, fill=colour)
            elif kind == "rect":
                layer.rectangle(geom, fill=colour)
            else:
                layer.polygon(geom, fill=colour)
    d.ellipse([505, 215, 517, 227], fill=(20, 15, 15))
    d.ellipse([440, 195, 452, 207], fill=(20, 15, 15))
    d.ellipse([90, 60, 150, 120], fill=(250, 235, 160))  # sun
    return img.filter(ImageFilter.GaussianBlur(0.7)), mask


def car() -> tuple[Image.Image, Image.Image]:
    w, h = 640, 427
    img = _sky_ground(w, h, 0.6, ground=(90, 90, 95))
    d = ImageDraw.Draw(img)
    mask = Image.new("L", (w, h), 0)
    md = ImageDraw.Draw(mask)
    d.rectangle([0, 300, w, 306], fill=(230, 230, 230))
    body = [(130, 300), (130, 245), (220, 235), (270, 185), (410, 185), (470, 235), (530, 245), (530, 300)]
    d.polygon(body, fill=(200, 40, 40))
    md.polygon(body, fill=255)
    d.polygon([(285, 195), (335, 195), (335, 235), (250, 235)], fill=(170, 210, 235))
    d.polygon([(345, 195), (400, 195), (450, 235), (345, 235)], fill=(170, 210, 235))
    for cx in (205, 455):
        d.ellipse([cx - 35, 265, cx + 35, 335], fill=(25, 25, 25))
        d.ellipse([cx - 15, 285, cx + 15, 315], fill=(170, 170, 175))
        md.ellipse([cx - 35, 265, cx + 35, 335], fill=255)
    return img.filter(ImageFilter.GaussianBlur(0.7)), mask


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, make in (("person", person), ("dog", dog), ("car", car)):
        img, mask = make()
        img.save(OUT / f"{name}.jpg", quality=90)
        mask.save(OUT / f"{name}_mask.png")
        print("wrote", OUT / f"{name}.jpg")


if __name__ == "__main__":
    main()
