"""Training with the data resident on the device: ``train(model, bundle, config)``.

The loop never waits for the device between steps: each step's loss stays on the device and
an epoch's losses are read back once, at its end (where a NaN/inf loss is found and the
run stops, keeping the checkpoints already written). ``compile=True`` runs the training
steps' forward passes through ``torch.compile``; evaluation and checkpoints use the model
itself, so checkpoints are the same as without compiling.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import random
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .checkpoint import read_checkpoint, save_checkpoint
from .data import DataBundle
from .errors import LandscapeError
from .curvature import ADAPTIVE, CURVATURES
from .losses import LOSSES, loss_function  # noqa: F401  (loss_function: re-exported)
from .optimizers import DEFAULT_RHO, SAM, SAM_KINDS, WeightAverage, take_step
from .tracking import (SharpnessTracker, adaptive_threshold,  # noqa: F401  (re-exported)
                       run_threshold, stability_threshold, tracked_record)
from .util import check_choice, pick_device, progress, write_bytes, write_json

BASE_OPTIMIZERS = ("sgd", "rmsprop", "rprop", "adam", "adamw")
OPTIMIZERS = BASE_OPTIMIZERS + SAM_KINDS
SCHEDULES = ("constant", "cosine", "step")
HISTORY_SECONDS = 2.0
"""During training, history.json/.csv are rewritten after an epoch when this many seconds
have passed since the last time, so a killed run keeps its history (status complete: false)."""
TIMING_KEYS = ("epoch_seconds", "samples_per_s", "elapsed", "lambda_max_seconds")
"""History entries that differ between identical runs (kept out of checkpoints)."""
RESUME_FILE = "resume.pt"
"""In a run folder: the state to continue an interrupted run (model, optimizer, every random
generator, step and history), replaced in one atomic write at each checkpoint and removed
when the run ends. One file, so that a kill never pairs a model with another epoch's state."""
RESUME_IGNORED = ("progress", "device")
"""TrainConfig fields a resumed run may change (they do not change the numbers on one device)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """How to train.

    Attributes:
        optimizer: one of ``sgd``, ``rmsprop``, ``rprop``, ``adam``, ``adamw``, or the
            flat-minimum ``sam`` / ``asam`` (sharpness-aware steps of ``sam_base``).
        lr: learning rate (before linear scaling).
        momentum: SGD/RMSprop momentum; None: each optimizer's usual default, 0.9 for SGD (also
            as SAM's base) and PyTorch's 0 for RMSprop (resolved when the config is made).
        nesterov: Nesterov momentum for SGD.
        weight_decay: L2 penalty (decoupled for adamw).
        batch_size: examples per step, or ``"full"`` for the whole training set.
        epochs: passes over the training set (ignored when ``steps`` is set).
        steps: total optimizer steps instead of epochs.
        schedule: ``constant``, ``cosine`` (to zero) or ``step`` (x ``gamma`` every
            ``step_epochs``).
        lr_scaling: multiply ``lr`` by ``batch_size / base_batch`` (linear scaling rule).
        seed: seed for shuffling (model init is fixed by ``build_model(seed=...)``).
        device: ``cuda``, ``mps``, ``cpu`` or None for the best available.
        drop_last: drop the last incomplete batch of an epoch.
        loss: ``cross_entropy`` or ``mse`` (on one-hot targets).
        checkpoint_every: save every N epochs; None picks about 50 per run; 0 saves none.
        eval_every: evaluate train/test metrics every N epochs (and always at the end).
        progress: show a progress bar on stderr.
        compile: compile the model for the training steps with ``torch.compile``.
        compile_backend: the ``torch.compile`` backend (``inductor`` needs a C++ compiler on
            the CPU; ``aot_eager`` traces without generating code).
        track_eigenvalues: every N epochs (and at the end) record the top Hessian eigenvalue
            of the mean training loss as ``lambda_max`` in the history (0: never); for RMSprop,
            Adam and AdamW also the preconditioned sharpness (top eigenvalue of ``P^-1 H``)
            and its threshold; see ``SharpnessTracker``.
        track_curvature: the matrix ``lambda_max`` is the top eigenvalue of: ``hessian``,
            ``ggn``, ``fisher`` (exact) or ``empirical-fisher`` (named in history.json's
            ``tracked``).
        sam_rho: SAM/ASAM ascent radius (None: 0.05 for sam, 0.5 for asam).
        sam_base: the optimizer SAM/ASAM steps with (``sgd``, with ``momentum``, by default).
        swa_start: average the weights at the end of every epoch from this one on (SWA); the
            run's model is the average, BatchNorm statistics recomputed (None: no SWA).
        swa_lr: constant learning rate from ``swa_start`` on (None: keep the schedule).
    """

    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float | None = None
    nesterov: bool = False
    weight_decay: float = 0.0
    batch_size: int | str = 32
    epochs: int = 60
    steps: int | None = None
    schedule: str = "constant"
    step_epochs: int = 30
    gamma: float = 0.1
    lr_scaling: bool = False
    base_batch: int = 32
    seed: int = 0
    device: str | None = None
    drop_last: bool = False
    loss: str = "cross_entropy"
    checkpoint_every: int | None = None
    eval_every: int = 1
    progress: bool = True
    compile: bool = False
    compile_backend: str = "inductor"
    track_eigenvalues: int = 0
    track_curvature: str = "hessian"
    sam_rho: float | None = None
    sam_base: str = "sgd"
    swa_start: int | None = None
    swa_lr: float | None = None

    def resolved_rho(self) -> float | None:
        """The SAM/ASAM radius used (None for other optimizers)."""
        if self.optimizer not in SAM_KINDS:
            return None
        return self.sam_rho if self.sam_rho is not None else DEFAULT_RHO[self.optimizer]

    def __post_init__(self):
        if self.momentum is None:
            sgd = self.optimizer == "sgd" or (self.optimizer in SAM_KINDS and self.sam_base == "sgd")
            object.__setattr__(self, "momentum", 0.9 if sgd else 0.0)

    def resolved_batch(self, n_train: int) -> int:
        """The batch size in examples for a training set of ``n_train``."""
        if self.batch_size == "full":
            return n_train
        return min(int(self.batch_size), n_train)

    def validate_for(self, n_train: int) -> None:
        """Raise LandscapeError for settings that cannot work on ``n_train`` examples (an SWA
        start after the last epoch)."""
        batch = self.resolved_batch(n_train)
        per_epoch = n_train // batch if self.drop_last else math.ceil(n_train / batch)
        epochs = math.ceil(self.steps / per_epoch) if self.steps else self.epochs
        if self.swa_start is not None and self.swa_start > epochs:
            raise LandscapeError(f"the SWA start epoch {self.swa_start} is after the last "
                                 f"epoch ({epochs}): nothing would be averaged")

    def _validate_flat_minimum(self) -> None:
        """The SAM and SWA settings."""
        if self.sam_rho is not None and not (self.sam_rho > 0 and math.isfinite(self.sam_rho)):
            raise LandscapeError(f"the SAM radius must be a positive number, got {self.sam_rho}")
        if self.sam_base not in BASE_OPTIMIZERS:
            raise LandscapeError(f"unknown SAM base optimizer {self.sam_base!r}: use one of "
                                 f"{', '.join(BASE_OPTIMIZERS)}")
        if self.optimizer in SAM_KINDS and self.sam_base == "rprop" and self.weight_decay:
            raise LandscapeError("rprop takes no weight decay")
        if self.swa_start is not None and self.swa_start < 1:
            raise LandscapeError(f"the SWA start epoch must be >= 1, got {self.swa_start}")
        if self.swa_lr is not None and not (self.swa_lr > 0 and math.isfinite(self.swa_lr)):
            raise LandscapeError(f"the SWA learning rate must be positive, got {self.swa_lr}")
        if self.swa_lr is not None and self.swa_start is None:
            raise LandscapeError("an SWA learning rate needs an SWA start epoch")

    def validate(self) -> None:
        """Raise LandscapeError for values that cannot work."""
        if self.optimizer not in OPTIMIZERS:
            raise LandscapeError(f"unknown optimizer {self.optimizer!r}: use one of "
                                 f"{', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise LandscapeError(f"unknown schedule {self.schedule!r}: use one of "
                                 f"{', '.join(SCHEDULES)}")
        if self.loss not in LOSSES:
            raise LandscapeError(f"unknown loss {self.loss!r}: use one of {', '.join(LOSSES)}")
        if self.batch_size != "full" and (not isinstance(self.batch_size, int)
                                          or self.batch_size < 1):
            raise LandscapeError(f"batch size must be a positive integer or 'full', "
                                 f"got {self.batch_size!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise LandscapeError(f"learning rate must be positive, got {self.lr}")
        if not (0.0 <= self.momentum < 1.0):
            raise LandscapeError(f"momentum must be in [0, 1), got {self.momentum}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise LandscapeError(f"weight decay must be a finite number >= 0, "
                                 f"got {self.weight_decay}")
        if self.optimizer == "rprop" and self.weight_decay:
            raise LandscapeError("rprop takes no weight decay")
        if self.steps is None and self.epochs < 1:
            raise LandscapeError("epochs must be at least 1")
        if self.steps is not None and self.steps < 1:
            raise LandscapeError("steps must be at least 1")
        self._validate_flat_minimum()
        if self.track_eigenvalues < 0:
            raise LandscapeError(f"track_eigenvalues must be >= 0 epochs, "
                                 f"got {self.track_eigenvalues}")
        check_choice(self.track_curvature, CURVATURES, "tracked curvature")
        if self.track_curvature != "hessian" and not self.track_eigenvalues:
            raise LandscapeError(f"a tracked curvature ({self.track_curvature}) needs "
                                 "eigenvalue tracking (track_eigenvalues / "
                                 "--track-eigenvalues EVERY)")
        if self.compile:
            import torch._dynamo

            backends = torch._dynamo.list_backends(exclude_tags=())
            if self.compile_backend not in backends:
                raise LandscapeError(f"unknown torch.compile backend {self.compile_backend!r}: "
                                     f"use one of {', '.join(sorted(backends))}")


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """Outcome of ``train``.

    Attributes:
        history: one dict per evaluated epoch (epoch, step, lr, train/test loss and accuracy,
            seconds, samples_per_s).
        final: the last history entry (with SWA: updated with the weight average's
            metrics and ``swa_models``, the number of iterates averaged).
        seconds: wall time of the whole run.
        diverged: True if a NaN/inf loss stopped training.
        message: why training stopped early, or "".
        out_dir: run folder, if one was written.
        checkpoints: checkpoint files written, in order.
    """

    history: list[dict[str, Any]]
    final: dict[str, Any]
    seconds: float
    diverged: bool = False
    message: str = ""
    out_dir: Path | None = None
    checkpoints: list[Path] = dataclasses.field(default_factory=list)


@torch.no_grad()
def evaluate_split(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn,
                   chunk: int = 8192) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` on ``(x, y)`` in eval mode (exact for any chunking)."""
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    for i in range(0, len(y), chunk):
        logits = model(x[i:i + chunk])
        total_loss += float(loss_fn(logits, y[i:i + chunk])) * len(y[i:i + chunk])
        correct += int((logits.argmax(1) == y[i:i + chunk]).sum())
    model.train(was_training)
    return total_loss / len(y), correct / len(y)


def make_optimizer(params, config: TrainConfig, lr: float) -> torch.optim.Optimizer:
    """The optimizer named in ``config`` (SAM/ASAM: a ``SAM`` around ``config.sam_base``)."""
    opt, wd = config.optimizer, config.weight_decay
    if opt in SAM_KINDS:
        base = make_optimizer(params, dataclasses.replace(config, optimizer=config.sam_base), lr)
        return SAM(base, config.resolved_rho(), adaptive=opt == "asam")
    if opt == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=config.momentum,
                               nesterov=config.nesterov and config.momentum > 0, weight_decay=wd)
    if opt == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=config.momentum, weight_decay=wd)
    if opt == "rprop":
        if wd:
            raise LandscapeError("rprop takes no weight decay")
        return torch.optim.Rprop(params, lr=lr)
    if opt == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    return torch.optim.AdamW(params, lr=lr, weight_decay=wd)


def _lr_at(config: TrainConfig, base_lr: float, step: int, total_steps: int,
           steps_per_epoch: int) -> float:
    if config.swa_lr is not None and step // steps_per_epoch + 1 >= config.swa_start:
        return config.swa_lr
    if config.schedule == "cosine":
        return 0.5 * base_lr * (1 + math.cos(math.pi * step / total_steps))
    if config.schedule == "step":
        return base_lr * config.gamma ** ((step // steps_per_epoch) // config.step_epochs)
    return base_lr


def train(model: nn.Module, bundle: DataBundle, config: TrainConfig = TrainConfig(),
          out_dir: str | Path | None = None,
          callback: Callable[[dict[str, Any]], None] | None = None, *,
          resume: bool = False) -> TrainResult:
    """Train ``model`` on ``bundle.train`` with the data resident on the device.

    Args:
        model: the network (modified in place; left on the CPU in eval mode at the end).
        bundle: data; inputs and targets are moved to the device once.
        config: optimizer, batch size, schedule, seed, ...
        out_dir: if given, writes ``checkpoints/epoch_XXXX.pt``, ``model.pt``,
            ``history.json``/``.csv`` and ``config.json`` there (with SWA, ``model.pt`` is
            the weight average and ``last.pt`` the last iterate; the average's metrics are
            in history.json's ``status.swa``).
        callback: called with each history entry.
        resume: continue the interrupted run in ``out_dir`` from its last checkpoint (its
            ``resume.pt``); ``model`` and ``config`` must be the run's own. The result is
            bit-identical to a run that was never interrupted (same device).

    Raises:
        LandscapeError: ``resume`` without a resume state in ``out_dir``, or with another
            config than the run's.

    Returns:
        TrainResult with the per-epoch history; ``diverged`` is set if a NaN/inf loss
        stopped training (checkpoints already written are kept).
    """
    config.validate()
    device = pick_device(config.device)
    xtr, ytr = (t.to(device) for t in bundle.train)
    xte, yte = (t.to(device) for t in bundle.test)
    n = len(ytr)
    batch = config.resolved_batch(n)
    if batch < bundle.num_classes:
        warnings.warn(f"batch size {batch} is smaller than the number of classes "
                      f"({bundle.num_classes}): without BatchNorm training may not converge",
                      stacklevel=2)
    per_epoch = n // batch if config.drop_last else math.ceil(n / batch)
    total_steps = config.steps or per_epoch * config.epochs
    epochs = math.ceil(total_steps / per_epoch)
    config.validate_for(n)
    lr = config.lr * (batch / config.base_batch if config.lr_scaling else 1.0)
    loss_fn = loss_function(config.loss, bundle.num_classes)
    model.to(device).train()
    step_model = (torch.compile(model, backend=config.compile_backend) if config.compile
                  else model)
    optimizer = make_optimizer(model.parameters(), config, lr)
    gen = torch.Generator().manual_seed(config.seed)
    every = config.checkpoint_every
    if every is None:
        every = max(1, epochs // 50)
    out = Path(out_dir) if out_dir is not None else None
    checkpoints: list[Path] = []
    history: list[dict[str, Any]] = []
    step, done, diverged, message = 0, 0, False, ""
    swa = WeightAverage(model, config.swa_start) if config.swa_start is not None else None
    if resume:
        if out is None:
            raise LandscapeError("resume needs the run folder (out_dir)")
        done, step, history, warm_start = _restore(out, model, optimizer, gen, config, swa)
    elif out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "config.json", {**dataclasses.asdict(config), "resolved_batch": batch,
                                         "resolved_lr": lr, "steps_total": total_steps})
        if every:
            checkpoints.append(_save(model, out / "checkpoints" / "epoch_0000.pt", 0, {}))
            _save_resume(out, model, config, optimizer, gen, 0, 0, history, None, swa)
    start = time.perf_counter()
    written = time.monotonic()  # when history.json was last written (a kill keeps it)
    bar = progress(epochs, f"train bs={batch}", config.progress, unit="epoch")
    tracker = (SharpnessTracker(config.track_eigenvalues, (xtr, ytr), config.loss,
                                optimizer=optimizer if config.optimizer in ADAPTIVE else None,
                                curvature=config.track_curvature)
               if config.track_eigenvalues else None)
    if resume and tracker is not None:
        tracker.vector, tracker.pre_vector = warm_start
    bar.update(done)
    for epoch in range(done + 1, epochs + 1):
        t0 = time.perf_counter()
        order = torch.randperm(n, generator=gen).to(device) if batch < n else None
        first_step, losses, sizes = step, [], []
        for b in range(per_epoch):
            if step >= total_steps:
                break
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(config, lr, step, total_steps, per_epoch)
            idx = order[b * batch:(b + 1) * batch] if order is not None else None
            xb, yb = (xtr, ytr) if idx is None else (xtr[idx], ytr[idx])
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(step_model(xb), yb)
            loss.backward()
            take_step(optimizer, lambda: loss_fn(step_model(xb), yb).backward(), model)
            losses.append(loss.detach())
            sizes.append(len(yb))
            step += 1
        values = torch.stack(losses).tolist() if losses else []  # one sync per epoch
        bad = next((k for k, v in enumerate(values) if not math.isfinite(v)), None)
        if bad is not None:
            diverged = True
            message = (f"training diverged at epoch {epoch}, step {first_step + bad}: loss is "
                       f"{values[bad]} (try a smaller learning rate)")
            break
        if swa is not None and swa.due(epoch):
            swa.update(model)
        running = sum(v * k for v, k in zip(values, sizes))
        seen = sum(sizes)
        seconds = time.perf_counter() - t0
        last = epoch == epochs or step >= total_steps
        tracked = tracker is not None and tracker.due(epoch, last)
        if epoch % config.eval_every == 0 or last or tracked:
            entry = _evaluate(model, xtr, ytr, xte, yte, loss_fn)
            if tracker is not None:  # every entry gets the fields (NaN between measurements)
                entry.update(tracker.measure(model) if tracked else tracker.blank())
            entry.update(epoch=epoch, step=step, lr=optimizer.param_groups[0]["lr"],
                         batch_loss=running / max(seen, 1), epoch_seconds=seconds,
                         samples_per_s=seen / seconds if seconds > 0 else float("nan"),
                         elapsed=time.perf_counter() - start)
            history.append(entry)
            if callback is not None:
                callback(entry)
            bar.set_postfix(loss=f"{entry['train_loss']:.4f}", test_acc=f"{entry['test_acc']:.3f}")
        if out is not None and every and (epoch % every == 0 or last):
            checkpoints.append(_save(model, out / "checkpoints" / f"epoch_{epoch:04d}.pt", epoch,
                                     history[-1] if history else {}))
            written = _save_resume(out, model, config, optimizer, gen, epoch, step, history,
                                   tracker, swa)
        if out is not None and history and time.monotonic() - written >= HISTORY_SECONDS:
            written = _write_history(out, history, {"complete": False, "diverged": False,
                                                    "message": "", "seconds": None}, config)
        bar.update(1)
        if last:
            break
    bar.close()
    final = history[-1] if history else {}
    if swa is not None and not diverged:
        final = _finish_swa(model, swa, out, final, tracker, (xtr, ytr, xte, yte), loss_fn, batch)
    model.to("cpu").eval()
    elapsed = time.perf_counter() - start
    if out is not None:
        if not diverged:
            save_checkpoint(out / "model.pt", model, extra={"final": _stable(final),
                                                            "config": dataclasses.asdict(config)})
        else:  # the last checkpoint's model.pt is no final model: the run failed
            (out / "model.pt").unlink(missing_ok=True)
        swa_final = {"swa": _stable(final)} if swa is not None and not diverged else {}
        _write_history(out, history, {"complete": True, "diverged": diverged,
                                      "message": message, "seconds": elapsed, **swa_final}, config)
        (out / RESUME_FILE).unlink(missing_ok=True)
    return TrainResult(history=history, final=final, seconds=elapsed, diverged=diverged,
                       message=message, out_dir=out, checkpoints=checkpoints)


def _finish_swa(model: nn.Module, swa: WeightAverage, out: Path | None, last: dict[str, Any],
                tracker: SharpnessTracker | None, data: tuple[torch.Tensor, ...], loss_fn,
                batch: int) -> dict[str, Any]:
    """Keep the last iterate as ``last.pt``, load the weight average into ``model`` (BatchNorm
    statistics recomputed) and return its final entry: the last epoch's entry with the
    average's metrics (and top eigenvalue when tracked), ``swa_models`` iterates averaged."""
    if out is not None:
        save_checkpoint(out / "last.pt", model, extra={"final": _stable(last)})
    swa.finish(model, data[0], batch)
    final = {**last, **_evaluate(model, *data, loss_fn), "swa_models": swa.count}
    if tracker is not None:
        final.update(tracker.measure(model))
    return final


def _evaluate(model, xtr, ytr, xte, yte, loss_fn) -> dict[str, Any]:
    train_loss, train_acc = evaluate_split(model, xtr, ytr, loss_fn)
    test_loss, test_acc = evaluate_split(model, xte, yte, loss_fn)
    return {"train_loss": train_loss, "train_acc": train_acc, "test_loss": test_loss,
            "test_acc": test_acc, "gap": train_acc - test_acc}


def _save(model: nn.Module, path: Path, epoch: int, metrics: dict[str, Any]) -> Path:
    return save_checkpoint(path, model, extra={"epoch": epoch, "metrics": _stable(metrics)})


def _save_resume(out: Path, model: nn.Module, config: TrainConfig,
                 optimizer: torch.optim.Optimizer, gen: torch.Generator, epoch: int, step: int,
                 history: list[dict[str, Any]], tracker: SharpnessTracker | None,
                 swa: WeightAverage | None) -> float:
    """At a checkpoint: history and ``model.pt`` made current, then the resume state written
    (last, so a kill in between resumes from the earlier, complete state; with the tracker's
    warm start, so tracked eigenvalues continue identically too). Returns the time history
    was written."""
    written = _write_history(out, history, {"complete": False, "diverged": False,
                                            "message": "", "seconds": None}, config)
    final = _stable(history[-1]) if history else {}
    save_checkpoint(out / "model.pt", model, extra={"final": final,
                                                    "config": dataclasses.asdict(config)})
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []
    np_state = np.random.get_state()
    state = {"epoch": epoch, "step": step, "history": history,
             "config": dataclasses.asdict(config), "optimizer": optimizer.state_dict(),
             "shuffle": gen.get_state(), "torch": torch.get_rng_state(), "cuda": cuda,
             "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)),
                       *np_state[2:]],
             "python": random.getstate(),
             "warm_start": _vector(tracker and tracker.vector),
             "warm_start_preconditioned": _vector(tracker and tracker.pre_vector),
             "swa": None if swa is None else swa.state_dict()}
    save_checkpoint(out / RESUME_FILE, model, extra={"resume": state})
    return written


def _restore(out: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
             gen: torch.Generator, config: TrainConfig, swa: WeightAverage | None
             ) -> tuple[int, int, list[dict[str, Any]], tuple[Any, Any]]:
    """Load the resume state of ``out`` into the model, optimizer, weight average and random
    generators; returns (epochs done, steps done, history so far, the eigenvalue tracker's
    warm starts: plain and preconditioned)."""
    path = out / RESUME_FILE
    if not path.is_file():
        raise LandscapeError(f"{str(out)!r} holds no interrupted run to resume (no "
                             f"{RESUME_FILE}: the run finished, or stopped before its first "
                             "checkpoint)")
    blob = read_checkpoint(path, "resume state")
    state = blob["extra"].get("resume") or {}
    if not {"optimizer", "shuffle", "history", "config"} <= set(state):
        raise LandscapeError(f"{str(path)!r} is not a resume state of `landscape train`")
    ours = dataclasses.asdict(config)
    changed = [k for k, v in state.get("config", {}).items()
               if k not in RESUME_IGNORED and ours.get(k) != v]
    if changed:
        raise LandscapeError(f"resume with the run's own training settings: "
                             f"{', '.join(changed)} differ from the run in {str(out)!r}")
    model.load_state_dict(blob["state_dict"])
    optimizer.load_state_dict(state["optimizer"])
    gen.set_state(state["shuffle"])
    if swa is not None:
        swa.load_state_dict(state["swa"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    random.setstate(state["python"])
    warm = tuple(None if state.get(key) is None else state[key].numpy()
                 for key in ("warm_start", "warm_start_preconditioned"))
    return state["epoch"], state["step"], list(state["history"]), warm


def _vector(vector: np.ndarray | None) -> torch.Tensor | None:
    """A warm-start vector as a tensor for the resume state (None stays None)."""
    return None if vector is None else torch.from_numpy(np.array(vector))


def _stable(entry: dict[str, Any]) -> dict[str, Any]:
    """A history entry without its timings: what a checkpoint stores, so that two identical
    runs write byte-identical checkpoints (and provenance hashes agree)."""
    return {k: v for k, v in entry.items() if k not in TIMING_KEYS}


def _write_history(out: Path, history: list[dict[str, Any]], status: dict[str, Any],
                   config: TrainConfig) -> float:
    """Write history.json (with ``tracked``, the matrix of ``lambda_max``, when eigenvalues
    are tracked) and history.csv; returns the time written (``time.monotonic``)."""
    tracked = tracked_record(config.track_curvature) if config.track_eigenvalues else None
    write_json(out / "history.json", {"status": status, "epochs": history,
                                      **({"tracked": tracked} if tracked else {})})
    if history:
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
        write_bytes(out / "history.csv", text.getvalue().encode())
    return time.monotonic()


def load_history(run_dir: str | Path) -> dict[str, Any]:
    """The ``history.json`` of a run folder."""
    path = Path(run_dir) / "history.json"
    if not path.is_file():
        raise LandscapeError(f"{str(run_dir)!r} is not a training run folder (no history.json)")
    return json.loads(path.read_text())
