"""Hostile edit parameters, cases files and output folders: refused up front, naming the field, before
any model loads (issue 13, items 4-6). Each test is one hostile input, driven through its public entry:
EditParams, the edit panel, or ``maskpix_desktop.cli.main``."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskpix_desktop.cli import main
from maskpix_desktop.core import models
from maskpix_desktop.core.cases import load_cases
from maskpix_desktop.core.jobs import PARAM_RANGES, EditParams, ParamError

H, W = 48, 64  # the test image: 64 wide, 48 high


# ------------------------------------------------------------------------------------ EditParams


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("feather", math.inf, "feather must be a finite number in 0..200, not inf"),
        ("feather", 1e7, "feather must be a finite number in 0..200, not 10000000.0"),
        ("feather", math.nan, "feather must be a finite number in 0..200, not nan"),
        ("image_scale", math.inf, "image_scale must be a finite number in 1..100, not inf"),
        ("image_scale", math.nan, "image_scale must be a finite number in 1..100, not nan"),
        ("text_scale", math.nan, "text_scale must be a finite number in 0..100, not nan"),
        ("text_scale", -math.inf, "text_scale must be a finite number in 0..100, not -inf"),
        ("crop_pad", -0.5, "crop_pad must be a finite number in 0..2, not -0.5"),
        ("crop_pad", math.nan, "crop_pad must be a finite number in 0..2, not nan"),
        ("steps", 5000, "steps must be an integer in 1..1000, not 5000"),
        ("steps", float("1e999"), "steps must be an integer in 1..1000, not inf"),
        ("steps", 2.5, "steps must be an integer in 1..1000, not 2.5"),
        ("steps", 20.0, "steps must be an integer in 1..1000, not 20.0"),
        ("seed", "abc", "seed must be an integer in 0..2147483647, not 'abc'"),
        ("seed", True, "seed must be an integer in 0..2147483647, not True"),
        ("seed", -1, "seed must be an integer in 0..2147483647, not -1"),
        ("seed", 2**31, "seed must be an integer in 0..2147483647, not 2147483648"),
        ("long_side", 10**6, "long_side must be an integer in 64..2048, not 1000000"),
        ("dilate", 10**9, "dilate must be an integer in 0..1000, not 1000000000"),
        ("latent_dilate", -1, "latent_dilate must be an integer in 0..1000, not -1"),
        ("instruction", 5, "instruction must be a string, not 5"),
        ("negative_prompt", None, "negative_prompt must be a string, not None"),
        (
            "mask_mode",
            "magic",
            "mask_mode must be one of ('pixel', 'latent', 'crop', 'trained'), not 'magic'",
        ),
        ("seam", 1, "seam must be a string, not 1"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 20 else None,
)
def test_hostile_edit_param_is_refused_naming_the_field(field: str, value, message: str) -> None:
    kwargs = {"instruction": "make it red", field: value}
    with pytest.raises(ParamError) as info:
        EditParams(**kwargs)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)  # every caller that caught ValueError still does


def test_float_param_given_a_huge_int_is_refused_without_overflow() -> None:
    with pytest.raises(ParamError, match=r"text_scale must be a finite number in 0\.\.100, not 1000"):
        EditParams("x", text_scale=10**400)


def test_hostile_instruction_of_a_megabyte_is_refused() -> None:
    with pytest.raises(ParamError, match="instruction must be at most 10,000 characters, not 1,000,000"):
        EditParams("x" * 1_000_000)


def test_from_dict_of_a_sidecar_with_nan_feather_is_refused() -> None:
    with pytest.raises(ParamError, match="feather must be a finite number"):
        EditParams.from_dict({"instruction": "x", "feather": float("nan")})
    with pytest.raises(ParamError, match="edit parameters must be a JSON object, not list"):
        EditParams.from_dict([1, 2])


def test_numpy_and_int_values_are_normalised_to_plain_types() -> None:
    p = EditParams("x", seed=np.int64(7), steps=np.int32(3), text_scale=7, feather=np.float32(1.5))
    assert (p.seed, p.steps, p.text_scale, p.feather) == (7, 3, 7.0, 1.5)
    assert type(p.seed) is int and type(p.steps) is int
    assert type(p.text_scale) is float and type(p.feather) is float
    assert EditParams.from_dict(p.to_dict()) == p


def test_range_limits_themselves_are_accepted() -> None:
    low = {k: lo for k, (lo, _) in PARAM_RANGES.items()}
    high = {k: hi for k, (_, hi) in PARAM_RANGES.items()}
    assert EditParams("x", **low).to_dict().items() >= low.items()
    assert EditParams("x", **high).to_dict().items() >= high.items()


def test_every_numeric_field_has_a_range() -> None:
    numeric = {name for name, f in EditParams.__dataclass_fields__.items() if str(f.type) in ("int", "float")}
    assert numeric == set(PARAM_RANGES)


def test_edit_panel_ranges_come_from_the_param_table(qtbot) -> None:
    from maskpix_desktop.ui.edit_panel import WORKING_SIZES, EditPanel

    panel = EditPanel()
    qtbot.addWidget(panel)
    for name in ("steps", "text_scale", "image_scale", "seed", "dilate", "feather"):
        spin = getattr(panel, name)
        assert (spin.minimum(), spin.maximum()) == PARAM_RANGES[name], name
    lo, hi = PARAM_RANGES["long_side"]
    assert all(lo <= s <= hi for s in WORKING_SIZES)
    # The largest value the table allows comes back from the panel exactly (no second, smaller copy).
    top = EditParams("x", **{k: hi for k, (_, hi) in PARAM_RANGES.items()})
    panel.set_params(top)
    assert panel.params() == top


def test_eval_cli_with_infinite_feather_exits_1_before_any_model(tmp_path: Path) -> None:
    rc, err = run(["eval", str(tmp_path), "--out", str(tmp_path / "out"), "--feather", "inf"])
    assert rc == 1 and "feather must be a finite number in 0..200, not inf" in err


# ------------------------------------------------------------------------------- cases through the CLI


@pytest.fixture(autouse=True)
def no_models(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Offline; and any attempt to build the model service fails the test (checks come first)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv(models.ENV_MODELS_DIR, str(tmp_path / "no-models"))
    from maskpix_desktop.core import service

    def refuse(*args, **kwargs):
        raise AssertionError("a model service was built before the inputs were checked")

    monkeypatch.setattr(service.ModelService, "__init__", refuse)


def picture(path: Path, w: int = W, h: int = H) -> Path:
    Image.fromarray(np.full((h, w, 3), 120, np.uint8)).save(path)
    return path


def run_case(
    tmp_path: Path, lines: str, *extra: str, out: Path | None = None
) -> tuple[tuple[int, str], Path]:
    """One case (image 64x48, mask of the same size unless ``lines`` says otherwise) through cli.main;
    returns the exit code, the error line and the output folder."""
    picture(tmp_path / "img.png")
    if not (tmp_path / "m.png").exists():
        picture(tmp_path / "m.png")
    (tmp_path / "cases.toml").write_text(
        f'[[case]]\nimage = "img.png"\ninstruction = "make it red"\n{lines}\n', encoding="utf-8"
    )
    out = out if out is not None else tmp_path / "out"
    return run(["run", str(tmp_path / "cases.toml"), "--out", str(out), *extra]), out


_capture: list[pytest.CaptureFixture[str]] = []


@pytest.fixture(autouse=True)
def _errors(capsys: pytest.CaptureFixture[str]) -> None:
    _capture[:] = [capsys]


def run(argv: list[str]) -> tuple[int, str]:
    """``cli.main(argv)`` and its stderr, which for a failure must be one ``error:`` line, no traceback."""
    rc = main(argv)
    err = _capture[0].readouterr().err
    if rc:
        assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return rc, err


@pytest.mark.parametrize(
    ("typo", "hint"),
    [
        ("step = 1", "'step' is not a case key (did you mean 'steps'?)"),
        ('mask_mod = "latent"', "'mask_mod' is not a case key (did you mean 'mask_mode'?)"),
        ("seeed = 5", "'seeed' is not a case key (did you mean 'seed'?)"),
        ("instrucion_scale = 2", "'instrucion_scale' is not a case key"),
    ],
)
def test_case_key_typo_exits_1_naming_the_closest_key(tmp_path: Path, typo: str, hint: str) -> None:
    (rc, err), out = run_case(tmp_path, f'mask = "m.png"\n{typo}')
    assert rc == 1 and hint in err and not out.exists()


def test_case_with_infinite_feather_exits_1_before_any_model(tmp_path: Path) -> None:
    (rc, err), out = run_case(tmp_path, 'mask = "m.png"\nfeather = inf')
    assert rc == 1 and "case 'case001': feather must be a finite number in 0..200, not inf" in err
    assert not out.exists()


def test_case_with_non_integral_steps_exits_1(tmp_path: Path) -> None:
    (rc, err), _ = run_case(tmp_path, 'mask = "m.png"\nsteps = 2.5')
    assert rc == 1 and "steps must be an integer in 1..1000, not 2.5" in err


def test_case_instruction_of_wrong_type_exits_1(tmp_path: Path) -> None:
    (tmp_path / "cases.toml").write_text('[[case]]\nimage = "i.png"\nmask = "m.png"\ninstruction = 5\n')
    rc, err = run(["run", str(tmp_path / "cases.toml"), "--out", str(tmp_path / "out")])
    assert rc == 1 and "instruction must be a string, not 5" in err


def test_case_image_path_of_wrong_type_exits_1(tmp_path: Path) -> None:
    (tmp_path / "cases.toml").write_text('[[case]]\nimage = 123\nmask = "m.png"\ninstruction = "x"\n')
    rc, err = run(["run", str(tmp_path / "cases.toml"), "--out", str(tmp_path / "out")])
    assert rc == 1 and "'image' must be a file path (a string), got 123" in err


def test_mask_of_another_size_is_refused_not_stretched(tmp_path: Path) -> None:
    picture(tmp_path / "m.png", w=32, h=32)
    (rc, err), out = run_case(tmp_path, 'mask = "m.png"')
    assert rc == 1 and "the mask" in err and "is 32x32 pixels but the image" in err and "is 64x48" in err
    assert not out.exists()


def test_exif_rotated_image_is_measured_as_loaded(tmp_path: Path) -> None:
    # A 48x64 file with EXIF orientation 6 (rotate 90°) loads as 64 wide, 48 high: the 64x48 mask fits.
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.zeros((W, H, 3), np.uint8)).save(tmp_path / "rot.jpg", exif=exif)
    picture(tmp_path / "m.png")
    (tmp_path / "cases.toml").write_text('[[case]]\nimage = "rot.jpg"\nmask = "m.png"\ninstruction = "x"\n')
    from maskpix_desktop.core.cases import check_case_files

    assert check_case_files(load_cases(tmp_path / "cases.toml")[0]) == (H, W)


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ("points = [[65, 10]]", "point [65, 10] is outside the 64x48 image (x in 0..64, y in 0..48)"),
        ("points = [[10, -1]]", "point [10, -1] is outside the 64x48 image"),
        ("points = [[1e9, 1e9]]", "point [1e+09, 1e+09] is outside the 64x48 image"),
        ("box = [0, 0, 64, 49]", "box [0, 0, 64, 49] reaches outside the 64x48 image"),
        ("box = [-5, 0, 10, 10]", "box [-5, 0, 10, 10] reaches outside the 64x48 image"),
    ],
)
def test_prompt_outside_the_image_exits_1_naming_case_and_value(
    tmp_path: Path, prompt: str, message: str
) -> None:
    (rc, err), out = run_case(tmp_path, f'name = "far"\n{prompt}')
    assert rc == 1 and f"case 'far': {message}" in err and not out.exists()


def test_prompt_on_the_image_edge_is_accepted(tmp_path: Path) -> None:
    from maskpix_desktop.core.cases import check_case_files

    picture(tmp_path / "img.png")
    (tmp_path / "cases.toml").write_text(
        '[[case]]\nimage = "img.png"\ninstruction = "x"\npoints = [[0, 0], [64, 48]]\nlabels = [1, 0]\n'
        "box = [0, 0, 64, 48]\n"
    )
    assert check_case_files(load_cases(tmp_path / "cases.toml")[0]) == (H, W)


def test_non_image_file_exits_1_before_any_model(tmp_path: Path) -> None:
    (tmp_path / "text.png").write_text("not a picture")
    (tmp_path / "cases.toml").write_text(
        '[[case]]\nimage = "text.png"\nbox = [0, 0, 9, 9]\ninstruction = "x"\n'
    )
    rc, err = run(["run", str(tmp_path / "cases.toml"), "--out", str(tmp_path / "out")])
    assert rc == 1 and "cannot read the image" in err and not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------ names and output


def test_case_name_of_300_characters_exits_1(tmp_path: Path) -> None:
    (rc, err), out = run_case(tmp_path, f'name = "{"n" * 300}"\nmask = "m.png"')
    assert rc == 1 and "the name is 300 characters long; at most 100" in err and not out.exists()


def test_windows_device_case_name_gets_a_safe_folder_name(tmp_path: Path) -> None:
    (tmp_path / "cases.toml").write_text(
        '[[case]]\nname = "CON"\nimage = "i.png"\nmask = "m.png"\ninstruction = "x"\n'
        '[[case]]\nname = "nul.txt"\nimage = "i.png"\nmask = "m.png"\ninstruction = "x"\n'
    )
    assert [c.name for c in load_cases(tmp_path / "cases.toml")] == ["CON_", "nul_.txt"]


def test_out_pointing_at_a_file_exits_1(tmp_path: Path) -> None:
    target = tmp_path / "file.txt"
    target.write_text("mine")
    (rc, err), _ = run_case(tmp_path, 'mask = "m.png"', out=target)
    assert rc == 1 and f"--out '{target}' is a file, not a folder" in err
    assert target.read_text() == "mine"


def test_out_that_cannot_be_created_exits_1_and_creates_nothing(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("mine")
    out = tmp_path / "file.txt" / "sub" / "out"
    (rc, err), _ = run_case(tmp_path, 'mask = "m.png"', out=out)
    assert rc == 1 and f"cannot write to the output folder '{out}'" in err


def test_out_with_a_too_long_name_exits_1(tmp_path: Path) -> None:
    out = tmp_path / ("o" * 300)
    (rc, err), _ = run_case(tmp_path, 'mask = "m.png"', out=out)
    assert rc == 1 and f"cannot use the output folder '{out}': File name too long" in err


def test_out_that_can_be_created_is_left_as_it_was(tmp_path: Path, monkeypatch) -> None:
    # The check creates and removes a temp folder; the run is then stopped by the missing models.
    monkeypatch.undo()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "empty").mkdir()
    out = tmp_path / "new" / "deeper"
    (rc, err), _ = run_case(tmp_path, 'mask = "m.png"', "--models-dir", str(tmp_path / "empty"), out=out)
    assert rc == 2 and "missing" in err
    assert not (tmp_path / "new").exists()


def test_overwrite_with_a_file_where_the_case_folder_goes_exits_1(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "case001").write_text("a file of mine")
    (rc, err), _ = run_case(tmp_path, 'mask = "m.png"', "--overwrite")
    assert rc == 1 and f"'{out / 'case001'}' is in the way: it is not a folder" in err
    assert (out / "case001").read_text() == "a file of mine"


def test_overwrite_with_a_folder_where_the_summary_goes_exits_1(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "metrics.csv").mkdir(parents=True)
    (rc, err), _ = run_case(tmp_path, 'mask = "m.png"', "--overwrite")
    assert rc == 1 and "metrics.csv' is in the way: it is not a file" in err


def test_eval_cli_with_a_seed_beyond_the_range_exits_1_before_any_model(tmp_path: Path) -> None:
    rc, err = run(["eval", str(tmp_path), "--out", str(tmp_path / "out"), "--seed", str(2**40)])
    assert rc == 1 and "seed must be an integer in 0..2147483647, not 1099511627776" in err
