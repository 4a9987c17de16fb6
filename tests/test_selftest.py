"""``maskpix --self-test`` from source: every check passes, and a failing check gives a non-zero exit."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap

from maskpix_desktop import selftest


def _env() -> dict[str, str]:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", HF_HUB_OFFLINE="1")
    env.pop("MASKPIX_MODELS", None)
    return env


def test_self_test_passes_from_source(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "maskpix_desktop", "--self-test"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,  # not the repository: resources are found beside the package, not via the cwd
        env=_env(),
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for name in selftest.CHECK_NAMES:
        assert f"PASS  {name} " in out, out
    assert "FAIL" not in out and "SKIP" not in out
    assert f"self-test passed: {len(selftest.CHECK_NAMES)}/{len(selftest.CHECK_NAMES)}" in out
    labels = ("torch", "diffusers", "transformers", "PySide6", "open_clip", "numpy", "device", "models dir")
    for label in labels:
        assert f"\n  {label} " in out, label


def test_failing_check_gives_nonzero_exit_and_the_rest_still_run() -> None:
    def broken(ctx: selftest._Context) -> str:
        raise RuntimeError("deliberately broken")

    def needs_missing(ctx: selftest._Context) -> str:
        return ctx.need("service")

    out = io.StringIO()
    code = selftest.run_self_test(
        verbose=False,
        out=out,
        checks=[("first", lambda ctx: "fine"), ("broken", broken), ("dependent", needs_missing)],
    )
    text = out.getvalue()
    assert code == 1
    assert "PASS  first " in text
    assert "FAIL  broken       RuntimeError: deliberately broken" in text
    assert "SKIP  dependent" in text
    assert "self-test FAILED: 1/3 checks passed" in text


def test_environment_is_restored(monkeypatch) -> None:
    monkeypatch.delenv("MASKPIX_MODELS", raising=False)

    def sets_env(ctx: selftest._Context) -> str:
        os.environ["MASKPIX_MODELS"] = str(ctx.tmp)
        return "set"

    assert selftest.run_self_test(verbose=False, out=io.StringIO(), checks=[("env", sets_env)]) == 0
    assert "MASKPIX_MODELS" not in os.environ


_BROKEN_SAM = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from maskpix_desktop import selftest
    from maskpix_desktop.testing import tiny_models

    real = tiny_models.make_tiny_models

    def corrupt_sam(folder, seed=0):
        root = real(folder, seed=seed)
        Path(root, "tiny-sam.pth").write_bytes(b"not a checkpoint")
        return root

    tiny_models.make_tiny_models = corrupt_sam
    wanted = {"tiny-models", "models-dir", "sam"}
    sys.exit(selftest.run_self_test(checks=[c for c in selftest.CHECKS if c[0] in wanted]))
    """
)


def test_broken_model_fails_through_the_real_code_path(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _BROKEN_SAM],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=_env(),
        check=False,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "PASS  models-dir " in proc.stdout
    assert "FAIL  sam " in proc.stdout
    assert "tiny-sam.pth" in proc.stdout  # the error names the file
    assert "self-test FAILED: 2/3" in proc.stdout


def test_cli_parser_knows_self_test() -> None:
    from maskpix_desktop.cli import build_parser

    args = build_parser().parse_args(["self-test", "--quiet"])
    assert args.command == "self-test" and args.quiet
