"""One edit path (core.pipeline.run_edit): the worker, ``maskpix-cli run`` and ``maskpix-cli eval`` give the
same images, metrics and provenance for one request; the evaluation varies any EditParams field; an old
eval-config.json still resumes."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from maskpix_desktop.cli import main
from maskpix_desktop.core import evaluation as ev
from maskpix_desktop.core import images, masks
from maskpix_desktop.core.errors import Cancelled
from maskpix_desktop.core.export import json_safe
from maskpix_desktop.core.jobs import EditParams, EditRequest, EditResult
from maskpix_desktop.core.pipeline import run_edit
from maskpix_desktop.testing.eval_data import ellipse_mask, synthetic_image

ITEM = "600000000000"
INSTRUCTION = "make the ball red"
#: Not the editor's defaults: the evaluation must pass every field through.
PARAMS = EditParams(
    INSTRUCTION,
    steps=2,
    text_scale=6.0,
    image_scale=1.25,
    seed=77,
    mask_mode="pixel",
    long_side=64,
    dilate=3,
    feather=1.5,
    seam="poisson",
    negative_prompt="blurry",
    latent_dilate=5,
    crop_pad=0.3,
)
EVAL_FLAGS = [
    *("--steps", "2", "--text-scale", "6.0", "--image-scale", "1.25", "--seed", "77", "--long-side", "64"),
    *("--dilate", "3", "--feather", "1.5", "--seam", "poisson", "--negative-prompt", "blurry"),
    *("--latent-dilate", "5", "--crop-pad", "0.3", "--device", "cpu", "--no-progress"),
]


@pytest.fixture(scope="module")
def pie_one(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PIE-Bench folder with one item (no source caption: no CLIP direction, as in the app)."""
    root = tmp_path_factory.mktemp("pie_one") / "PIE"
    (root / "annotation_images").mkdir(parents=True)
    images.save_image(root / "annotation_images" / "ball.png", synthetic_image(512, 512, 3))
    record = {
        "image_path": "ball.png",
        "original_prompt": "",
        "editing_prompt": "a red ball",
        "editing_instruction": INSTRUCTION,
        "editing_type_id": "6",
        "mask": masks.pie_rle_encode(ellipse_mask(512, 512, 3)),
    }
    (root / "mapping_file.json").write_text(json.dumps({ITEM: record}), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def request_of_item(pie_one: Path) -> EditRequest:
    """The request the evaluation makes for the pixel run (image and annotated mask, loaded as it does)."""
    _, items = ev.read_dataset(pie_one)
    loaded = ev.load_item(items[0])
    return EditRequest(image=loaded.image, mask=loaded.edit_mask, params=PARAMS)


@pytest.fixture(scope="module")
def eval_row(pie_one: Path, tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("eval_one") / "run"
    argv = ["eval", str(pie_one), "--out", str(out), "--models-dir", str(tiny_models_dir), *EVAL_FLAGS]
    assert main([*argv, "--modes", "baseline,pixel"]) == 0
    rows = {r["mode"]: r for r in ev.read_rows(out / "results.jsonl")}
    assert rows["pixel"]["status"] == "ok", rows["pixel"]["error"]
    return out, rows


@pytest.fixture(scope="module")
def cli_case(request_of_item: EditRequest, tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("cli_one")
    image, mask = base / "ball.png", base / "ball_mask.png"
    images.save_image(image, request_of_item.image)
    images.save_image(mask, request_of_item.mask.astype(np.uint8) * 255)
    fields = "\n".join(f"{k} = {json.dumps(v)}" for k, v in PARAMS.to_dict().items())
    cases = base / "cases.toml"
    cases.write_text(
        f'[[case]]\nname = "ball"\nimage = "{image.as_posix()}"\nmask = "{mask.as_posix()}"\n{fields}\n',
        encoding="utf-8",
    )
    out = base / "out"
    assert (
        main(["run", str(cases), "--out", str(out), "--models-dir", str(tiny_models_dir), "--device", "cpu"])
        == 0
    )
    return out / "ball"


@pytest.fixture(scope="module")
def worker_result(qapp, request_of_item: EditRequest, tiny_models_dir: Path) -> EditResult:
    """The request through the app's model-service thread (ModelClient, real ModelService)."""
    from maskpix_desktop.core.service import ModelChoice, ModelService
    from maskpix_desktop.ui.worker import MessageKind, ModelClient

    app = qapp
    client = ModelClient(lambda: ModelService(ModelChoice(models_dir=str(tiny_models_dir), device="cpu")))
    final = []
    client.message.connect(lambda m: m.final and final.append(m))
    client.start()
    try:
        client.edit(request_of_item)
        deadline = threading.Event()
        timer = threading.Timer(300, deadline.set)
        timer.start()
        while not final and not deadline.is_set():
            app.processEvents()
            deadline.wait(0.01)
        timer.cancel()
    finally:
        assert client.shutdown(30000)
    assert final and final[0].kind is MessageKind.FINISHED, final and final[0].error
    return final[0].result


def _rgb(path: Path) -> np.ndarray:
    return images.load_image(path)


def test_worker_cli_and_eval_give_identical_images_and_metrics(worker_result, cli_case, eval_row) -> None:
    out, rows = eval_row
    slug = ev.item_folder(ITEM)
    for view, mode in (("baseline", "baseline"), ("blended", "pixel")):
        from_worker = getattr(worker_result, view)
        np.testing.assert_array_equal(_rgb(cli_case / f"{view}.png"), from_worker)
        np.testing.assert_array_equal(_rgb(out / "items" / slug / f"{mode}.png"), from_worker)
    meta = json.loads((cli_case / "metadata.json").read_text(encoding="utf-8"))
    metrics = json_safe(worker_result.metrics)
    assert metrics["blended"]["clip_score"] and "leakage_mean" in metrics["blended"]
    assert meta["metrics"] == metrics
    assert rows["baseline"]["edit_metrics"] == metrics["baseline"]
    assert rows["pixel"]["edit_metrics"] == metrics["blended"]
    for model in (meta["model"], rows["pixel"]["model"]):  # the same provenance on every path
        assert model == worker_result.model
    assert meta["params"] == PARAMS.to_dict()
    assert rows["pixel"]["config"] == {
        **{k: v for k, v in PARAMS.to_dict().items() if k not in ("instruction", "mask_mode")},
        "pie_border": True,
        "precision": "auto",
    }


def test_eval_passes_every_edit_field(eval_row, tiny_models_dir: Path, pie_one: Path, tmp_path: Path) -> None:
    """Flags of fields the evaluation could not vary before (seam, negative prompt, latent dilate, crop
    padding) reach the editor: another seam gives another image."""
    out, rows = eval_row
    other = tmp_path / "no-seam"
    flags = [f if f != "poisson" else "none" for f in EVAL_FLAGS]
    argv = ["eval", str(pie_one), "--out", str(other), "--models-dir", str(tiny_models_dir), *flags]
    assert main([*argv, "--modes", "pixel"]) == 0
    (row,) = ev.read_rows(other / "results.jsonl")
    assert row["config"]["seam"] == "none" and rows["pixel"]["config"]["seam"] == "poisson"
    a, b = _rgb(out / rows["pixel"]["files"]["output"]), _rgb(other / row["files"]["output"])
    assert not np.array_equal(a, b)


def test_an_old_eval_config_without_the_new_fields_still_resumes(
    tiny_models_dir: Path, pie_one: Path, tmp_path: Path, capsys
) -> None:
    """eval-config.json and rows written before the evaluation took EditParams lack seam, negative_prompt,
    latent_dilate and crop_pad: they count with the values those runs used, so the same run resumes
    (nothing redone), and a run with another value is refused naming the field."""
    out = tmp_path / "old"
    argv = ["eval", str(pie_one), "--out", str(out), "--models-dir", str(tiny_models_dir), "--device", "cpu"]
    argv += ["--steps", "1", "--long-side", "64", "--no-progress", "--modes", "pixel"]
    assert main(argv) == 0
    legacy = set(ev.LEGACY_CONFIG_DEFAULTS)
    record = json.loads((out / "eval-config.json").read_text())
    assert legacy <= set(record["config"])
    record["config"] = {k: v for k, v in record["config"].items() if k not in legacy}  # as written before
    (out / "eval-config.json").write_text(json.dumps(record))
    for path in (out / "results.jsonl", *out.glob("shard-*.jsonl")):
        rows = ev.read_rows(path)
        for r in rows:
            r["config"] = record["config"]
        path.write_text("".join(json.dumps(json_safe(r)) + "\n" for r in rows))
    shard = (out / "shard-0.jsonl").read_bytes()

    assert main(argv) == 0
    assert (out / "shard-0.jsonl").read_bytes() == shard  # resumed: nothing to redo
    capsys.readouterr()
    assert main([*argv, "--seam", "poisson"]) == 1
    assert "config.seam: 'none' -> 'poisson'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ run_edit itself


class _Editor:
    """Returns the image as every view; sets ``cancel_on_run`` when asked."""

    def __init__(self, cancel: threading.Event | None = None):
        self.cancel = cancel

    def run(self, req: EditRequest, on_step=None, cancel=None) -> EditResult:
        if on_step is not None:
            on_step(1, 1, "baseline")
        if self.cancel is not None:
            self.cancel.set()
        img = req.image
        return EditResult(req, img.copy(), 255 - img, img.copy(), np.ones(img.shape[:2]), img.shape[:2])


def _small_request() -> EditRequest:
    img = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    mask = np.zeros((24, 32), bool)
    mask[6:18, 8:24] = True
    return EditRequest(image=img, mask=mask, params=EditParams("make it red", steps=1))


class _BrokenClip:
    name = "broken"

    def image_features(self, images):
        raise RuntimeError("no CLIP today")


def test_run_edit_records_a_metrics_failure_and_keeps_the_edit() -> None:
    result = run_edit(_Editor(), _small_request(), clip=_BrokenClip(), model_info=lambda: {"device": "cpu"})
    assert result.metrics == {} and result.model["metrics_error"].startswith("RuntimeError: no CLIP today")
    assert "device" not in result.model  # provenance of metrics that did not happen is not claimed
    with pytest.raises(RuntimeError, match="no CLIP today"):
        run_edit(_Editor(), _small_request(), clip=_BrokenClip(), strict=True)


def test_run_edit_metrics_of_both_views_and_provenance_without_clip() -> None:
    steps: list[tuple[int, int, str]] = []
    result = run_edit(
        _Editor(), _small_request(), model_info=lambda: {"device": 1}, progress=lambda *a: steps.append(a)
    )
    assert steps == [(1, 1, "baseline"), (1, 1, "metrics")] and set(result.metrics) == {"baseline", "blended"}
    assert result.metrics["baseline"]["leakage_mean"] == 0.0 and result.metrics["blended"]["leakage_mean"] > 0
    assert result.model == {"device": "1"} and "clip_score" not in result.metrics["blended"]
    assert run_edit(_Editor(), _small_request(), metrics=False).metrics == {}


def test_run_edit_raises_cancelled_when_cancelled_during_the_edit() -> None:
    cancel = threading.Event()
    with pytest.raises(Cancelled):
        run_edit(_Editor(cancel), _small_request(), cancel=cancel)


def test_run_edit_captions_add_the_clip_direction(tiny_models_dir: Path) -> None:
    from maskpix_desktop.core.service import ModelChoice, ModelService

    clip = ModelService(ModelChoice(models_dir=str(tiny_models_dir), device="cpu")).clip()
    assert clip is not None
    plain = run_edit(_Editor(), _small_request(), clip=clip)
    both = run_edit(_Editor(), _small_request(), clip=lambda: clip, captions=("a ball", "a red ball"))
    assert "clip_direction" not in plain.metrics["blended"] and "clip_direction" in both.metrics["blended"]
    assert both.model["clip_model"] == clip.name == plain.model["clip_model"]
    assert both.metrics["blended"]["clip_score"] == plain.metrics["blended"]["clip_score"]
