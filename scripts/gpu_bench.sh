#!/usr/bin/env bash
# The benchmark's GPU run (docs/PERFORMANCE.md, "GPU"): the CUDA sections of `python -m maskpix_desktop.bench`
# plus the UNet under torch.compile, on a machine whose Python already has torch with CUDA.
# Wheels of the pure-Python packages that machine lacks may be put in .whl/ (see docs/PERFORMANCE.md).
# Usage: OUT=out/gpu [COMPILE_S=120] [CUDA_TESTS=0] [GROUPS_='sam,encoder,memory edit,memory'] bash scripts/gpu_bench.sh
# (writes bench_cuda_*.json/.txt/.log and nvidia-smi.txt to $OUT; CUDA_TESTS=1, the default, runs tests/core/test_cuda.py first)
set -uo pipefail
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/maskpix-site .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/maskpix-site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 QT_QPA_PLATFORM=offscreen
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
"$PY" -c "import torch, diffusers, segment_anything; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0), 'diffusers', diffusers.__version__)" || exit 1
rc=0
if [ "${CUDA_TESTS:-1}" = 1 ]; then  # the CUDA code paths with the tiny models (skipped where there is no GPU)
    "$PY" -m pytest -q -p no:cacheprovider tests/core/test_cuda.py tests/core/test_sam_decoder.py 2>&1 | tail -n 15
    [ "${PIPESTATUS[0]}" -ne 0 ] && rc=1
fi
# One process per group, each with its own JSON, so a stop in one keeps the others' numbers.
for group in ${GROUPS_:-sam,encoder,memory edit,memory}; do
    name=${group%%,*}
    start=$(date +%s)
    "$PY" -m maskpix_desktop.bench --device cuda --sections "$group" \
        --json "$OUT/bench_cuda_$name.json" 2> "$OUT/bench_cuda_$name.log" | tee "$OUT/bench_cuda_$name.txt"
    r=${PIPESTATUS[0]}
    [ "$r" -ne 0 ] && rc=$r
    echo "bench $group: rc=$r in $(( $(date +%s) - start )) s"
    tail -n 5 "$OUT/bench_cuda_$name.log"
done
if [ "${COMPILE_S:-0}" -gt 0 ]; then  # torch.compile of the SD UNet: minutes of compilation, so bounded
    timeout "$COMPILE_S" "$PY" - "$OUT/unet_compiled.json" <<'PY' || echo "compiled UNet: stopped (rc=$?)"
import json, sys, torch
from maskpix_desktop.bench import sd15_unet_config, unet_speed
r = unet_speed(sd15_unet_config(), "cuda", torch.float16, steps=20, compile_model=True)
print(json.dumps(r))
open(sys.argv[1], "w").write(json.dumps(r, indent=2))
PY
fi
exit $rc
