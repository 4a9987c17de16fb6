"""Human study (issue 16.5): ``maskpix-cli study make`` blinds an eval folder, simulated raters, and
``study report`` un-blinds: means with bootstrap intervals, Krippendorff's alpha, win rates."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

from maskpix_desktop.cli import main
from maskpix_desktop.core import images
from maskpix_desktop.core.study import Answers, StudyError, load_answers, load_study, make_study, save_answers
from maskpix_desktop.core.study.agreement import ordinal_alpha, reliability_matrix
from maskpix_desktop.core.study.stats import item_bootstrap_ci, win_rates
from maskpix_desktop.testing.study_data import make_fake_eval, simulate_raters, study_key

METHODS = ("baseline", "pixel", "latent")


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fake_eval(tmp_path_factory.mktemp("fake_eval") / "run", n_items=12, modes=METHODS)


def make(eval_dir: Path, out: Path, *extra: str) -> int:
    return main(["study", "make", str(eval_dir), "--methods", ",".join(METHODS), "--out", str(out), *extra])


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_make_builds_a_blinded_package_with_one_order_per_rater(eval_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "study"
    assert make(eval_dir, out, "--items", "5", "--raters", "3", "--seed", "7") == 0

    study = load_study(out)
    assert list(study.orders) == ["r1", "r2", "r3"] and len(study.items) == 5
    pairs = {(i, c) for i, it in study.items.items() for c in it.candidates}
    assert len(pairs) == 15
    orders = [study.orders[r] for r in study.orders]
    assert all(sorted(o) == sorted(pairs) for o in orders)  # every rater sees every candidate once
    assert len({tuple(o) for o in orders}) == 3  # in their own order
    manifest = (out / "study.json").read_text(encoding="utf-8")
    for method in METHODS:
        assert method not in manifest
    key = study_key(out)
    code_sets = [tuple(sorted(it.candidates)) for it in study.items.values()]
    assert len(set(code_sets)) == 5  # fresh codes per item: a code means nothing on the next item
    by_method = {m: [c for c, mm in key.items() if mm == m] for m in METHODS}
    assert all(len(v) == 5 for v in by_method.values())
    raw = json.loads((out / "key.json").read_text(encoding="utf-8"))
    for sid, item in study.items.items():
        source = eval_dir / "items"
        src_item = raw["items"][sid]["source_item"]
        src_folder = next(p for p in source.iterdir() if p.name.startswith(src_item))
        for code, rel in item.candidates.items():
            expected = (src_folder / f"{key[f'{sid}/{code}']}.png").read_bytes()
            assert (out / rel).read_bytes() == expected
        assert (out / item.original).read_bytes() == (src_folder / "original.png").read_bytes()
        assert item.instruction
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask  # other accounts can read it, as any new folder


def test_make_with_a_seed_repeats_items_codes_and_orders(eval_dir: Path, tmp_path: Path) -> None:
    a = make_study(eval_dir, METHODS, tmp_path / "a", n_items=4, raters=2, seed=11)
    b = make_study(eval_dir, METHODS, tmp_path / "b", n_items=4, raters=2, seed=11)
    c = make_study(eval_dir, METHODS, tmp_path / "c", n_items=4, raters=2, seed=12)
    assert a.orders == b.orders and study_key(a.folder) == study_key(b.folder)
    assert a.orders != c.orders
    assert a.study_id != b.study_id  # answers of one package never count for the other


def test_make_strips_embedded_text_that_could_name_the_method(tmp_path: Path) -> None:
    ev = make_fake_eval(tmp_path / "run", n_items=2, modes=("baseline", "pixel"))
    for path in ev.glob("items/*/pixel.png"):
        images.save_image(path, images.load_image(path), text={"mask_mode": "pixel"})
    study = make_study(ev, ["baseline", "pixel"], tmp_path / "study", raters=1, seed=0)
    for item in study.items.values():
        for rel in item.candidates.values():
            assert images.read_image_text(study.folder / rel) == {}


def test_make_takes_only_items_complete_for_every_method(tmp_path: Path) -> None:
    ev = make_fake_eval(tmp_path / "run", n_items=4, modes=METHODS)
    rows = [json.loads(x) for x in (ev / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    items = sorted({r["item"] for r in rows})
    for r in rows:
        if r["item"] == items[0] and r["mode"] == "latent":
            r.update(status="error", error="out of memory", files={})
    (ev / "results.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    gone = next(r for r in rows if r["item"] == items[1] and r["mode"] == "pixel")["files"]["output"]
    (ev / gone).unlink()

    study = make_study(ev, METHODS, tmp_path / "study", raters=1, seed=0)
    raw = json.loads((study.folder / "key.json").read_text(encoding="utf-8"))
    assert sorted(e["source_item"] for e in raw["items"].values()) == items[2:]
    two = make_study(ev, ["baseline", "pixel"], tmp_path / "two", raters=1, seed=0)
    assert len(two.items) == 3  # the latent error does not matter without latent


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--items", "13"], "only 12 items have an output for every method"),
        (["--methods", "baseline,blur"], "unknown method 'blur'"),
        (["--methods", "pixel"], "at least two different methods"),
        (["--raters", "0"], "at least one rater"),
        (["--raters", "al ice,bob"], "'al ice' is not a usable rater id"),
        (["--raters", "bob,bob"], "repeated"),
    ],
)
def test_make_refuses_bad_input_with_a_named_error(
    eval_dir: Path, tmp_path: Path, capsys, args, message
) -> None:
    argv = ["study", "make", str(eval_dir), "--methods", ",".join(METHODS), "--out", str(tmp_path / "s")]
    assert main(argv + args) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert not (tmp_path / "s").exists() and list(tmp_path.iterdir()) == []


def test_make_never_writes_into_a_non_empty_folder_or_from_a_folder_without_rows(
    eval_dir: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    assert make(eval_dir, out) == 1
    assert "is not empty" in capsys.readouterr().err and [p.name for p in out.iterdir()] == ["notes.txt"]
    empty = tmp_path / "empty_eval"
    empty.mkdir()
    assert make(empty, tmp_path / "s2") == 1
    err = capsys.readouterr().err
    assert str(empty) in err and "no evaluation rows" in err
    assert make(tmp_path / "nope", tmp_path / "s3") == 1
    assert "no such evaluation folder" in capsys.readouterr().err
    made = tmp_path / "made_empty"
    made.mkdir()
    assert make(eval_dir, made, "--items", "2", "--raters", "1") == 0  # an empty folder is fine
    assert (made / "study.json").is_file()


def test_answers_round_trip_and_bad_answers_name_file_and_field(eval_dir: Path, tmp_path: Path) -> None:
    study = make_study(eval_dir, METHODS, tmp_path / "s", n_items=2, raters=2, seed=1)
    item, code = study.orders["r1"][0]
    answers = Answers(study.study_id, "r1")
    answers.set(item, code, "region", 4)
    path = save_answers(study, answers)
    again = load_answers(study, "r1")
    assert again.get(item, code, "region") == 4 and again.get(item, code, "instruction") is None
    assert not again.complete(item, code)
    with pytest.raises(ValueError):
        answers.set(item, code, "region", 6)

    data = json.loads(path.read_text(encoding="utf-8"))
    data["answers"][f"{item}/{code}"]["region"] = 7
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(StudyError, match=rf"answers-r1.json: answers.{item}/{code}.region is int 7"):
        load_answers(study, "r1")
    data["answers"] = {f"{item}/zzzz": {"region": 3}}
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(StudyError, match="no candidate shown to rater 'r1'"):
        load_answers(study, "r1")
    data["study_id"] = "other"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(StudyError, match="answers to another study"):
        load_answers(study, "r1")
    path.write_text("{torn", encoding="utf-8")
    with pytest.raises(StudyError, match="answers-r1.json: not valid JSON"):
        load_answers(study, "r1")


def _rate_from_truth(truth: dict[str, dict[str, float]], noise: float, seed: int):
    rng = np.random.default_rng(seed)

    def rate(rater: str, item: str, method: str, question: str) -> int:
        level = truth[question][method] + (int(item[1:]) % 3 - 1)  # items differ too
        return int(np.clip(np.rint(level + rng.normal(0, noise)), 1, 5))

    return rate


TRUTH = {
    "region": {"baseline": 2.0, "latent": 3.0, "pixel": 4.0},
    "instruction": {"pixel": 2.0, "baseline": 3.0, "latent": 4.0},
}


def test_agreeing_raters_give_alpha_near_one(eval_dir: Path, tmp_path: Path) -> None:
    make_study(eval_dir, METHODS, tmp_path / "s", n_items=12, raters=4, seed=2)
    simulate_raters(tmp_path / "s", _rate_from_truth(TRUTH, noise=0.15, seed=0))
    assert main(["study", "report", str(tmp_path / "s")]) == 0
    agreement = {
        r["question"]: float(r["alpha_ordinal"]) for r in read_csv(tmp_path / "s/report/agreement.csv")
    }
    assert agreement["region"] > 0.9 and agreement["instruction"] > 0.9


def test_random_raters_give_alpha_near_zero(eval_dir: Path, tmp_path: Path) -> None:
    make_study(eval_dir, METHODS, tmp_path / "s", n_items=12, raters=5, seed=3)
    rng = np.random.default_rng(1)
    simulate_raters(tmp_path / "s", lambda *_: int(rng.integers(1, 6)))
    assert main(["study", "report", str(tmp_path / "s")]) == 0
    summary = json.loads((tmp_path / "s/report/report.json").read_text(encoding="utf-8"))
    for row in summary["agreement"]:
        assert abs(row["alpha_ordinal"]) < 0.15, row
        assert row["raters"] == 5 and row["pairable_candidates"] == 36


def test_alpha_is_one_for_identical_raters_and_undefined_without_variation() -> None:
    same = np.array([[1, 2, 3, 4, 5, 2], [1, 2, 3, 4, 5, 2]], dtype=float)
    assert ordinal_alpha(same) == pytest.approx(1.0)
    assert ordinal_alpha(np.full((3, 4), 3.0)) is None
    assert ordinal_alpha(np.array([[1.0, np.nan], [np.nan, 2.0]])) is None  # nothing rated twice
    ratings = [
        {"rater": "a", "item": "i1", "method": "pixel", "question": "region", "value": 5},
        {"rater": "b", "item": "i1", "method": "pixel", "question": "region", "value": 4},
        {"rater": "b", "item": "i2", "method": "latent", "question": "region", "value": 2},
        {"rater": "a", "item": "i2", "method": "latent", "question": "instruction", "value": 1},
    ]
    matrix, units = reliability_matrix(ratings, "region", ["a", "b", "c"])
    assert units == [("i1", "pixel"), ("i2", "latent")]
    np.testing.assert_array_equal(matrix, [[5, np.nan], [4, 2], [np.nan, np.nan]])


def test_report_recovers_the_known_order_of_methods(eval_dir: Path, tmp_path: Path) -> None:
    make_study(eval_dir, METHODS, tmp_path / "s", n_items=12, raters=3, seed=4)
    simulate_raters(tmp_path / "s", _rate_from_truth(TRUTH, noise=0.7, seed=5))
    out = tmp_path / "rep"
    assert main(["study", "report", str(tmp_path / "s"), "--out", str(out)]) == 0

    means = read_csv(out / "means.csv")
    for q, truth in TRUTH.items():
        rows = {r["method"]: r for r in means if r["question"] == q}
        by_mean = sorted(rows, key=lambda m: float(rows[m]["mean"]))
        assert by_mean == sorted(truth, key=truth.get), q
        for r in rows.values():
            assert float(r["ci_low"]) <= float(r["mean"]) <= float(r["ci_high"])
            assert r["n"] == "36" and r["items"] == "12"
    wins = {(w["question"], w["method_a"], w["method_b"]): w for w in read_csv(out / "win_rates.csv")}
    assert float(wins[("region", "pixel", "baseline")]["win_rate"]) > 0.9
    assert float(wins[("instruction", "pixel", "latent")]["win_rate"]) < 0.1
    w = wins[("region", "latent", "pixel")]
    assert int(w["wins"]) + int(w["ties"]) + int(w["losses"]) == int(w["n"]) == 36
    rating_rows = read_csv(out / "ratings.csv")
    assert len(rating_rows) == 12 * 3 * 3 * 2 and {r["method"] for r in rating_rows} == set(METHODS)
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "Krippendorff's α (ordinal)" in md and "bootstrap over items" in md and "IP2P baseline" in md
    png = images.load_image(out / "ratings.png")
    assert png.shape[0] > 200 and png.std() > 0


def test_report_counts_a_partial_rater_and_refuses_a_foreign_key(
    eval_dir: Path, tmp_path: Path, capsys
) -> None:
    study = make_study(eval_dir, METHODS, tmp_path / "s", n_items=3, raters=2, seed=6)
    other = make_study(eval_dir, METHODS, tmp_path / "o", n_items=3, raters=2, seed=6)
    answers = Answers(study.study_id, "r2")
    for item, code in study.orders["r2"][:4]:
        answers.set(item, code, "region", 3)
        answers.set(item, code, "instruction", 4)
    save_answers(study, answers)
    assert main(["study", "report", str(study.folder)]) == 0
    summary = json.loads((study.folder / "report/report.json").read_text(encoding="utf-8"))
    assert summary["progress"]["r2"]["complete"] == 4 and summary["progress"]["r1"]["complete"] == 0
    assert summary["n_ratings"] == 8

    assert main(["study", "report", str(study.folder), "--key", str(other.folder / "key.json")]) == 1
    assert "the key of another study" in capsys.readouterr().err
    (study.folder / "key.json").rename(tmp_path / "kept-away.json")
    assert main(["study", "report", str(study.folder)]) == 1
    err = capsys.readouterr().err
    assert "key.json" in err and "not found" in err
    assert main(["study", "report", str(study.folder), "--key", str(tmp_path / "kept-away.json")]) == 0


def test_bootstrap_interval_groups_ratings_by_item() -> None:
    assert item_bootstrap_ci([[3, 3], [3, 3, 3]]) == (3.0, 3.0)
    assert item_bootstrap_ci([[1, 2, 3]]) is None
    low, high = item_bootstrap_ci([[1, 1], [5, 5], [1, 1], [5, 5]])
    assert 1.0 <= low < 3.0 < high <= 5.0
    ratings = [
        {"question": "region", "item": "i1", "rater": "a", "method": "pixel", "value": 5},
        {"question": "region", "item": "i1", "rater": "a", "method": "baseline", "value": 5},
        {"question": "region", "item": "i2", "rater": "a", "method": "pixel", "value": 4},
        {"question": "region", "item": "i2", "rater": "a", "method": "baseline", "value": 2},
    ]
    table = {(w["method_a"], w["method_b"]): w for w in win_rates(ratings, ["baseline", "pixel"], ["region"])}
    assert table[("pixel", "baseline")] == {
        "question": "region",
        "method_a": "pixel",
        "method_b": "baseline",
        "n": 2,
        "wins": 1,
        "ties": 1,
        "losses": 0,
        "win_rate": 0.75,
    }
    assert table[("baseline", "pixel")]["win_rate"] == 0.25


def test_make_and_report_on_a_real_tiny_eval_run(tiny_models_dir: Path, tmp_path: Path) -> None:
    from maskpix_desktop.testing.eval_data import make_pie_folder

    data = make_pie_folder(tmp_path / "pie", n=1, bad=False)
    run = tmp_path / "run"
    args = ["eval", str(data), "--out", str(run), "--models-dir", str(tiny_models_dir), "--no-clip"]
    args += ["--long-side", "64", "--steps", "2", "--threads", "1", "--device", "cpu", "--no-progress"]
    args += ["--modes", "baseline,pixel"]
    assert main(args) == 0
    study = make_study(run, ["baseline", "pixel"], tmp_path / "s", raters=2, seed=0)
    assert len(study.items) == 1
    for item in study.items.values():
        shapes = {images.load_image(study.folder / p).shape for p in item.candidates.values()}
        assert shapes == {images.load_image(study.folder / item.original).shape}  # sizes do not tell
    simulate_raters(study.folder, lambda r, i, m, q: 5 if m == "pixel" else 2)
    assert main(["study", "report", str(study.folder)]) == 0
    md = (study.folder / "report" / "report.md").read_text(encoding="utf-8")
    assert "| pixel | 5.00 | 5.00 | 2 |" in md  # one item: no interval, never a made-up one


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["items"][0]["candidates"].update(zz="../x.png"), r"candidates.zz = .* leaves the"),
        (lambda d: d["raters"]["r1"].append(["i999", "abcd"]), r"raters.r1\[6\] = .* is no candidate"),
        (lambda d: d["items"][1].pop("instruction"), r"items\[1\]: 'instruction' is missing"),
        (lambda d: d.update(version=99), r"'version' is int 99"),
        (lambda d: d.update(raters=[]), r"raters.* is list"),
    ],
)
def test_a_damaged_manifest_names_the_file_and_field(eval_dir: Path, tmp_path: Path, edit, message) -> None:
    study = make_study(eval_dir, METHODS, tmp_path / "s", n_items=2, raters=1, seed=0)
    path = study.folder / "study.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    edit(data)
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(StudyError, match=message) as info:
        load_study(study.folder)
    assert str(path) in str(info.value)


def test_a_written_report_is_read_back_and_found_from_its_eval_folder(eval_dir: Path, tmp_path: Path) -> None:
    from maskpix_desktop.core.study import find_study_report, read_study_report, write_study_report

    study = make_study(eval_dir, METHODS, tmp_path / "s", n_items=4, raters=2, seed=3)
    simulate_raters(study.folder, lambda r, i, m, q: 3)
    written = json.loads(json.dumps(write_study_report(study.folder), default=str))
    for path in (study.folder, study.folder / "report", study.folder / "report" / "report.json"):
        report = read_study_report(path)
        assert report["means"] == written["means"] and report["methods"] == list(METHODS)
        assert report["plot"] == str(study.folder / "report" / "ratings.png")
    assert find_study_report(tmp_path) is None  # tmp_path is not the eval folder it was made from

    bad = json.loads((study.folder / "report" / "report.json").read_text(encoding="utf-8"))
    bad["means"][1]["mean"] = "high"
    (study.folder / "report" / "report.json").write_text(json.dumps(bad), encoding="utf-8")
    with pytest.raises(StudyError, match=r"report.json: means\[1\].mean is 'high', not a number"):
        read_study_report(study.folder)
