"""Proof on this CPU: train one shared plain warm start from the proof's tiny random IP2P (local VAE, x0
prediction: maskcond/proof.py), fork it into the mask UNet and the plain UNet, train both on the synthetic
shapes task (identical data, steps, loss and seeds) and compare them on held-out items.

    .venv/bin/python scripts/train_synthetic.py --out runs/synthetic

Writes ``<out>/report.json``, the runs' ``losses.csv`` / checkpoints / ``final`` folders (``warm``,
``mask``, ``plain``), and prints a Markdown table (docs/TRAINING.md quotes it). Metrics are in latent
space: see maskcond/proof.py.
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
    ap.add_argument("--steps", type=int, default=1600, help="steps of each compared run (after the fork)")
    ap.add_argument("--warm-steps", type=int, default=1000, help="shared plain warm start first (0: none)")
    ap.add_argument("--warm-lr", type=float, default=0.0, help="warm start lr (0: --lr)")
    ap.add_argument("--vae", choices=("local", "default"), default="local", help="the base's VAE (proof.py)")
    ap.add_argument(
        "--prediction-type",
        choices=("epsilon", "v_prediction", "sample"),
        default="sample",
        help="base scheduler",
    )
    ap.add_argument(
        "--tokens", choices=("words", "bytes"), default="words", help="the base's tokenizer (proof.py)"
    )
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--consistency-weight", type=float, default=4.0, help="lambda")
    ap.add_argument("--n-train", type=int, default=512)
    ap.add_argument("--n-test", type=int, default=48)
    ap.add_argument("--size", type=int, default=64, help="image size in pixels (latents are size/8)")
    ap.add_argument("--eval-steps", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument(
        "--sequential",
        action="store_true",
        help="train the two forks one after the other (default: side by side)",
    )
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 suits a busy 2-core box)")
    args = ap.parse_args(argv)

    import torch

    threads = torch.get_num_threads()
    if args.threads > 0:  # evaluation too, not only training (2 threads thrash on a busy 2-core box)
        torch.set_num_threads(args.threads)
    try:
        return _run(args)
    finally:
        torch.set_num_threads(threads)  # a caller in the same process (the slow test) gets its count back


def _run(args: argparse.Namespace) -> int:
    """Build the base, run the comparison, print the table; 0 iff the target is met."""
    from maskpix_desktop.core.maskcond.proof import EvalConfig, compare, save_proof_base, table
    from maskpix_desktop.core.maskcond.synthetic import SyntheticShapes
    from maskpix_desktop.core.maskcond.train import TrainConfig

    out = Path(args.out)
    t0 = time.perf_counter()
    base = save_proof_base(
        out / "base",
        seed=args.seed,
        vae=args.vae,
        prediction_type=args.prediction_type,
        tokens=args.tokens,
    )
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
    report = compare(
        cfg,
        SyntheticShapes(args.n_train, seed=1000 + args.seed, size=args.size),
        SyntheticShapes(args.n_test, seed=2000 + args.seed, size=args.size),
        EvalConfig(steps=args.eval_steps),
        warm_steps=args.warm_steps,
        warm_lr=args.warm_lr,
        parallel=not args.sequential,
    )
    report["vae"], report["prediction_type"], report["tokens"] = args.vae, args.prediction_type, args.tokens
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
