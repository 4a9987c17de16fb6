"""``eval`` sharded over two gloo processes with torchrun gives the same per-item results as one process;
a run killed with SIGKILL midway and restarted ends with the same results and no duplicate rows."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from maskpix_desktop.cli import main
from maskpix_desktop.core import evaluation as ev
from maskpix_desktop.testing.eval_data import make_pie_folder

TORCHRUN = Path(sys.executable).with_name("torchrun")
REPO = Path(__file__).resolve().parents[2]
# 4 good items + the 2 bad ones: sorted ids put 3 good items on rank 0 and 1 good + both bad on rank 1, so
# each torchrun shard has metric rows and rank 1 also the error rows.
GOOD = 4
ROWS = (GOOD + 2) * len(ev.DEFAULT_MODES)  # every (item, mode) row of a finished run
KILL_AFTER = len(ev.DEFAULT_MODES) + 2  # past the first item and into the second: resume mid-item


def eval_args(dataset: Path, out: Path, models: Path) -> list[str]:
    return [
        "eval", str(dataset), "--out", str(out), "--models-dir", str(models),
        "--long-side", "64", "--steps", "2", "--threads", "1", "--device", "cpu", "--no-progress",
    ]  # fmt: skip


def comparable(rows: list[dict]) -> dict[tuple[str, str], tuple]:
    """(item, mode) -> status, error and every metric: what must not depend on how the run was split."""
    out = {}
    for r in rows:
        key = (r["item"], r["mode"])
        assert key not in out, f"duplicate row {key}"
        out[key] = (r["status"], r.get("error"), json.dumps(ev.json_safe(r["metrics"]), sort_keys=True))
    return out


def child_env() -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


@pytest.fixture(scope="module")
def pie_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pie_folder(tmp_path_factory.mktemp("pie") / "PIE-Bench", n=GOOD)


@pytest.fixture(scope="module")
def single(pie_dir: Path, tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("single") / "run"
    assert main(eval_args(pie_dir, out, tiny_models_dir)) == 0
    return out


def test_torchrun_two_processes_match_one_process(
    single: Path, pie_dir: Path, tiny_models_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "dist"
    cmd = [str(TORCHRUN), "--standalone", "--nproc_per_node", "2", "-m", "maskpix_desktop.cli"]
    t0 = time.perf_counter()
    proc = subprocess.run(
        [*cmd, *eval_args(pie_dir, out, tiny_models_dir)],
        capture_output=True,
        text=True,
        timeout=180,
        env=child_env(),
        cwd=REPO,
    )
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert elapsed < 120, f"torchrun eval took {elapsed:.0f}s"

    shards = {p.name: ev.read_rows(p) for p in out.glob("shard-*.jsonl")}
    assert sorted(shards) == ["shard-0.jsonl", "shard-1.jsonl"]
    assert all(any(r["status"] == "ok" for r in rows) for rows in shards.values())  # both did real work
    assert {r["rank"] for r in shards["shard-1.jsonl"]} == {1}
    items0 = {r["item"] for r in shards["shard-0.jsonl"]}
    assert items0.isdisjoint({r["item"] for r in shards["shard-1.jsonl"]})

    reference = comparable(ev.read_rows(single / "results.jsonl"))
    merged = comparable(ev.read_rows(out / "results.jsonl"))
    assert merged == reference  # identical per-item metrics, errors included
    summary = json.loads((out / "summary.json").read_text())
    tp = summary["throughput"]
    assert tp["processes"] == 2 and [p["rank"] for p in tp["per_process"]] == [0, 1]
    assert all(p["items"] > 0 and p["items_per_s"] > 0 for p in tp["per_process"])
    assert "| 1 | cpu |" in (out / "summary.md").read_text()


def test_killed_run_resumes_to_the_same_results(
    single: Path, pie_dir: Path, tiny_models_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "killed"
    shard = out / "shard-0.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "maskpix_desktop.cli", *eval_args(pie_dir, out, tiny_models_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=child_env(),
        cwd=REPO,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if shard.is_file() and shard.read_bytes().count(b"\n") >= KILL_AFTER:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "summary.md").exists()
    before = ev.read_rows(shard)
    assert KILL_AFTER <= len(before) < ROWS

    assert main(eval_args(pie_dir, out, tiny_models_dir)) == 0
    after = ev.read_rows(shard)
    assert after[: len(before)] == before  # finished rows were kept, not redone
    assert len(comparable(after)) == len(after) == ROWS  # every row once
    reference = comparable(ev.read_rows(single / "results.jsonl"))
    assert comparable(ev.read_rows(out / "results.jsonl")) == reference
