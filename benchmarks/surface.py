"""Benchmark: 2-D loss surfaces on MNIST-1D (small MLP and cnn1d).

For each model it measures, in the same run and on the same data (the full training set):

1. one bare forward pass over the training data (``model(x)`` under inference mode);
2. one grid point of ``landscape.compute_surface`` (set the weights, train loss and accuracy)
   against a bare forward plus ``F.cross_entropy`` (target: within 10%), and the whole
   ``compute_surface`` on an N x N grid;
3. the same grid with train loss only, against the ``loss-landscapes`` package's
   ``random_plane`` (filter normalization, same model, data and grid size), if installed.

Run: ``python benchmarks/surface.py --grid 11`` (``--help`` for options). Not a test.
Timings depend on the machine and its load; compare ratios within one run.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def per_point_vs_forward(model, x, y, grid: int, rounds: int) -> tuple[float, float, float]:
    """Median seconds of one bare forward, of a bare forward plus ``F.cross_entropy`` (what a
    hand-written loop pays per point for the loss alone) and of one grid point (set the
    weights, forward, train loss and accuracy).

    The three are measured in turn, so that changing load on the machine affects all alike.
    """
    from landscape.directions import random_directions
    from landscape.evaluate import Evaluator

    model.eval()
    dirs = random_directions(model, count=2, seed=0)
    axis = np.linspace(-1.0, 1.0, grid)
    points = [(a, b) for a in axis for b in axis]
    forward, with_loss, point = [], [], []
    with Evaluator(model, (x, y), dirs, metrics=("train_loss", "train_acc"),
                   device=x.device) as ev:
        with torch.inference_mode():
            for _ in range(3):  # warm-up
                model(x)
                ev.evaluate(points[0])
            for k in range(rounds):
                t0 = time.perf_counter()
                out = model(x)
                if out.is_cuda:
                    torch.cuda.synchronize()
                forward.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                float(torch.nn.functional.cross_entropy(model(x), y))  # syncs like a point
                with_loss.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                ev.evaluate(points[k % len(points)])  # ends with a device sync (.tolist())
                point.append(time.perf_counter() - t0)
    return statistics.median(forward), statistics.median(with_loss), statistics.median(point)


def ours(model, data, grid: int, metrics: tuple[str, ...], device) -> float:
    """Seconds for a grid x grid surface with landscape.compute_surface."""
    from landscape.directions import random_directions
    from landscape.surface import SurfaceOptions, compute_surface

    dirs = random_directions(model, count=2, norm="filter", ignore="biasbn", seed=0)
    axis = np.linspace(-1.0, 1.0, grid)
    t0 = time.perf_counter()
    compute_surface(model, data, dirs, axis, axis,
                    options=SurfaceOptions(metrics=metrics, progress=False, device=device))
    return time.perf_counter() - t0


def theirs(model, x, y, grid: int) -> float | None:
    """Seconds for the same grid with loss_landscapes.random_plane, or None if missing."""
    try:
        import loss_landscapes
        import loss_landscapes.metrics
    except ImportError:
        return None
    metric = loss_landscapes.metrics.Loss(torch.nn.functional.cross_entropy, x, y)
    model.eval()
    t0 = time.perf_counter()
    loss_landscapes.random_plane(model, metric, distance=1, steps=grid,
                                 normalization="filter", deepcopy_model=True)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grid", type=int, default=11, help="points per axis")
    parser.add_argument("--models", default="mlp,cnn1d")
    parser.add_argument("--rounds", type=int, default=40,
                        help="alternating forward / point measurements")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from landscape import build_model, count_parameters, load_dataset

    bundle = load_dataset("mnist1d")
    device = torch.device(args.device)
    x, y = (t.to(device) for t in bundle.train)
    points = args.grid ** 2
    try:
        import loss_landscapes  # noqa: F401
        have_ll = True
    except ImportError:
        have_ll = False
    print(f"MNIST-1D train set {tuple(x.shape)}, grid {args.grid}x{args.grid} = {points} "
          f"points, device {device}, torch threads {torch.get_num_threads()}")
    if not have_ll:
        print("loss-landscapes is NOT installed: its column is skipped "
              "(pip install loss-landscapes to compare)")
    ours(build_model("mlp", bundle), (x, y), 2, ("train_loss",), device)  # one-time imports
    header = (f"{'model':6s} {'params':>6s} {'fwd ms':>7s} {'fwd+CE ms':>9s} {'point ms':>8s} "
              f"{'ratio':>5s} {'vs fwd+CE':>9s} "
              f"{'surface s':>9s} {'s/pt/fwd':>8s} {'loss-only s':>11s} "
              f"{'loss-landscapes s':>17s} {'speed-up':>8s}")
    print(header)
    print("-" * len(header))
    for name in args.models.split(","):
        model = build_model(name, bundle, seed=0).to(device)
        forward, with_loss, point = per_point_vs_forward(model, x, y, args.grid, args.rounds)
        full = ours(model, (x, y), args.grid, ("train_loss", "train_acc"), device)
        loss_only, other = [], []
        for _ in range(2):  # alternate, keep the best of two
            loss_only.append(ours(model, (x, y), args.grid, ("train_loss",), device))
            if have_ll:
                other.append(theirs(model, x, y, args.grid))
        best_ours = min(loss_only)
        best_other = min(other) if other else None
        speed = f"{best_other / best_ours:8.2f}" if best_other else f"{'-':>8s}"
        other_s = f"{best_other:17.2f}" if best_other else f"{'not installed':>17s}"
        print(f"{name:6s} {count_parameters(model):6d} {forward * 1e3:7.3f} "
              f"{with_loss * 1e3:9.3f} {point * 1e3:8.3f} {point / forward:5.2f} "
              f"{point / with_loss:9.2f} {full:9.2f} {full / points / forward:8.2f} "
              f"{best_ours:11.2f} {other_s} {speed}")
    print("ratio = median time of one grid point (set weights, forward, train loss and "
          "accuracy) / median bare forward over the same data, measured alternately; "
          "vs fwd+CE = the same point / a bare forward plus F.cross_entropy (target <= 1.10); "
          "surface s = whole compute_surface (loss + accuracy, setup included) and s/pt/fwd "
          "its per-point time over the bare forward; loss-only and loss-landscapes = the same "
          "grid, train loss only, best of two alternating runs; speed-up = loss-landscapes / "
          "ours.")


if __name__ == "__main__":
    main()
