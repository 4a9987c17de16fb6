"""``maskpix --self-test`` / ``maskpix-cli self-test``: prove an install (or a frozen bundle) works.

Builds tiny random-weight models in a temporary folder and runs them through the real code paths: the
model service resolving them through ``$MASKPIX_MODELS``, SAM (encode + point prompt + refine), an
InstructPix2Pix edit in ``pixel`` and ``latent`` mode, the metrics with the tiny CLIP, and the main window
built offscreen opening a bundled sample (its SAM encode goes through the model-service thread). Prints
the versions, the device and the models folder, one PASS/FAIL line per check, and returns 0 only when
every check passed. Needs no weights, no network and no display; takes about a minute on a CPU.

Importing this module is cheap (no torch, no Qt): every heavy import happens inside a check, so a
missing library in a bundle shows up as a failed check rather than a crash.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from maskpix_desktop import __version__

#: Distributions whose metadata (``importlib.metadata``) must be present: the libraries query it at import
#: time (diffusers decides "torch is not installed" without it). ``build.spec`` copies exactly these.
METADATA_DISTS = (
    "torch",
    "torchvision",
    "diffusers",
    "transformers",
    "huggingface_hub",
    "safetensors",
    "tokenizers",
    "accelerate",
    "open_clip_torch",
    "segment_anything",
    "numpy",
    "pillow",
    "tqdm",
    "regex",
    "requests",
    "filelock",
    "packaging",
    "pyyaml",
    "PySide6",
)

#: (label, module) pairs printed in the header; every one must import.
VERSIONS = (
    ("python", None),
    ("torch", "torch"),
    ("diffusers", "diffusers"),
    ("transformers", "transformers"),
    ("PySide6", "PySide6"),
    ("open_clip", "open_clip"),
    ("numpy", "numpy"),
    ("segment_anything", "segment_anything"),
    ("opencv", "cv2"),
)

INSTRUCTION = "make it red"
STEPS = 2
LONG_SIDE = 64
H, W = 72, 96  # engine test image (not a multiple of 8: the working-size resize path runs too)
GUI_TIMEOUT_S = 180.0


class _Skipped(Exception):
    """A check could not run because one it depends on failed."""


class _Context:
    """What the checks share: the temp folder and what earlier checks left (models, service, results)."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.values: dict[str, Any] = {}

    def need(self, key: str) -> Any:
        try:
            return self.values[key]
        except KeyError:
            raise _Skipped(f"skipped: needs '{key}' from an earlier check") from None


Check = Callable[[_Context], str]


# ----------------------------------------------------------------------------------------- checks
def check_imports(ctx: _Context) -> str:
    """Every model library imports (in a bundle: hidden imports, binaries and data files are all there)."""
    for _label, module in VERSIONS:
        if module:
            importlib.import_module(module)
    import numpy as np
    import open_clip

    # What the real weights need beyond the tiny ones: the hub IP2P folder's component classes (lazy
    # modules: touch the classes) and open_clip's built-in config of the registry CLIP.
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionInstructPix2PixPipeline
    from transformers import CLIPImageProcessor, CLIPTextModel, CLIPTokenizer

    from maskpix_desktop.core import models

    del EulerAncestralDiscreteScheduler, StableDiffusionInstructPix2PixPipeline, CLIPTextModel, CLIPTokenizer
    pixels = CLIPImageProcessor()(images=np.zeros((40, 30, 3), np.uint8), return_tensors="pt")["pixel_values"]
    if tuple(pixels.shape) != (1, 3, 224, 224):
        raise RuntimeError(f"CLIPImageProcessor gave {tuple(pixels.shape)}")
    clip_model = models.get_spec(models.DEFAULT_CLIP).clip_model
    if open_clip.get_model_config(clip_model) is None:
        raise RuntimeError(f"open_clip has no model config for {clip_model} (model_configs/ not bundled?)")
    return ", ".join(module for _label, module in VERSIONS if module)


def check_metadata(ctx: _Context) -> str:
    """``importlib.metadata`` knows every library that the others ask about at import time."""
    import importlib.metadata as md

    missing = []
    for dist in METADATA_DISTS:
        try:
            md.version(dist)
        except md.PackageNotFoundError:
            missing.append(dist)
    if missing:
        raise RuntimeError(f"no package metadata for: {', '.join(missing)}")
    return f"{len(METADATA_DISTS)} distributions"


def check_device(ctx: _Context) -> str:
    """The automatic device choice works; on a GPU, a small matmul and a convolution run there."""
    import torch

    from maskpix_desktop.core import models

    device = models.resolve_device("auto")
    label = models.device_label(device)
    if device.startswith("cuda"):
        x = torch.randn(64, 64, device=device)
        conv = torch.nn.Conv2d(3, 4, 3).to(device)
        y = conv(torch.randn(1, 3, 16, 16, device=device))
        if not torch.isfinite((x @ x).sum() + y.sum()).item():
            raise RuntimeError(f"non-finite result on {device}")
        return f"{label}: matmul and conv ran on {device} (the checks below use the CPU)"
    cuda = f"; torch built with CUDA {torch.version.cuda}, no GPU visible" if torch.version.cuda else ""
    return f"{label}{cuda}"


def check_tiny_models(ctx: _Context) -> str:
    """Write the tiny models and point ``$MASKPIX_MODELS`` at them (restored when the self-test ends)."""
    from maskpix_desktop.core.models import ENV_MODELS_DIR
    from maskpix_desktop.testing.tiny_models import make_tiny_models

    root = make_tiny_models(ctx.tmp / "models", seed=0)
    os.environ[ENV_MODELS_DIR] = str(root)
    ctx.values["models"] = root
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    return f"{root} ({size / 1e6:.1f} MB)"


def check_models_dir(ctx: _Context) -> str:
    """The model service finds the models folder through ``$MASKPIX_MODELS`` and reads its manifest."""
    from maskpix_desktop.core.service import ModelChoice, ModelService

    root = ctx.need("models")
    service = ModelService(ModelChoice(device="cpu"))  # no models_dir: resolved from the environment
    if service.choice.root != root:
        raise RuntimeError(f"models folder resolved to {service.choice.root}, expected {root}")
    sam_path, _ = service.choice.sam_checkpoint()
    if Path(sam_path).parent != root or not str(service.choice.ip2p).startswith(str(root)):
        raise RuntimeError(f"manifest not applied: sam={sam_path}, ip2p={service.choice.ip2p}")
    service.check(sam=True, ip2p=True)
    ctx.values["service"] = service
    return "$MASKPIX_MODELS -> manifest -> sam, ip2p, clip"


def _test_image() -> tuple[Any, Any]:
    import numpy as np

    yy, xx = np.mgrid[0:H, 0:W]
    img = np.stack([xx * 255 // (W - 1), yy * 255 // (H - 1), (xx + yy) * 255 // (H + W - 2)], axis=-1)
    mask = np.zeros((H, W), bool)
    mask[20:56, 24:72] = True
    return img.astype(np.uint8), mask


def check_sam(ctx: _Context) -> str:
    """SAM: encode, three candidates for one click, one refined mask when the logits are fed back."""
    import numpy as np

    service = ctx.need("service")
    image, _ = _test_image()
    seg = service.segmenter()
    seg.set_image(image)
    res = seg.predict(points=np.array([[48, 36]], np.float32), labels=np.array([1], np.int32))
    if len(res) != 3 or res.masks.shape != (3, H, W) or res.masks.dtype != bool:
        raise RuntimeError(f"expected 3 bool masks of {(H, W)}, got {res.masks.shape} {res.masks.dtype}")
    if not np.isfinite(res.scores).all():
        raise RuntimeError(f"non-finite IoU predictions {res.scores}")
    refined = seg.predict(
        points=np.array([[48, 36], [5, 5]], np.float32),
        labels=np.array([1, 0], np.int32),
        mask_input=res.mask_input(res.best),
    )
    if len(refined) != 1 or refined.mask(0).shape != (H, W):
        raise RuntimeError(f"refine gave {len(refined)} mask(s) of {refined.masks.shape[1:]}")
    return f"3 candidates {W}x{H} (best {res.best}, iou {float(res.scores[res.best]):.2f}); refine -> 1 mask"


def check_sam2(ctx: _Context) -> str:
    """SAM 2.1 (transformers' Sam2Model, imported lazily by name): a tiny random model saved where the
    registry expects ``sam2.1_hiera_tiny``, loaded by that name through the model service, then encode and
    click with the fast decoder and the exact one (logits equal to float32 rounding)."""
    import numpy as np

    from maskpix_desktop.core import models
    from maskpix_desktop.core.sam2_segmenter import Sam2Segmenter
    from maskpix_desktop.core.service import ModelChoice, ModelService
    from maskpix_desktop.testing.tiny_sam2 import save_tiny_sam2

    name = "sam2.1_hiera_tiny"
    save_tiny_sam2(models.local_path(name, ctx.tmp / "sam2-models"), seed=0)
    service = ModelService(ModelChoice(models_dir=str(ctx.tmp / "sam2-models"), sam=name, device="cpu"))
    seg = service.segmenter()
    if not isinstance(seg, Sam2Segmenter):
        raise RuntimeError(f"{name} loaded as {type(seg).__name__}, not Sam2Segmenter")
    image, _ = _test_image()
    seg.set_image(image)
    point, label = np.array([[48, 36]], np.float32), np.array([1], np.int32)
    res = seg.predict(points=point, labels=label)
    if len(res) != 3 or res.masks.shape != (3, H, W) or not np.isfinite(res.scores).all():
        raise RuntimeError(f"expected 3 masks of {(H, W)} with finite scores, got {res.masks.shape}")
    with seg.use_decoder("exact"):
        exact = seg.predict(points=point, labels=label)
    gap = float(np.abs(res.logits - exact.logits).max() / max(1.0, float(np.abs(exact.logits).max())))
    if gap > 2e-4:
        raise RuntimeError(f"{seg.decoder} decoder differs from the exact one by {gap:.1e} (relative)")
    return f"{name} by name: 3 candidates {W}x{H} (best {res.best}); {seg.decoder} = exact within {gap:.0e}"


def _edit(ctx: _Context, mode: str) -> str:
    import numpy as np

    from maskpix_desktop.core.jobs import EditParams, EditRequest

    service = ctx.need("service")
    image, mask = _test_image()
    params = EditParams(INSTRUCTION, steps=STEPS, long_side=LONG_SIDE, seed=0, mask_mode=mode)
    steps: list[int] = []
    res = service.editor().run(
        EditRequest(image=image, mask=mask, params=params), on_step=lambda d, t, s: steps.append(d)
    )
    for name in ("baseline", "blended", "edit"):
        arr = getattr(res, name)
        if arr.shape != image.shape or arr.dtype != np.uint8:
            raise RuntimeError(f"{name} is {arr.shape} {arr.dtype}, expected {image.shape} uint8")
    if not np.array_equal(res.blended[~mask], image[~mask]):
        changed = int((res.blended[~mask] != image[~mask]).any(axis=-1).sum())
        raise RuntimeError(f"{changed} pixels outside the hard mask differ from the original")
    if np.array_equal(res.blended[mask], image[mask]):
        raise RuntimeError("nothing changed inside the mask")
    expected_steps = STEPS * (2 if mode == "latent" else 1)
    if not steps or steps[-1] != expected_steps:
        raise RuntimeError(f"progress ended at {steps[-1:] or 'nothing'}, expected {expected_steps} steps")
    ctx.values[f"edit_{mode}"] = res
    h, w = res.working_size
    return (
        f"{expected_steps} steps at {w}x{h} in {res.timings.get('total_s', 0):.1f} s; "
        "outside the mask == original"
    )


def check_ip2p_pixel(ctx: _Context) -> str:
    """InstructPix2Pix, pixel mode: the composite leaves every pixel outside a hard mask untouched."""
    return _edit(ctx, "pixel")


def check_ip2p_latent(ctx: _Context) -> str:
    """InstructPix2Pix, latent mode: per-step latent blend, then the pixel composite."""
    return _edit(ctx, "latent")


def check_metrics(ctx: _Context) -> str:
    """Leakage, background PSNR/SSIM, mIoU and CLIP scores with the tiny open_clip model."""
    import math

    from maskpix_desktop.core import metrics

    service = ctx.need("service")
    res = ctx.need("edit_pixel")
    clip = service.clip()
    if clip is None:
        raise RuntimeError(f"CLIP did not load: {service.clip_error}")
    image, mask = _test_image()
    scores = metrics.compare(image, res.baseline, res.blended, mask, text=INSTRUCTION, clip=clip)
    for kind in ("baseline", "blended"):
        for key in ("leakage_mean", "bg_ssim", "miou", "clip_score", "clip_score_region"):
            if key not in scores[kind] or not math.isfinite(scores[kind][key]):
                raise RuntimeError(f"{kind} {key} missing or not finite: {scores[kind].get(key)}")
    if scores["blended"]["leakage_mean"] != 0.0:
        raise RuntimeError(f"pixel-mode leakage is {scores['blended']['leakage_mean']}, expected 0")
    b = scores["baseline"]
    return (
        f"baseline leakage {b['leakage_mean']:.1f}, blended 0.0; "
        f"clip score {b['clip_score']:.1f} ({clip.name})"
    )


def _no_display() -> bool:
    return sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )


def check_gui(ctx: _Context) -> str:
    """The main window builds (isolated settings) and opens a bundled sample; the worker thread encodes it."""
    from PySide6.QtCore import QEventLoop, QSettings

    from maskpix_desktop.core import images
    from maskpix_desktop.paths import resources_dir
    from maskpix_desktop.ui.app import create_app
    from maskpix_desktop.ui.main_window import MainWindow
    from maskpix_desktop.ui.worker import MessageKind, Task

    root = ctx.need("models")
    sample = resources_dir() / "samples" / "dog.jpg"
    if not sample.is_file():
        raise RuntimeError(f"bundled sample missing: {sample}")
    app = create_app()
    settings = QSettings(str(ctx.tmp / "settings.ini"), QSettings.Format.IniFormat)
    kwargs: dict[str, Any] = {"settings": settings}
    if "autosave_dir" in inspect.signature(MainWindow).parameters:  # never touch the user's autosave
        kwargs["autosave_dir"] = str(ctx.tmp / "autosave")
    window = MainWindow(models_dir=str(root), device="cpu", load_models=False, **kwargs)
    messages: list[Any] = []
    window.client.message.connect(messages.append)

    def pump(until: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not until():
            if time.monotonic() > deadline:
                return False
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
            time.sleep(0.005)
        return True

    try:
        if not pump(window.client.is_running, 10.0):
            raise RuntimeError("the model-service thread did not start")
        if not window.open_image(sample):
            raise RuntimeError(f"open_image({sample.name}) failed: {window.banner.label.text()}")
        expected = images.load_image(sample).shape
        if window.canvas.image().shape != expected:
            raise RuntimeError(f"canvas shows {window.canvas.image().shape}, expected {expected}")

        def encode_done() -> list[Any]:  # opening an image starts its SAM encode (Task.ENCODE)
            return [m for m in messages if m.task is Task.ENCODE and m.final]

        if not pump(lambda: bool(encode_done()), GUI_TIMEOUT_S):
            raise RuntimeError(f"no answer from the model-service thread in {GUI_TIMEOUT_S:.0f} s")
        done = encode_done()
        if done[-1].kind is not MessageKind.FINISHED:
            raise RuntimeError(f"SAM encode on the worker thread {done[-1].kind}: {done[-1].error}")
    finally:
        window.close()  # shuts the model-service thread down
        window.deleteLater()
        app.processEvents()
    platform_name = app.platformName()
    h, w = expected[:2]
    return (
        f"main window on '{platform_name}', opened {sample.name} ({w}x{h}), SAM encode on the worker thread"
    )


#: The checks in order; later ones use what earlier ones left in the context.
CHECKS: tuple[tuple[str, Check], ...] = (
    ("imports", check_imports),
    ("metadata", check_metadata),
    ("device", check_device),
    ("tiny-models", check_tiny_models),
    ("models-dir", check_models_dir),
    ("sam", check_sam),
    ("sam2", check_sam2),
    ("ip2p-pixel", check_ip2p_pixel),
    ("ip2p-latent", check_ip2p_latent),
    ("metrics", check_metrics),
    ("gui", check_gui),
)
CHECK_NAMES = tuple(name for name, _ in CHECKS)


# ----------------------------------------------------------------------------------------- runner
def _version_of(module: str | None) -> str:
    if module is None:
        return f"{platform.python_version()} ({sys.executable})"
    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # reported again, as a failure, by the imports check
        return f"NOT IMPORTABLE ({type(exc).__name__}: {exc})"
    version = getattr(mod, "__version__", None)
    if version is None:  # segment_anything has no __version__: ask its distribution
        import importlib.metadata as md

        try:
            version = md.version(module)
        except md.PackageNotFoundError:
            version = "?"
    version = str(version)
    if module == "torch":
        version += f" (CUDA {mod.version.cuda})" if mod.version.cuda else " (CPU build)"
    return version


def _header(out: TextIO) -> None:
    from maskpix_desktop.core import models

    frozen = getattr(sys, "_MEIPASS", None)
    print(f"MaskPix self-test — maskpix {__version__}", file=out)
    print(f"  {'platform':<17} {platform.platform()}", file=out)
    print(f"  {'frozen':<17} {'yes, ' + frozen if frozen else 'no (running from source)'}", file=out)
    for label, module in VERSIONS:
        print(f"  {label:<17} {_version_of(module)}", file=out)
    try:
        device = models.resolve_device("auto")
        print(f"  {'device':<17} {models.device_label(device)} ({device})", file=out)
    except Exception as exc:
        print(f"  {'device':<17} unknown ({type(exc).__name__}: {exc})", file=out)
    env = os.environ.get(models.ENV_MODELS_DIR, "").strip()
    where = f"from ${models.ENV_MODELS_DIR}" if env else "the per-user data folder"
    root = models.models_dir()
    print(
        f"  {'models dir':<17} {root} ({where}; {'exists' if root.is_dir() else 'does not exist'})", file=out
    )
    if root.is_dir():
        with contextlib.suppress(Exception):
            rows = models.list_models()
            present = [r["name"] for r in rows if r["present"]]
            print(f"  {'models present':<17} {', '.join(present) or 'none'}", file=out)
    out.flush()


@contextlib.contextmanager
def _scoped_environment() -> Iterator[None]:
    """Offline, headless where there is no display; every variable restored afterwards."""
    saved = dict(os.environ)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if "QT_QPA_PLATFORM" not in os.environ and _no_display():
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _indent(text: str) -> str:
    return "".join(f"      | {line}\n" for line in text.rstrip("\n").splitlines())


@contextlib.contextmanager
def _report_stream(out: TextIO | None) -> Iterator[TextIO]:
    """``out``, else stdout; windowed builds on Windows have none: then a file in the log folder.

    There, missing ``sys.stdout``/``sys.stderr`` point at that file while the checks run, so libraries
    that print (tqdm, transformers) do not crash on ``None``.
    """
    if out is not None or sys.stdout is not None:
        yield out if out is not None else sys.stdout
        return
    from maskpix_desktop.paths import log_dir

    folder = log_dir()
    folder.mkdir(parents=True, exist_ok=True)
    saved = sys.stdout, sys.stderr
    with open(folder / "self-test.txt", "w", encoding="utf-8") as report:
        sys.stdout = report
        sys.stderr = sys.stderr if sys.stderr is not None else report
        try:
            yield report
        finally:
            sys.stdout, sys.stderr = saved


def _run_checks(checks: Sequence[tuple[str, Check]], ctx: _Context, out: TextIO, verbose: bool) -> int:
    passed = 0
    for name, check in checks:
        t0 = time.perf_counter()
        trace = ""
        try:
            detail = check(ctx)
            status = "PASS"
            passed += 1
        except _Skipped as exc:
            status, detail = "SKIP", str(exc)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - a check may fail in any way, even SystemExit
            status, detail = "FAIL", f"{type(exc).__name__}: {exc}"
            trace = traceback.format_exc() if verbose else ""
        print(f"{status}  {name:<12} {detail}  [{time.perf_counter() - t0:.1f} s]", file=out)
        if trace:
            print(_indent(trace), file=out, end="")
        out.flush()
    return passed


def run_self_test(
    verbose: bool = True, *, out: TextIO | None = None, checks: Sequence[tuple[str, Check]] | None = None
) -> int:
    """Run ``checks`` (default: :data:`CHECKS`), print one PASS/FAIL line each; 0 if all passed, else 1.

    ``verbose`` adds the header (versions, device, models folder) and the traceback of each failure.
    Environment variables the checks set (``MASKPIX_MODELS``, ``QT_QPA_PLATFORM``) are restored after.
    """
    checks = CHECKS if checks is None else checks
    t0 = time.perf_counter()
    with _report_stream(out) as stream, _scoped_environment():
        if verbose:
            _header(stream)
        tmp = Path(tempfile.mkdtemp(prefix="maskpix-selftest-"))
        try:
            passed = _run_checks(checks, _Context(tmp), stream, verbose)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        ok = passed == len(checks)
        verdict = "passed" if ok else "FAILED"
        print(
            f"self-test {verdict}: {passed}/{len(checks)} checks passed in {time.perf_counter() - t0:.1f} s",
            file=stream,
        )
        stream.flush()
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """``maskpix --self-test [--quiet]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_self_test(verbose="--quiet" not in argv and "-q" not in argv)


if __name__ == "__main__":
    sys.exit(main())
