"""torch.compile of the editor's denoiser (issue 17): wired from the choice to the pipeline with a
persistent inductor cache; slow: a second process reuses the cache (no new compile) and the compiled
edit matches the eager one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from maskpix_desktop import paths
from maskpix_desktop.core import editor_compile, editor_loader
from maskpix_desktop.core.editor_compile import INDUCTOR_CACHE_ENV
from maskpix_desktop.core.service import ModelChoice


def test_load_editor_compiles_the_unet_into_the_persistent_cache(
    tiny_ip2p_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "compile-cache"
    monkeypatch.setenv(paths.ENV_COMPILE_CACHE, str(cache))
    monkeypatch.delenv(INDUCTOR_CACHE_ENV, raising=False)
    compiled: list[torch.nn.Module] = []

    def fake_compile(module: torch.nn.Module) -> torch.nn.Module:
        compiled.append(module)
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    editor = editor_loader.load_editor(str(tiny_ip2p_dir), device="cpu", compile_denoiser=True)
    assert compiled == [editor.pipe.unet]
    assert os.environ[INDUCTOR_CACHE_ENV] == str(cache) and cache.is_dir()
    assert editor.memory.endswith(f"+ torch.compile unet (cache {cache})")
    plain = editor_loader.load_editor(str(tiny_ip2p_dir), device="cpu")
    assert "torch.compile" not in plain.memory and len(compiled) == 1


def test_compile_names_the_transformer_of_flow_families(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    class Pipe:
        transformer = torch.nn.Linear(2, 2)

    pipe, seen = Pipe(), []
    monkeypatch.setattr(torch, "compile", lambda m: (seen.append(m), "COMPILED")[1])
    done = editor_compile.compile_denoiser(pipe, "kontext", tmp_path / "c")
    assert pipe.transformer == "COMPILED" and isinstance(seen[0], torch.nn.Linear)
    assert done == f"torch.compile transformer (cache {tmp_path / 'c'})"


def test_the_choice_carries_compile_from_the_cli() -> None:
    from maskpix_desktop.cli import build_parser

    args = build_parser().parse_args(["run", "cases.toml", "--out", "o", "--compile"])
    assert args.compile is True
    assert build_parser().parse_args(["run", "cases.toml", "--out", "o"]).compile is False
    assert ModelChoice().compile is False


_RUN = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from torch._dynamo.utils import counters
    from maskpix_desktop.core.editor_loader import load_editor
    from maskpix_desktop.core.jobs import EditParams, EditRequest

    editor = load_editor(sys.argv[1], device="cpu", compile_denoiser=sys.argv[2] == "1")
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    res = editor.run(EditRequest(image, None, EditParams("make it blue", steps=2, seed=1, long_side=64)))
    np.save(sys.argv[3], res.baseline)
    print(json.dumps(dict(counters["inductor"])))
    """
)


@pytest.mark.slow
def test_a_second_start_reuses_the_compiled_kernels(tiny_ip2p_dir: Path, tmp_path: Path) -> None:
    env = {**os.environ, paths.ENV_COMPILE_CACHE: str(tmp_path / "cache")}
    env.pop(INDUCTOR_CACHE_ENV, None)

    def run(compiled: bool, name: str) -> tuple[dict, np.ndarray]:
        out = tmp_path / f"{name}.npy"
        proc = subprocess.run(
            [sys.executable, "-c", _RUN, str(tiny_ip2p_dir), "1" if compiled else "0", str(out)],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.strip().splitlines()[-1]), np.load(out)

    _, eager = run(False, "eager")
    first, a = run(True, "first")
    second, b = run(True, "second")
    assert first.get("fxgraph_cache_miss", 0) > 0 and first.get("fxgraph_cache_hit", 0) == 0
    assert second.get("fxgraph_cache_hit", 0) > 0 and second.get("fxgraph_cache_miss", 0) == 0
    np.testing.assert_array_equal(a, b)  # the same kernels
    assert np.abs(a.astype(int) - eager.astype(int)).max() <= 2  # fused kernels round differently


def test_cuda_without_triton_runs_eager_and_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    import importlib.util

    class Pipe:
        unet = torch.nn.Linear(2, 2)

    pipe, real = Pipe(), importlib.util.find_spec
    monkeypatch.setattr(torch, "compile", lambda m: pytest.fail("compiled without triton"))
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "triton" else real(n, *a))
    done = editor_compile.compile_denoiser(pipe, "ip2p", tmp_path / "c", "cuda:0")
    assert done == "eager unet (torch.compile needs triton on CUDA)"
    assert isinstance(pipe.unet, torch.nn.Linear)
