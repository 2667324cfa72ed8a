"""The batch-size claims, measured: ``run_sweep(config, out_dir)``.

Trains one model per batch size (and the optimizer comparison Rprop full-batch, Rprop
mini-batch, RMSprop mini-batch), then measures test accuracy, generalization gap, top Hessian
eigenvalue, Keskar sharpness, epochs and seconds to a training-loss target, and throughput.
Writes ``sweep.json``, ``figures/*.png``, ``sweep_report.md`` and ``sweep_report.html``; each
run is reused on a re-run unless its settings changed (or ``force``).
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..util import provenance, write_json
from ..checkpoint import load_checkpoint
from ..curvature import HessianOptions, hessian_eigenvalues
from ..models import build_model
from ..sharpness import epsilon_sharpness
from ..train import TrainConfig, load_history, train
from .inputs import open_run
from .steps import Steps, step_key
from .sweep_report import write_sweep_report

__all__ = ["SweepRun", "SweepConfig", "run_sweep", "observations"]


@dataclasses.dataclass(frozen=True)
class SweepRun:
    """One training run of the sweep.

    Attributes:
        label: unique name (folder name under ``runs/``).
        batch_size: examples per step or ``"full"``.
        optimizer: optimizer name.
        lr: learning rate.
        epochs: epoch budget.
        group: ``batch`` (the batch-size sweep) or ``optimizer`` (the Rprop/RMSprop comparison).
    """

    label: str
    batch_size: int | str
    optimizer: str
    lr: float
    epochs: int
    group: str = "batch"


@dataclasses.dataclass(frozen=True, kw_only=True)
class SweepConfig:
    """Settings of the sweep.

    Learning rate policy for the batch-size sweep: ``lr = base_lr * b / base_batch`` (linear
    scaling), capped at ``max_lr``; epochs: enough for about ``target_steps`` optimizer steps,
    clamped to ``[min_epochs, max_epochs]`` so that large batches still get to fit the data.

    Attributes:
        dataset, train_subset, test_subset, data_seed, model, model_options, seed: as in the
            study (``batchnorm`` off by default, so small batches can fail to converge).
        data_root: folder of a torchvision dataset (``landscape.data.load_dataset``'s root).
        batch_sizes: the sizes to train (``"full"`` allowed).
        base_lr, base_batch, max_lr, momentum: SGD settings and the scaling rule.
        target_steps, min_epochs, max_epochs: the epoch budget policy.
        target_loss: training loss that counts as converged.
        optimizer_batch: mini-batch size of the Rprop/RMSprop comparison (0 skips it).
        rprop_lr, rmsprop_lr, optimizer_epochs: that comparison's settings.
        top_k_products: tolerance of the eigensolver is loose (one eigenvalue, tol 1e-3).
        eps: Keskar sharpness box size.
        device: torch device.
    """

    dataset: str = "mnist1d"
    train_subset: int | None = None
    test_subset: int | None = None
    data_seed: int = 0
    data_root: str | None = None
    model: str = "cnn1d"
    model_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    seed: int = 0
    batch_sizes: tuple[int | str, ...] = (4, 8, 16, 32, 64, 128, 512, "full")
    base_lr: float = 0.01
    base_batch: int = 32
    max_lr: float = 0.1
    momentum: float = 0.9
    target_steps: int = 6000
    min_epochs: int = 20
    max_epochs: int = 600
    target_loss: float = 0.05
    optimizer_batch: int = 32
    rprop_lr: float = 1e-3
    rmsprop_lr: float = 1e-3
    optimizer_epochs: int = 60
    eps: float = 1e-3
    device: str | None = None

    def runs(self, n_train: int) -> list[SweepRun]:
        """Every run of the sweep, batch sizes first."""
        out = []
        for b in self.batch_sizes:
            size = n_train if b == "full" else min(int(b), n_train)
            lr = min(self.base_lr * size / self.base_batch, self.max_lr)
            per_epoch = math.ceil(n_train / size)
            epochs = int(np.clip(math.ceil(self.target_steps / per_epoch), self.min_epochs,
                                 self.max_epochs))
            out.append(SweepRun(f"batch_{b}", b, "sgd", lr, epochs))
        if self.optimizer_batch:
            ob = self.optimizer_batch
            out += [SweepRun("rprop_full", "full", "rprop", self.rprop_lr,
                             self.optimizer_epochs * 5, "optimizer"),
                    SweepRun(f"rprop_{ob}", ob, "rprop", self.rprop_lr, self.optimizer_epochs,
                             "optimizer"),
                    SweepRun(f"rmsprop_{ob}", ob, "rmsprop", self.rmsprop_lr,
                             self.optimizer_epochs, "optimizer")]
        return out


def run_sweep(config: SweepConfig = SweepConfig(), out_dir: str | Path = "sweep", *,
              force: bool = False, progress: bool = True,
              log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Train and measure every run of the sweep; write the table, figures and report.

    Args:
        config: the settings.
        out_dir: output folder (re-runs reuse finished runs).
        force: retrain and remeasure everything.
        progress: progress bars.
        log: called with one line per run (None: silent).

    Returns:
        The content of ``sweep.json`` (``rows``, ``observations``, ``setup``, ``files``).
    """
    start = time.perf_counter()
    out, say, steps, bundle = open_run(config, out_dir, force, log)
    runs = config.runs(len(bundle.train[1]))
    rows = []
    for i, run in enumerate(runs, 1):
        say(f"[{i}/{len(runs)}] {run.label}: {run.optimizer}, batch {run.batch_size}, "
            f"lr {run.lr:g}, {run.epochs} epochs")
        rows.append(_measure(config, bundle, run, out, steps, progress))
    summary = {"rows": rows, "observations": observations(rows, bundle.num_classes,
                                                          config.target_loss),
               "setup": {"dataset": bundle.name, "train_examples": len(bundle.train[1]),
                         "num_classes": bundle.num_classes, "model": config.model,
                         "config": _plain(config)},
               "provenance": provenance(), "reused_steps": list(steps.reused)}
    summary["files"] = write_sweep_report(summary, out)
    summary["seconds"] = time.perf_counter() - start
    write_json(out / "sweep.json", summary)
    return summary


def _plain(config: SweepConfig) -> dict[str, Any]:
    """The settings as plain JSON values."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def _measure(config: SweepConfig, bundle, run: SweepRun, out: Path, steps: Steps,
             progress: bool) -> dict[str, Any]:
    """Train one run (or reuse it) and measure it; the row is cached as JSON."""
    run_dir = out / "runs" / run.label
    row_path = run_dir / "row.json"
    key = step_key(dataclasses.asdict(run), bundle.spec, config.model, config.model_options,
                   config.seed, config.momentum, config.eps, config.target_loss)
    if steps.current(run.label, key, [row_path]):
        return json.loads(row_path.read_text())
    model = build_model(config.model, bundle, seed=config.seed, **config.model_options)
    tc = TrainConfig(optimizer=run.optimizer, lr=run.lr, momentum=config.momentum,
                     batch_size=run.batch_size, epochs=run.epochs, seed=config.seed,
                     device=config.device, progress=progress, checkpoint_every=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small batches are the point here
        result = train(model, bundle, tc, out_dir=run_dir)
    history = load_history(run_dir)["epochs"]
    row = _row(run, bundle, result, history, config.target_loss)
    if not result.diverged:
        model, _ = load_checkpoint(run_dir / "model.pt", builder=config.model)
        row.update(_curvature(model, bundle, config))
    write_json(row_path, row)
    steps.mark(run.label, key)
    return row


def _row(run: SweepRun, bundle, result, history: list[dict], target: float) -> dict[str, Any]:
    """The table row of a trained run: its settings, final metrics and convergence."""
    n = len(bundle.train[1])
    size = n if run.batch_size == "full" else min(int(run.batch_size), n)
    reached = next((h for h in history if h["train_loss"] <= target), None)
    final = result.final or {}
    rates = [h["samples_per_s"] for h in history[1:] or history
             if math.isfinite(h.get("samples_per_s", float("nan")))]
    return {
        "label": run.label, "group": run.group, "optimizer": run.optimizer,
        "batch_size": size, "full_batch": run.batch_size == "full", "lr": run.lr,
        "epochs": run.epochs, "diverged": result.diverged,
        "smaller_than_classes": size < bundle.num_classes,
        "train_loss": final.get("train_loss"), "train_accuracy": final.get("train_acc"),
        "test_accuracy": final.get("test_acc"),
        "generalization_gap": (final["train_acc"] - final["test_acc"]) if final else None,
        "converged": reached is not None,
        "epochs_to_target": reached["epoch"] if reached else None,
        "seconds_to_target": reached["elapsed"] if reached else None,
        "samples_per_s": float(np.median(rates)) if rates else None,
        "train_seconds": result.seconds,
        "train_loss_curve": [h["train_loss"] for h in history],
        "curve_epochs": [h["epoch"] for h in history],
    }


def _curvature(model, bundle, config: SweepConfig) -> dict[str, Any]:
    """Top Hessian eigenvalue (loose tolerance) and Keskar sharpness of a trained run."""
    eig = hessian_eigenvalues(model, bundle.train, k=1, tol=1e-3, seed=config.seed,
                              options=HessianOptions(device=config.device))
    sharp = epsilon_sharpness(model, bundle, eps=config.eps, seed=config.seed)
    return {"top_eigenvalue": float(np.max(eig.values)), "sharpness": sharp.value}


def observations(rows: list[dict[str, Any]], num_classes: int, target: float) -> list[str]:
    """What the sweep shows, in sentences, including where it departs from the usual claims."""
    out: list[str] = []
    batch = [r for r in rows if r["group"] == "batch" and not r["diverged"]]
    if len(batch) >= 2:
        best = max(batch, key=lambda r: r["test_accuracy"])
        largest = max(batch, key=lambda r: r["batch_size"])
        out.append(f"Best test accuracy {100 * best['test_accuracy']:.1f}% at batch "
                   f"{best['batch_size']}; the largest batch ({largest['batch_size']}) reaches "
                   f"{100 * largest['test_accuracy']:.1f}%.")
        fitted = [r for r in batch if r.get("top_eigenvalue") is not None and r["converged"]]
        if len(fitted) >= 2:
            sizes = np.log([r["batch_size"] for r in fitted])
            eigs = np.log([max(r["top_eigenvalue"], 1e-12) for r in fitted])
            corr = float(np.corrcoef(sizes, eigs)[0, 1]) if np.std(eigs) > 0 else 0.0
            trend = ("grows" if corr > 0.5 else "shrinks" if corr < -0.5
                     else "shows no clear trend")
            out.append(f"Among runs that reached train loss {target:g}, the top Hessian "
                       f"eigenvalue {trend} with batch size (correlation of logs {corr:+.2f}; "
                       f"{fitted[0]['top_eigenvalue']:.3g} at batch {fitted[0]['batch_size']}, "
                       f"{fitted[-1]['top_eigenvalue']:.3g} at batch {fitted[-1]['batch_size']})"
                       + ("." if corr > 0.5 else ": this departs from the usual claim."))
        quick = [r for r in batch if r["converged"]]
        if quick:
            fastest = min(quick, key=lambda r: r["seconds_to_target"])
            out.append(f"Fastest to train loss {target:g} in wall time: batch "
                       f"{fastest['batch_size']} ({fastest['seconds_to_target']:.1f} s, "
                       f"{fastest['epochs_to_target']} epochs).")
    tiny = [r for r in batch if r["smaller_than_classes"]]
    for r in tiny:
        verdict = "converged" if r["converged"] else "did not reach the target"
        out.append(f"Batch {r['batch_size']} (< {num_classes} classes) {verdict}: "
                   f"final train loss {r['train_loss']:.3g}.")
    stalled = [r["batch_size"] for r in batch
               if not r["smaller_than_classes"] and not r["converged"]]
    if tiny and stalled:
        out.append(f"Batches of at least {num_classes} also missed the target ("
                   + ", ".join(str(b) for b in stalled) + ") within the same step budget, so "
                   "the budget, not the batch size alone, may be what stopped the small ones; "
                   "raise --min-epochs to tell them apart.")
    opt = {r["label"]: r for r in rows if r["group"] == "optimizer"}
    if opt:
        parts = [f"{r['optimizer']} batch {r['batch_size']}: train loss "
                 f"{'diverged' if r['diverged'] else format(r['train_loss'], '.3g')}"
                 for r in opt.values()]
        out.append("Optimizers: " + "; ".join(parts) + ". Rprop uses only gradient signs, so "
                   "on mini-batches its step sizes follow noise; RMSprop normalizes by a running "
                   "mean of squared gradients instead.")
    return out
