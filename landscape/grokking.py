"""Grokking milestones of a training run, and its curvature over training.

A run groks when its training accuracy reaches (nearly) 100% long before its test accuracy
does. Given a ``landscape train`` run folder saved with ``--checkpoint-every``:

- ``grokking_milestones(run_dir) -> (memorized, grokked)`` reads the metrics each checkpoint
  stores and names two of them: the first that memorized (training accuracy at least
  ``memorized``, test accuracy still below ``grokked``) and the first that generalized (test
  accuracy at least ``grokked``), the pair ``landscape compare`` then measures. It only reads:
  the answer is exactly what training recorded.
- ``checkpoint_traces(run_dir, data)`` evaluates the Hessian trace (Hutch++) of the mean
  training loss at saved checkpoints, the curve that ``--track-eigenvalues`` does not record
  beside the top eigenvalue (see its docstring for why it is measured afterwards).
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Sequence

from .checkpoint import load_checkpoint, read_checkpoint, run_checkpoints
from .curvature import HessianOptions, hessian_trace
from .errors import LandscapeError


@dataclasses.dataclass(frozen=True)
class Milestone:
    """One checkpoint of a run and the accuracies it recorded.

    Attributes:
        path: the checkpoint file.
        epoch: its epoch (for full-batch training, its step).
        train_acc: training accuracy when it was saved.
        test_acc: test accuracy when it was saved.
    """

    path: Path
    epoch: int
    train_acc: float
    test_acc: float


def run_milestones(run_dir: str | os.PathLike) -> list[Milestone]:
    """Every per-epoch checkpoint of a run with its stored accuracies, in epoch order
    (checkpoints saved before any evaluation, such as epoch 0, are left out)."""
    paths, _, epochs = run_checkpoints(run_dir)
    found = []
    for path, epoch in sorted(zip(paths, epochs), key=lambda pe: pe[1]):
        metrics = (read_checkpoint(path).get("extra") or {}).get("metrics") or {}
        if "train_acc" in metrics and "test_acc" in metrics:
            found.append(Milestone(path, epoch, float(metrics["train_acc"]),
                                   float(metrics["test_acc"])))
    return found


def grokking_milestones(run_dir: str | os.PathLike, *, memorized: float = 0.99,
                        grokked: float = 0.95) -> tuple[Milestone, Milestone]:
    """The first checkpoint that memorized and the first that generalized.

    Args:
        run_dir: a ``landscape train`` run folder with per-epoch checkpoints.
        memorized: training accuracy that counts as memorized.
        grokked: test accuracy that counts as generalized.

    Returns:
        ``(memorizing, grokked)`` milestones; the first is earlier.

    Raises:
        LandscapeError: thresholds outside (0, 1], no checkpoint that memorized while its
            test accuracy was below ``grokked``, or none that generalized after it.
    """
    for name, value in (("memorized", memorized), ("grokked", grokked)):
        if not 0.0 < value <= 1.0:
            raise LandscapeError(f"{name} accuracy must be in (0, 1], got {value}")
    milestones = run_milestones(run_dir)
    first = next((m for m in milestones if m.train_acc >= memorized and m.test_acc < grokked),
                 None)
    if first is None:
        raise LandscapeError(f"no checkpoint of {str(run_dir)!r} memorized (training accuracy "
                             f">= {memorized:g} with test accuracy < {grokked:g}): train longer, "
                             "or save checkpoints more often")
    late = next((m for m in milestones if m.epoch > first.epoch and m.test_acc >= grokked),
                None)
    if late is None:
        best = max(m.test_acc for m in milestones)
        raise LandscapeError(f"{str(run_dir)!r} memorized at epoch {first.epoch} but never "
                             f"reached test accuracy {grokked:g} (best {best:.3f}): it has not "
                             "grokked yet; train longer")
    return first, late


def checkpoint_traces(run_dir: str | os.PathLike, data, *, epochs: Sequence[int],
                      n_products: int = 30, seed: int = 0,
                      loss: str = "cross_entropy") -> list[dict[str, float]]:
    """The Hessian trace of the mean training loss at saved checkpoints of a run.

    The top eigenvalue is tracked during training with a warm-started Lanczos run (6-11
    products per measurement on the grokking run); a Hutch++ trace has no warm start and
    needs some 30 products for a few percent of standard error, so it is measured here, on
    the checkpoints, at the same cost and without training again.

    Args:
        run_dir: a ``landscape train`` run folder with per-epoch checkpoints.
        data: the training ``(inputs, targets)`` (e.g. ``bundle.train``).
        epochs: the checkpoints' epochs to measure (each must be saved).
        n_products: Hessian-vector products per trace (Hutch++).
        seed: seed of the probes (the same at every checkpoint).
        loss: the training loss.

    Returns:
        One record per epoch, in epoch order: ``step`` (the epoch), ``trace``,
        ``trace_stderr``, ``n_products``, ``seconds``.

    Raises:
        LandscapeError: an epoch without a saved checkpoint.
    """
    paths, _, saved = run_checkpoints(run_dir)
    by_epoch = dict(zip(saved, paths))
    missing = sorted(set(epochs) - set(by_epoch))
    if missing:
        raise LandscapeError(f"{str(run_dir)!r} has no checkpoint of epoch {missing[0]} "
                             f"(saved: {', '.join(str(e) for e in sorted(by_epoch)[:6])}...)")
    records = []
    for epoch in sorted(set(epochs)):
        model, _ = load_checkpoint(by_epoch[epoch])
        result = hessian_trace(model, data, n_products=n_products, seed=seed,
                               options=HessianOptions(loss=loss))
        records.append({"step": int(epoch), "trace": result.estimate,
                        "trace_stderr": result.stderr, "n_products": result.n_products,
                        "seconds": result.seconds})
    return records
