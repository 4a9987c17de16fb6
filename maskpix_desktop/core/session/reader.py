"""Reading a ``.maskpix`` project's members under a budget, and typed checks of its JSON fields.

A project is a zip from anywhere, so reading it must not let the file decide how much memory or time it
costs. :class:`ProjectReader`:

* counts every byte it unpacks or decodes against one total budget (:func:`default_budget`: at most
  :data:`MAX_PROJECT_BYTES`, and never more than three quarters of the machine's memory), checked *before*
  the bytes are produced, so a small file that claims or inflates to gigabytes is refused, not loaded;
* caps every JSON member at :data:`MAX_JSON_BYTES`, from the zip's size field and again while reading;
* checks an array's shape and dtype from its header (PNG ``IHDR``, ``.npy`` header) against the reference
  in the JSON before decompressing it;
* decodes each member once: a later reference to the same member (and dtype) gets the same array, made
  read-only, so a file referring a thousand times to one large picture costs one picture.

:class:`Fields` reads typed values out of decoded JSON; each error names the project file, the member and
the field. No Qt here.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from maskpix_desktop.core import images
from maskpix_desktop.core.errors import ProjectError

__all__ = ["MAX_JSON_BYTES", "MAX_PROJECT_BYTES", "Fields", "ProjectReader", "default_budget", "BLOB_PATTERN"]

#: Ceiling on what one project may unpack to (member bytes plus decoded arrays). A 24-megapixel photo
#: with 20 results (baseline, blended and edit images, float masks) decodes to about 8 GB; 16 GiB leaves
#: room for twice that, while a crafted file is refused long before it can exhaust a workstation.
MAX_PROJECT_BYTES = 16 << 30
#: Share of the machine's physical memory a project may take (more cannot be held anyway).
MEMORY_SHARE = 0.75
#: Any one JSON member (manifest, prompts, parameters, a result's metadata); real ones are kilobytes.
MAX_JSON_BYTES = 16 << 20
#: Parsed JSON is charged at this many times its size: Python objects take up to ~30 bytes per byte of
#: text (``[]`` is 2 bytes of text, a 56-byte list), so nested JSON cannot slip past the budget.
JSON_EXPANSION = 32
#: Array element types a project may hold (images and masks: uint8, bool, float32; the rest is headroom).
ARRAY_DTYPES = frozenset(
    np.dtype(t).str
    for t in (np.bool_, np.uint8, np.uint16, np.int32, np.int64, np.float16, np.float32, np.float64)
)

_CHUNK = 1 << 20
BLOB_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+/[0-9a-f]{40}\.(png|npz)$")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 6: 4}  # colour type -> channels (grey, RGB, RGBA; 8-bit only)


def default_budget() -> int:
    """:data:`MAX_PROJECT_BYTES`, or less on a machine with less memory (three quarters of it)."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):  # Windows, or an unknown value
        return MAX_PROJECT_BYTES
    return min(MAX_PROJECT_BYTES, max(1 << 30, int(ram * MEMORY_SHARE)))


def describe_value(value: Any) -> str:
    """A short, safe description of a JSON value for a message (no deep repr of hostile nesting)."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class Fields:
    """Typed reads from one decoded JSON member; a wrong value raises a :class:`ProjectError` that names the
    file (``where``), the member (``member``: e.g. ``manifest.json``; empty for a plain JSON file) and the
    field."""

    def __init__(self, where: str, member: str = ""):
        self.where = where
        self.member = member

    def error(self, name: str, expected: str, value: Any) -> ProjectError:
        inside = f"{self.member}, " if self.member else ""
        found = describe_value(value)
        return ProjectError(
            f"'{self.where}' is damaged: {inside}field '{name}' must be {expected}, not {found}."
        )

    def obj(self, value: Any, name: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(name, "an object", value)
        return value

    def list(self, value: Any, name: str, *, max_len: int | None = None) -> list[Any]:
        if not isinstance(value, list):
            raise self.error(name, "a list", value)
        if max_len is not None and len(value) > max_len:
            raise self.error(name, f"a list of at most {max_len:,} entries", f"{len(value):,} entries")
        return value

    def str(self, value: Any, name: str, *, optional: bool = False) -> str | None:
        if value is None and optional:
            return None
        if not isinstance(value, str):
            raise self.error(name, "text", value)
        return value

    def int(self, value: Any, name: str, *, lo: int | None = None, hi: int | None = None) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.error(name, "an integer", value)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            span = f"between {lo} and {hi}" if lo is not None and hi is not None else f"at least {lo}"
            raise self.error(name, f"an integer {span}", value)
        return value

    def number(self, value: Any, name: str, *, allow_nonfinite: bool = False) -> float:
        """A finite JSON number (with ``allow_nonfinite``: also the strings "inf", "-inf", "nan")."""
        if allow_nonfinite and isinstance(value, str) and value in ("inf", "-inf", "nan"):
            return float(value)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise self.error(name, "a number", value)
        try:
            number = float(value)
        except OverflowError:  # an integer with hundreds of digits
            raise self.error(name, "a finite number", value) from None
        if not math.isfinite(number) and not allow_nonfinite:
            raise self.error(name, "a finite number", value)
        return number

    def bool(self, value: Any, name: str) -> bool:
        if not isinstance(value, bool):
            raise self.error(name, "true or false", value)
        return value


class ProjectReader:
    """Members of one open project zip (and, for an autosave, the array files beside it), read under a budget.

    ``where`` names the project in every message; ``base`` is the folder blob references are relative to.
    """

    def __init__(self, zf: zipfile.ZipFile, where: str, base: Path | None = None, budget: int | None = None):
        self.zf = zf
        self.where = where
        self.base = base if base is not None else Path(where).parent
        self.budget = default_budget() if budget is None else int(budget)
        self.used = 0
        self._arrays: dict[tuple[str, str, str, tuple[int, ...], float], np.ndarray] = {}
        self._json: dict[str, Any] = {}
        seen: set[str] = set()
        for name in zf.namelist():  # zip allows two members of one name; which one is "the" manifest?
            if name in seen:
                raise ProjectError(f"'{where}' is damaged: it holds two members named '{name}'.")
            seen.add(name)

    # ------------------------------------------------------------------ budget
    def charge(self, nbytes: int, what: str) -> None:
        """Count ``nbytes`` about to be unpacked for ``what``; refuse when the total would pass the budget."""
        if nbytes < 0 or self.used + nbytes > self.budget:
            raise ProjectError(
                f"'{self.where}' is too large to open: '{what}' would take its contents past "
                f"{self.budget / (1 << 30):.1f} GiB of memory (already {self.used / (1 << 20):,.0f} MiB)."
            )
        self.used += nbytes

    # ------------------------------------------------------------------ members
    def _info(self, name: str) -> zipfile.ZipInfo:
        try:
            return self.zf.getinfo(name)
        except KeyError:
            raise ProjectError(f"'{self.where}' is incomplete: '{name}' is missing from it.") from None

    def member(self, name: str, *, cap: int | None = None) -> bytes:
        """The bytes of member ``name`` (at most ``cap``), charged to the budget before they are unpacked."""
        info = self._info(name)
        if cap is not None and info.file_size > cap:
            raise ProjectError(
                f"'{self.where}' is damaged: '{name}' is {info.file_size:,} bytes (at most {cap:,} expected)."
            )
        self.charge(info.file_size, name)
        limit = info.file_size if cap is None else min(info.file_size, cap)
        try:
            with self.zf.open(info) as fh:
                data = _read_capped(fh, limit)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError, NotImplementedError) as exc:
            raise ProjectError(f"'{self.where}' is damaged: '{name}' cannot be read ({exc}).") from None
        if data is None:
            raise ProjectError(f"'{self.where}' is damaged: '{name}' unpacks to more than it says.")
        return data

    def json(self, name: str) -> Any:
        """Member ``name`` parsed as JSON (at most :data:`MAX_JSON_BYTES`; parsed once: a later call for the
        same member returns the same object, which callers must not change)."""
        if name in self._json:
            return self._json[name]
        raw = self.member(name, cap=MAX_JSON_BYTES)
        self.charge(len(raw) * (JSON_EXPANSION - 1), name)
        try:
            self._json[name] = json.loads(raw.decode("utf-8"))
            return self._json[name]
        except (UnicodeDecodeError, ValueError) as exc:
            raise ProjectError(f"'{self.where}' is damaged: '{name}' is not valid JSON ({exc}).") from None
        except RecursionError:
            raise ProjectError(f"'{self.where}' is damaged: '{name}' is nested too deeply.") from None

    def blob(self, rel: str) -> bytes:
        """An array file beside the project (an autosave's ``session.blobs/<hash>.png``)."""
        if not BLOB_PATTERN.match(rel) or rel.startswith("."):
            raise ProjectError(f"'{self.where}' is damaged: bad image reference {describe_value(rel)}.")
        path = self.base / rel
        try:
            size = path.stat().st_size
            self.charge(size, rel)
            with open(path, "rb") as fh:
                data = _read_capped(fh, size)
        except OSError:
            raise ProjectError(
                f"'{self.where}' is incomplete: '{rel}' beside it is missing or unreadable."
            ) from None
        if data is None:
            raise ProjectError(f"'{self.where}' is damaged: '{rel}' changed while it was read.")
        return data

    # ------------------------------------------------------------------ arrays
    def array(self, ref: Any, field: Fields, name: str) -> np.ndarray | None:
        """The array a JSON reference (``{"file", "shape", "dtype", "scale"?, "blob"?}``) points at.

        ``field``/``name`` say where the reference sits (for messages). The header is checked against the
        reference before anything is decoded; a member already decoded with the same dtype is reused (the
        shared array is made read-only).
        """
        if ref is None:
            return None
        ref = field.obj(ref, name)
        file = field.str(ref.get("file"), f"{name}.file")
        assert file is not None
        shape = tuple(
            field.int(v, f"{name}.shape", lo=0)
            for v in field.list(ref.get("shape"), f"{name}.shape", max_len=4)
        )
        dtype_str = ref.get("dtype")
        if not isinstance(dtype_str, str) or dtype_str not in ARRAY_DTYPES:
            raise field.error(f"{name}.dtype", "a plain number type such as '|u1' or '<f4'", dtype_str)
        dtype = np.dtype(dtype_str)
        scale = ref.get("scale") or 0
        scale = field.number(scale, f"{name}.scale") if scale else 0.0
        blob = ref.get("blob")
        if blob is not None:
            field.str(blob, f"{name}.blob")
        source = f"blob:{blob}" if blob is not None else f"zip:{file}"
        key = (source, file, dtype.str, shape, scale)
        hit = self._arrays.get(key)
        if hit is not None:
            hit.flags.writeable = False  # shared between several references from now on
            return hit
        data = self.blob(blob) if blob is not None else self.member(file)
        if file.endswith((".npz", ".npy")):
            arr = self._decode_npy(data, file, shape, dtype)
        elif file.endswith(".png"):
            arr = self._decode_png(data, file, shape, dtype, scale)
        else:
            raise field.error(f"{name}.file", "a .png, .npz or .npy name", file)
        self._arrays[key] = arr
        return arr

    def _mismatch(self, file: str, found: str, dtype: np.dtype, shape: tuple[int, ...]) -> ProjectError:
        return ProjectError(f"'{self.where}' is damaged: '{file}' holds {found}, expected {dtype} {shape}.")

    def _decode_png(
        self, data: bytes, file: str, shape: tuple[int, ...], dtype: np.dtype, scale: float
    ) -> np.ndarray:
        w, h, channels = self._png_header(data, file)
        found = (h, w) if channels == 1 else (h, w, channels)
        grey_ok = channels == 1 and (dtype == np.bool_ or (dtype.kind == "f" and scale > 0))
        if found != shape or not (dtype == np.uint8 or grey_ok):
            raise self._mismatch(file, f"an 8-bit PNG of {w}x{h}x{channels}", dtype, shape)
        if w * h > images.DEFAULT_MAX_PIXELS:
            raise ProjectError(f"'{self.where}' holds an image too large to open ({w}x{h} in '{file}').")
        self.charge(w * h * channels, file)
        if dtype != np.uint8:
            self.charge(w * h * dtype.itemsize, file)
        from PIL import Image

        try:
            with Image.open(io.BytesIO(data)) as img:
                if img.format != "PNG" or img.mode not in ("L", "RGB", "RGBA") or img.size != (w, h):
                    raise ProjectError(f"'{self.where}' is damaged: '{file}' is not an 8-bit PNG.")
                img.load()
                pixels = np.array(img)
        except ProjectError:
            raise
        except MemoryError:
            raise ProjectError(f"Not enough memory to open '{self.where}'.") from None
        except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, ... on damaged data
            raise ProjectError(f"'{self.where}' is damaged: '{file}' cannot be decoded ({exc}).") from None
        if pixels.shape != shape:
            raise self._mismatch(file, f"uint8 {pixels.shape}", dtype, shape)
        if dtype == np.bool_:
            return np.ascontiguousarray(pixels > 127)
        if scale:
            return np.ascontiguousarray(pixels.astype(dtype) / float(scale))
        return np.ascontiguousarray(pixels)

    def _png_header(self, data: bytes, file: str) -> tuple[int, int, int]:
        """(width, height, channels) from the IHDR chunk, before any pixel is decompressed."""
        if len(data) < 33 or data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR":
            raise ProjectError(f"'{self.where}' is damaged: '{file}' is not a PNG.")
        w, h, depth, colour = struct.unpack(">IIBB", data[16:26])
        if depth != 8 or colour not in _PNG_CHANNELS:
            raise ProjectError(f"'{self.where}' is damaged: '{file}' is not an 8-bit grey, RGB or RGBA PNG.")
        return w, h, _PNG_CHANNELS[colour]

    def _decode_npy(self, data: bytes, file: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        try:
            if file.endswith(".npz"):
                with zipfile.ZipFile(io.BytesIO(data)) as inner:
                    info = inner.getinfo("array.npy")
                    with inner.open(info) as fh:
                        return self._read_npy(fh, info.file_size, file, shape, dtype)
            return self._read_npy(io.BytesIO(data), len(data), file, shape, dtype)
        except ProjectError:
            raise
        except MemoryError:
            raise ProjectError(f"Not enough memory to open '{self.where}'.") from None
        except (
            KeyError,
            ValueError,
            OSError,
            EOFError,
            zipfile.BadZipFile,
            RuntimeError,
            NotImplementedError,
        ) as exc:
            raise ProjectError(f"'{self.where}' is damaged: '{file}' cannot be read ({exc}).") from None

    def _read_npy(self, fh: Any, size: int, file: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        fmt = np.lib.format
        version = fmt.read_magic(fh)
        if version == (1, 0):
            found_shape, fortran, found_dtype = fmt.read_array_header_1_0(fh)
        elif version == (2, 0):
            found_shape, fortran, found_dtype = fmt.read_array_header_2_0(fh)
        else:
            raise ValueError(f"unsupported .npy version {version}")
        if tuple(found_shape) != shape or found_dtype != dtype:
            raise self._mismatch(file, f"{found_dtype} {tuple(found_shape)}", dtype, shape)
        nbytes = math.prod(shape) * dtype.itemsize
        if size > nbytes + (1 << 16):
            raise ProjectError(f"'{self.where}' is damaged: '{file}' is larger than its header says.")
        self.charge(nbytes, file)
        arr = np.empty(shape[::-1] if fortran else shape, dtype)  # Fortran order: read the transpose
        view = memoryview(arr.reshape(-1).view(np.uint8))
        got = 0
        while got < nbytes:
            n = fh.readinto(view[got : got + _CHUNK])
            if not n:
                raise ProjectError(f"'{self.where}' is damaged: '{file}' is truncated.")
            got += n
        return np.ascontiguousarray(arr.T) if fortran else arr


def _read_capped(fh: Any, limit: int) -> bytes | None:
    """At most ``limit`` bytes of ``fh`` in chunks; None when the stream holds more than that."""
    parts = []
    left = limit
    while left > 0:
        chunk = fh.read(min(_CHUNK, left))
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    if fh.read(1):
        return None
    return b"".join(parts)
