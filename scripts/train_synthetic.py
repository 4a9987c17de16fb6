"""Proof on this CPU: train the mask UNet and the plain UNet from the same tiny random IP2P on the
synthetic shapes task (identical data, steps, loss and seeds) and compare them on held-out items.

    .venv/bin/python scripts/train_synthetic.py --out runs/synthetic

Writes ``<out>/report.json``, both runs' ``losses.csv`` / checkpoints / ``final`` folders, and prints a
Markdown table (docs/TRAINING.md quotes it). Metrics are in latent space: see maskcond/proof.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/synthetic", help="output folder (replaced)")
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--consistency-weight", type=float, default=2.0, help="lambda")
    ap.add_argument("--n-train", type=int, default=512)
    ap.add_argument("--n-test", type=int, default=48)
    ap.add_argument("--size", type=int, default=64, help="image size in pixels (latents are size/8)")
    ap.add_argument("--eval-steps", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 suits a busy 2-core box)")
    args = ap.parse_args(argv)

    from maskpix_desktop.core.maskcond.proof import EvalConfig, compare, table
    from maskpix_desktop.core.maskcond.synthetic import SyntheticShapes
    from maskpix_desktop.core.maskcond.train import TrainConfig
    from maskpix_desktop.testing.tiny_ip2p import save_tiny_ip2p

    out = Path(args.out)
    base = save_tiny_ip2p(out / "base", seed=args.seed)
    cfg = TrainConfig(
        base=str(base),
        output_dir=str(out),
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        consistency_weight=args.consistency_weight,
        checkpoint_every=max(args.steps // 2, 1),
        cpu=True,
        cpu_threads=args.threads,
        progress=not args.no_progress,
    )
    t0 = time.perf_counter()
    report = compare(
        cfg,
        SyntheticShapes(args.n_train, seed=1000 + args.seed, size=args.size),
        SyntheticShapes(args.n_test, seed=2000 + args.seed, size=args.size),
        EvalConfig(steps=args.eval_steps),
    )
    report["total_s"] = round(time.perf_counter() - t0, 1)
    (out / "report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    print(table(report))
    print(
        f"outside change reduced by {100 * report['outside_reduction']:.1f}% "
        f"(target >= 50% at equal or better inside PSNR): {'MET' if report['target_met'] else 'MISSED'}; "
        f"total {report['total_s']:.0f} s"
    )
    return 0 if report["target_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
