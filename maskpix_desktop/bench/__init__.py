"""Performance harness: ``python -m maskpix_desktop.bench`` (also ``maskpix-cli bench``).

Measures, in one run, our code against the plain library path on the same models and inputs, and
prints a table plus JSON (``--json PATH``):

- ``sam``: click-to-mask with a cached embedding, :class:`Segmenter.predict` vs ``SamPredictor.predict``
  per click (single point / points + box / refinement with ``mask_input``), full-size SAM with random
  weights (vit_b on CPU, vit_h on CUDA), on a 1024-long-side and a 4000x3000 image; bit-for-bit check;
  where the time goes; thread-count effect; what was tried and not adopted (bf16 decoder).
- ``encoder``: time to embed, and proof that further clicks do not re-encode.
- ``edit``: ``Editor.run`` vs diffusers' own pipeline call (same components and seed), each mask mode's
  overhead, and on CUDA a full-size random-weight SD1.5 UNet (fp16, SDPA, channels_last, optional
  ``torch.compile``) against the compute limit.
- ``families``: per editor family (ip2p, ip2p_xl, kontext, qwen_edit) on the tiny models, ``Editor.run``
  (baseline, pixel, latent) vs diffusers' own pipeline call, with the bit-equality and mask checks.
- ``ui``: longest GUI event-loop stall during an edit, brush segment update on a 4000x3000 mask, time
  to first window (in a fresh process, which must not have imported torch by then).
- ``editloop``: what a user waits for after the last denoising step at 1, 12 and 24 MP (resize to full
  size, composite, Poisson seam, metrics of both views, display), today's code against the code before
  issue 20 in the same run.
- ``memory``: peak RSS, peak GPU memory.

Timings on a shared machine are noisy: A and B are interleaved (A B, B A, ...) and medians reported;
ratios are medians of per-pair ratios. ``--quick`` runs tiny models and sizes (a smoke test of the
harness, seconds; its figures are not comparable with the targets).

Modules: :mod:`.common` (configuration, interleaved timing, inputs), one module per section (:mod:`.sam`,
:mod:`.encoder`, :mod:`.edit` with :mod:`.cuda` and :mod:`.models`, :mod:`.families`, :mod:`.automask`,
:mod:`.ui`, :mod:`.editloop`, :mod:`.memory`), :mod:`.report` (targets, table) and :mod:`.run` (driver,
options). The engines are driven through their public API only (``tests/bench/test_bench.py`` checks it).
"""

from __future__ import annotations

from maskpix_desktop.bench.common import (
    INSTRUCTION,
    SECTIONS,
    BenchConfig,
    ellipse_mask,
    interleave,
    interleave_cpu,
    median,
    ratio,
    synthetic_image,
    torch_threads,
)
from maskpix_desktop.bench.cuda import diffusers_reference, pipeline_speed, pipeline_tuning, unet_speed
from maskpix_desktop.bench.encoder import encoder_precisions
from maskpix_desktop.bench.models import (
    build_bench_ip2p,
    build_sd15_modules,
    param_count,
    sd15_text_encoder_config,
    sd15_unet_config,
    sd15_vae_config,
    tiny_unet_config,
)
from maskpix_desktop.bench.report import TARGETS, evaluate_targets, format_table, machine_info
from maskpix_desktop.bench.run import RUNNERS, add_arguments, build_parser, main, run_bench, run_from_args
from maskpix_desktop.bench.sam import build_bench_sam

__all__ = [
    "INSTRUCTION",
    "RUNNERS",
    "SECTIONS",
    "TARGETS",
    "BenchConfig",
    "add_arguments",
    "build_bench_ip2p",
    "build_bench_sam",
    "build_parser",
    "build_sd15_modules",
    "diffusers_reference",
    "ellipse_mask",
    "encoder_precisions",
    "evaluate_targets",
    "format_table",
    "interleave",
    "interleave_cpu",
    "machine_info",
    "main",
    "median",
    "param_count",
    "pipeline_speed",
    "pipeline_tuning",
    "ratio",
    "run_bench",
    "run_from_args",
    "sd15_text_encoder_config",
    "sd15_unet_config",
    "sd15_vae_config",
    "synthetic_image",
    "tiny_unet_config",
    "torch_threads",
    "unet_speed",
]
