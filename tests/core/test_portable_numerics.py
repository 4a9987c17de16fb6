"""The numerics tests run on more than one CPU kernel set: the settings that select one must take effect.

`make test-numerics` (run by `.ci/run`) repeats the numerics-sensitive tests with ``ATEN_CPU_CAPABILITY=avx2``
and ``ONEDNN_MAX_CPU_ISA=AVX2`` and sets ``MASKPIX_EXPECT_CPU_CAPABILITY=AVX2``: if PyTorch ignored the
variables, that second run would silently repeat the first one.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest
import torch

X86 = platform.machine().lower() in {"x86_64", "amd64"}

PROBE = """
import torch
x = torch.randn(2, 64, 32, 32)
w = torch.randn(64, 64, 3, 3)
with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
    torch.nn.functional.conv2d(x, w)
print("aten:" + torch.backends.cpu.get_cpu_capability())
"""


def _probe(env: dict[str, str]) -> tuple[str, str]:
    """(ATen capability, oneDNN ISA line) reported by a fresh interpreter under ``env``."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    out = proc.stdout + proc.stderr
    aten = next(line[5:] for line in out.splitlines() if line.startswith("aten:"))
    isa = next((line for line in out.splitlines() if ",isa:" in line), "")
    return aten, isa


def test_requested_kernel_set_is_in_effect_in_this_run() -> None:
    expected = os.environ.get("MASKPIX_EXPECT_CPU_CAPABILITY")
    if not expected:
        pytest.skip("no kernel set requested (make test-numerics sets MASKPIX_EXPECT_CPU_CAPABILITY)")
    print(f"CPU kernels in this run: ATen {torch.backends.cpu.get_cpu_capability()}")
    assert torch.backends.cpu.get_cpu_capability() == expected


@pytest.mark.skipif(not X86 or not torch.backends.mkldnn.is_available(), reason="x86-64 with oneDNN only")
def test_avx2_settings_select_avx2_kernels_in_aten_and_onednn() -> None:
    env = dict(os.environ, ATEN_CPU_CAPABILITY="avx2", ONEDNN_MAX_CPU_ISA="AVX2")
    aten, isa = _probe(env)
    assert aten == "AVX2"
    assert "isa:Intel AVX2" in isa and "512" not in isa and "AMX" not in isa, isa
