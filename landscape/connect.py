"""Mode connectivity: a low-loss curve between two minima (Garipov et al. 2018).

A quadratic Bezier curve ``phi(t) = (1-t)^2 w1 + 2t(1-t) theta + t^2 w2`` (or a polygonal
chain ``w1 -> theta -> w2``) joins two trained models of one architecture. Only the bend
``theta`` is trained, by minimizing the expected loss ``E_{t ~ U(0,1)} L(phi(t))`` with one
``t`` drawn per minibatch; the endpoints stay fixed. Along the trained curve, and along the
straight line ``(1-t) w1 + t w2`` for comparison, train and test loss and accuracy are
evaluated (BatchNorm statistics recomputed at each ``t`` when the model has BatchNorm) into
1-D surfaces whose x is ``t``.

Training is seeded and resumable: its state (bend, optimizer, random generator, epoch) is
checkpointed atomically, and a run resumed after a kill gives the same bend as an
uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .errors import LandscapeError
from .evaluate import METRICS
from .grid import MAX_POINTS
from .params import assign, named_tensors
from .surface import Surface
from .util import pick_device, provenance, sha256_tensors, write_torch

CURVES = ("bezier", "polychain")
STATE_FORMAT = "landscape-connect-state"


@dataclasses.dataclass(frozen=True, kw_only=True)
class ConnectOptions:
    """How the bend is trained and the curve evaluated.

    Attributes:
        curve: ``bezier`` (quadratic Bezier) or ``polychain`` (two segments through theta).
        epochs: passes over the training set while training the bend.
        lr: SGD learning rate.
        momentum: SGD momentum.
        weight_decay: L2 penalty on the bend.
        batch_size: examples per step (one ``t`` drawn per step).
        points: evaluation points along ``t`` in [0, 1] (both ends included).
        seed: seeds the shuffling and the draws of ``t``.
        loss: ``cross_entropy`` or ``mse``.
        device: torch device (None: best available).
        checkpoint_seconds: write the training state at most this often (and at the end).
        line: also evaluate the straight line between the two models.
    """

    curve: str = "bezier"
    epochs: int = 20
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 64
    points: int = 21
    seed: int = 0
    loss: str = "cross_entropy"
    device: str | None = None
    checkpoint_seconds: float = 30.0
    line: bool = True

    def validate(self) -> None:
        """Raise LandscapeError for settings that cannot work."""
        if self.curve not in CURVES:
            raise LandscapeError(f"unknown curve {self.curve!r}: use one of {', '.join(CURVES)}")
        if self.epochs < 0:
            raise LandscapeError(f"epochs must be >= 0, got {self.epochs}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise LandscapeError(f"learning rate must be positive, got {self.lr}")
        if not 0.0 <= self.momentum < 1.0:
            raise LandscapeError(f"momentum must be in [0, 1), got {self.momentum}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise LandscapeError(f"weight decay must be >= 0, got {self.weight_decay}")
        if self.batch_size < 1:
            raise LandscapeError(f"batch size must be >= 1, got {self.batch_size}")
        if not 3 <= self.points <= MAX_POINTS:
            raise LandscapeError(f"points must be from 3 (both ends and one between) to "
                                 f"{MAX_POINTS:,}, got {self.points:,}")

    def training_identity(self) -> dict[str, Any]:
        """The settings a saved training state must share to be resumed (epochs may grow)."""
        keys = ("curve", "lr", "momentum", "weight_decay", "batch_size", "seed", "loss")
        return {k: getattr(self, k) for k in keys}


@dataclasses.dataclass(frozen=True)
class ConnectResult:
    """What ``connect`` produced.

    Attributes:
        curve: 1-D surface along the trained curve (x is t).
        line: 1-D surface along the straight line (None when not evaluated).
        bend: the trained bend theta (name -> tensor, on the CPU).
        history: per-epoch mean training loss of the curve (``epoch``, ``loss``, ``seconds``).
        epochs_resumed: epochs taken from a saved state instead of trained here.
        seconds: wall time.
        summary: barrier numbers (see ``path_summary``).
    """

    curve: Surface
    line: Surface | None
    bend: dict[str, torch.Tensor]
    history: list[dict[str, Any]]
    epochs_resumed: int
    seconds: float
    summary: dict[str, Any]


def curve_point(curve: str, w1: torch.Tensor, theta: torch.Tensor, w2: torch.Tensor,
                t: float | torch.Tensor) -> torch.Tensor:
    """One entry of the curve at ``t``: exactly ``w1`` at ``t = 0`` and ``w2`` at ``t = 1``.

    Args:
        curve: ``bezier`` or ``polychain``.
        w1, theta, w2: tensors of one shape (start, bend, end).
        t: position along the curve in [0, 1].

    Returns:
        The tensor ``phi(t)`` (differentiable in ``theta``).
    """
    t = float(t)
    if curve == "bezier":
        return (1.0 - t) ** 2 * w1 + (2.0 * t * (1.0 - t)) * theta + t ** 2 * w2
    if curve == "polychain":
        if t <= 0.5:
            s = 2.0 * t
            return (1.0 - s) * w1 + s * theta
        s = 2.0 * t - 1.0
        return (1.0 - s) * theta + s * w2
    raise LandscapeError(f"unknown curve {curve!r}: use one of {', '.join(CURVES)}")


def has_batchnorm(model: nn.Module) -> bool:
    """True when the model has BatchNorm layers (their statistics depend on the weights)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> None:
    """Set every BatchNorm layer's running statistics to their exact mean over ``x`` at the
    model's current weights (a cumulative average over batches), then leave eval mode on."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: equal weight for every batch
    model.train()
    for i in range(0, len(x), batch_size):
        model(x[i:i + batch_size])
    for m, momentum in zip(layers, saved):
        m.momentum = momentum
    model.eval()


def _check_pair(model_a: nn.Module, model_b: nn.Module) -> None:
    wa, wb = named_tensors(model_a), named_tensors(model_b)
    if list(wa) != list(wb) or any(wa[n].shape != wb[n].shape for n in wa):
        raise LandscapeError("the two models have different architectures (their parameters "
                             "differ in names or shapes): a curve joins minima of one network")
    if all(torch.equal(wa[n], wb[n]) for n in wa):
        raise LandscapeError("the two models are identical: there is nothing to connect")


def connect(model_a: nn.Module, model_b: nn.Module, data, *,
            options: ConnectOptions = ConnectOptions(), state_path: str | Path | None = None,
            resume: bool = False, progress: bool = True,
            on_epoch: Callable[[int, float], None] | None = None,
            names: tuple[str, str] = ("A", "B")) -> ConnectResult:
    """Train a curve of low loss between two minima and evaluate it (and the straight line).

    Args:
        model_a, model_b: the two endpoints, one architecture (not modified).
        data: a DataBundle (train split trains the bend; both splits are evaluated).
        options: curve kind, training and evaluation settings.
        state_path: file for the training state (bend, optimizer, generator, epoch), written
            atomically at most every ``options.checkpoint_seconds`` and at the end.
        resume: continue from ``state_path`` if it exists (it must come from the same
            endpoints, data and settings; ``epochs`` may be larger).
        progress: progress bar on stderr.
        on_epoch: called with ``(epoch, mean loss)`` after each epoch (after checkpointing).
        names: names of the endpoints for figures and provenance.

    Returns:
        ConnectResult.
    """
    options.validate()
    _check_pair(model_a, model_b)
    start = time.perf_counter()
    device = pick_device(options.device)
    w1 = {n: t.detach().to(device) for n, t in named_tensors(model_a).items()}
    w2 = {n: t.detach().to(device) for n, t in named_tensors(model_b).items()}
    identity = {"endpoint_a_sha256": sha256_tensors(w1), "endpoint_b_sha256": sha256_tensors(w2),
                "data": dict(getattr(data, "spec", {}) or {}), **options.training_identity()}
    bend, history, resumed = _train_bend(model_a, w1, w2, data, options, device, identity,
                                         state_path, resume, progress, on_epoch)
    curve, line = _evaluate_paths(model_a, w1, bend, w2, data, options, device, names, identity,
                                  history)
    return ConnectResult(curve=curve, line=line, bend={n: t.cpu() for n, t in bend.items()},
                         history=history, epochs_resumed=resumed,
                         seconds=time.perf_counter() - start,
                         summary=path_summary(curve, line))


CURVE_WEIGHT_COPIES = 5
"""Weight-sized tensors the bend's training holds besides the step's own gradients: the bend,
its gradient, SGD's momentum, the curve point and the private copy of the model."""
PATH_WEIGHT_COPIES = 4
"""Weight-sized tensors held while the paths are evaluated: the bend, the midpoint, the
point on the path and the evaluation copy of the model."""


def connect_memory(model: nn.Module, data, options: ConnectOptions = ConnectOptions(), *,
                   profile: tuple[float, float] | None = None):
    """Memory ``connect`` adds, before it starts: the larger of its training step at
    ``options.batch_size`` with the bend's weight copies and its evaluation of both splits
    along the paths (a forward of up to ``EVAL_CHUNK`` examples without gradients); off the
    CPU both also hold the endpoints' two copies.

    Returns:
        MemoryEstimate (``landscape.train_memory``).
    """
    from .train_memory import training_memory

    device = pick_device(options.device)
    training = training_memory(model, data, options.batch_size, weight_copies=_copies(device),
                               loss=options.loss, device=str(device), profile=profile)
    return max((training, _path_memory(model, data, options)), key=lambda m: m.total_added)


def _path_memory(model: nn.Module, data, options: ConnectOptions):
    from .train_memory import evaluation_memory

    device = pick_device(options.device)
    copies = PATH_WEIGHT_COPIES + _copies(device) - CURVE_WEIGHT_COPIES
    return evaluation_memory(model, data, weight_copies=copies, loss=options.loss,
                             device=str(device))


def connect_batch_hint(model: nn.Module, data, options: ConnectOptions, limit: int, *,
                       profile: tuple[float, float] | None = None) -> str | None:
    """``--batch-size N fits (about X)``: the largest batch whose training fits ``limit``
    bytes, or None (also when the evaluation along the paths does not fit)."""
    from .train_memory import batch_hint

    if _path_memory(model, data, options).total_added > limit:
        return None
    return batch_hint(model, data, options.batch_size, limit, "--batch-size",
                      weight_copies=_copies(pick_device(options.device)), loss=options.loss,
                      profile=profile)


def _copies(device: torch.device) -> int:
    return CURVE_WEIGHT_COPIES + (2 if device.type != "cpu" else 0)


def _train_bend(model, w1, w2, data, options, device, identity, state_path, resume, show,
                on_epoch):
    from .util import progress as progress_bar
    from .train import loss_function

    theta = {n: ((w1[n] + w2[n]) / 2).clone().requires_grad_(True) for n in w1}
    optimizer = torch.optim.SGD(theta.values(), lr=options.lr, momentum=options.momentum,
                                weight_decay=options.weight_decay)
    gen = torch.Generator().manual_seed(options.seed)
    history: list[dict[str, Any]] = []
    done = 0
    if resume and state_path is not None and Path(state_path).is_file():
        done, history = _load_state(state_path, identity, theta, optimizer, gen, options.epochs)
    resumed = done
    net = _copy_for_training(model, device)
    loss_fn = loss_function(options.loss, data.num_classes)
    xtr, ytr = (t.to(device) for t in data.train)
    n, batch = len(ytr), min(options.batch_size, len(ytr))
    last_save = time.monotonic()
    bar = progress_bar(options.epochs - done, f"connect {options.curve}", show, unit="epoch")
    for epoch in range(done + 1, options.epochs + 1):
        t0 = time.perf_counter()
        order = torch.randperm(n, generator=gen).to(device)
        losses = []
        for b in range(0, n, batch):
            t = float(torch.rand((), generator=gen))
            idx = order[b:b + batch]
            params = {k: curve_point(options.curve, w1[k], theta[k], w2[k], t) for k in theta}
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(torch.func.functional_call(net, params, (xtr[idx],)), ytr[idx])
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
        mean = float(torch.stack(losses).mean())
        if not math.isfinite(mean):
            raise LandscapeError(f"curve training diverged at epoch {epoch} (loss {mean}): "
                                 "use a smaller learning rate")
        history.append({"epoch": epoch, "loss": mean, "seconds": time.perf_counter() - t0})
        final = epoch == options.epochs
        if state_path is not None and (final or time.monotonic() - last_save
                                       >= options.checkpoint_seconds):
            _save_state(state_path, identity, theta, optimizer, gen, epoch, history)
            last_save = time.monotonic()
        bar.update(1)
        bar.set_postfix(loss=f"{mean:.4f}")
        if on_epoch is not None:
            on_epoch(epoch, mean)
    bar.close()
    if state_path is not None and options.epochs == 0:
        _save_state(state_path, identity, theta, optimizer, gen, 0, history)
    return {n: t.detach() for n, t in theta.items()}, history, resumed


def _copy_for_training(model: nn.Module, device) -> nn.Module:
    """A private copy in train mode (BatchNorm normalizes by batch statistics while the bend
    trains; its running statistics are recomputed before any evaluation)."""
    import copy

    net = copy.deepcopy(model).to(device)
    for p in net.parameters():
        p.requires_grad_(False)
    return net.train()


def _save_state(path, identity, theta, optimizer, gen, epoch, history) -> None:
    blob = {"format": STATE_FORMAT, "identity": identity, "epoch": epoch,
            "theta": {n: t.detach().cpu() for n, t in theta.items()},
            "optimizer": optimizer.state_dict(), "generator": gen.get_state(),
            "history": history}
    write_torch(path, blob)


def _load_state(path, identity, theta, optimizer, gen, epochs) -> tuple[int, list]:
    from .checkpoint import read_torch

    blob = read_torch(path, "curve state", "start over with --force")
    if not isinstance(blob, dict) or blob.get("format") != STATE_FORMAT:
        raise LandscapeError(f"{str(path)!r} is not a curve training state")
    if blob["identity"] != identity:
        diff = sorted(k for k in set(identity) | set(blob["identity"])
                      if identity.get(k) != blob["identity"].get(k))
        raise LandscapeError(f"{str(path)!r} was made from other endpoints, data or settings "
                             f"({', '.join(diff)} differ): use --force to start over")
    if blob["epoch"] > epochs:
        raise LandscapeError(f"{str(path)!r} has {blob['epoch']} epochs trained, more than the "
                             f"{epochs} asked for: ask for at least {blob['epoch']}")
    with torch.no_grad():
        for n, t in theta.items():
            t.copy_(blob["theta"][n])
    optimizer.load_state_dict(blob["optimizer"])
    gen.set_state(blob["generator"])
    return int(blob["epoch"]), list(blob["history"])


@torch.no_grad()
def _evaluate_paths(model, w1, bend, w2, data, options, device, names, identity, history):
    import copy

    from .train import evaluate_split, loss_function

    net = copy.deepcopy(model).to(device).eval()
    loss_fn = loss_function(options.loss, data.num_classes)
    xtr, ytr = (t.to(device) for t in data.train)
    xte, yte = (t.to(device) for t in data.test)
    bn = has_batchnorm(net)
    ts = np.linspace(0.0, 1.0, options.points)
    midpoint = {n: (w1[n] + w2[n]) / 2 for n in w1}
    paths = {options.curve: bend}
    if options.line:
        paths["line"] = midpoint  # a polygonal chain through the midpoint is the straight line
    out = {}
    for kind, theta in paths.items():
        shape = "polychain" if kind == "line" else options.curve
        values = {m: np.empty(len(ts)) for m in METRICS}
        for i, t in enumerate(ts):
            assign(net, {n: curve_point(shape, w1[n], theta[n], w2[n], t) for n in w1})
            if bn:
                recompute_batchnorm(net, xtr)
            values["train_loss"][i], values["train_acc"][i] = evaluate_split(net, xtr, ytr,
                                                                             loss_fn)
            values["test_loss"][i], values["test_acc"][i] = evaluate_split(net, xte, yte,
                                                                           loss_fn)
        label = "straight line" if kind == "line" else f"{options.curve} curve"
        prov = provenance(step="connect", type="curve", curve=kind, path_label=label,
                          endpoints=list(names), options=dataclasses.asdict(options),
                          identity=identity, batchnorm_recomputed=bn,
                          axis_labels=[f"t along the path (0: {names[0]}, 1: {names[1]})"],
                          curve_epochs=len(history),
                          curve_final_loss=history[-1]["loss"] if history else None)
        out[kind] = Surface(x=ts.copy(), y=None, metrics=values,
                            done=np.ones(len(ts), dtype=bool), provenance=prov,
                            anchors={"coords": np.array([[0.0], [1.0]]),
                                     "labels": np.array(list(names))})
    return out[options.curve], out.get("line")


def path_summary(curve: Surface, line: Surface | None = None) -> dict[str, Any]:
    """Barrier numbers of a curve (and the straight line) between two minima.

    Returns:
        For each path (``curve``, ``line``): ``end_train_losses`` (at A and at B),
        ``endpoint_train_loss`` (the higher end),
        ``max_train_loss``, ``train_barrier`` (max minus the higher end), ``max_test_error``
        and ``endpoint_test_error`` (the worse end), ``test_error_barrier``.
    """
    from .shape import path_barrier

    out: dict[str, Any] = {}
    for key, s in (("curve", curve), ("line", line)):
        if s is None:
            continue
        loss, err = s.metrics["train_loss"], 1.0 - s.metrics["test_acc"]
        out[key] = {"end_train_losses": [float(loss[0]), float(loss[-1])],
                    "endpoint_train_loss": float(max(loss[0], loss[-1])),
                    "max_train_loss": float(np.nanmax(loss)),
                    "train_barrier": path_barrier(loss),
                    "test_loss_barrier": path_barrier(s.metrics["test_loss"]),
                    "endpoint_test_error": float(max(err[0], err[-1])),
                    "max_test_error": float(np.nanmax(err)),
                    "test_error_barrier": path_barrier(err)}
    return out
