"""How a project stores arrays: exact 8-bit PNG or ``.npz``, each distinct array once, cached per session."""

from __future__ import annotations

import hashlib
import io
import weakref
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from maskpix_desktop.core import images

__all__ = ["ArrayWriter", "SaveCache"]


class SaveCache:
    """Encoded arrays kept between saves of the same session (autosave): an unchanged array is not
    encoded again, and a read-only one (the canvas image, frozen results) is not even hashed again.

    A writable array is always hashed (it may have changed in place since the last save).
    """

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self._keys: dict[int, tuple[weakref.ref, str]] = {}  # weak: a result moved to disk frees its arrays
        #: blob files this cache wrote: name -> (size, mtime_ns, sha256 of the bytes), to verify before reuse
        self.files: dict[str, tuple[int, int, str]] = {}

    def __len__(self) -> int:
        return len(self.blobs)

    def key(self, a: np.ndarray) -> str:
        hit = self._keys.get(id(a))
        if hit is not None and hit[0]() is a:
            return hit[1]
        k = images.image_hash(a)
        if not a.flags.writeable:
            self._keys[id(a)] = (weakref.ref(a), k)
        return k

    def prune(self, used: set[str]) -> None:
        """Forget what the last save did not use."""
        self.blobs = {k: v for k, v in self.blobs.items() if k in used}
        self._keys = {i: (r, k) for i, (r, k) in self._keys.items() if k in used and r() is not None}
        self.files = {n: v for n, v in self.files.items() if n.split(".")[0] in used}

    def blob_intact(self, path: Path) -> bool:
        """True when ``path`` is a blob this cache wrote and it still holds exactly those bytes (its size
        and time unchanged, or else its content hash). An unknown or damaged blob is written again."""
        known = self.files.get(path.name)
        if known is None:
            return False
        try:
            st = path.stat()
            if st.st_size != known[0]:
                return False
            if st.st_mtime_ns == known[1]:
                return True
            same = hashlib.sha256(path.read_bytes()).hexdigest() == known[2]
        except OSError:
            return False
        if same:
            self.files[path.name] = (known[0], st.st_mtime_ns, known[2])
        return same

    def wrote_blob(self, path: Path, data: bytes) -> None:
        try:
            st = path.stat()
        except OSError:
            return
        self.files[path.name] = (st.st_size, st.st_mtime_ns, hashlib.sha256(data).hexdigest())


class ArrayWriter:
    """Puts arrays into the zip, each distinct array once; returns the reference stored in the JSON."""

    def __init__(
        self, zf: zipfile.ZipFile, compress_level: int, cache: SaveCache | None, blob_dir: Path | None
    ):
        self.zf = zf
        self.level = compress_level
        self.cache = cache
        self.blob_dir = blob_dir
        self.used: set[str] = set()
        self._written: dict[str, dict[str, Any]] = {}

    def put(self, name: str, arr: np.ndarray | None) -> dict[str, Any] | None:
        """Store ``arr`` as ``name`` + ``.png`` (8-bit exact) or ``.npz`` (anything else); None stays None."""
        if arr is None:
            return None
        a = arr if isinstance(arr, np.ndarray) else np.asarray(arr)
        key = self.cache.key(a) if self.cache is not None else images.image_hash(a)
        if key in self._written:
            return dict(self._written[key])
        self.used.add(key)
        ref: dict[str, Any] = {"dtype": a.dtype.str, "shape": list(a.shape)}
        pixels = _png_pixels(a)
        ext = ".png" if pixels is not None else ".npz"
        ref["file"] = name + ext
        if pixels is not None and pixels[1]:
            ref["scale"] = pixels[1]
        if self.blob_dir is not None:
            # Autosave: each array is a file of its own beside the project, written once; the zip refers
            # to it, so an autosave after a brush stroke writes the mask and a few kilobytes of JSON.
            blob = self.blob_dir / f"{key}{ext}"
            ref["blob"] = f"{self.blob_dir.name}/{blob.name}"
            if self.cache is None or not self.cache.blob_intact(blob):  # never reuse a damaged file
                data = self._encode(a, pixels)
                images.atomic_write_bytes(blob, data)
                if self.cache is not None:
                    self.cache.wrote_blob(blob, data)
        else:
            data = self.cache.blobs.get(key) if self.cache is not None else None
            if data is None:
                data = self._encode(a, pixels)
            if self.cache is not None:
                self.cache.blobs[key] = data
            self.zf.writestr(ref["file"], data, compress_type=zipfile.ZIP_STORED)  # already compressed
        self._written[key] = ref
        return dict(ref)

    def _encode(self, a: np.ndarray, pixels: tuple[np.ndarray, int] | None) -> bytes:
        buf = io.BytesIO()
        if pixels is not None:
            images.to_pil(pixels[0]).save(buf, format="PNG", compress_level=self.level)
        else:
            np.savez_compressed(buf, array=np.ascontiguousarray(a))
        return buf.getvalue()


def _png_pixels(a: np.ndarray) -> tuple[np.ndarray, int] | None:
    """``(uint8 pixels, scale)`` when ``a`` round-trips exactly through an 8-bit PNG, else None."""
    if a.size == 0:
        return None
    if a.dtype == np.uint8 and (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))):
        return a, 0
    if a.dtype == np.bool_ and a.ndim == 2:
        return a.astype(np.uint8) * 255, 0
    if a.dtype in (np.float32, np.float64) and a.ndim == 2:
        with np.errstate(invalid="ignore"):
            if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
                return None
            u = np.rint(a * 255.0).astype(np.uint8)
        back = u.astype(a.dtype) / 255.0
        if back.dtype == a.dtype and np.array_equal(back, a):
            return u, 255
    return None
