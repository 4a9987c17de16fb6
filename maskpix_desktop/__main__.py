"""``maskpix``: start the desktop app (``python -m maskpix_desktop``).

``maskpix --self-test [--quiet]`` runs :mod:`maskpix_desktop.selftest` instead, before anything imports Qt
widgets (it also works from the frozen bundle, see ``build.spec``).
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--self-test" in argv:
        from maskpix_desktop.selftest import main as self_test

        return self_test([a for a in argv if a != "--self-test"])
    try:
        from maskpix_desktop.ui.app import run_app
    except ImportError as exc:  # a broken install (e.g. PySide6 missing): say what is missing, fail
        print(
            f"MaskPix cannot start its window: {exc}. Reinstall MaskPix (pip install maskpix-desktop) "
            "or run 'maskpix --self-test' to see which part is missing; maskpix-cli works without it.",
            file=sys.stderr,
        )
        return 1
    return run_app(argv)


if __name__ == "__main__":
    sys.exit(main())
