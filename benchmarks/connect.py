"""Seconds per epoch of `landscape connect` (training the bend of a Bezier curve) on the
MNIST-1D `cnn1d`, beside an epoch of plain training at the same batch size, and the cost of
evaluating one point of the curve (train and test split).

    python benchmarks/connect.py [--threads 1] [--epochs 3] [--batch-size 64]

The endpoints are two initializations of the network: the cost of an epoch does not depend
on how well the endpoints are trained.
"""
from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from landscape import build_model, load_dataset
    from landscape.connect import ConnectOptions, connect
    from landscape.train import TrainConfig, train

    bundle = load_dataset("mnist1d")
    a, b = (build_model("cnn1d", bundle, seed=s) for s in (0, 1))
    points = 11
    options = ConnectOptions(epochs=args.epochs, batch_size=args.batch_size, points=points,
                             device="cpu", line=False)
    t0 = time.perf_counter()
    result = connect(a, b, bundle, options=options, progress=False)
    total = time.perf_counter() - t0
    per_epoch = sum(h["seconds"] for h in result.history) / len(result.history)
    per_point = (total - sum(h["seconds"] for h in result.history)) / points
    model = build_model("cnn1d", bundle, seed=0)
    train_result = train(model, bundle, TrainConfig(epochs=args.epochs,
                                                    batch_size=args.batch_size, device="cpu",
                                                    progress=False, eval_every=args.epochs))
    plain = sum(h["epoch_seconds"] for h in train_result.history) / len(train_result.history)
    print(f"| model | batch | connect s/epoch | plain training s/epoch | ratio | "
          f"curve point (train+test) s |")
    print("|---|---|---|---|---|---|")
    print(f"| cnn1d | {args.batch_size} | {per_epoch:.3f} | {plain:.3f} | "
          f"{per_epoch / plain:.2f}x | {per_point:.3f} |")


if __name__ == "__main__":
    main()
