"""Hashes of local weights: sha256, cached fingerprints for result sidecars, full verification."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

from maskpix_desktop.core.models.local import is_present, local_path
from maskpix_desktop.core.models.registry import _FOLDER_KINDS, WEIGHT_SUFFIXES, get_spec


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


_FINGERPRINTS: dict[tuple[Any, ...], str] = {}
_FINGERPRINT_LOCK = threading.Lock()
_EDGE = 1 << 20


def file_fingerprint(path: str | Path) -> str:
    """Hash that identifies model weights for result sidecars; cached per (path, mtime, size).

    A file: its full sha256 (equals the registry hash). A folder: sha256 over each weight file's relative
    path, size, first and last MiB (cheap, and stable across copies of the same folder).
    """
    p = Path(path).expanduser().resolve()
    if p.is_file():
        st = p.stat()
        key: tuple[Any, ...] = ("file", str(p), st.st_mtime_ns, st.st_size)
        with _FINGERPRINT_LOCK:
            hit = _FINGERPRINTS.get(key)
        if hit is None:
            hit = sha256_file(p)
            with _FINGERPRINT_LOCK:
                _FINGERPRINTS[key] = hit
        return hit
    if not p.is_dir():
        raise FileNotFoundError(f"No model file or folder at {p}")
    files = sorted(
        (f for f in p.rglob("*") if f.is_file() and f.suffix in WEIGHT_SUFFIXES and ".cache" not in f.parts),
        key=lambda f: f.relative_to(p).as_posix(),
    )
    stats = [(f, f.stat()) for f in files]
    key = ("dir", str(p), tuple((f.relative_to(p).as_posix(), s.st_mtime_ns, s.st_size) for f, s in stats))
    with _FINGERPRINT_LOCK:
        hit = _FINGERPRINTS.get(key)
    if hit is not None:
        return hit
    h = hashlib.sha256()
    for f, st in stats:
        h.update(f.relative_to(p).as_posix().encode() + b"\0" + str(st.st_size).encode() + b"\0")
        with open(f, "rb") as fh:
            h.update(fh.read(_EDGE))
            if st.st_size > _EDGE:
                fh.seek(max(_EDGE, st.st_size - _EDGE))
                h.update(fh.read(_EDGE))
    hit = h.hexdigest()
    with _FINGERPRINT_LOCK:
        _FINGERPRINTS[key] = hit
    return hit


def verify(name: str, models_dir: str | Path | None = None) -> bool:
    """Full check of local weights against the registry sha256 (slow for big files); False if absent."""
    spec = get_spec(name)
    if not is_present(name, models_dir):
        return False
    path = local_path(name, models_dir)
    folder = spec.kind in _FOLDER_KINDS
    files = [(path / f.filename, f) for f in spec.files] if folder else [(path, spec.files[0])]
    return all(f.sha256 is None or sha256_file(p) == f.sha256 for p, f in files)
