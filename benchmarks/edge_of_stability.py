"""Edge of stability (Cohen et al. 2021) on this machine: full-batch gradient descent without
momentum, the top Hessian eigenvalue tracked during training (``track_eigenvalues``).

    python benchmarks/edge_of_stability.py [--model cnn1d] [--lr 0.2] [--steps 400]
                                           [--every 5] [--train-subset N] [--loss mse]
                                           [--out eos.json] [--figure eos.png]

Prints lambda_max against the step next to 2/lr, and how close the hovering came: after the
first measurement within 10% of 2/lr, the share of later measurements within 10% of it, their
median ratio to 2/lr, and the extremes. Also the products and seconds the tracking cost.
Not a test: nothing here asserts, it prints measurements.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from landscape.data import load_dataset
from landscape.models import build_model, count_parameters
from landscape.train import TrainConfig, train


def hovering(steps: np.ndarray, values: np.ndarray, limit: float, band: float = 0.1) -> dict:
    """How the tracked values sit against ``limit`` once they first come within ``band``."""
    near = np.flatnonzero(np.abs(values / limit - 1) <= band)
    if not len(near):
        return {"reached": False, "max_ratio": float(values.max() / limit)}
    after = values[near[0]:] / limit
    return {"reached": True, "first_step": int(steps[near[0]]),
            "share_within_band": float(np.mean(np.abs(after - 1) <= band)),
            "median_ratio": float(np.median(after)), "min_ratio": float(after.min()),
            "max_ratio": float(after.max()), "measurements_after": int(len(after))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="cnn1d")
    ap.add_argument("--lr", type=float, default=0.2)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--every", type=int, default=5)
    ap.add_argument("--train-subset", type=int, default=None)
    ap.add_argument("--loss", default="cross_entropy", choices=["cross_entropy", "mse"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    ap.add_argument("--figure", default=None)
    args = ap.parse_args()

    bundle = load_dataset("mnist1d", train_subset=args.train_subset)
    model = build_model(args.model, bundle, seed=args.seed)
    config = TrainConfig(optimizer="sgd", lr=args.lr, momentum=0.0, batch_size="full",
                         epochs=args.steps, loss=args.loss, seed=args.seed,
                         track_eigenvalues=args.every, eval_every=args.every,
                         checkpoint_every=0, progress=False)
    start = time.perf_counter()
    result = train(model, bundle, config)
    seconds = time.perf_counter() - start
    rows = [e for e in result.history if np.isfinite(e.get("lambda_max", np.nan))]
    steps = np.array([e["step"] for e in rows])
    values = np.array([e["lambda_max"] for e in rows])
    products = int(sum(e["lambda_max_products"] for e in rows))
    limit = 2.0 / args.lr
    summary = hovering(steps, values, limit)
    print(f"{args.model} ({count_parameters(model):,} parameters), {len(bundle.train[1])} "
          f"examples, full-batch GD lr {args.lr} (2/lr = {limit:.4g}), {args.loss}, "
          f"{args.steps} steps in {seconds:.1f} s; diverged: {result.diverged}")
    print(f"{'step':>6} {'lambda_max':>11} {'/ (2/lr)':>9} {'products':>8} {'train loss':>10}")
    for e in rows:
        print(f"{e['step']:>6} {e['lambda_max']:>11.5g} {e['lambda_max'] / limit:>9.3f} "
              f"{int(e['lambda_max_products']):>8} {e['train_loss']:>10.4g}")
    print(f"tracking: {len(rows)} measurements, {products} products "
          f"({products / max(len(rows), 1):.1f} each)")
    print("hovering:", json.dumps(summary))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"args": vars(args), "seconds": seconds, "limit": limit,
                       "summary": summary, "history": result.history}, fh, indent=1,
                      default=float)
    if args.figure:
        from landscape.figures import plot_sharpness

        plot_sharpness([result.history], labels=[f"GD lr {args.lr}"], thresholds=[limit],
                       threshold_names=["2/lr"], log=False,
                       title="Full-batch gradient descent: edge of stability",
                       out=args.figure)


if __name__ == "__main__":
    main()
