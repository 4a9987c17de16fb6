"""Cases files for the headless CLI: parsing, path resolution and every validation message."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from maskpix_desktop.core.cases import CaseError, load_cases, parse_case
from maskpix_desktop.core.errors import MaskPixError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "resources" / "examples" / "cases.toml"


def write_cases(tmp_path: Path, body: str, name: str = "cases.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def one_case(tmp_path: Path, extra: str) -> Path:
    """A cases file with one otherwise valid case plus ``extra`` TOML lines."""
    body = '[[case]]\nname = "one"\nimage = "img.png"\ninstruction = "make it blue"\n' + textwrap.dedent(
        extra
    )
    return write_cases(tmp_path, body)


def test_packaged_example_is_valid() -> None:
    cases = load_cases(EXAMPLE)
    assert [c.name for c in cases] == ["shirt-red", "dog-robot", "car-hovercraft"]
    shirt, dog, car = cases
    samples = REPO / "resources" / "samples"
    assert shirt.image == samples / "person.jpg" and shirt.image.is_file()
    assert shirt.mask is None and shirt.uses_sam
    assert shirt.points == ((255.0, 380.0), (255.0, 180.0)) and shirt.labels == (1, 0)
    assert shirt.params.instruction == "make the shirt red leather"
    assert (shirt.params.seed, shirt.params.steps, shirt.params.mask_mode) == (1234, 20, "pixel")
    assert shirt.params.text_scale == 7.5 and shirt.params.image_scale == 1.5 and shirt.params.feather == 2.0
    assert dog.box == (145.0, 130.0, 520.0, 410.0) and dog.uses_sam and dog.params.mask_mode == "latent"
    assert (dog.params.dilate, dog.params.feather) == (4, 3.0)
    assert car.mask == samples / "car_mask.png" and car.mask.is_file() and not car.uses_sam
    assert car.params.mask_mode == "crop"
    assert all(c.extra == {} and c.candidate is None for c in cases)


def test_relative_paths_resolve_against_the_cases_file(tmp_path: Path, monkeypatch) -> None:
    sub = tmp_path / "deep" / "er"
    sub.mkdir(parents=True)
    path = write_cases(
        sub,
        """
        [[case]]
        name = "rel"
        image = "../pics/a.png"
        mask = "masks/a_mask.png"
        instruction = "x"

        [[case]]
        name = "abs"
        image = "/data/b.png"
        box = [0, 0, 5, 5]
        instruction = "x"
        """,
    )
    monkeypatch.chdir(tmp_path)  # the working directory must not matter
    rel, absolute = load_cases(Path("deep/er/cases.toml"))
    assert rel.image == (tmp_path / "deep" / "pics" / "a.png").resolve()
    assert rel.mask == (sub / "masks" / "a_mask.png").resolve()
    assert rel.image.is_absolute() and rel.mask.is_absolute()
    assert absolute.image == Path("/data/b.png")
    assert load_cases(path)[0].image == rel.image


def test_unnamed_cases_get_numbered_names_and_names_are_slugged(tmp_path: Path) -> None:
    path = write_cases(
        tmp_path,
        """
        [[case]]
        image = "a.png"
        mask = "m.png"
        instruction = "x"

        [[case]]
        name = "my case / v2"
        image = "a.png"
        mask = "m.png"
        instruction = "x"
        """,
    )
    assert [c.name for c in load_cases(path)] == ["case001", "my-case-v2"]


@pytest.mark.parametrize("name", ["..", ".", "../..", ".hidden", "/"])
def test_names_never_escape_or_hide_in_the_output_folder(tmp_path: Path, name: str) -> None:
    # The CLI writes OUT/<name> and replaces it with --overwrite: ".." would be OUT's parent.
    case = parse_case({"name": name, "image": "a.png", "mask": "m.png", "instruction": "x"}, tmp_path, 0)
    assert case.name not in (".", "..") and not case.name.startswith(".") and "/" not in case.name
    assert (tmp_path / case.name).parent == tmp_path


@pytest.mark.parametrize(("first", "second"), [("dup", "dup"), ("a b", "a-b"), ("Dog", "dog")])
def test_duplicate_names_are_refused(tmp_path: Path, first: str, second: str) -> None:
    path = write_cases(
        tmp_path,
        f"""
        [[case]]
        name = "{first}"
        image = "a.png"
        mask = "m.png"
        instruction = "x"

        [[case]]
        name = "{second}"
        image = "b.png"
        mask = "m.png"
        instruction = "y"
        """,
    )
    with pytest.raises(CaseError, match="appears twice"):
        load_cases(path)


def test_free_form_notes_are_kept_in_the_extra_table(tmp_path: Path) -> None:
    path = one_case(
        tmp_path,
        'mask = "m.png"\n[case.extra]\nnote = "from the study"\nrating = 4\n[case.extra.tags]\nx = 1\n',
    )
    (case,) = load_cases(path)
    assert case.extra == {"note": "from the study", "rating": 4, "tags": {"x": 1}}


def test_unknown_key_outside_extra_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CaseError, match=r"case 'one': 'note' is not a case key \(.*\[case.extra\]"):
        load_cases(one_case(tmp_path, 'mask = "m.png"\nnote = "from the study"\n'))


def test_candidate_and_all_params_are_read(tmp_path: Path) -> None:
    path = one_case(
        tmp_path,
        """
        points = [[10, 20]]
        candidate = 2
        steps = 3
        seed = 7
        text_scale = 5
        image_scale = 1.2
        mask_mode = "latent"
        long_side = 256
        dilate = 2
        feather = 1.5
        seam = "poisson"
        negative_prompt = "blurry"
        latent_dilate = 4
        crop_pad = 0.3
        """,
    )
    (case,) = load_cases(path)
    assert case.candidate == 2 and case.points == ((10.0, 20.0),) and case.labels == (1,)
    p = case.params
    assert (p.steps, p.seed, p.text_scale, p.image_scale, p.mask_mode) == (3, 7, 5, 1.2, "latent")
    assert (p.long_side, p.dilate, p.feather, p.seam, p.negative_prompt) == (256, 2, 1.5, "poisson", "blurry")
    assert (p.latent_dilate, p.crop_pad) == (4, 0.3)


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ('points = [[1, 2], [3, 4]]\nlabels = [1, 0]\nbox = [0, 0, 9, 9]\nmask = "m.png"', None),
        ("points = [[1, 2], [3, 4]]\nlabels = [1]", "'labels' must have one"),
        ("points = [[1, 2]]\nlabels = [2]", "'labels' must have one"),
        ('points = [[1, 2]]\nlabels = ["x"]', "'labels' must have one"),
        ("points = [[1, 2]]\nlabels = [true]", "'labels' must have one"),
        ("points = [[1, 2]]\nlabels = 1", "'labels' must have one"),
        ("labels = [1]\nbox = [0, 0, 9, 9]", "'labels' must have one"),
    ],
)
def test_label_validation(tmp_path: Path, extra: str, match: str | None) -> None:
    path = one_case(tmp_path, extra)
    if match is None:
        assert load_cases(path)[0].labels == (1, 0)
        return
    with pytest.raises(CaseError, match=match) as info:
        load_cases(path)
    assert "case 'one'" in str(info.value)


@pytest.mark.parametrize(
    "points",
    ["[255, 380]", "[[1, 2, 3]]", "[[1]]", '[["a", 2]]', "5", '"1,2"', "[[1, nan]]", "[[true, 2]]"],
)
def test_point_validation(tmp_path: Path, points: str) -> None:
    with pytest.raises(CaseError, match=r"case 'one': 'points' must be a list of \[x, y\]"):
        load_cases(one_case(tmp_path, f"points = {points}"))


@pytest.mark.parametrize(
    ("box", "match"),
    [
        ("[1, 2, 3]", "'box' must be"),
        ("[1, 2, 3, 4, 5]", "'box' must be"),
        ('[1, 2, "a", 4]', "'box' must be"),
        ("5", "'box' must be"),
        ('"0 0 9 9"', "'box' must be"),
        ("[0, 0, inf, 9]", "'box' must be"),
        ("[10, 10, 5, 20]", "x1 > x0"),
        ("[10, 10, 20, 10]", "y1 > y0"),
    ],
)
def test_box_validation(tmp_path: Path, box: str, match: str) -> None:
    with pytest.raises(CaseError, match=match) as info:
        load_cases(one_case(tmp_path, f"box = {box}"))
    assert "case 'one'" in str(info.value)


def test_valid_box_is_floats(tmp_path: Path) -> None:
    (case,) = load_cases(one_case(tmp_path, "box = [1, 2.5, 30, 40]"))
    assert case.box == (1.0, 2.5, 30.0, 40.0) and case.uses_sam


@pytest.mark.parametrize("candidate", ["-1", "3", '"best"', "1.0", "true"])
def test_candidate_validation(tmp_path: Path, candidate: str) -> None:
    with pytest.raises(CaseError, match="case 'one': 'candidate' must be"):
        load_cases(one_case(tmp_path, f"box = [0, 0, 9, 9]\ncandidate = {candidate}"))


def test_a_mask_file_or_sam_prompts_are_required(tmp_path: Path) -> None:
    with pytest.raises(CaseError, match="case 'one': give a 'mask' file, or SAM 'points'/'box' prompts"):
        load_cases(one_case(tmp_path, ""))
    with pytest.raises(CaseError, match="give a 'mask' file"):
        load_cases(one_case(tmp_path, "points = []"))
    (with_mask,) = load_cases(one_case(tmp_path, 'mask = "m.png"\npoints = [[1, 2]]'))
    assert with_mask.mask is not None and not with_mask.uses_sam  # the mask file wins over prompts


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ('[[case]]\nname = "a"\nimage = "i.png"\nmask = "m.png"\n', "case 'a': 'instruction' is required"),
        (
            '[[case]]\nname = "a"\nimage = "i.png"\nmask = "m.png"\ninstruction = "  "\n',
            "'instruction' is required",
        ),
        ('[[case]]\nname = "a"\ninstruction = "x"\nmask = "m.png"\n', "case 'a': 'image' is required"),
    ],
)
def test_required_fields(tmp_path: Path, body: str, match: str) -> None:
    with pytest.raises(CaseError, match=match):
        load_cases(write_cases(tmp_path, body))


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ('mask_mode = "magic"', "mask_mode must be one of"),
        ('seam = "glue"', "seam must be one of"),
        ("steps = 0", r"steps must be an integer in 1\.\.1000, not 0"),
        ("image_scale = 0.5", r"image_scale must be a finite number in 1\.\.100, not 0\.5"),
        ("long_side = 32", r"long_side must be an integer in 64\.\.2048, not 32"),
        ("feather = -1.0", r"feather must be a finite number in 0\.\.200, not -1\.0"),
        ('steps = "many"', "steps must be an integer in 1..1000, not 'many'"),
        ("steps = 2.5", "steps must be an integer in 1..1000, not 2.5"),
        ("seed = true", "seed must be an integer in 0..2147483647, not True"),
        ('text_scale = "high"', "text_scale must be a finite number in 0..100, not 'high'"),
        ("negative_prompt = 3", "negative_prompt must be a string, not 3"),
    ],
)
def test_parameter_validation_names_the_case(tmp_path: Path, extra: str, match: str) -> None:
    with pytest.raises(CaseError, match=match) as info:
        load_cases(one_case(tmp_path, 'mask = "m.png"\n' + extra))
    assert str(info.value).startswith("case 'one': ")


def test_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(CaseError, match="cases file not found"):
        load_cases(tmp_path / "nope.toml")
    with pytest.raises(CaseError, match="is not valid TOML"):
        load_cases(write_cases(tmp_path, '[[case]]\nname = "a\n'))
    with pytest.raises(CaseError, match="has no \\[\\[case\\]\\] tables"):
        load_cases(write_cases(tmp_path, 'title = "nothing"\n'))
    with pytest.raises(CaseError, match="array of tables"):  # [case] instead of [[case]]
        load_cases(write_cases(tmp_path, '[case]\nname = "a"\nimage = "i.png"\ninstruction = "x"\n'))
    bad_utf8 = tmp_path / "latin1.toml"
    bad_utf8.write_bytes(b'[[case]]\nname = "caf\xe9"\n')
    with pytest.raises(CaseError, match="is not valid TOML"):
        load_cases(bad_utf8)
    assert issubclass(CaseError, MaskPixError)
