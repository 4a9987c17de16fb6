"""Tests for maskpix_desktop.core.images: loading every kind of file, refusing bad ones, atomic saving."""

from __future__ import annotations

import errno
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from maskpix_desktop.core import images
from maskpix_desktop.core.errors import ImageLoadError, ImageSaveError

# -------------------------------------------------------------------------------------------- helpers


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _png(width: int, height: int, bit_depth: int, color_type: int, idat: bytes) -> bytes:
    """A PNG built by hand: signature, IHDR, one IDAT with ``idat`` (already compressed), IEND."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _check_rgb(arr: np.ndarray, shape: tuple[int, int]) -> None:
    assert arr.dtype == np.uint8
    assert arr.shape == (*shape, 3)
    assert arr.flags.c_contiguous


# --------------------------------------------------------------------------------------------- loading


def test_exif_rotated_jpeg_comes_out_upright(tmp_path: Path) -> None:
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:] = (0, 0, 255)
    stored[:8, :8] = (255, 0, 0)  # red in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored rotated 90 degrees clockwise
    path = tmp_path / "rot.jpg"
    Image.fromarray(stored).save(path, quality=95, exif=exif.tobytes())
    out = images.load_image(path)
    _check_rgb(out, (40, 20))
    top_right = out[3, 16].astype(int)
    top_left = out[3, 3].astype(int)
    assert top_right[0] > 200 and top_right[2] < 60  # red moved to the top-right corner
    assert top_left[2] > 200 and top_left[0] < 60


def test_png_alpha_composited_on_white_exactly(tmp_path: Path) -> None:
    rgba = np.array([[[10, 20, 30, 0], [10, 20, 30, 255], [0, 100, 200, 128], [1, 3, 255, 128]]], np.uint8)
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba, "RGBA").save(path)
    out = images.load_image(path)
    _check_rgb(out, (1, 4))
    # round(c * a / 255 + 255 * (1 - a / 255)): 127.498 -> 127, 177.196 -> 177, 128.506 -> 129
    assert out.tolist() == [[[255, 255, 255], [10, 20, 30], [127, 177, 227], [128, 129, 255]]]


def test_la_and_one_bit_and_grayscale(tmp_path: Path) -> None:
    la = np.array([[[50, 255], [50, 0]]], np.uint8)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    assert images.load_image(tmp_path / "la.png").tolist() == [[[50, 50, 50], [255, 255, 255]]]
    gray = np.array([[0, 7, 200, 255]], np.uint8)
    Image.fromarray(gray, "L").save(tmp_path / "l.png")
    out = images.load_image(tmp_path / "l.png")
    _check_rgb(out, (1, 4))
    np.testing.assert_array_equal(out, np.repeat(gray[..., None], 3, axis=2))
    bits = Image.new("1", (3, 1))
    bits.putpixel((1, 0), 1)
    bits.save(tmp_path / "bits.png")
    assert images.load_image(tmp_path / "bits.png")[0, :, 0].tolist() == [0, 255, 0]


def test_16bit_gray_png_scales_to_8bit(tmp_path: Path) -> None:
    values = np.array([[0, 65535, 257, 32768, 129, 65280]], np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    out = images.load_image(path)
    _check_rgb(out, (1, 6))
    # round(v / 257), not v >> 8: 129 -> 1 and 65280 -> 254
    assert out[0, :, 0].tolist() == [0, 255, 1, 128, 1, 254]
    assert (out[..., 0] == out[..., 2]).all()


def test_16bit_rgb_png_hand_built(tmp_path: Path) -> None:
    row = b"\x00" + struct.pack(">HHHHHH", 65535, 0, 0x8000, 0, 65535, 0)
    path = tmp_path / "rgb48.png"
    path.write_bytes(_png(2, 1, 16, 2, zlib.compress(row)))
    out = images.load_image(path)
    _check_rgb(out, (1, 2))
    assert out.tolist() == [[[255, 0, 128], [0, 255, 0]]]


def test_palette_with_transparency(tmp_path: Path) -> None:
    img = Image.new("P", (3, 1))
    img.putpalette([255, 0, 0, 0, 128, 0] + [0, 0, 0] * 254)
    img.putdata([0, 1, 0])
    path = tmp_path / "pal.png"
    img.save(path, transparency=0)
    out = images.load_image(path)
    assert out.tolist() == [[[255, 255, 255], [0, 128, 0], [255, 255, 255]]]
    img.save(tmp_path / "opaque.png")
    assert images.load_image(tmp_path / "opaque.png").tolist() == [[[255, 0, 0], [0, 128, 0], [255, 0, 0]]]


def test_cmyk_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 8), (0, 255, 255, 0)).save(path, quality=95)
    assert Image.open(path).mode == "CMYK"
    out = images.load_image(path)
    _check_rgb(out, (8, 16))
    r, g, b = out[4, 8].astype(int)
    assert r > 200 and g < 60 and b < 60


def test_webp_lossless_is_exact(tmp_path: Path) -> None:
    arr = _noise(7, 13, seed=1)
    path = tmp_path / "x.webp"
    Image.fromarray(arr).save(path, lossless=True)
    out = images.load_image(path)
    _check_rgb(out, (7, 13))
    np.testing.assert_array_equal(out, arr)


def test_tiff_rgb_16bit_and_float(tmp_path: Path) -> None:
    arr = _noise(5, 6, seed=2)
    Image.fromarray(arr).save(tmp_path / "rgb.tif")
    np.testing.assert_array_equal(images.load_image(tmp_path / "rgb.tif"), arr)
    Image.fromarray(np.array([[0, 65535, 257]], np.uint16)).save(tmp_path / "deep.tif")
    assert images.load_image(tmp_path / "deep.tif")[0, :, 1].tolist() == [0, 255, 1]
    Image.fromarray(np.array([[0.0, 1.0, 0.25]], np.float32), "F").save(tmp_path / "unit.tif")
    assert images.load_image(tmp_path / "unit.tif")[0, :, 0].tolist() == [0, 255, 64]
    Image.fromarray(np.array([[-2.0, 2.0, 0.0]], np.float32), "F").save(tmp_path / "hdr.tif")
    assert images.load_image(tmp_path / "hdr.tif")[0, :, 0].tolist() == [0, 255, 128]


def test_animated_gif_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (6, 4), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert Image.open(path).n_frames == 3
    out = images.load_image(path)
    _check_rgb(out, (4, 6))
    assert (out == np.array([255, 0, 0], np.uint8)).all()


@pytest.mark.parametrize("shape", [(1, 1), (4000, 16), (16, 4000)])
def test_extreme_shapes(tmp_path: Path, shape: tuple[int, int]) -> None:
    arr = _noise(*shape, seed=3)
    path = tmp_path / "s.png"
    Image.fromarray(arr).save(path)
    out = images.load_image(path)
    _check_rgb(out, shape)
    np.testing.assert_array_equal(out, arr)


def test_image_from_pil_and_to_pil_round_trip() -> None:
    arr = _noise(3, 5, seed=4)
    assert images.to_pil(arr).mode == "RGB"
    np.testing.assert_array_equal(images.image_from_pil(images.to_pil(arr)), arr)
    mask = np.array([[True, False]])
    pil = images.to_pil(mask)
    assert pil.mode == "L" and np.asarray(pil).tolist() == [[255, 0]]
    with pytest.raises(ValueError):
        images.to_pil(np.zeros((2, 2, 3), np.float32))


# -------------------------------------------------------------------------------------------- refusals


def test_missing_zero_byte_directory_and_text_file(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="does not exist"):
        images.load_image(tmp_path / "nope.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageLoadError, match=r"empty\.png.*empty \(0 bytes\)"):
        images.load_image(tmp_path / "empty.png")
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(ImageLoadError, match="folder"):
        images.load_image(tmp_path / "folder.png")
    (tmp_path / "notes.png").write_text("hello, this is not a picture\n")
    with pytest.raises(ImageLoadError, match=r"notes\.png.*not an image"):
        images.load_image(tmp_path / "notes.png")


def test_permission_denied_is_mapped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "locked.png"
    Image.new("RGB", (2, 2)).save(path)

    def deny(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(Image, "open", deny)
    with pytest.raises(ImageLoadError, match="permission denied"):
        images.load_image(path)


@pytest.mark.parametrize("fmt, suffix", [("JPEG", ".jpg"), ("PNG", ".png")])
def test_truncated_files_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str, suffix: str
) -> None:
    full = tmp_path / f"full{suffix}"
    Image.fromarray(_noise(64, 64, seed=5)).save(full, format=fmt)
    data = full.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match=r"cut\..*damaged or truncated"):
        images.load_image(cut)
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # a global flipped elsewhere
    with pytest.raises(ImageLoadError):
        images.load_image(cut)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_huge_header_refused_fast_without_decoding(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png(30000, 30000, 8, 2, zlib.compress(b"\x00" * 64)))
    start = time.perf_counter()
    with pytest.raises(ImageLoadError, match=r"bomb\.png.*too large"):
        images.load_image(path)
    assert time.perf_counter() - start < 2.0
    medium = tmp_path / "medium.png"
    medium.write_bytes(_png(2000, 1000, 8, 2, zlib.compress(b"\x00" * 64)))
    message = r"medium\.png.*2000x1000 is 2,000,000 pixels, more than the limit of 1,000,000"
    with pytest.raises(ImageLoadError, match=message):
        images.load_image(medium, max_pixels=1_000_000)


def test_corrupted_bytes_never_leak_raw_errors(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    Image.fromarray(_noise(16, 16, seed=6)).save(good)
    data = bytearray(good.read_bytes())
    rng = np.random.default_rng(0)
    refused = 0
    for i in range(40):
        bad = bytearray(data)
        for pos in rng.integers(8, len(bad), size=3):
            bad[pos] ^= 0xFF
        path = tmp_path / f"bad{i}.png"
        path.write_bytes(bytes(bad))
        try:
            out = images.load_image(path)
        except ImageLoadError:
            refused += 1
        else:
            _check_rgb(out, (16, 16))
    assert refused > 0


# ------------------------------------------------------------------------------------------------ masks


def test_load_mask_alpha_luminance_and_resize(tmp_path: Path) -> None:
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., :3] = 255  # white everywhere: only the alpha can carry the mask
    rgba[..., 3] = [[0, 200], [127, 128]]
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert images.load_mask(tmp_path / "a.png").tolist() == [[False, True], [False, True]]
    opaque = np.zeros((2, 2, 4), np.uint8)
    opaque[..., 3] = 255
    opaque[0, 0, :3] = 255
    Image.fromarray(opaque, "RGBA").save(tmp_path / "o.png")
    assert images.load_mask(tmp_path / "o.png").tolist() == [[True, False], [False, False]]
    gray = np.array([[127, 128], [0, 255]], np.uint8)
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    m = images.load_mask(tmp_path / "g.png")
    assert m.dtype == bool and m.tolist() == [[False, True], [False, True]]
    big = images.load_mask(tmp_path / "g.png", size=(4, 6))
    assert big.shape == (4, 6) and big.dtype == bool
    assert big[:, :3].tolist() == [[False] * 3, [False] * 3, [False] * 3, [False] * 3]
    assert big[:2, 3:].all() and big[2:, 3:].all()
    with pytest.raises(ImageLoadError):
        images.load_mask(tmp_path / "missing.png")


# -------------------------------------------------------------------------------------- sizes and hash


def test_resize_image_modes() -> None:
    arr = _noise(6, 4, seed=7)
    assert images.resize_image(arr, (6, 4)) is arr
    up = images.resize_image(arr, (12, 8), resample="nearest")
    np.testing.assert_array_equal(up, arr.repeat(2, axis=0).repeat(2, axis=1))
    blocks = np.array([[0, 100], [200, 100]], np.uint8)
    tiled = np.tile(blocks, (2, 2))
    rgb = np.repeat(tiled[..., None], 3, axis=2)
    assert images.resize_image(rgb, (2, 2), resample="area").tolist() == [[[100] * 3] * 2] * 2
    const = np.full((30, 20, 3), 77, np.uint8)
    for mode in ("lanczos", "bilinear", "area", "nearest"):
        out = images.resize_image(const, (13, 9), resample=mode)
        assert out.shape == (13, 9, 3) and out.dtype == np.uint8
        assert (out == 77).all()
    gray = images.resize_image(np.full((4, 4), 9, np.uint8), (2, 3))
    assert gray.shape == (2, 3) and (gray == 9).all()
    with pytest.raises(ValueError):
        images.resize_image(arr, (3, 2), resample="cubic")
    with pytest.raises(ValueError):
        images.resize_image(arr.astype(np.float32), (3, 2))


@pytest.mark.parametrize(
    "h, w, long_side, multiple, expected",
    [
        (3000, 4000, 512, 8, (384, 512)),
        (4000, 3000, 512, 8, (512, 384)),
        (512, 512, 512, 8, (512, 512)),
        (100, 13, 512, 8, (96, 8)),  # never upscale a side that is at least `multiple`
        (5, 3, 512, 8, (8, 8)),  # tiny images go up to `multiple`
        (1000, 10, 512, 8, (512, 8)),
        (700, 1000, 512, 64, (384, 512)),
        (3000, 4000, 500, 64, (384, 448)),  # long side stays <= long_side
    ],
)
def test_working_size(h: int, w: int, long_side: int, multiple: int, expected: tuple[int, int]) -> None:
    assert images.working_size(h, w, long_side, multiple) == expected


def test_image_hash_depends_on_shape_dtype_and_bytes() -> None:
    arr = _noise(4, 6, seed=8)
    digest = images.image_hash(arr)
    assert len(digest) == 40 and int(digest, 16) >= 0
    assert images.image_hash(arr.copy()) == digest
    assert images.image_hash(arr.reshape(6, 4, 3)) != digest
    assert images.image_hash(arr.view(np.int8)) != digest
    changed = arr.copy()
    changed[0, 0, 0] ^= 1
    assert images.image_hash(changed) != digest
    view = arr[:, ::2]
    assert images.image_hash(view) == images.image_hash(np.ascontiguousarray(view))


def test_core_image_modules_import_no_qt_or_torch() -> None:
    code = (
        "import sys, maskpix_desktop.core.images, maskpix_desktop.core.masks;"
        "bad = [m for m in ('torch', 'PySide6', 'diffusers') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------------------------- saving


def test_save_png_with_text_round_trip(tmp_path: Path) -> None:
    arr = _noise(9, 7, seed=9)
    text = {"instruction": "make it snowy → ❄", "seed": "42", "steps": "20"}
    path = images.save_image(tmp_path / "out.png", arr, text=text)
    assert path == tmp_path / "out.png"
    np.testing.assert_array_equal(images.load_image(path), arr)
    assert images.read_png_text(path) == text
    assert sorted(os.listdir(tmp_path)) == ["out.png"]
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~images._UMASK


def test_save_other_formats_with_text(tmp_path: Path) -> None:
    arr = _noise(8, 8, seed=10)
    text = {"seed": "7", "mode": "latent"}
    for name in ("a.jpg", "b.jpeg", "c.webp", "d.tif"):
        images.save_image(tmp_path / name, arr, text=text, quality=90)
        assert images.read_image_text(tmp_path / name) == text
        assert images.load_image(tmp_path / name).shape == (8, 8, 3)
    np.testing.assert_array_equal(images.load_image(tmp_path / "d.tif"), arr)
    images.save_image(tmp_path / "lossless.webp", arr, quality=100)
    np.testing.assert_array_equal(images.load_image(tmp_path / "lossless.webp"), arr)
    assert images.read_image_text(tmp_path / "lossless.webp") == {}
    with pytest.raises(ImageSaveError, match="unsupported file type"):
        images.save_image(tmp_path / "x.bmp", arr)


def test_save_masks_as_gray(tmp_path: Path) -> None:
    mask = np.array([[True, False, True]])
    images.save_image(tmp_path / "m.png", mask)
    with Image.open(tmp_path / "m.png") as img:
        assert img.mode == "L" and np.asarray(img).tolist() == [[255, 0, 255]]
    np.testing.assert_array_equal(images.load_mask(tmp_path / "m.png"), mask)


def test_overwrite_false_raises_and_keeps_the_file(tmp_path: Path) -> None:
    path = tmp_path / "keep.png"
    first = _noise(4, 4, seed=11)
    images.save_image(path, first)
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        images.save_image(path, _noise(4, 4, seed=12), overwrite=False)
    assert path.read_bytes() == before
    with pytest.raises(FileExistsError):
        images.atomic_write_bytes(path, b"x", overwrite=False)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["keep.png"]
    second = _noise(4, 4, seed=12)
    images.save_image(path, second)
    np.testing.assert_array_equal(images.load_image(path), second)
    images.save_image(tmp_path / "new.png", second, overwrite=False)
    assert (tmp_path / "new.png").is_file()


def test_disk_full_during_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full)
    with pytest.raises(ImageSaveError, match=r"out\.png.*disk is full"):
        images.save_image(tmp_path / "out.png", _noise(4, 4))
    assert os.listdir(tmp_path) == []


def test_failed_replace_leaves_nothing_and_keeps_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = tmp_path / "old.txt"
    old.write_text("original")

    def read_only(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "replace", read_only)
    with pytest.raises(ImageSaveError, match="read-only"):
        images.save_image(tmp_path / "out.png", _noise(4, 4))
    with pytest.raises(ImageSaveError, match="read-only"):
        images.atomic_write_text(old, "new")
    assert sorted(os.listdir(tmp_path)) == ["old.txt"]
    assert old.read_text() == "original"


def test_missing_folder_and_failing_body(tmp_path: Path) -> None:
    with pytest.raises(ImageSaveError, match="folder does not exist"):
        images.save_image(tmp_path / "no" / "such" / "x.png", _noise(2, 2))
    target = tmp_path / "t.bin"
    with pytest.raises(RuntimeError), images.atomic_path(target) as tmp:
        assert tmp.parent == tmp_path
        assert tmp.name.startswith(".t.bin.") and tmp.name.endswith(".tmp")
        tmp.write_bytes(b"partial")
        raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []


def test_atomic_write_text_and_bytes_are_exact(tmp_path: Path) -> None:
    images.atomic_write_text(tmp_path / "a.json", '{"k": "é"}\n')
    assert (tmp_path / "a.json").read_bytes() == '{"k": "é"}\n'.encode()
    images.atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01\r\n")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01\r\n"
    images.atomic_write_bytes(tmp_path / "b.bin", b"second")
    assert (tmp_path / "b.bin").read_bytes() == b"second"
    assert sorted(os.listdir(tmp_path)) == ["a.json", "b.bin"]
