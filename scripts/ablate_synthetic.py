"""Ablation grid on the synthetic shapes task: conditioning (concat | attention | both) x mask dropout
(on | off) x LoRA (rank 4 | full), plus the plain IP2P UNet, all forked from the same plain warm start
of the proof's tiny random IP2P (maskcond/proof.py: local VAE, x0 prediction, word tokens), trained on
the same data and steps and scored on the same held-out items (latent metrics).

    .venv/bin/python scripts/ablate_synthetic.py --out runs/ablation

Writes ``<out>/ablation.csv``, ``ablation.md``, ``ablation.png`` and one folder per run (reused when
the same command runs again). ``--axes '{"consistency_weight": [0.5, 2.0]}'`` sweeps other
TrainConfig fields. The defaults are a small setting that runs in minutes on a CPU, not a real result.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/ablation", help="output folder (finished runs are reused)")
    ap.add_argument(
        "--axes", help="JSON object: TrainConfig field -> list of values (default: the grid above)"
    )
    ap.add_argument("--no-baseline", action="store_true", help="leave out the plain IP2P UNet")
    ap.add_argument("--steps", type=int, default=300, help="steps of each run (after the warm start)")
    ap.add_argument("--warm-steps", type=int, default=1000, help="shared plain warm start (0: none)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--consistency-weight", type=float, default=8.0, help="lambda")
    ap.add_argument("--n-train", type=int, default=512)
    ap.add_argument("--n-test", type=int, default=48)
    ap.add_argument("--size", type=int, default=64, help="image size in pixels (latents are size/8)")
    ap.add_argument("--eval-steps", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 suits a busy 2-core box)")
    args = ap.parse_args(argv)

    from maskpix_desktop.core.maskcond.ablate import grid, run_grid, to_markdown, write_report
    from maskpix_desktop.core.maskcond.proof import EvalConfig, save_proof_base
    from maskpix_desktop.core.maskcond.synthetic import SyntheticShapes
    from maskpix_desktop.core.maskcond.train import TrainConfig

    axes = json.loads(args.axes) if args.axes else None
    if axes is not None and not (isinstance(axes, dict) and all(isinstance(v, list) for v in axes.values())):
        ap.error("--axes must be a JSON object of lists")
    out = Path(args.out)
    base = out / "base"
    if not (base / "model_index.json").is_file():
        save_proof_base(base, seed=args.seed)
    cfg = TrainConfig(
        base=str(base),
        output_dir=str(out),
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        consistency_weight=args.consistency_weight,
        attention_tokens=4,
        attention_dim=32,
        checkpoint_every=args.steps,
        keep_checkpoints=1,
        cpu=True,
        cpu_threads=args.threads,
        progress=False,
    )
    t0 = time.perf_counter()
    train_items = SyntheticShapes(args.n_train, seed=1000 + args.seed, size=args.size)
    if args.warm_steps > 0:
        cfg = replace(cfg, base=str(_warm(cfg, train_items, args.warm_steps)))
    rows = run_grid(
        cfg,
        train_items,
        SyntheticShapes(args.n_test, seed=2000 + args.seed, size=args.size),
        grid(axes, baseline=not args.no_baseline),
        EvalConfig(steps=args.eval_steps),
    )
    paths = write_report(rows, out)
    print(to_markdown(rows))
    print(
        f"{len(rows)} runs in {time.perf_counter() - t0:.0f} s; " + ", ".join(str(p) for p in paths.values())
    )
    return 0


def _warm(cfg, items, steps: int) -> Path:
    """The shared warm start's final folder (reused when ``warm.json`` records the same settings)."""
    from maskpix_desktop.core.maskcond.proof import warm_start

    record = Path(cfg.output_dir) / "warm.json"
    key = {"config": json.loads(json.dumps(asdict(cfg))), "steps": steps}
    if record.is_file():
        saved = json.loads(record.read_text(encoding="utf-8"))
        if saved.get("key") == key and Path(saved["final_dir"], "model_index.json").is_file():
            return Path(saved["final_dir"])
    final_dir, summary = warm_start(cfg, items, steps)
    record.write_text(
        json.dumps({"key": key, "final_dir": str(final_dir), **summary}, indent=1), encoding="utf-8"
    )
    return final_dir


if __name__ == "__main__":
    sys.exit(main())
