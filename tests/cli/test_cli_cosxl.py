"""``maskpix-cli models convert-cosxl`` (issue 17): the CosXL-Edit file becomes a folder, never over one."""

from __future__ import annotations

import json
from pathlib import Path

from maskpix_desktop.cli import main
from maskpix_desktop.cli.exit_codes import EXIT_ERROR, EXIT_OK
from maskpix_desktop.testing.ldm_checkpoint import save_tiny_cosxl


def test_convert_cosxl_writes_a_folder_once(tmp_path: Path, capsys) -> None:
    file, config = save_tiny_cosxl(tmp_path / "src", seed=0)
    out = tmp_path / "cosxl-edit"
    args = ["models", "convert-cosxl", str(file), "--config", str(config), "--out", str(out)]
    assert main(args) == EXIT_OK
    assert f"--ip2p {out}" in capsys.readouterr().out
    assert json.loads((out / "model_index.json").read_text(encoding="utf-8"))["is_cosxl_edit"] is True
    assert main(args) == EXIT_ERROR  # never over an existing folder
    assert "exists" in capsys.readouterr().err
