"""``maskpix`` (``maskpix_desktop.__main__``): a window that cannot be imported is an error, named."""

from __future__ import annotations

import sys

import pytest

from maskpix_desktop.__main__ import main


def test_missing_window_module_fails_and_names_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "maskpix_desktop.ui.app", None)  # import now raises ImportError
    assert main([]) == 1
    err = capsys.readouterr().err
    assert "maskpix_desktop.ui.app" in err and "cannot start" in err
    assert "next release" not in err
