"""``maskpix-cli eval`` against hostile inputs: colliding item ids, torn and mistyped result rows, broken
index records, a damaged settings record, a second run on the same folder, whole-image masks."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from maskpix_desktop.cli import main
from maskpix_desktop.core import evaluation as ev
from maskpix_desktop.core import images
from maskpix_desktop.core.evaluation.store import OutputLock
from maskpix_desktop.testing.eval_data import magicbrush_hf_record, make_magicbrush_folder, make_pie_folder

FAST = ["--long-side", "64", "--steps", "2", "--threads", "1", "--device", "cpu", "--no-progress"]
REPO = Path(__file__).resolve().parents[2]
# Four ids that the old file-safe slug mapped onto two folders: "a_b" twice, "_" twice.
CLASHING = ["a b", "a_b", "猫", "犬"]
WHOLE = "whole"
CAT_INSTRUCTION = "make it\u2028a tiger"  # U+2028 splits a str.splitlines() reader's line in two


def run(dataset: Path, out: Path, models: Path, *extra: str) -> int:
    return main(["eval", str(dataset), "--out", str(out), "--models-dir", str(models), *FAST, *extra])


def keyed(rows: list[dict]) -> dict[tuple[str, str], dict]:
    out: dict[tuple[str, str], dict] = {}
    for r in rows:
        assert (r["item"], r["mode"]) not in out, f"duplicate row {r['item']}/{r['mode']}"
        out[(r["item"], r["mode"])] = r
    return out


def comparable(rows: list[dict]) -> dict[tuple[str, str], tuple]:
    return {
        k: (r["status"], r.get("error"), json.dumps(ev.json_safe(r["metrics"]), sort_keys=True))
        for k, r in keyed(rows).items()
    }


def make_hostile_pie(root: Path) -> Path:
    """Four good items with clashing ids, one whole-image mask, and records of the wrong type."""
    make_pie_folder(root, n=5, bad=False)
    mapping = json.loads((root / "mapping_file.json").read_text(encoding="utf-8"))
    good = [mapping[k] for k in sorted(mapping)]
    new = {name: rec for name, rec in zip(CLASHING, good, strict=False)}
    new["猫"] = {**new["猫"], "editing_instruction": CAT_INSTRUCTION}
    new[WHOLE] = {**good[4], "mask": [0, 512 * 512]}
    text = json.dumps(new, ensure_ascii=False)[:-1]
    template = json.dumps({k: v for k, v in good[0].items() if k != "mask"})[:-1]
    extra = {
        "rec_null": "null",
        "rec_list": "[1, 2]",
        "mask_inf": template + ', "mask": [0, 1e999]}',
        "mask_text": template + ', "mask": "everything"}',
        "instr_int": json.dumps({**good[0], "editing_instruction": 5}),
    }
    text += "".join(f", {json.dumps(k)}: {v}" for k, v in extra.items()) + "}"
    (root / "mapping_file.json").write_text(text, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def hostile_pie(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_hostile_pie(tmp_path_factory.mktemp("hpie") / "PIE")


@pytest.fixture(scope="module")
def pie_run(hostile_pie: Path, tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hpie_out") / "run"
    assert run(hostile_pie, out, tiny_models_dir, "--modes", "baseline,pixel") == 0
    return out


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    (dst / "results.jsonl").unlink()  # rows then come from the shard only
    return dst


# ------------------------------------------------------------------------------------ 7: item folders


def test_item_ids_differing_only_in_unsafe_characters_get_their_own_folders(
    pie_run: Path, hostile_pie: Path
) -> None:
    rows = keyed(ev.read_rows(pie_run / "results.jsonl"))
    mapping = json.loads((hostile_pie / "mapping_file.json").read_text(encoding="utf-8"))
    folders = {}
    for item in CLASHING:
        row = rows[(item, "pixel")]
        assert row["status"] == "ok"
        folders[item] = Path(row["files"]["original"]).parent
        own = images.load_image(hostile_pie / "annotation_images" / mapping[item]["image_path"])
        assert np.array_equal(images.load_image(pie_run / row["files"]["original"]), own)
    assert len(set(folders.values())) == 4  # one folder each, none shared
    outputs = [images.load_image(pie_run / rows[(i, "pixel")]["files"]["output"]) for i in CLASHING]
    assert all(not np.array_equal(a, b) for i, a in enumerate(outputs) for b in outputs[i + 1 :])
    # case-insensitive disks: two ids that differ in case only still get two folders
    assert ev.item_folder("Cat").lower() != ev.item_folder("cat").lower()
    assert ev.item_folder("..") not in (".", "..") and "/" not in ev.item_folder("../x")


# ------------------------------------------------------------------------------------ 8: resume


def test_resume_after_a_line_torn_inside_a_utf8_character(
    pie_run: Path, hostile_pie: Path, tiny_models_dir: Path, tmp_path: Path
) -> None:
    out = copy_run(pie_run, tmp_path / "torn")
    shard = out / "shard-0.jsonl"
    data = shard.read_bytes()
    lines = data.splitlines(keepends=True)
    cat = next(i for i, ln in enumerate(lines) if "猫".encode() in ln and b'"pixel"' in ln)
    torn = lines[cat][: lines[cat].index("猫".encode()) + 1]  # one byte into a 3-byte character
    kept = lines[:cat] + lines[cat + 1 :]
    shard.write_bytes(b"".join(kept) + torn)

    assert run(hostile_pie, out, tiny_models_dir, "--modes", "baseline,pixel") == 0
    after = shard.read_bytes().splitlines()
    assert len(after) == len(lines)  # the torn row was cut and redone once; nothing else redone
    assert comparable(ev.read_rows(out / "results.jsonl")) == comparable(
        ev.read_rows(pie_run / "results.jsonl")
    )
    # U+2028 in an instruction did not split the row: a rerun has nothing left to do
    assert run(hostile_pie, out, tiny_models_dir, "--modes", "baseline,pixel") == 0
    assert shard.read_bytes().splitlines() == after
    cat_row = keyed(ev.read_rows(out / "results.jsonl"))[("猫", "pixel")]
    assert cat_row["instruction"] == CAT_INSTRUCTION


def test_resume_skips_rows_of_the_wrong_type_with_a_warning(
    pie_run: Path, hostile_pie: Path, tiny_models_dir: Path, tmp_path: Path, caplog
) -> None:
    out = copy_run(pie_run, tmp_path / "mistyped")
    shard = out / "shard-0.jsonl"
    good = ev.read_rows(shard)
    base = {k: v for k, v in good[0].items() if k not in ("metrics",)}
    hostile = [
        json.dumps({**base, "item": ["a b"]}).encode(),
        json.dumps({**base, "metrics": "great"}).encode(),
        json.dumps({**base, "finished_at": "yesterday"}).encode(),
        json.dumps({**base, "metrics": {"pie_psnr": [1]}}).encode(),
        json.dumps({**base, "files": {"output": "../../../etc/passwd"}}).encode(),
        json.dumps({**base, "mode": None}).encode(),
        b"null",
        b"[1, 2]",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"item": "a b", "mode": "pixel", "status": "ok", "instruction": "\xff"}',
    ]
    shard.write_bytes(shard.read_bytes() + b"".join(line + b"\n" for line in hostile))
    before = shard.read_bytes()

    with caplog.at_level(logging.WARNING):
        assert run(hostile_pie, out, tiny_models_dir, "--modes", "baseline,pixel") == 0
    assert shard.read_bytes() == before  # every valid pair was still done; the bad lines are kept
    n0 = len(before.splitlines()) - len(hostile)
    warned = {r.getMessage() for r in caplog.records if "shard-0.jsonl" in r.getMessage()}
    for i, why in enumerate(
        [
            "'item' is list",
            "'metrics' is str",
            "'finished_at' is str",
            "metric 'pie_psnr' is list",
            "leaves the output folder",
            "'mode' is null",
            "the line is null",
            "the line is list",
            "nested too deeply",
            "not UTF-8 text",
        ],
        start=n0 + 1,
    ):
        assert any(f"shard-0.jsonl:{i}: skipping an unusable result row" in w and why in w for w in warned), (
            why,
            warned,
        )
    assert comparable(ev.read_rows(out / "results.jsonl")) == comparable(
        ev.read_rows(pie_run / "results.jsonl")
    )


def test_index_records_of_the_wrong_type_become_error_rows(pie_run: Path) -> None:
    rows = keyed(ev.read_rows(pie_run / "results.jsonl"))
    expected = {
        "rec_null": "the record is null, not an object",
        "rec_list": "the record is list, not an object",
        "mask_inf": "mask holds inf, not a non-negative integer",
        "mask_text": "mask is str, not a list of (start, length) integers",
        "instr_int": "'editing_instruction' is int, not text",
    }
    for item, message in expected.items():
        for mode in ("baseline", "pixel"):
            assert rows[(item, mode)]["status"] == "error"
            assert rows[(item, mode)]["error"] == message
    summary = json.loads((pie_run / "summary.json").read_text(encoding="utf-8"))
    assert summary["items"] == 10 and summary["items_ok"] == 5


def test_magicbrush_records_of_the_wrong_type_become_error_rows(
    tiny_models_dir: Path, tmp_path: Path, capsys
) -> None:
    mb = make_magicbrush_folder(tmp_path / "mb")
    sessions = json.loads((mb / "edit_sessions.json").read_text())
    good = sessions["242679"][0]
    sessions.update({"1": 5, "2": None, "3": [None, [1], "turn", {**good, "instruction": 7}]})
    (mb / "edit_sessions.json").write_text(json.dumps(sessions))
    (mb / "global_descriptions.json").write_text(json.dumps({"327726": [1], "242679": {"x": 5}}))
    out = tmp_path / "out_sessions"
    assert run(mb, out, tiny_models_dir, "--modes", "pixel") == 0
    rows = keyed(ev.read_rows(out / "results.jsonl"))
    assert {k: (r["status"], r["error"]) for k, r in rows.items() if r["status"] == "error"} == {
        ("1", "pixel"): ("error", "session '1': is int, not a list of turns"),
        ("2", "pixel"): ("error", "session '2': is null, not a list of turns"),
        ("3-1", "pixel"): ("error", "turn 1: is null, not a record"),
        ("3-2", "pixel"): ("error", "turn 2: is list, not a record"),
        ("3-3", "pixel"): ("error", "turn 3: is str, not a record"),
        ("3-4", "pixel"): ("error", "turn 4: 'instruction' is int, not text"),
    }
    assert [k for k, r in rows.items() if r["status"] == "ok"] == [
        ("242679-1", "pixel"),
        ("327726-1", "pixel"),
        ("327726-2", "pixel"),
    ]

    # The Hugging Face metadata.jsonl layout, line by line.
    hf = tmp_path / "hf"
    shutil.copytree(mb / "images", hf / "images")
    rec = magicbrush_hf_record("242679", "turn the sky pink")
    lines = [
        json.dumps(rec).encode(),
        b"null",
        b"[1, 2]",
        json.dumps({**rec, "img_id": "9", "turn_index": "first"}).encode(),
        json.dumps({**rec, "img_id": "9"}).encode()[:-1] + b', "turn_index": 1e999}',
        json.dumps({**rec, "img_id": ["x"]}).encode(),
        json.dumps({**rec, "img_id": "8", "instruction": 5}).encode(),
        b'{"img_id": "\xff\xfe"}',
        b"[" * 100_000,
        json.dumps({**rec, "img_id": "7", "turn_index": "9" * 5000}).encode(),
    ]
    (hf / "metadata.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "out_hf"
    assert run(hf, out, tiny_models_dir, "--modes", "pixel") == 0
    rows = keyed(ev.read_rows(out / "results.jsonl"))
    assert {k[0]: r["error"] for k, r in rows.items()} == {
        "242679-1": None,
        "line2-1": "line 2: is null, not a record",
        "line3-1": "line 3: is list, not a record",
        "9-line4": "line 4: turn_index 'first' is not a whole number >= 1",
        "9-line5": "line 5: turn_index inf is not a whole number >= 1",
        "line6-1": "line 6: 'img_id' is list, not text",
        "8-1": "line 7: 'instruction' is int, not text",
        "line8-1": "line 8: not UTF-8 text",
        "line9-1": "line 9: not valid JSON",
        "7-line10": f"line 10: turn_index {'9' * 5000!r:.40} is not a whole number >= 1",
    }

    # An index that is not a mapping at all: one clear message naming the file, before any model loads.
    (mb / "edit_sessions.json").write_text("[1, 2]")
    capsys.readouterr()
    assert run(mb, tmp_path / "out_list", tiny_models_dir) == 1
    err = capsys.readouterr().err
    assert "edit_sessions.json must map image ids to lists of turns, not a list" in err
    assert not (tmp_path / "out_list").exists()


# ------------------------------------------------------------------------------------ 9: settings guard


@pytest.mark.parametrize(
    "damage",
    ["empty", "not_json", "a_list", "deleted", "a_folder", "dev_zero", "edited_to_match"],
)
def test_settings_guard_fails_closed(
    damage: str, pie_run: Path, hostile_pie: Path, tiny_models_dir: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "guard"
    shutil.copytree(pie_run, out)
    cfg = out / "eval-config.json"
    record = json.loads(cfg.read_text())
    extra = ["--modes", "baseline,pixel"]
    if damage == "empty":
        cfg.write_bytes(b"")
    elif damage == "not_json":
        cfg.write_bytes(b"\xff{")
    elif damage == "a_list":
        cfg.write_text("[1]")
    elif damage == "deleted":
        cfg.unlink()
    elif damage == "a_folder":
        cfg.unlink()
        cfg.mkdir()
    elif damage == "dev_zero":  # reading it would never end
        if not Path("/dev/zero").exists():
            pytest.skip("no /dev/zero")
        cfg.unlink()
        cfg.symlink_to("/dev/zero")
    else:  # the user edits the record to the new settings; the rows still carry the old ones
        record["config"]["steps"] = 3
        cfg.write_text(json.dumps(record))
        extra += ["--steps", "3"]
    state = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != "eval.lock"}
    capsys.readouterr()
    assert run(hostile_pie, out, tiny_models_dir, *extra) == 1
    err = capsys.readouterr().err
    expect = {
        "empty": "eval-config.json is unreadable (it is empty)",
        "not_json": "eval-config.json is unreadable",
        "a_list": "eval-config.json is unreadable (it holds a list)",
        "deleted": "result rows but no eval-config.json",
        "a_folder": "eval-config.json is unreadable (it is not a regular file)",
        "dev_zero": "eval-config.json is unreadable (it is not a regular file)",
        "edited_to_match": "other settings in the row (a b, baseline) (config.steps: 2 -> 3)",
    }[damage]
    assert expect in err, err
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != "eval.lock"}
    assert after == state  # nothing written, nothing repaired


# ------------------------------------------------------------------------------------ 10: one run per folder


def child_env() -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def lock_owner_pid(path: Path) -> int | None:
    try:
        return int(json.loads(path.read_bytes())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # not there yet, or the marker is being written


def test_second_evaluation_on_the_same_out_is_refused(
    hostile_pie: Path, tiny_models_dir: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    out = tmp_path / "shared"
    args = ["eval", str(hostile_pie), "--out", str(out), "--models-dir", str(tiny_models_dir), *FAST]
    first = subprocess.Popen(
        [sys.executable, "-m", "maskpix_desktop.cli", *args, "--modes", "baseline,pixel,latent,crop"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=child_env(),
        cwd=REPO,
    )
    try:
        # The first run holds the folder's lock once its pid is in the lock file (written after flock
        # succeeds, before any model loads): the second run starts then, no need to wait for a row.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and first.poll() is None:
            if lock_owner_pid(out / "eval.lock") == first.pid:
                break
            time.sleep(0.02)
        assert first.poll() is None, "the first run ended before the second could start"

        from maskpix_desktop.core.service import ModelService

        def no_models(*a, **k):
            raise AssertionError("models must not be touched when the folder is taken")

        monkeypatch.setattr(ModelService, "check", no_models)
        monkeypatch.setattr(ModelService, "editor", no_models)
        capsys.readouterr()
        assert main([*args, "--modes", "baseline,pixel,latent,crop"]) == 1
        err = capsys.readouterr().err
        assert f"another evaluation is writing to {out}" in err and f"pid {first.pid}" in err
        assert first.poll() is None  # the first run goes on
    finally:
        if first.poll() is None:
            os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    # The lock died with its process: the lock file is still there, and the folder can be locked again.
    assert (out / "eval.lock").is_file()
    with OutputLock.acquire(out):
        with pytest.raises(ev.MaskPixError, match="another evaluation is writing to"):
            OutputLock.acquire(out)


# ------------------------------------------------------------------------------------ 15: whole-image mask


def test_whole_image_mask_metrics_are_nan_and_left_out_of_the_means(pie_run: Path) -> None:
    rows = keyed(ev.read_rows(pie_run / "results.jsonl"))
    for mode in ("baseline", "pixel"):
        row = rows[(WHOLE, mode)]
        assert row["status"] == "ok"
        for key in ev.BACKGROUND_KEYS:
            assert row["metrics"][key] is None and row["missing"][key] == ev.WHOLE_MASK
        assert row["metrics"]["clip_score"] is not None  # the edit itself is still scored
    summary = json.loads((pie_run / "summary.json").read_text(encoding="utf-8"))
    assert summary["excluded_whole_mask"]["count"] == 1 and summary["excluded_whole_mask"]["items"] == [WHOLE]
    others = [rows[(i, "baseline")]["metrics"] for i in CLASHING]
    for key, stat in summary["overall"]["baseline"].items():
        if key in ev.BACKGROUND_KEYS and key != "pie_lpips":
            assert stat["n"] == 4 and stat["n_excluded"] == 1
            assert stat["mean"] == pytest.approx(np.mean([m[key] for m in others]), rel=1e-12)
    pixel_psnr = summary["overall"]["pixel"]["pie_psnr"]
    assert pixel_psnr["n"] == 4 and pixel_psnr["n_excluded"] == 1  # the inf of the whole item is not in it
    md = (pie_run / "summary.md").read_text(encoding="utf-8")
    assert "Excluded: 1 item(s) whose mask covers the whole image" in md and "`whole`" in md


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--threads", "-1", "must be at least 1"),
        ("--dist-timeout", "inf", "number of minutes"),
        ("--dist-timeout", "nan", "number of minutes"),
        ("--device", "tpu", "'tpu' is not a device"),
        ("--precision", "fp8", "invalid choice: 'fp8'"),
        ("--limit", "-2", "must be at least 0"),
    ],
)
def test_eval_options_out_of_range_are_refused_by_the_parser(option, value, message, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["eval", "data", "--out", "out", option, value])
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_duplicated_manifest_member_is_refused(tmp_path: Path) -> None:
    """A zip may hold two ``manifest.json``; the reader must not pick the last one silently."""
    import warnings
    import zipfile

    from maskpix_desktop.core.session import ProjectError, Session, load_project, save_project

    path = save_project(tmp_path / "p.maskpix", Session(image=np.zeros((8, 8, 3), np.uint8)))
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    with zipfile.ZipFile(path, "a") as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns "Duplicate name"
        zf.writestr("manifest.json", json.dumps({**manifest, "current": 0}))
    with pytest.raises(ProjectError, match="two members named 'manifest.json'"):
        load_project(path)


def test_out_naming_a_file_is_refused_before_models(hostile_pie: Path, tmp_path: Path, capsys) -> None:
    target = tmp_path / "a_file"
    target.write_text("keep me")
    assert run(hostile_pie, target, tmp_path / "no_models") == 1
    assert f"cannot create the output folder {target}: File exists" in capsys.readouterr().err
    assert target.read_text() == "keep me"
