"""Model registry, model folder, downloader (against a local HTTP server), ip2p resolution, device choice."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from maskpix_desktop.core import models
from maskpix_desktop.core.errors import DownloadError, MissingWeightsError, WeightsError
from maskpix_desktop.core.models import downloader

PAYLOAD = os.urandom(50_000)
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


# ------------------------------------------------------------------------------------------- fixtures


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.payload``; honours ``Range`` unless mode is "die" (half a body, then hang up)."""

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:  # http.server API name
        srv = self.server
        rng = self.headers.get("Range")
        srv.requests.append({"path": self.path, "range": rng})  # type: ignore[attr-defined]
        data: bytes = srv.payload  # type: ignore[attr-defined]
        mode: str = srv.mode  # type: ignore[attr-defined]
        if mode == "404":
            self.send_error(404, "Not Found")
            return
        if mode == "die":
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        start = 0
        if rng and rng.startswith("bytes="):
            start = int(rng[len("bytes=") :].split("-")[0])
        body = data[start:]
        if start:
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        # Count before writing: the client may finish reading before this thread runs again.
        srv.bytes_sent += len(body)  # type: ignore[attr-defined]
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    """A local HTTP server on 127.0.0.1 (port 0), stopped at teardown."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.payload = PAYLOAD  # type: ignore[attr-defined]
    srv.mode = "ok"  # type: ignore[attr-defined]
    srv.requests = []  # type: ignore[attr-defined]
    srv.bytes_sent = 0  # type: ignore[attr-defined]
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


def _url(srv: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}/weights.bin"


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small chunks, no retry pause, short timeout, online."""
    monkeypatch.setattr(downloader, "DOWNLOAD_CHUNK", 4096)
    monkeypatch.setattr(downloader, "RETRY_BACKOFF_S", 0.0)
    monkeypatch.setattr(downloader, "DOWNLOAD_TIMEOUT_S", 5.0)
    monkeypatch.delenv(models.ENV_OFFLINE, raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


def _register(
    monkeypatch: pytest.MonkeyPatch, url: str, sha: str | None = PAYLOAD_SHA, size: int | None = None
):
    spec = models.ModelSpec(
        name="test_sam",
        kind="sam",
        description="test weights",
        files=(models.ModelFile("test_sam.pth", url, sha, size if size is not None else len(PAYLOAD)),),
        model_type="vit_b",
    )
    monkeypatch.setitem(models.REGISTRY, "test_sam", spec)
    return spec


# ------------------------------------------------------------------------------------------- registry


def test_registry_entries() -> None:
    for name in (models.DEFAULT_SAM, models.DEFAULT_IP2P, models.DEFAULT_CLIP, "sam_vit_l", "sam_vit_b"):
        spec = models.REGISTRY[name]
        assert spec.name == name
        for f in spec.files:
            assert f.url.startswith("https://")
            assert f.sha256 is None or len(f.sha256) == 64
    h = models.REGISTRY["sam_vit_h"].files[0]
    assert (
        h.filename == "sam_vit_h_4b8939.pth"
        and h.sha256.startswith("a7bf3b02")
        and h.size_bytes == 2564550879
    )
    assert models.REGISTRY["sam_vit_b"].model_type == "vit_b"
    ip2p = models.REGISTRY["ip2p"]
    assert ip2p.hf_repo == "timbrooks/instruct-pix2pix" and ip2p.variant == "fp16"
    assert "model_index.json" in [f.filename for f in ip2p.files]
    clip = models.REGISTRY["clip"]
    assert (clip.clip_model, clip.clip_pretrained, clip.clip_quick_gelu) == ("ViT-B-32", "openai", True)
    with pytest.raises(ValueError, match="sam_vit_h"):
        models.get_spec("nope")


def test_module_imports_no_torch_or_qt() -> None:
    code = (
        "import sys, maskpix_desktop.core.models\n"
        "bad = [m for m in ('torch', 'PySide6', 'diffusers', 'huggingface_hub') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ------------------------------------------------------------------------------------------- paths


def test_models_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import platformdirs

    monkeypatch.delenv(models.ENV_MODELS_DIR, raising=False)
    monkeypatch.setattr(platformdirs, "user_data_path", lambda *a, **k: tmp_path / "userdata")
    assert models.models_dir() == tmp_path / "userdata" / "models"
    assert not (tmp_path / "userdata").exists()  # not created
    monkeypatch.setenv(models.ENV_MODELS_DIR, str(tmp_path / "env"))
    assert models.models_dir() == tmp_path / "env"
    assert models.models_dir(tmp_path / "over") == tmp_path / "over"
    assert models.models_dir(str(tmp_path / "over")) == tmp_path / "over"
    made = models.ensure_models_dir(tmp_path / "made" / "deep")
    assert made.is_dir()


def test_local_paths(tmp_path: Path) -> None:
    assert models.local_path("sam_vit_b", tmp_path) == tmp_path / "sam_vit_b_01ec64.pth"
    assert models.local_path("ip2p", tmp_path) == tmp_path / "instruct-pix2pix"
    assert models.local_path("clip", tmp_path) == tmp_path / "clip" / "open_clip_model.safetensors"


def test_is_present_checks_size_and_require(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _register(monkeypatch, "http://127.0.0.1:9/x")
    path = models.local_path("test_sam", tmp_path)
    assert not models.is_present("test_sam", tmp_path)
    with pytest.raises(MissingWeightsError) as ei:
        models.require("test_sam", tmp_path)
    msg = str(ei.value)
    assert str(path) in msg
    assert "maskpix-cli models download test_sam" in msg and "--models-dir" in msg
    assert ei.value.name == "test_sam" and ei.value.path == path
    path.write_bytes(PAYLOAD[:100])  # truncated
    assert not models.is_present("test_sam", tmp_path)
    path.write_bytes(PAYLOAD)
    assert models.is_present("test_sam", tmp_path)
    assert models.require("test_sam", tmp_path) == path
    assert models.verify("test_sam", tmp_path)
    rows = {r["name"]: r for r in models.list_models(tmp_path)}
    assert rows["test_sam"]["present"] is True and rows["test_sam"]["size"] == len(PAYLOAD)
    assert rows["sam_vit_h"]["present"] is False and rows["sam_vit_h"]["path"].endswith(
        "sam_vit_h_4b8939.pth"
    )
    assert set(rows["ip2p"]) >= {"name", "kind", "present", "path", "size", "description"}


# ------------------------------------------------------------------------------------------- download


def test_download_success_verifies(server, fast, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _register(monkeypatch, _url(server))
    seen: list[tuple[int, int | None]] = []
    out = models.download("test_sam", tmp_path, progress=lambda d, t: seen.append((d, t)))
    assert out == tmp_path / "test_sam.pth"
    assert out.read_bytes() == PAYLOAD
    assert not (tmp_path / "test_sam.pth.part").exists()
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD)) and len(seen) > 2
    # present -> no second request
    n = len(server.requests)
    assert models.download("test_sam", tmp_path) == out
    assert len(server.requests) == n


def test_download_wrong_sha_leaves_nothing(
    server, fast, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _register(monkeypatch, _url(server), sha="0" * 64)
    with pytest.raises(DownloadError) as ei:
        models.download("test_sam", tmp_path)
    assert "0" * 64 in str(ei.value) and PAYLOAD_SHA in str(ei.value)
    assert not (tmp_path / "test_sam.pth").exists()
    assert not (tmp_path / "test_sam.pth.part").exists()


def test_download_server_dies_midway(server, fast, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    server.mode = "die"
    _register(monkeypatch, _url(server))
    with pytest.raises(DownloadError, match="127.0.0.1"):
        models.download("test_sam", tmp_path)
    assert not (tmp_path / "test_sam.pth").exists()
    assert len(server.requests) == models.DOWNLOAD_RETRIES


def test_download_cancel(server, fast, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _register(monkeypatch, _url(server))
    cancel = threading.Event()

    def progress(done: int, total: int | None) -> None:
        if done >= 8192:
            cancel.set()

    with pytest.raises(DownloadError, match="cancel"):
        models.download("test_sam", tmp_path, progress=progress, cancel=cancel)
    assert list(tmp_path.iterdir()) == []


def test_download_resumes_from_part(server, fast, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _register(monkeypatch, _url(server))
    k = 20_000
    (tmp_path / "test_sam.pth.part").write_bytes(PAYLOAD[:k])
    seen: list[tuple[int, int | None]] = []
    out = models.download("test_sam", tmp_path, progress=lambda d, t: seen.append((d, t)))
    assert out.read_bytes() == PAYLOAD
    assert server.requests[0]["range"] == f"bytes={k}-"
    assert server.bytes_sent == len(PAYLOAD) - k
    assert seen[0] == (k, len(PAYLOAD))


def test_download_restarts_when_server_ignores_range(
    fast, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    dest_dir = tmp_path / "models"
    dest_dir.mkdir()
    (dest_dir / "test_sam.pth.part").write_bytes(b"garbage-prefix")
    _register(monkeypatch, "http://127.0.0.1:9/unused")
    out = models.download("test_sam", dest_dir, url_override=src.as_uri())  # file:// has no Range support
    assert out.read_bytes() == PAYLOAD


def test_download_unreachable_is_quick(fast, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _register(monkeypatch, "http://127.0.0.1:9/weights.bin")
    t0 = time.monotonic()
    with pytest.raises(DownloadError) as ei:
        models.download("test_sam", tmp_path)
    assert time.monotonic() - t0 < 5
    assert "http://127.0.0.1:9/weights.bin" in str(ei.value) and "offline" in str(ei.value)
    assert not (tmp_path / "test_sam.pth").exists()


def test_download_http_404_not_retried(server, fast, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    server.mode = "404"
    _register(monkeypatch, _url(server))
    with pytest.raises(DownloadError, match="404"):
        models.download("test_sam", tmp_path)
    assert len(server.requests) == 1


def test_download_refused_in_offline_mode(fast, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _register(monkeypatch, "http://127.0.0.1:9/weights.bin")
    monkeypatch.setenv(models.ENV_OFFLINE, "1")
    with pytest.raises(DownloadError, match="offline"):
        models.download("test_sam", tmp_path)


# ------------------------------------------------------------------------------------------- hashing


def test_sha256_file(tmp_path: Path) -> None:
    p = tmp_path / "f.bin"
    data = os.urandom(300_000)
    p.write_bytes(data)
    assert models.sha256_file(p) == hashlib.sha256(data).hexdigest()
    assert models.sha256_file(p, chunk=7) == hashlib.sha256(data).hexdigest()


def test_file_fingerprint_file_and_folder(tmp_path: Path) -> None:
    f = tmp_path / "w.pth"
    f.write_bytes(PAYLOAD)
    assert models.file_fingerprint(f) == PAYLOAD_SHA
    folder = tmp_path / "pipe"
    (folder / "unet").mkdir(parents=True)
    (folder / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(os.urandom(3 << 20))
    (folder / "model_index.json").write_text("{}")
    a = models.file_fingerprint(folder)
    assert a == models.file_fingerprint(folder) and len(a) == 64
    copy = tmp_path / "copy"
    (copy / "unet").mkdir(parents=True)
    (copy / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(
        (folder / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    )
    assert models.file_fingerprint(copy) == a  # content-defined, not path-defined
    w = folder / "unet" / "diffusion_pytorch_model.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF
    w.write_bytes(bytes(data))
    assert models.file_fingerprint(folder) != a
    with pytest.raises(FileNotFoundError):
        models.file_fingerprint(tmp_path / "missing")


# ------------------------------------------------------------------------------------------- ip2p


def _fake_diffusers_folder(folder: Path, *, fp16: bool = True) -> Path:
    index = {
        "_class_name": "StableDiffusionInstructPix2PixPipeline",
        "feature_extractor": ["transformers", "CLIPImageProcessor"],
        "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
        "scheduler": ["diffusers", "EulerAncestralDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_index.json").write_text(json.dumps(index))
    suffix = ".fp16.safetensors" if fp16 else ".safetensors"
    for sub, files in {
        "feature_extractor": ["preprocessor_config.json"],
        "scheduler": ["scheduler_config.json"],
        "tokenizer": ["vocab.json"],
        "text_encoder": ["config.json", "model" + suffix],
        "unet": ["config.json", "diffusion_pytorch_model" + suffix],
        "vae": ["config.json", "diffusion_pytorch_model" + suffix],
    }.items():
        (folder / sub).mkdir(exist_ok=True)
        for name in files:
            (folder / sub / name).write_text("{}")
    return folder


def test_resolve_ip2p_local_folder(tmp_path: Path) -> None:
    folder = tmp_path / "my-ip2p"
    folder.mkdir()
    (folder / "model_index.json").write_text("{}")
    assert models.resolve_ip2p(str(folder), tmp_path / "models") == (str(folder), True)
    not_pipe = tmp_path / "empty"
    not_pipe.mkdir()
    with pytest.raises(WeightsError, match="model_index.json"):
        models.resolve_ip2p(str(not_pipe), tmp_path / "models")
    with pytest.raises(MissingWeightsError):
        models.resolve_ip2p(str(tmp_path / "nowhere"), tmp_path / "models")


def test_resolve_ip2p_default(tmp_path: Path) -> None:
    mdir = tmp_path / "models"
    with pytest.raises(MissingWeightsError) as ei:
        models.resolve_ip2p(None, mdir)
    assert "maskpix-cli models download ip2p" in str(ei.value)
    assert str(mdir / "instruct-pix2pix") in str(ei.value)
    folder = _fake_diffusers_folder(mdir / "instruct-pix2pix")
    assert models.is_present("ip2p", mdir)
    assert models.resolve_ip2p(None, mdir) == (str(folder), True)
    # the registry hub id maps to the local folder when it is there
    assert models.resolve_ip2p("timbrooks/instruct-pix2pix", mdir) == (str(folder), True)
    assert models.detect_variant(folder) == "fp16"
    (folder / "unet" / "diffusion_pytorch_model.fp16.safetensors").unlink()  # incomplete
    assert not models.is_present("ip2p", mdir)


def test_resolve_ip2p_hub_id(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cache = tmp_path / "hfcache"
    mdir = tmp_path / "models"
    monkeypatch.delenv(models.ENV_OFFLINE, raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert models.resolve_ip2p("someone/pix", mdir, cache_dir=cache) == ("someone/pix", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingWeightsError):
        models.resolve_ip2p("someone/pix", mdir, cache_dir=cache)
    # fake a huggingface_hub cache entry
    repo = cache / "models--someone--pix"
    commit = "a" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "model_index.json").write_text("{}")
    assert models.resolve_ip2p("someone/pix", mdir, cache_dir=cache) == ("someone/pix", True)


def _fake_hub(
    monkeypatch: pytest.MonkeyPatch, *, weight_sha: str, fail: Exception | None = None
) -> list[dict]:
    """Register a small ip2p spec and replace huggingface_hub.snapshot_download with a local fake."""
    import huggingface_hub

    weight = b"unet-weights" * 1000
    repo, rev = "someone/ip2p", "b" * 40
    files = [models.ModelFile("model_index.json", "https://example.invalid/model_index.json")]
    files.append(
        models.ModelFile("unet/diffusion_pytorch_model.fp16.safetensors", "https://x.invalid/u", weight_sha)
    )
    spec = models.ModelSpec(
        "ip2p", "ip2p", "fake", tuple(files), hf_repo=repo, hf_revision=rev, variant="fp16"
    )
    monkeypatch.setitem(models.REGISTRY, "ip2p", spec)
    calls: list[dict] = []

    def fake_snapshot(**kwargs):
        calls.append(kwargs)
        if fail is not None:
            raise fail
        dest = Path(kwargs["local_dir"])
        _fake_diffusers_folder(dest)
        (dest / "unet" / "diffusion_pytorch_model.fp16.safetensors").write_bytes(weight)
        bar = kwargs["tqdm_class"](total=len(weight), unit="B", name="x")
        for _ in range(4):
            bar.update(len(weight) // 4)
        return str(dest)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    return calls


def test_download_ip2p_snapshot(fast, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    sha = hashlib.sha256(b"unet-weights" * 1000).hexdigest()
    calls = _fake_hub(monkeypatch, weight_sha=sha)
    seen: list[tuple[int, int | None]] = []
    out = models.download("ip2p", tmp_path, progress=lambda d, t: seen.append((d, t)))
    assert out == tmp_path / "instruct-pix2pix" and models.is_present("ip2p", tmp_path)
    kw = calls[0]
    assert kw["repo_id"] == "someone/ip2p" and kw["revision"] == "b" * 40
    assert "unet/diffusion_pytorch_model.fp16.safetensors" in kw["allow_patterns"]
    assert len(seen) >= 5 and seen[-1][0] == seen[-1][1]
    models.download("ip2p", tmp_path)  # present -> no second snapshot
    assert len(calls) == 1


def test_download_ip2p_bad_hash_and_errors(fast, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_hub(monkeypatch, weight_sha="1" * 64)
    with pytest.raises(DownloadError, match="1" * 64):
        models.download("ip2p", tmp_path)
    assert not (tmp_path / "instruct-pix2pix" / "unet" / "diffusion_pytorch_model.fp16.safetensors").exists()
    assert not models.is_present("ip2p", tmp_path)

    _fake_hub(monkeypatch, weight_sha="1" * 64, fail=OSError("Network is unreachable"))
    with pytest.raises(DownloadError, match="unreachable"):
        models.download("ip2p", tmp_path / "other")

    _fake_hub(monkeypatch, weight_sha="1" * 64)
    cancel = threading.Event()
    with pytest.raises(DownloadError, match="cancel"):
        models.download(
            "ip2p", tmp_path / "c", progress=lambda d, t: cancel.set() if d else None, cancel=cancel
        )


# ------------------------------------------------------------------------------------------- device


def test_resolve_device_falls_back_to_cpu(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level(logging.WARNING, logger=models.__name__):
        assert models.resolve_device("cuda") == "cpu"
    assert "CUDA" in caplog.text
    assert models.resolve_device("cpu") == "cpu"
    assert models.resolve_device("auto") in ("cpu", "mps")
    with pytest.raises(ValueError):
        models.resolve_device("tpu")


def test_resolve_device_real_machine() -> None:
    import torch

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert models.resolve_device("cuda") == expected


def test_default_dtype_and_label() -> None:
    import torch

    assert models.default_dtype("cuda") is torch.float16
    assert models.default_dtype("cpu") is torch.float32
    assert models.default_dtype("mps") is torch.float32
    assert models.default_dtype("cpu", "bf16") is torch.bfloat16
    assert models.default_dtype("cuda", "fp32") is torch.float32
    assert models.default_dtype("cpu", "fp16") is torch.float16
    with pytest.raises(ValueError):
        models.default_dtype("cpu", "int8")
    assert models.device_label("cpu") == "CPU"
    if torch.cuda.is_available():
        assert models.device_label("cuda").startswith("CUDA: ")


def _sparse_file(path, size: int):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.truncate(size)  # sparse: no disk used
    return path


def test_sam_file_of_another_architecture_is_named_not_called_missing(tmp_path):
    vit_b = models.get_spec("sam_vit_b")
    _sparse_file(models.local_path("sam_vit_h", tmp_path), vit_b.size_bytes)
    with pytest.raises(WeightsError) as info:
        models.require("sam_vit_h", tmp_path)
    text = str(info.value)
    assert "sam_vit_h_4b8939.pth" in text and "'sam_vit_b'" in text and "Choose vit_b" in text
    assert "maskpix-cli models download sam_vit_h" in text


def test_truncated_and_odd_sized_weights_say_so(tmp_path):
    path = _sparse_file(models.local_path("sam_vit_l", tmp_path), 1000)
    with pytest.raises(MissingWeightsError, match=r"incomplete \(1,000 of 1,249,524,607 bytes\)") as info:
        models.require("sam_vit_l", tmp_path)
    assert "maskpix-cli models download sam_vit_l" in str(info.value)
    _sparse_file(path, 1_249_524_608)
    with pytest.raises(MissingWeightsError, match="not the 1,249,524,607 of the official file"):
        models.require("sam_vit_l", tmp_path)
    _sparse_file(path, 1_249_524_607)
    assert models.require("sam_vit_l", tmp_path) == path
