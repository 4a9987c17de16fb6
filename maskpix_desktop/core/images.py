"""The one place images are loaded, normalised, resized, hashed and saved (atomically).

Every image in MaskPix is an ``HxWx3`` C-contiguous ``uint8`` RGB numpy array. Loading never lets a raw
PIL or OS error escape: failures become :class:`ImageLoadError` / :class:`ImageSaveError` with a message
that names the file and can be shown to the user as is. No Qt and no torch here.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError
from PIL.PngImagePlugin import PngInfo

from maskpix_desktop.core import masks
from maskpix_desktop.core.errors import ImageLoadError, ImageSaveError
from maskpix_desktop.core.resample import lanczos_upscale, use_fast_lanczos

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "image_from_pil",
    "image_hash",
    "load_image",
    "load_mask",
    "read_image_text",
    "read_png_text",
    "resize_image",
    "save_image",
    "to_pil",
    "working_image",
    "working_size",
]

DEFAULT_MAX_PIXELS = 120_000_000
"""Largest ``width * height`` accepted by default (about 11000x11000; ~360 MB as RGB)."""

_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286
_IMAGE_DESCRIPTION = 270
_ASCII_PREFIX = b"ASCII\x00\x00\x00"

_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}

_RESAMPLE = {"lanczos": Image.Resampling.LANCZOS, "bilinear": Image.Resampling.BILINEAR}
_CV2_RESAMPLE = {"area": cv2.INTER_AREA, "nearest": cv2.INTER_NEAREST_EXACT}

_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


def _read_umask() -> int:
    """The process umask, read once (os.umask can only be read by setting it)."""
    current = os.umask(0o022)
    os.umask(current)
    return current


_UMASK = _read_umask()


# --------------------------------------------------------------------------------------------- loading


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """``round(rgb * a/255 + 255 * (1 - a/255))`` in exact integer arithmetic (round half up)."""
    rgb = rgba[..., :3].astype(np.uint32)
    a = rgba[..., 3:4].astype(np.uint32)
    out = (rgb * a + 255 * (255 - a) + 127) // 255
    return out.astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None], 3, axis=2)


def _int_to_uint8(values: np.ndarray) -> np.ndarray:
    """Integer samples (16-bit range) to 8 bit: ``round(v * 255 / 65535)``, so 65535 -> 255 and 0 -> 0."""
    v = np.clip(values.astype(np.int64), 0, 65535)
    return ((v * 255 + 32767) // 65535).astype(np.uint8)


def _float_to_uint8(values: np.ndarray) -> np.ndarray:
    """Float samples: [0, 1] data scales by 255; anything else is stretched from its min..max."""
    v = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = (float(v.min()), float(v.max())) if v.size else (0.0, 1.0)
    if lo < 0.0 or hi > 1.0:
        v = (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)
    return np.clip(np.rint(v * 255.0), 0, 255).astype(np.uint8)


def image_from_pil(img: Image.Image) -> np.ndarray:
    """Normalise any PIL image to ``HxWx3`` C-contiguous uint8 RGB.

    Transparency is composited on white; 16-bit and 32-bit integer modes scale 0..65535 -> 0..255;
    float mode ``F`` scales [0, 1] by 255 (other ranges are stretched); palette, 1-bit, grayscale,
    CMYK and YCbCr convert to RGB. EXIF orientation is *not* applied here (``load_image`` does it).
    """
    mode = img.mode
    if mode == "P" and "transparency" in img.info:
        img, mode = img.convert("RGBA"), "RGBA"
    if mode in _ALPHA_MODES:
        out = _composite_on_white(np.asarray(img.convert("RGBA")))
    elif mode == "RGB":
        out = np.asarray(img)
    elif mode in ("L", "1"):
        out = _gray_to_rgb(np.asarray(img.convert("L")))
    elif mode.startswith("I;16") or mode == "I":
        arr = np.asarray(img)
        if arr.ndim != 2:  # Pillow builds without a numpy view of this mode
            arr = np.asarray(img.convert("I"))
        out = _gray_to_rgb(_int_to_uint8(arr))
    elif mode == "F":
        out = _gray_to_rgb(_float_to_uint8(np.asarray(img)))
    else:  # CMYK, YCbCr, RGBX, LAB, HSV, ...
        out = np.asarray(img.convert("RGB"))
    return np.ascontiguousarray(out, dtype=np.uint8)


def to_pil(arr: np.ndarray) -> Image.Image:
    """``HxWx3`` / ``HxWx4`` uint8 -> RGB / RGBA image; ``HxW`` uint8 or bool -> ``L`` (bool as 0/255)."""
    a = np.asarray(arr)
    if a.ndim == 2 and a.dtype == np.bool_:
        return Image.fromarray(a.astype(np.uint8) * 255, mode="L")
    if a.dtype != np.uint8:
        raise ValueError(f"expected a uint8 (or bool mask) array, got {a.dtype}")
    if a.ndim == 2:
        return Image.fromarray(np.ascontiguousarray(a), mode="L")
    if a.ndim == 3 and a.shape[2] in (3, 4):
        return Image.fromarray(np.ascontiguousarray(a), mode="RGB" if a.shape[2] == 3 else "RGBA")
    raise ValueError(f"expected HxW, HxWx3 or HxWx4, got shape {a.shape}")


def _check_readable(path: Path) -> None:
    name = str(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImageLoadError(f"Cannot open '{name}': the file does not exist.") from None
    except PermissionError:
        raise ImageLoadError(f"Cannot open '{name}': permission denied.") from None
    except OSError as exc:
        raise ImageLoadError(f"Cannot open '{name}': {exc.strerror or exc}.") from None
    if path.is_dir():
        raise ImageLoadError(f"Cannot open '{name}': it is a folder, not an image file.")
    if st.st_size == 0:
        raise ImageLoadError(f"Cannot open '{name}': the file is empty (0 bytes).")


def _too_large(path: Path, w: int, h: int, max_pixels: int) -> ImageLoadError:
    return ImageLoadError(
        f"Refusing to open '{path}': {w}x{h} is {w * h:,} pixels, more than the limit of {max_pixels:,}."
    )


@contextlib.contextmanager
def _opened(path: str | os.PathLike, max_pixels: int, *, orient: bool = True) -> Iterator[Image.Image]:
    """Open, size-check (header only), fully decode and (optionally) EXIF-orient an image.

    Every failure up to the ``yield`` becomes :class:`ImageLoadError`; errors raised by the caller's
    block pass through untouched.
    """
    p = Path(path)
    _check_readable(p)
    if ImageFile.LOAD_TRUNCATED_IMAGES:  # someone flipped the global; truncated files must be refused
        ImageFile.LOAD_TRUNCATED_IMAGES = False
    with contextlib.ExitStack() as stack:
        try:
            # Pillow may warn (DecompressionBombWarning) between its own limits; our cap is the check
            # that counts. (warnings.catch_warnings is not thread-safe, so the warning is left alone.)
            img = stack.enter_context(Image.open(p))
            w, h = img.size
            if w * h > max_pixels:
                raise _too_large(p, w, h, max_pixels)
            if w <= 0 or h <= 0:
                raise ImageLoadError(f"Cannot open '{p}': the image has no pixels ({w}x{h}).")
            img.load()
        except ImageLoadError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageLoadError(f"Refusing to open '{p}': the image is too large ({exc}).") from None
        except UnidentifiedImageError:
            raise ImageLoadError(
                f"Cannot open '{p}': not an image file, or a format MaskPix cannot read."
            ) from None
        except PermissionError:
            raise ImageLoadError(f"Cannot open '{p}': permission denied.") from None
        except IsADirectoryError:
            raise ImageLoadError(f"Cannot open '{p}': it is a folder, not an image file.") from None
        except MemoryError:
            raise ImageLoadError(f"Cannot open '{p}': not enough memory to decode it.") from None
        except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, struct.error, ... on bad data
            detail = str(exc) or type(exc).__name__
            raise ImageLoadError(f"Cannot open '{p}': the file is damaged or truncated ({detail}).") from None
        if orient and _has_orientation(img):
            try:
                img = ImageOps.exif_transpose(img)
            except Exception:  # a broken orientation tag must not make a good image unreadable
                pass
        yield img


def _has_orientation(img: Image.Image) -> bool:
    try:
        return int(img.getexif().get(0x0112, 1) or 1) != 1
    except Exception:  # broken EXIF must not make a good image unreadable
        return False


def load_image(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Load any supported image file as ``HxWx3`` C-contiguous uint8 RGB, EXIF orientation applied.

    The first frame of animated files is used. Raises :class:`ImageLoadError` for missing, empty,
    damaged, truncated, non-image and too-large files (``width * height > max_pixels``, checked from
    the header before decoding). Pillow's own hard bomb limit (``2 * Image.MAX_IMAGE_PIXELS``) still
    applies when ``max_pixels`` is set above it.
    """
    with _opened(path, max_pixels) as img:
        try:
            return image_from_pil(img)
        except MemoryError:
            raise ImageLoadError(f"Cannot open '{path}': not enough memory to convert it.") from None
        except (OSError, ValueError) as exc:
            raise ImageLoadError(
                f"Cannot open '{path}': unsupported pixel format {img.mode} ({exc})."
            ) from None


def load_mask(
    path: str | os.PathLike, size: tuple[int, int] | None = None, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Load a mask file as bool ``HxW``: its alpha channel if it has a non-opaque one, else luminance > 127.

    With ``size = (h, w)`` different from the file's, the mask is resized (nearest).
    """
    with _opened(path, max_pixels) as img:
        try:
            alpha = None
            if img.mode in _ALPHA_MODES or (img.mode == "P" and "transparency" in img.info):
                alpha = np.asarray(img.convert("RGBA"))[..., 3]
                if alpha.min() == 255:
                    alpha = None
            if alpha is not None:
                mask = alpha > 127
            elif img.mode == "L":
                mask = np.asarray(img) > 127
            else:
                rgb = image_from_pil(img)
                mask = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) > 127
        except (OSError, ValueError) as exc:
            raise ImageLoadError(f"Cannot read '{path}' as a mask: {exc}.") from None
    if size is not None and tuple(size) != mask.shape:
        mask = masks.resize_mask(mask, size, "nearest")
    return mask


# ----------------------------------------------------------------------------------- sizes and hashes


def resize_image(arr: np.ndarray, size: tuple[int, int], *, resample: str = "lanczos") -> np.ndarray:
    """Resize a uint8 ``HxW``/``HxWxC`` image to ``size = (h, w)``; same size returns ``arr`` itself.

    ``"lanczos"`` and ``"bilinear"`` use Pillow (antialiased when shrinking; a large Lanczos upscale takes
    :func:`~maskpix_desktop.core.resample.lanczos_upscale`, the same bits); ``"area"`` uses
    ``cv2.INTER_AREA``; ``"nearest"`` samples pixel centres (``cv2.INTER_NEAREST_EXACT``).
    """
    a = np.asarray(arr)
    if a.dtype != np.uint8:
        raise ValueError(f"resize_image expects uint8, got {a.dtype}")
    h, w = (int(v) for v in size)
    if h <= 0 or w <= 0:
        raise ValueError(f"size must be positive (h, w), got {tuple(size)}")
    if a.shape[:2] == (h, w):
        return arr
    if resample == "lanczos" and use_fast_lanczos(a.shape, (h, w)):  # Pillow's bits, less CPU
        out = lanczos_upscale(np.ascontiguousarray(a), (h, w))
    elif resample in _RESAMPLE:
        out = np.asarray(to_pil(a).resize((w, h), _RESAMPLE[resample]))
    elif resample in _CV2_RESAMPLE:
        out = cv2.resize(np.ascontiguousarray(a), (w, h), interpolation=_CV2_RESAMPLE[resample])
        if a.ndim == 3 and out.ndim == 2:  # cv2 drops a trailing channel axis of size 1
            out = out[..., None]
    else:
        raise ValueError(f"unknown resample {resample!r}; use 'lanczos', 'bilinear', 'area' or 'nearest'")
    return np.ascontiguousarray(out)


def working_size(h: int, w: int, long_side: int = 512, multiple: int = 8) -> tuple[int, int]:
    """Model working size ``(h, w)``: long side scaled down to at most ``long_side`` (never up), each side
    rounded to the nearest multiple of ``multiple`` but not above the original side or ``long_side``
    (a side smaller than ``multiple`` becomes ``multiple``).

    Example: ``working_size(3000, 4000) == (384, 512)``.
    """
    if h <= 0 or w <= 0 or long_side <= 0 or multiple <= 0:
        raise ValueError("working_size needs positive sizes")
    scale = min(1.0, long_side / max(h, w))

    def side(orig: int) -> int:
        cap = max(multiple, (min(orig, long_side) // multiple) * multiple)
        nearest = int(math.floor(orig * scale / multiple + 0.5)) * multiple
        return max(multiple, min(nearest, cap))

    return side(h), side(w)


def working_image(image: np.ndarray, long_side: int = 512, multiple: int = 8) -> np.ndarray:
    """``image`` area-resized to :func:`working_size` (itself when that is its size): what a model runs on."""
    h, w = image.shape[:2]
    return resize_image(image, working_size(h, w, long_side, multiple), resample="area")


def image_hash(arr: np.ndarray) -> str:
    """SHA-1 hex digest of shape, dtype and bytes (cache key for SAM embeddings)."""
    a = np.ascontiguousarray(arr)
    digest = hashlib.sha1()
    digest.update(repr(tuple(a.shape)).encode())
    digest.update(a.dtype.str.encode())
    digest.update(memoryview(a).cast("B"))
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------- saving


def _describe(exc: OSError) -> str:
    reasons = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is exceeded",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EROFS: "the disk is read-only",
        errno.ENOENT: "the folder does not exist",
        errno.ENOTDIR: "the folder does not exist",
        errno.ENAMETOOLONG: "the file name is too long",
    }
    return reasons.get(exc.errno or -1, exc.strerror or str(exc) or type(exc).__name__)


def _save_error(path: Path, exc: OSError) -> ImageSaveError:
    return ImageSaveError(f"Could not save '{path}': {_describe(exc)}.")


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(tmp: Path, path: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # atomic "create only if absent"
    except FileExistsError:
        raise
    except OSError:  # no hard links on this file system
        if path.exists():
            raise FileExistsError(errno.EEXIST, "File exists", str(path)) from None
        os.replace(tmp, path)
    else:
        os.unlink(tmp)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temp path ``.<name>.XXXX.tmp`` beside ``path``; on success it replaces ``path``.

    On any failure the temp file is removed and ``path`` is untouched. ``OSError`` (disk full,
    permission denied, read-only disk, missing folder) becomes :class:`ImageSaveError`; with
    ``overwrite=False`` an existing ``path`` raises ``FileExistsError``. The file gets the usual
    permissions (0666 minus the umask).
    """
    target = Path(path)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
    except OSError as exc:
        raise _save_error(target, exc) from None
    tmp = Path(name)
    try:
        yield tmp
        _fsync_file(tmp)
        with contextlib.suppress(OSError):
            os.chmod(tmp, 0o666 & ~_UMASK)
        _publish(tmp, target, overwrite)
    except FileExistsError:
        _remove_quietly(tmp)
        raise
    except OSError as exc:
        _remove_quietly(tmp)
        raise _save_error(target, exc) from None
    except BaseException:
        _remove_quietly(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, overwrite: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path, overwrite=overwrite) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def atomic_write_text(
    path: str | os.PathLike, text: str, *, encoding: str = "utf-8", overwrite: bool = True
) -> None:
    """Write ``text`` to ``path`` atomically, byte for byte (no newline translation)."""
    atomic_write_bytes(path, text.encode(encoding), overwrite=overwrite)


def save_image(
    path: str | os.PathLike,
    arr: np.ndarray,
    *,
    text: dict[str, str] | None = None,
    quality: int = 95,
    overwrite: bool = True,
) -> Path:
    """Save an image atomically; the format comes from the suffix (.png .jpg .jpeg .webp .tif .tiff).

    Accepts ``HxWx3`` uint8 RGB, ``HxWx4`` uint8 RGBA (not JPEG), ``HxW`` uint8 or bool (saved as L,
    bool as 0/255). ``text`` goes into PNG tEXt/iTXt chunks; for JPEG and WebP it is stored as
    ``json.dumps(text)`` in the EXIF UserComment, for TIFF in ImageDescription (read all back with
    :func:`read_image_text`). ``quality`` applies to JPEG and WebP (WebP is lossless at 100).
    ``overwrite=False`` raises ``FileExistsError`` if ``path`` exists. Returns ``Path(path)``.
    """
    target = Path(path)
    fmt = _FORMATS.get(target.suffix.lower())
    if fmt is None:
        raise ImageSaveError(
            f"Could not save '{target}': unsupported file type '{target.suffix}' "
            f"(use {', '.join(sorted(_FORMATS))})."
        )
    if not overwrite and target.exists():
        raise FileExistsError(errno.EEXIST, "File exists", str(target))
    img = to_pil(arr)
    if fmt == "JPEG" and img.mode == "RGBA":
        raise ImageSaveError(f"Could not save '{target}': JPEG cannot store transparency; use PNG.")
    params: dict = {}
    if fmt == "PNG":
        params["compress_level"] = 6
        if text:
            info = PngInfo()
            for key, value in text.items():
                info.add_text(str(key), str(value))  # tEXt when Latin-1, else iTXt (UTF-8)
            params["pnginfo"] = info
    elif fmt in ("JPEG", "WEBP"):
        params["quality"] = int(quality)
        if fmt == "JPEG" and quality >= 90:
            params["subsampling"] = 0
        if fmt == "WEBP" and quality >= 100:
            params["lossless"] = True
        if text:
            exif = Image.Exif()
            comment = json.dumps(text, ensure_ascii=True, sort_keys=True).encode("ascii")
            exif.get_ifd(_EXIF_IFD)[_USER_COMMENT] = _ASCII_PREFIX + comment
            params["exif"] = exif.tobytes()
    elif fmt == "TIFF":
        params["compression"] = "tiff_deflate"
        if text:
            params["tiffinfo"] = {_IMAGE_DESCRIPTION: json.dumps(text, ensure_ascii=True, sort_keys=True)}
    with atomic_path(target, overwrite=overwrite) as tmp:
        img.save(tmp, format=fmt, **params)
    return target


def read_image_text(path: str | os.PathLike) -> dict[str, str]:
    """Text stored by :func:`save_image`: PNG text chunks, or the JSON in EXIF UserComment (JPEG/WebP)
    or ImageDescription (TIFF). Returns ``{}`` when there is none."""
    with _opened(path, DEFAULT_MAX_PIXELS, orient=False) as img:
        if img.format == "PNG" or hasattr(img, "text"):
            return {str(k): str(v) for k, v in getattr(img, "text", {}).items()}
        raw: object = None
        if img.format == "TIFF":
            raw = getattr(img, "tag_v2", {}).get(_IMAGE_DESCRIPTION)
        else:
            raw = img.getexif().get_ifd(_EXIF_IFD).get(_USER_COMMENT)
    if isinstance(raw, bytes):
        raw = raw[len(_ASCII_PREFIX) :] if raw.startswith(_ASCII_PREFIX) else raw
        raw = raw.decode("utf-8", errors="replace")
    if not isinstance(raw, str):
        return {}
    try:
        data = json.loads(raw.strip("\x00"))
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def read_png_text(path: str | os.PathLike) -> dict[str, str]:
    """PNG tEXt/iTXt/zTXt chunks as a dict (any format :func:`save_image` writes text to also works)."""
    return read_image_text(path)
