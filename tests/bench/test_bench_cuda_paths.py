"""The bench's CUDA-only measurements, exercised on the CPU with tiny shapes (no GPU here).

``pipeline_speed`` runs full-size on CUDA only; here it runs the tiny pipeline, and the SD1.5-size
builders are checked on the meta device (parameter counts, no memory).
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from maskpix_desktop import bench
from maskpix_desktop.bench import cuda as bench_cuda
from maskpix_desktop.bench.edit import bench_edit
from maskpix_desktop.bench.report import pipeline_rows

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tiny_pipeline_report():
    return bench.pipeline_speed("cpu", torch.float32, size=64, steps=2, full_size=False, repeats=1)


def test_pipeline_speed_code_path_on_cpu(tiny_pipeline_report):
    r = tiny_pipeline_report
    assert "error" not in r and "errors" not in r, r
    assert (r["device"], r["dtype"], r["size"], r["steps"]) == ("cpu", "float32", 64, 2)
    assert (r["editor_device"], r["editor_dtype"]) == ("cpu", "float32")
    # Same components, seed and steps, fp32 on the CPU: Editor.run's baseline is diffusers' output.
    assert r["baseline_max_abs_diff"] == 0 and r["baseline_identical_to_diffusers"] is True
    for name in ("diffusers_call", "editor_run", "pixel_run", "latent_run"):
        assert r[name]["n"] == 1 and r[name]["median_ms"] > 0, name
        assert r["seconds"][name] > 0 and r["steps_per_s"][name] > 0, name
        assert r["warmup_s"][name] > 0, name
    assert r["baseline_vs_diffusers"] > 0 and isinstance(r["baseline_vs_diffusers_met"], bool)
    assert r["pixel_overhead"] > 0
    # latent: (latent run - plain run) / plain run, about 1; one noisy repeat here, so only its sign
    assert math.isfinite(r["latent_overhead"]) and r["latent_overhead"] > -1
    assert r["peak_gpu_mb"] == "not measured (CPU)"
    assert r["params_m"]["unet"] > 0 and r["build_s"] > 0


def test_pipeline_rows_in_table(tiny_pipeline_report):
    rows = pipeline_rows(tiny_pipeline_report)
    text = "\n".join(" ".join(r) for r in rows)
    assert "CUDA pipeline" in text and "ratio" in text and "max abs pixel diff 0" in text
    assert "pixel" in text and "latent" in text and "steps/s" in text
    # a CUDA-looking report with one failed measurement still formats
    cuda_like = dict(
        tiny_pipeline_report,
        peak_gpu_mb={"diffusers_call": 2500.0, "editor_run": 2600.0},
        weights_gpu_mb=2100.0,
        errors={"latent_run": {"error": "OutOfMemoryError: CUDA out of memory", "oom": True}},
    )
    text = "\n".join(" ".join(r) for r in pipeline_rows(cuda_like))
    assert "2600 MB (weights 2100.0 MB)" in text and "ERROR latent_run" in text
    assert pipeline_rows({"model": "m", "error": "RuntimeError: x"})[0][2].endswith("ERROR RuntimeError: x")
    assert pipeline_rows("not run: no CUDA device") == [("edit", "CUDA pipeline", "not run: no CUDA device")]


def test_pipeline_speed_reports_a_failed_build(monkeypatch):
    def boom(*a, **k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(bench_cuda, "build_bench_ip2p", boom)
    r = bench.pipeline_speed("cpu", torch.float32, size=64, steps=1, full_size=False, repeats=1)
    assert r["error"].startswith("OutOfMemoryError") and r["oom"] is True


def test_pipeline_speed_reports_a_failed_measurement(monkeypatch):
    """One contender failing (here the latent run, out of GPU memory) leaves the others timed."""
    from maskpix_desktop.core import editor as editor_mod

    real_run = editor_mod.Editor.run

    def run(self, req, *a, **k):
        if req.params.mask_mode == "latent" and req.mask is not None:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return real_run(self, req, *a, **k)

    monkeypatch.setattr(editor_mod.Editor, "run", run)
    r = bench.pipeline_speed("cpu", torch.float32, size=64, steps=1, full_size=False, repeats=1)
    assert r["errors"]["latent_run"]["oom"] is True
    assert "latent_run" not in r["seconds"] and "latent_overhead" not in r
    assert r["baseline_vs_diffusers"] > 0 and r["pixel_overhead"] > 0


def test_sd15_builders_have_sd15_parameter_counts():
    """The full-size pipeline's modules, built on the meta device: SD1.5's parameter counts."""
    modules = bench.build_sd15_modules("meta")
    counts = {name: bench.param_count(m) / 1e6 for name, m in modules.items()}
    assert counts["unet"] == pytest.approx(859.53, abs=0.05)  # SD1.5 UNet with 8 input channels
    assert counts["vae"] == pytest.approx(83.65, abs=0.05)
    assert counts["text_encoder"] == pytest.approx(123.06, abs=0.05)
    assert all(next(m.parameters()).device.type == "meta" for m in modules.values())
    assert modules["unet"].config.in_channels == 8 and modules["unet"].config.cross_attention_dim == 768
    assert modules["vae"].config.latent_channels == 4
    te = modules["text_encoder"].config
    assert (te.hidden_size, te.num_hidden_layers, te.num_attention_heads) == (768, 12, 12)
    assert (te.intermediate_size, te.max_position_embeddings) == (3072, 77)


def test_text_encoder_vocab_covers_tokenizer(tmp_path):
    from transformers import CLIPTokenizer

    from maskpix_desktop.testing.tiny_ip2p import write_clip_tokenizer

    tok = CLIPTokenizer.from_pretrained(write_clip_tokenizer(tmp_path))
    cfg = bench.sd15_text_encoder_config()
    assert len(tok) <= cfg["vocab_size"]
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (
        cfg["bos_token_id"],
        cfg["eos_token_id"],
        cfg["pad_token_id"],
    )
    assert tok.model_max_length == cfg["max_position_embeddings"]


def test_unet_speed_channels_last_fields():
    res = bench.unet_speed(
        bench.tiny_unet_config(), "cpu", torch.float32, steps=1, size=64, channels_last=True
    )
    assert res["channels_last"] is True and res["compiled"] is False
    assert (res["device"], res["dtype"], res["steps"], res["size"], res["batch"]) == (
        "cpu",
        "float32",
        1,
        64,
        3,
    )
    for key in ("seconds", "first_call_s", "matmul_peak_tflops", "compute_limit_s", "ratio_to_compute_limit"):
        assert math.isfinite(res[key]) and res[key] > 0, key
    assert res["flop_total"] > 0


def _small(cfg):
    return replace(cfg, edit_size=(64, 64), edit_steps=1, edit_repeats=1, mode_repeats=1)


def test_cpu_edit_section_says_pipeline_not_run():
    """On the CPU the edit section names the CUDA measurements without running them."""
    out = bench_edit(_small(bench.BenchConfig.quick_config("cpu")), {"cuda": False})
    assert out["cuda_pipeline"].startswith("not run: no CUDA device")
    assert out["cuda_unet"].startswith("not run: no CUDA device")
    assert pipeline_rows(out["cuda_pipeline"])[0][1] == "CUDA pipeline"


def test_edit_section_cuda_wiring(monkeypatch):
    """With a CUDA device the edit section runs pipeline_speed in fp16 (tiny under --quick, SD1.5-size
    otherwise) beside the UNet check, and the table shows it. Stand-ins run on the CPU here."""
    calls = []
    real = bench.pipeline_speed

    def fake_pipeline_speed(device, dtype, **kw):
        calls.append((device, dtype, kw))
        return real("cpu", torch.float32, size=64, steps=1, full_size=False, repeats=1)

    monkeypatch.setattr(bench_cuda, "pipeline_speed", fake_pipeline_speed)
    monkeypatch.setattr(bench_cuda, "cuda_unet", lambda cfg: {"float16": {"seconds": 1.0}})
    quick = _small(bench.BenchConfig.quick_config("cuda"))
    out = bench_edit(quick, {"cuda": False})  # ctx["cuda"] False: no GPU memory marks here
    assert calls[-1] == (
        "cuda",
        torch.float16,
        {"size": 128, "steps": quick.unet_steps, "full_size": False, "repeats": 1},
    )
    assert out["cuda_pipeline"]["baseline_identical_to_diffusers"] is True
    assert out["cuda_pipeline_baseline_vs_diffusers"] == out["cuda_pipeline"]["baseline_vs_diffusers"]
    assert "cuda_pipeline_latent_overhead" in out and "cuda_pipeline_pixel_overhead" in out
    bench_cuda.cuda_pipeline(bench.BenchConfig(device="cuda"))
    assert calls[-1] == ("cuda", torch.float16, {"size": 512, "steps": 20, "full_size": True, "repeats": 7})
    report = {"machine": bench.machine_info(), "edit": out, "targets": []}
    text = bench.format_table(report)
    assert "CUDA pipeline" in text and "max abs pixel diff 0" in text and "CUDA UNet" in text


def test_pipeline_tuning_experiment_runs_on_the_cpu():
    import torch

    from maskpix_desktop.bench import pipeline_tuning

    out = pipeline_tuning("cpu", torch.float32, size=64, steps=2, full_size=False, repeats=1)
    assert set(out) >= {"plain", "channels_last", "channels_last_fused_qkv"}
    assert out["plain"]["vs_plain"] == 1.0 and out["plain"]["max_abs_pixel_diff_vs_plain"] == 0
    for name in ("channels_last", "channels_last_fused_qkv"):
        assert out[name]["vs_plain"] > 0 and out[name]["editor_run"]["n"] == 1
        assert out[name]["max_abs_pixel_diff_vs_plain"] <= 8  # same weights: rounding only
