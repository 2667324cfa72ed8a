"""Depth without skip connections on MNIST-1D (after Li et al. 2018, Fig. 5 and 7).

Trains `resnet1d` at growing depth with and without shortcuts (BatchNorm kept in both, as in
the paper's no-skip nets), then measures each minimum on one filter-normalized random plane:
the number of basins (``landscape.shape``), the fraction of a coarse grid where the Hessian's
|lambda_min / lambda_max| passes 0.1 (the eigen-ratio map; large = non-convex), and test
accuracy. Writes ``<out>/depth.json`` and ``<out>/depth_planes.png``.

    python examples/depth_without_skips.py --out depth --depths 8,20 --epochs 15
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import landscape as ls


def measure(depth: int, skip: bool, bundle, small, args) -> dict:
    """Train one network and measure its plane; returns one row of the table."""
    t0 = time.perf_counter()
    model = ls.build_model("resnet1d", bundle, seed=args.seed, depth=depth, skip=skip)
    config = ls.TrainConfig(batch_size=args.batch_size, lr=args.lr, epochs=args.epochs,
                            seed=args.seed, progress=False, eval_every=args.epochs)
    final = ls.train(model, bundle, config).final
    dirs = ls.random_directions(model, count=2, norm="filter", ignore="biasbn", seed=args.seed)
    grid = np.linspace(-1.0, 1.0, args.points)
    plane = ls.compute_surface(model, bundle, dirs, x=grid, y=grid,
                               options=ls.SurfaceOptions(progress=False, metrics=("train_loss",)))
    coarse = np.linspace(-1.0, 1.0, args.eig_points)
    eig = ls.compute_surface(model, small, dirs, x=coarse, y=coarse,
                             options=ls.SurfaceOptions(progress=False, metrics=("train_loss",),
                                                       hessian=True))
    ratio = np.abs(eig.metrics["eig_min"] / eig.metrics["eig_max"])
    shape = ls.surface_shape(plane, "train_loss")
    name = f"resnet1d-{depth} {'skip' if skip else 'no skip'}"
    return {"name": name, "depth": depth, "skip": skip,
            "parameters": ls.count_parameters(model),
            "train_accuracy": final["train_acc"], "test_accuracy": final["test_acc"],
            "basins": shape.n_basins, "label": shape.label, "rule": shape.rule,
            "nonconvex_fraction": float(np.mean(ratio > args.ratio)),
            "ratio_threshold": args.ratio, "seconds": time.perf_counter() - t0,
            "plane": plane}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="depth")
    parser.add_argument("--depths", default="8,20", help="comma-separated, each 6 n + 2")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--points", type=int, default=21, help="plane points per side")
    parser.add_argument("--eig-points", type=int, default=5, help="eigen-ratio grid per side")
    parser.add_argument("--eig-examples", type=int, default=500,
                        help="training examples for the Hessian at each grid point")
    parser.add_argument("--ratio", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bundle = ls.load_dataset("mnist1d")
    small = ls.load_dataset("mnist1d", train_subset=args.eig_examples)
    rows = [measure(int(d), skip, bundle, small, args)
            for d in args.depths.split(",") for skip in (True, False)]
    ls.plot_contours([r["plane"] for r in rows], kind="filled", log=True, vmax=10, levels=20,
                     labels=[r["name"] for r in rows], out=out / "depth_planes.png")
    table = [{k: v for k, v in r.items() if k != "plane"} for r in rows]
    (out / "depth.json").write_text(json.dumps(table, indent=2) + "\n")
    for r in table:
        print(f"{r['name']:24s} test {100 * r['test_accuracy']:.1f}%  basins {r['basins']}  "
              f"|min/max| > {r['ratio_threshold']:g} on {100 * r['nonconvex_fraction']:.0f}% "
              f"of the grid  ({r['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
