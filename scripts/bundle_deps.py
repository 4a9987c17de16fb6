"""The lab bundle's dependencies: its lock file and the files ``build.spec`` collects for them.

* :func:`runtime_closure`: every installed distribution the app needs at run time (``pyproject.toml``'s
  dependencies and, recursively, theirs).
* :func:`data_files`: the package data one distribution ships (what PyInstaller's import analysis does not
  see: JSON, vocabularies, configs), read from its ``RECORD``.
* :func:`lock_from_report`: ``requirements/bundle.lock`` from a ``pip install --report`` of the venv that
  was built and self-tested; :func:`read_lock` parses it back.

CLI (used by ``scripts/build_bundle.sh``)::

    python scripts/bundle_deps.py lock REPORT.json > requirements/bundle.lock.new
    python scripts/bundle_deps.py platform        # this machine's tag, as the lock header records it
    python scripts/bundle_deps.py check-lock LOCK  # the lock pins every direct dependency within pyproject

Standard library plus ``packaging`` (installed with every runtime closure): no PyInstaller needed.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import platform
import re
import sys
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

try:  # in every runtime closure; only `bundle_deps.py platform` runs on a bare Python without them
    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
except ModuleNotFoundError:  # pragma: no cover
    pass

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
LOCK = ROOT / "requirements" / "bundle.lock"
BUNDLE_EXTRA = "bundle"

#: Suffixes that are not package data: code (collected by import analysis), native libraries (collected as
#: binaries by PyInstaller and its hooks), and build-time only files (headers, sources, static libraries).
NOT_DATA_SUFFIXES = frozenset(
    ".py .pyc .pyo .pyi .so .pyd .dll .dylib .exe .a .lib .h .hh .hpp .hxx .cuh .inl .c .cc .cpp .cxx .cu "
    ".cmake .typed".split()
)

#: Distributions whose package data ``build.spec`` leaves to their PyInstaller hooks, with the reason.
HOOK_COLLECTED = {
    "pyside6": "Qt: the PySide6 hooks collect the plugins and translations of the Qt modules used",
    "pyside6-essentials": "Qt: as pyside6",
    "pyside6-addons": "Qt: as pyside6 (QtWebEngine resources etc., unused)",
    "shiboken6": "Qt: as pyside6",
    "torch": "hook-torch collects its data without the C++ headers and CMake files",
    "triton": "excluded from the bundle (torch.compile only)",
}


def canonicalize_name(name: str) -> str:
    """PEP 503 normal form: ``PySide6_Essentials`` -> ``pyside6-essentials``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def platform_tag() -> str:
    """``linux-x86_64-cp311``: what a lock's hashes are valid for (pip picks one file per machine)."""
    return f"{sys.platform}-{platform.machine().lower()}-cp{sys.version_info[0]}{sys.version_info[1]}"


def direct_requirements(pyproject: Path = PYPROJECT, extras: Iterable[str] = ()) -> list[Requirement]:
    """``[project] dependencies`` (plus those of ``extras``) whose markers hold on this interpreter."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    lines = list(project.get("dependencies", []))
    for extra in extras:
        lines += project.get("optional-dependencies", {}).get(extra, [])
    reqs = [Requirement(line) for line in lines]
    return [r for r in reqs if r.marker is None or r.marker.evaluate()]


def _applies(req: Requirement, extras: set[str]) -> bool:
    if req.marker is None:
        return True
    env = default_environment()
    return any(req.marker.evaluate({**env, "extra": extra}) for extra in extras | {""})


def runtime_closure(roots: Iterable[Requirement]) -> dict[str, md.Distribution]:
    """Installed distributions reachable from ``roots`` (markers and requested extras followed).

    Raises ``LookupError`` naming the requirer when a needed distribution is not installed.
    """
    found: dict[str, md.Distribution] = {}
    extras_seen: dict[str, set[str]] = {}
    todo: list[tuple[Requirement, str]] = [(req, "pyproject.toml") for req in roots]
    while todo:
        req, by = todo.pop()
        name = canonicalize_name(req.name)
        wanted = set(req.extras)
        if name in found and wanted <= extras_seen[name]:
            continue
        try:
            dist = found.get(name) or md.distribution(name)
        except md.PackageNotFoundError:
            raise LookupError(f"{req.name} (required by {by}) is not installed") from None
        found[name] = dist
        extras_seen[name] = extras_seen.get(name, set()) | wanted
        for line in dist.requires or []:
            sub = Requirement(line)
            if _applies(sub, extras_seen[name]):
                todo.append((sub, dist.metadata["Name"]))
    return found


def data_files(dist: md.Distribution) -> list[tuple[str, str]]:
    """``(source file, destination folder)`` pairs for the package data of ``dist``, as in site-packages.

    Files outside site-packages (scripts), the ``.dist-info`` folder (metadata: ``copy_metadata``) and
    :data:`NOT_DATA_SUFFIXES` are left out; so are ``__pycache__`` folders.
    """
    pairs = []
    for rel in dist.files or []:
        parts = PurePosixPath(str(rel)).parts
        if not parts or parts[0] == ".." or parts[0].endswith((".dist-info", ".egg-info", ".data")):
            continue
        if "__pycache__" in parts or len(parts) < 2:  # top-level files are modules or .pth files
            continue
        filename = parts[-1].lower()
        if PurePosixPath(filename).suffix in NOT_DATA_SUFFIXES or ".so." in filename:  # libfoo.so.1
            continue
        src = Path(dist.locate_file(rel))
        if src.is_file():
            pairs.append((str(src), str(PurePosixPath(*parts[:-1]))))
    return pairs


def bundle_datas(closure: dict[str, md.Distribution]) -> tuple[list[tuple[str, str]], list[str]]:
    """Package data of every distribution in ``closure`` but :data:`HOOK_COLLECTED`; and their names."""
    datas: list[tuple[str, str]] = []
    names = []
    for name in sorted(closure):
        if name in HOOK_COLLECTED or name.startswith("nvidia-"):  # CUDA: libraries via hook-torch
            continue
        found = data_files(closure[name])
        if found:
            datas += found
            names.append(name)
    return datas, names


# ----------------------------------------------------------------------------------------- the lock
def lock_from_report(report: dict, header: str = "") -> str:
    """Lock text from a ``pip install --report``: one ``name==version`` with its sha256 per distribution.

    The project itself (a local folder, not an archive) is left out. Raises ``ValueError`` naming a
    distribution the index gave no hash for.
    """
    entries = []
    for item in report["install"]:
        meta, info = item["metadata"], item["download_info"]
        if "dir_info" in info:  # the project itself (pip install -e .)
            continue
        hashes = info.get("archive_info", {}).get("hashes") or {}
        if "sha256" not in hashes:
            raise ValueError(f"{meta['name']} {meta['version']}: no sha256 from {info.get('url')}")
        entries.append((canonicalize_name(meta["name"]), meta["version"], hashes["sha256"]))
    body = "".join(f"{n}=={v} \\\n    --hash=sha256:{h}\n" for n, v, h in sorted(entries))
    return header + body


def read_lock(path: Path) -> dict[str, tuple[str, list[str]]]:
    """``{name: (version, [sha256, ...])}``; raises ``ValueError`` naming the file and line of a bad pin."""
    pins: dict[str, tuple[str, list[str]]] = {}
    lines = path.read_text(encoding="utf-8").replace("\\\n", " ").splitlines()
    for n, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        spec, *opts = line.split()
        if "==" not in spec or not opts:
            raise ValueError(f"{path}: line {n}: '{spec}' is not 'name==version --hash=sha256:...'")
        name, version = spec.split("==", 1)
        hashes = [opt.split(":", 1)[1] for opt in opts if opt.startswith("--hash")]
        pins[canonicalize_name(name)] = (version, hashes)
    return pins


def lock_problems(lock: Path, pyproject: Path = PYPROJECT) -> list[str]:
    """Why ``lock`` cannot build ``pyproject``'s bundle (a direct dependency unpinned or out of range)."""
    pins = read_lock(lock)
    problems = [f"{name}=={ver} has no sha256 hash" for name, (ver, hashes) in pins.items() if not hashes]
    for req in direct_requirements(pyproject, extras=[BUNDLE_EXTRA]):
        name = canonicalize_name(req.name)
        if name not in pins:
            problems.append(f"{req.name} (pyproject.toml) is not in the lock")
        elif not req.specifier.contains(pins[name][0], prereleases=True):
            problems.append(f"{req.name}{req.specifier} (pyproject.toml) but the lock pins {pins[name][0]}")
    return problems


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    lock = sub.add_parser("lock", help="lock text from a pip install --report")
    lock.add_argument("report", type=Path)
    sub.add_parser("platform", help="this machine's platform tag")
    check = sub.add_parser("check-lock", help="the lock pins every direct dependency within pyproject")
    check.add_argument("lock", type=Path, nargs="?", default=LOCK)
    args = parser.parse_args(argv)
    if args.cmd == "platform":
        print(platform_tag())
    elif args.cmd == "lock":
        header = (
            "# The lab bundle's runtime closure plus PyInstaller: exactly the files the bundle was\n"
            "# built from and passed its frozen self-test with. Written by\n"
            "# `scripts/build_bundle.sh --refresh-lock` from pyproject.toml's `.[bundle]`; do not edit\n"
            "# by hand (see README, Lab machines).\n"
            f"# platform: {platform_tag()}\n"
        )
        sys.stdout.write(lock_from_report(json.loads(args.report.read_text(encoding="utf-8")), header))
    else:
        problems = lock_problems(args.lock)
        for problem in problems:
            print(f"{args.lock}: {problem}", file=sys.stderr)
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(_main())
