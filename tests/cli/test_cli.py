"""The headless CLI end to end on tiny random-weight models: outputs, metadata, refusals, atomicity."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from maskpix_desktop.cli import main
from maskpix_desktop.core import images, models
from maskpix_desktop.core.cases import load_cases

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "resources" / "examples" / "cases.toml"
SAMPLES = REPO / "resources" / "samples"
CASE_FILES = [
    "original.png",
    "mask.png",
    "baseline.png",
    "blended.png",
    "grid.png",
    "metrics.csv",
    "metadata.json",
]
PNGS = [f for f in CASE_FILES if f.endswith(".png")]
NAMES = ["shirt-red", "dog-robot", "car-hovercraft"]
CLI = Path(sys.executable).with_name("maskpix-cli")


def strict_json(text: str):
    def refuse(token: str):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def fast_copy(folder: Path, *, steps: int = 2, long_side: int = 128, pixel_feather0: bool = False) -> Path:
    """The packaged cases file, rewritten: absolute sample paths, few steps, a small working size."""
    text = EXAMPLE.read_text(encoding="utf-8")
    text = text.replace('"../samples/', f'"{SAMPLES.as_posix()}/')
    text, n = re.subn(r"(?m)^steps = \d+$", f"steps = {steps}\nlong_side = {long_side}", text)
    assert n == 3
    if pixel_feather0:  # shirt-red: pixel mode, no dilate; make the composite hard
        text, n = re.subn(r"(?m)^feather = 2\.0$", "feather = 0.0\ndilate = 0", text)
        assert n == 1
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "cases.toml"
    path.write_text(text, encoding="utf-8")
    return path


def car_case(name: str = "car", image: Path = SAMPLES / "car.jpg", seed: int = 1) -> str:
    """One fast case with a mask file (no SAM), pixel mode."""
    mask = (SAMPLES / "car_mask.png").as_posix()
    return (
        f'[[case]]\nname = "{name}"\nimage = "{image.as_posix()}"\nmask = "{mask}"\n'
        f'instruction = "turn the car into a hovercraft"\nseed = {seed}\nsteps = 1\nlong_side = 64\n\n'
    )


def tree(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file below ``folder`` with its bytes and mtime (to prove nothing changed)."""
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from maskpix_desktop.testing.tiny_models import make_tiny_models

    return make_tiny_models(tmp_path_factory.mktemp("cli_tiny_models"))


@pytest.fixture(scope="module")
def module_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Offline, with an empty default models folder, for the module-scoped run below."""
    default = tmp_path_factory.mktemp("default_models")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv(models.ENV_MODELS_DIR, str(default))
        yield default


@pytest.fixture(autouse=True)
def offline_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv(models.ENV_MODELS_DIR, str(tmp_path / "no-default-models"))


@pytest.fixture(scope="module")
def example_run(tiny_models: Path, module_env: Path, tmp_path_factory: pytest.TempPathFactory):
    """One run of (a fast copy of) the packaged example; shirt-red with feather 0 / dilate 0."""
    base = tmp_path_factory.mktemp("example_run")
    cases = fast_copy(base, pixel_feather0=True)
    out = base / "out"
    rc = main(["run", str(cases), "--out", str(out), "--models-dir", str(tiny_models)])
    return rc, cases, out


@pytest.fixture
def empty_models(tmp_path: Path) -> Path:
    folder = tmp_path / "empty-models"
    folder.mkdir()
    return folder


# ------------------------------------------------------------------------------------------ a full run


def test_run_writes_every_file_for_every_case(example_run) -> None:
    rc, _, out = example_run
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([*NAMES, "metrics.csv"])  # no temp folders left
    for name in NAMES:
        assert sorted(p.name for p in (out / name).iterdir()) == sorted(CASE_FILES), name
        for png in PNGS:
            assert images.load_image(out / name / png).ndim == 3


def test_case_folders_get_normal_permissions(example_run) -> None:
    _, _, out = example_run
    umask = os.umask(0o022)
    os.umask(umask)
    for name in NAMES:  # not mkdtemp's private 0700
        assert (out / name).stat().st_mode & 0o777 == 0o777 & ~umask


def test_originals_and_masks_are_exact(example_run) -> None:
    _, cases_path, out = example_run
    for case in load_cases(cases_path):
        original = images.load_image(out / case.name / "original.png")
        assert np.array_equal(original, images.load_image(case.image))
        mask = images.load_mask(out / case.name / "mask.png")
        assert mask.shape == original.shape[:2]
        if case.mask is not None:
            assert np.array_equal(mask, images.load_mask(case.mask))
        assert 0 < mask.mean() < 1, case.name  # the tiny SAM gives a real, partial mask


def test_png_text_and_metadata_hold_the_case_params(example_run) -> None:
    _, cases_path, out = example_run
    for case in load_cases(cases_path):
        meta = strict_json((out / case.name / "metadata.json").read_text(encoding="utf-8"))
        assert meta["params"] == case.params.to_dict()
        assert meta["params"]["steps"] == 2 and meta["params"]["long_side"] == 128
        h, w = images.load_image(case.image).shape[:2]
        assert meta["image_size"] == [h, w]
        assert meta["files"]["blended"] == "blended.png" and meta["nsfw"] is False
        model = meta["model"]
        assert model["device"] == "cpu" and model["ip2p"].endswith("tiny-ip2p") and model["ip2p_fingerprint"]
        assert model["clip"] == "maskpix-tiny-clip/maskpix-tiny-clip.safetensors"
        if case.uses_sam:
            assert model["sam"] == "custom" and len(model["sam_fingerprint"]) == 64
        assert set(meta["metrics"]) == {"baseline", "blended"}
        for png in PNGS:
            text = images.read_png_text(out / case.name / png)
            embedded = strict_json(text["maskpix"])
            p = embedded["params"]
            assert p["instruction"] == case.params.instruction and p["seed"] == case.params.seed
            assert p["steps"] == case.params.steps and p["mask_mode"] == case.params.mask_mode
            assert embedded["params"] == meta["params"] and embedded["metrics"] == meta["metrics"]
            assert text["instruction"] == case.params.instruction and text["seed"] == str(case.params.seed)
            assert text["steps"] == "2" and text["mask_mode"] == case.params.mask_mode


def test_metrics_csv_per_case_and_summary(example_run) -> None:
    _, _, out = example_run
    rows = list(csv.DictReader(io.StringIO((out / "metrics.csv").read_text(encoding="utf-8"))))
    assert [(r["case"], r["variant"]) for r in rows] == [
        (n, v) for n in NAMES for v in ("baseline", "blended")
    ]
    expected = {"leakage_mean", "leakage_p99", "miou", "miou_tau", "bg_psnr", "bg_ssim", "pie_psnr"}
    expected |= {"pie_ssim", "pie_mse", "clip_score", "clip_score_region"}  # CLIP from the tiny manifest
    assert expected <= set(rows[0])
    for row in rows:
        for key in expected:
            float(row[key])  # every cell is a number ("inf" included)
        assert float(row["leakage_mean"]) >= 0 and 0 <= float(row["miou"]) <= 1
    for name in NAMES:
        per_case = list(csv.DictReader(io.StringIO((out / name / "metrics.csv").read_text(encoding="utf-8"))))
        assert [{k: v for k, v in r.items() if k != "case"} for r in rows if r["case"] == name] == per_case
    baseline, blended = rows[0], rows[1]  # shirt-red, pixel mode, hard mask: nothing leaks
    assert float(baseline["leakage_mean"]) > 0
    assert float(blended["leakage_mean"]) == 0 and blended["bg_psnr"] == "inf"


def test_pixel_mode_with_feather_0_leaves_the_outside_untouched(example_run) -> None:
    _, cases_path, out = example_run
    case = load_cases(cases_path)[0]
    assert case.name == "shirt-red" and case.params.mask_mode == "pixel"
    assert case.params.feather == 0 and case.params.dilate == 0
    folder = out / case.name
    original = images.load_image(folder / "original.png")
    blended = images.load_image(folder / "blended.png")
    baseline = images.load_image(folder / "baseline.png")
    mask = images.load_mask(folder / "mask.png")
    assert np.array_equal(blended[~mask], original[~mask])
    assert np.array_equal(blended[mask], baseline[mask])  # inside: the edit itself
    assert not np.array_equal(baseline[~mask], original[~mask])  # the plain edit did leak
    meta = strict_json((folder / "metadata.json").read_text(encoding="utf-8"))
    assert meta["metrics"]["blended"]["bg_psnr"] == "inf" and meta["metrics"]["blended"]["leakage_mean"] == 0


# ------------------------------------------------------------------------------------ missing weights


def _default_sam() -> str:
    """What --sam auto (the default) loads here: sam_vit_h with CUDA, sam2.1_hiera_tiny without."""
    return models.default_sam_for(models.resolve_device("auto"))


def test_missing_weights_exit_2_and_nothing_written(tmp_path: Path, empty_models: Path, capsys) -> None:
    out = tmp_path / "out"
    rc = main(["run", str(EXAMPLE), "--out", str(out), "--models-dir", str(empty_models)])
    err = capsys.readouterr().err
    assert rc == 2
    name = _default_sam()
    assert "missing" in err and str(models.local_path(name, empty_models)) in err
    assert f"maskpix-cli models download {name} --models-dir {empty_models}" in err
    assert not out.exists()


def test_missing_ip2p_when_no_case_needs_sam(tmp_path: Path, empty_models: Path, capsys) -> None:
    cases = tmp_path / "cases.toml"
    cases.write_text(car_case(), encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    rc = main(["run", str(cases), "--out", str(out), "--models-dir", str(empty_models)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "missing" in err and str(empty_models / "instruct-pix2pix") in err
    assert "maskpix-cli models download ip2p" in err
    assert list(out.iterdir()) == []


def test_console_script_exit_code_on_missing_weights(tmp_path: Path, empty_models: Path) -> None:
    assert CLI.is_file(), CLI
    env = {**os.environ, "HF_HUB_OFFLINE": "1", models.ENV_MODELS_DIR: str(empty_models)}
    proc = subprocess.run(
        [str(CLI), "run", str(EXAMPLE), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    expected = models.local_path(_default_sam(), empty_models).name
    assert expected in proc.stderr and "maskpix-cli models download" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------- overwrite


def test_existing_output_needs_overwrite(tmp_path: Path, tiny_models: Path, capsys) -> None:
    cases = tmp_path / "cases.toml"
    cases.write_text(car_case(seed=1), encoding="utf-8")
    out = tmp_path / "out"
    args = ["run", str(cases), "--out", str(out), "--models-dir", str(tiny_models), "--no-clip"]
    assert main(args) == 0
    before = tree(out)
    assert sorted(before) == sorted(["metrics.csv", *(f"car/{f}" for f in CASE_FILES)])
    capsys.readouterr()

    assert main(args) == 1
    err = capsys.readouterr().err
    assert "output exists for car" in err and "--overwrite" in err and str(out) in err
    assert tree(out) == before  # nothing touched

    (out / "car" / "stale.txt").write_text("from an older run", encoding="utf-8")
    cases.write_text(car_case(seed=2), encoding="utf-8")
    assert main([*args, "--overwrite"]) == 0
    assert sorted(p.name for p in (out / "car").iterdir()) == sorted(CASE_FILES)  # the folder was replaced
    assert strict_json((out / "car" / "metadata.json").read_text())["params"]["seed"] == 2
    assert (out / "car" / "blended.png").read_bytes() != before["car/blended.png"][0]
    assert hidden(out) == []


def test_existing_summary_needs_overwrite(tmp_path: Path, tiny_models: Path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.csv").write_text("case,variant\nolder,baseline\n", encoding="utf-8")
    cases = tmp_path / "cases.toml"
    cases.write_text(car_case(), encoding="utf-8")
    rc = main(["run", str(cases), "--out", str(out), "--models-dir", str(tiny_models)])
    assert rc == 1 and "metrics.csv" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["metrics.csv"]
    assert (out / "metrics.csv").read_text(encoding="utf-8") == "case,variant\nolder,baseline\n"


# ------------------------------------------------------------------------------------- bad cases files


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            '[[case]]\nname = "no-text"\nimage = "a.png"\nmask = "m.png"\n',
            "case 'no-text': 'instruction' is required",
        ),
        (
            '[[case]]\nname = "odd-mode"\nimage = "a.png"\nmask = "m.png"\ninstruction = "x"\n'
            'mask_mode = "magic"\n',
            "case 'odd-mode': mask_mode must be one of",
        ),
        ('[[case]]\nname = "broken\nimage = "a.png"\n', "is not valid TOML"),
        (
            '[[case]]\nname = "bad-box"\nimage = "a.png"\ninstruction = "x"\nbox = [1, 2, "a", 4]\n',
            "case 'bad-box': 'box' must be",
        ),
        (
            '[[case]]\nname = "flat-point"\nimage = "a.png"\ninstruction = "x"\npoints = [255, 380]\n',
            "case 'flat-point': 'points' must be",
        ),
        (
            '[[case]]\nname = "no-file"\nimage = "nope.png"\ninstruction = "x"\nbox = [0, 0, 9, 9]\n',
            "image not found",
        ),
    ],
)
def test_bad_cases_file_exits_1_naming_the_case(tmp_path: Path, capsys, body: str, expected: str) -> None:
    cases = tmp_path / "cases.toml"
    cases.write_text(body, encoding="utf-8")
    out = tmp_path / "out"
    rc = main(["run", str(cases), "--out", str(out), "--models-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 1
    assert expected in err and err.startswith("error: ") and "Traceback" not in err
    if "TOML" in expected:
        assert str(cases) in err
    assert not out.exists()


def test_missing_cases_file(tmp_path: Path, capsys) -> None:
    assert main(["run", str(tmp_path / "nope.toml"), "--out", str(tmp_path / "o")]) == 1
    assert "cases file not found" in capsys.readouterr().err


def test_unreadable_image_stops_with_complete_earlier_cases(
    tmp_path: Path, tiny_models: Path, capsys
) -> None:
    # A sound header (it passes the up-front check) over truncated data: found only when decoded.
    fake = tmp_path / "fake.png"
    data = (SAMPLES / "car.jpg").read_bytes()
    fake.write_bytes(data[: len(data) // 3])
    cases = tmp_path / "cases.toml"
    cases.write_text(car_case("first") + car_case("fake", image=fake) + car_case("third"), encoding="utf-8")
    out = tmp_path / "out"
    rc = main(["run", str(cases), "--out", str(out), "--models-dir", str(tiny_models), "--no-clip"])
    err = capsys.readouterr().err
    assert rc == 1
    assert f"Cannot open '{fake}': the file is damaged or truncated" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["first"]  # no "fake", no "third", no temp folders
    assert sorted(p.name for p in (out / "first").iterdir()) == sorted(CASE_FILES)
    strict_json((out / "first" / "metadata.json").read_text(encoding="utf-8"))


def test_failed_export_leaves_no_case_folder(tmp_path: Path, tiny_models: Path, monkeypatch, capsys) -> None:
    from maskpix_desktop.core import export
    from maskpix_desktop.core.errors import ImageSaveError

    calls = []
    real = export.export_result

    def export_then_fail(result, out_dir, **kwargs):
        calls.append(out_dir)
        if len(calls) == 2:
            raise ImageSaveError(f"Could not save '{out_dir}/grid.png': the disk is full.")
        return real(result, out_dir, **kwargs)

    monkeypatch.setattr(export, "export_result", export_then_fail)
    cases = tmp_path / "cases.toml"
    cases.write_text(car_case("a") + car_case("b"), encoding="utf-8")
    out = tmp_path / "out"
    rc = main(["run", str(cases), "--out", str(out), "--models-dir", str(tiny_models), "--no-clip"])
    assert rc == 1 and "the disk is full" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["a"]  # "b" neither present nor half-written


def test_sam_candidate_out_of_range_names_the_case(tmp_path: Path, tiny_models: Path, capsys) -> None:
    cases = tmp_path / "cases.toml"
    cases.write_text(
        f'[[case]]\nname = "boxed"\nimage = "{(SAMPLES / "dog.jpg").as_posix()}"\ninstruction = "x"\n'
        "box = [145, 130, 520, 410]\ncandidate = 2\nsteps = 1\nlong_side = 64\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    rc = main(["run", str(cases), "--out", str(out), "--models-dir", str(tiny_models), "--no-clip"])
    err = capsys.readouterr().err
    assert rc == 1 and "case 'boxed': candidate 2" in err and "Traceback" not in err
    assert list(out.iterdir()) == []


def test_reserved_case_name(tmp_path: Path, capsys) -> None:
    cases = tmp_path / "cases.toml"
    cases.write_text(car_case("metrics.csv"), encoding="utf-8")
    assert main(["run", str(cases), "--out", str(tmp_path / "o")]) == 1
    assert "reserved" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- models


def test_models_list_empty(empty_models: Path, capsys) -> None:
    assert main(["models", "list", "--models-dir", str(empty_models)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"models folder: {empty_models}"
    for name in models.REGISTRY:
        (line,) = [ln for ln in lines if ln.split()[:1] == [name]]
        assert line.split()[1] == "missing"


def test_models_list_shows_present(tmp_path: Path, capsys) -> None:
    spec = models.get_spec("sam_vit_b")
    with open(models.local_path("sam_vit_b", tmp_path), "wb") as fh:
        fh.truncate(spec.size_bytes)  # sparse file of the registry size
    assert main(["models", "list", "--models-dir", str(tmp_path)]) == 0
    status = {ln.split()[0]: ln.split()[1] for ln in capsys.readouterr().out.splitlines()[1:]}
    assert status == {name: "present" if name == "sam_vit_b" else "missing" for name in models.REGISTRY}


def test_models_list_uses_the_environment_folder(tiny_models: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv(models.ENV_MODELS_DIR, str(tiny_models))
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"models folder: {tiny_models}\n")
    assert all(name in out for name in models.REGISTRY)


def test_models_download_unknown_name(tmp_path: Path, capsys) -> None:
    with pytest.raises(ValueError, match="Unknown model 'nope'"):
        main(["models", "download", "nope", "--models-dir", str(tmp_path)])


def test_make_tiny_models_writes_the_manifest(tmp_path: Path, capsys) -> None:
    from maskpix_desktop.core.service import MANIFEST, ModelChoice

    folder = tmp_path / "tiny"
    assert main(["make-tiny-models", str(folder)]) == 0
    assert capsys.readouterr().out.strip() == str(folder)
    manifest = strict_json((folder / MANIFEST).read_text(encoding="utf-8"))
    assert set(manifest) == {"sam", "ip2p", "clip"}
    choice = ModelChoice(models_dir=str(folder)).with_manifest()
    assert Path(choice.sam).is_file() and (Path(choice.ip2p) / "model_index.json").is_file()
    assert Path(choice.clip["pretrained"]).is_file() and Path(choice.clip["config_path"]).is_file()
    assert models.diffusers_folder_complete(choice.ip2p)


def test_usage_errors_exit_2(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run"])
    assert info.value.code == 2 and "--out" in capsys.readouterr().err


# -------------------------------------------------------------------------------- the real example file


@pytest.mark.slow
def test_packaged_example_unchanged_through_the_console_script(tmp_path: Path, tiny_models: Path) -> None:
    """The shipped cases.toml, 20 steps at 512 px, through the installed ``maskpix-cli`` (about 1-2 min)."""
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", models.ENV_MODELS_DIR: str(tmp_path / "none")}
    proc = subprocess.run(
        [
            str(CLI),
            "run",
            "resources/examples/cases.toml",
            "--out",
            str(out),
            "--models-dir",
            str(tiny_models),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"wrote 3 case(s) to {out}" in proc.stdout
    for case in load_cases(EXAMPLE):
        assert sorted(p.name for p in (out / case.name).iterdir()) == sorted(CASE_FILES)
        meta = strict_json((out / case.name / "metadata.json").read_text(encoding="utf-8"))
        assert meta["params"] == case.params.to_dict() and meta["params"]["steps"] == 20
    rows = list(csv.DictReader(io.StringIO((out / "metrics.csv").read_text(encoding="utf-8"))))
    assert len(rows) == 6 and "clip_score" in rows[0]
    shutil.rmtree(out)
