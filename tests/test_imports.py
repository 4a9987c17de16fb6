"""Import hygiene: the engine and the CLI import fast (no torch, diffusers or Qt) and core/ never uses Qt."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import maskpix_desktop

PACKAGE = Path(maskpix_desktop.__file__).resolve().parent
CORE = PACKAGE / "core"

LIGHT_MODULES = [
    "maskpix_desktop",
    "maskpix_desktop.core.images",
    "maskpix_desktop.core.masks",
    "maskpix_desktop.core.blend",
    "maskpix_desktop.core.jobs",
    "maskpix_desktop.core.cases",
    "maskpix_desktop.core.export",
    "maskpix_desktop.core.metrics",
    "maskpix_desktop.core.models",
    "maskpix_desktop.core.service",
    "maskpix_desktop.core.errors",
    "maskpix_desktop.cli",
]
HEAVY = ("torch", "diffusers", "transformers", "open_clip", "segment_anything", "PySide6", "shiboken6")

_PROBE = """
import json, sys
for name in sys.argv[1:]:
    __import__(name)
from maskpix_desktop.cli import build_parser
build_parser()  # building the CLI must not pull anything heavy in either
heavy = %r
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
"""


def test_engine_and_cli_import_without_torch_diffusers_or_qt() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE % (HEAVY,), *LIGHT_MODULES],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded == [], f"importing the engine pulled in: {loaded}"


def _imported_roots(path: Path) -> set[str]:
    """Top-level names of every import in a file (module level or inside functions)."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in (
            "import_module",
            "__import__",
        ):
            first = node.args[0] if node.args else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                roots.add(first.value.split(".")[0])
    return roots


def test_core_never_imports_qt() -> None:
    files = sorted(CORE.rglob("*.py"))
    assert len(files) >= 10, files  # the scan really looked at the engine
    qt = {"PySide6", "shiboken6", "PyQt5", "PyQt6", "qtpy"}
    offenders = {str(f.relative_to(PACKAGE)): sorted(_imported_roots(f) & qt) for f in files}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_core_never_imports_the_ui() -> None:
    for f in sorted(CORE.rglob("*.py")):
        tree = ast.parse(f.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("maskpix_desktop.ui"), f
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("maskpix_desktop.ui") for a in node.names), f


def test_scanner_sees_nested_and_dynamic_imports(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import os.path\n"
        "def f():\n"
        "    from PySide6.QtCore import QObject\n"
        "    import importlib\n"
        "    importlib.import_module('shiboken6.x')\n"
        "    __import__('torch')\n"
        "from . import sibling\n",
        encoding="utf-8",
    )
    assert _imported_roots(probe) == {"os", "PySide6", "importlib", "shiboken6", "torch"}
