"""Basin widths of one compared model on fine uniform grids, to check the widths that
`landscape compare` refined: along the 1-D surface's direction (``--lines 1``) or along the
eight lines through the model whose mean diameter is the 2-D width (``--lines 8``).

    python benchmarks/fine_widths.py RUN COMPARE_OUT NAME --half 0.006 --points 601 --lines 1

RUN is the `landscape train` folder (its model.pt), COMPARE_OUT the compare folder (its
models/NAME/directions.h5), the dataset the checkpoint's own (MNIST-1D by default). Prints
each line's width at +0.1 and a JSON line with their mean and the CPU seconds.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("compare", type=Path)
    parser.add_argument("name")
    parser.add_argument("--half", type=float, required=True, help="grid from -half to half")
    parser.add_argument("--points", type=int, default=601)
    parser.add_argument("--lines", type=int, default=1)
    parser.add_argument("--rise", type=float, default=0.1)
    parser.add_argument("--dataset", default="mnist1d")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from landscape.checkpoint import load_checkpoint
    from landscape.data import load_dataset
    from landscape.direction_files import load_directions
    from landscape.shape import basin_shape
    from landscape.surface import SurfaceOptions, compute_surface

    bundle = load_dataset(args.dataset)
    model, _ = load_checkpoint(args.run / "model.pt")
    dirs, _ = load_directions(args.compare / "models" / args.name / "directions.h5")
    x = np.linspace(-args.half, args.half, args.points)
    x[args.points // 2] = 0.0
    start, widths = time.process_time(), []
    for k in range(args.lines):
        a = math.pi * k / args.lines
        c, s = round(math.cos(a), 15), round(math.sin(a), 15)
        line = {n: c * dirs[0][n] + s * dirs[1][n] for n in dirs[0]}
        values = compute_surface(model, bundle, [line], x=x, options=SurfaceOptions(
            metrics=("train_loss",), progress=False)).metrics["train_loss"]
        widths.append(basin_shape(x, values, rise=args.rise).width)
        print(f"{args.name} line {k} (angle {a:.3f}): width {widths[-1]}", flush=True)
    print(json.dumps({"model": args.name, "step": float(x[1] - x[0]), "widths": widths,
                      "mean": None if None in widths else float(np.mean(widths)),
                      "cpu_s": round(time.process_time() - start, 1)}))


if __name__ == "__main__":
    main()
