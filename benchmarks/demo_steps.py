"""What each step of `landscape demo` costs, from unit costs measured on one thread.

The demo's wall time on a shared machine says little; this script times the unit of every
step (a training epoch, a surface point, a Hessian-vector product, one sharpness measure, one
figure) in CPU seconds on one thread and multiplies by the counts the demo's configuration
asks for, so the steps can be compared with each other (and a budget planned) whatever else
the machine is doing. Usage:

    python benchmarks/demo_steps.py [--quick]

Prints one row per step: count, CPU seconds per unit, estimated CPU seconds.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def cpu_time(fn, repeat: int = 1) -> float:
    """CPU seconds of one call of ``fn`` (the best of ``repeat``)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the --quick demo's counts")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from landscape import build_model, load_dataset
    from landscape.directions import random_directions
    from landscape.curvature import hessian_trace
    from landscape.sharpness import measure_sharpness
    from landscape.study import StudyConfig
    from landscape.surface import compute_surface
    from landscape.train import TrainConfig, train

    config = StudyConfig.quick() if args.quick else StudyConfig()
    bundle = load_dataset("mnist1d")
    model = build_model(config.model, bundle, seed=0)
    rows = []

    def epochs(batch, n):
        tc = TrainConfig(batch_size=batch, epochs=n, lr=0.01 if batch != "full" else 0.1,
                         progress=False, device="cpu", eval_every=max(1, n // 100))
        return cpu_time(lambda: train(build_model(config.model, bundle, seed=0), bundle, tc)) / n

    rows.append(("train small batch (epoch)", config.small.epochs, epochs(32, 3)))
    rows.append(("train full batch (epoch)", config.large.epochs, epochs("full", 30)))
    dirs = random_directions(model, count=2, seed=0)
    grid = np.linspace(-0.5, 0.5, 5)
    per_point = cpu_time(lambda: compute_surface(
        model, bundle, dirs, x=grid, y=grid, progress=False, device="cpu",
        metrics=("train_loss", "train_acc", "test_loss", "test_acc"))) / 25
    points = 2 * (config.plane_points ** 2 + config.line_points) + config.interp_points
    rows.append(("surface points (all)", points, per_point))
    hvp = cpu_time(lambda: hessian_trace(model, bundle.train, n_products=12, device="cpu")) / 12
    products = 2 * (config.trace_products + config.density_probes * config.density_steps
                    + 8 * config.top_k)  # eigsh: about 8 products per eigenvalue here
    rows.append(("Hessian-vector products", products, hvp))
    sharp = cpu_time(lambda: measure_sharpness(model, bundle, eps=config.eps, rho=config.rho,
                                               samples=config.sharpness_samples, seed=0))
    rows.append(("sharpness (per model)", 2, sharp))
    total = 0.0
    print(f"{'step':32s} {'count':>7s} {'s/unit':>9s} {'CPU s':>8s}")
    for name, count, unit in rows:
        total += count * unit
        print(f"{name:32s} {count:7d} {unit:9.4f} {count * unit:8.1f}")
    print(f"{'total (one thread)':32s} {'':7s} {'':9s} {total:8.1f}")


if __name__ == "__main__":
    main()
