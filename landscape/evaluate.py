"""Loss and accuracy of one model at many points ``theta + sum_k c_k d_k`` of parameter space.

The data is moved to the device once and kept there as tensors; the model runs in eval mode
under ``torch.inference_mode``; each point is set *in place* from the base weights and the
precomputed directions (a few fused ``_foreach`` kernels, the same arithmetic as
``landscape.params.set_offset``: copy the base, then add ``c_k d_k`` for every non-zero
``c_k``), so there are no per-point model copies, state-dict walks or file reads. The
original weights, buffers, device, memory format and mode are restored by ``close()`` (or on
leaving a ``with`` block).

Numerics: ``fp32`` is float32 throughout, also on GPUs, where PyTorch would otherwise run cuDNN
convolutions in TensorFloat-32; ``tf32`` (CUDA only) allows TF32 matmuls and convolutions;
``bf16`` runs under bfloat16 autocast. ``channels_last`` stores image models and inputs as
NHWC, which GPU convolution kernels prefer. ``precision_error`` measures what a reduced
precision changes.
"""
from __future__ import annotations

import contextlib
import math
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from .data import DataBundle, as_splits
from .directions import Direction
from .errors import LandscapeError
from .losses import loss_function
from .util import float32_mode, pick_device

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

METRICS = ("train_loss", "train_acc", "test_loss", "test_acc")
PRECISIONS = ("fp32", "tf32", "bf16")


def split_metric(metric: str) -> tuple[str, str]:
    """``"train_loss"`` -> ``("train", "loss")``; LandscapeError for unknown metrics."""
    if metric not in METRICS:
        raise LandscapeError(f"unknown metric {metric!r}: use any of {', '.join(METRICS)}")
    split, what = metric.split("_")
    return split, what


class Evaluator:
    """Evaluates metrics of ``model`` at offsets along fixed directions.

    Args:
        model: the network; its current entries are the origin ``theta``.
        data: a DataBundle, or an ``(x, y)`` training pair (then only train metrics exist).
        directions: name -> tensor dicts (parameter or floating state names of the model).
        metrics: any of ``train_loss``, ``train_acc``, ``test_loss``, ``test_acc``.
        loss: a name ``landscape.train.loss_function`` knows (``cross_entropy``, ``mse``) or a
            callable ``(outputs, targets) -> mean loss``.
        bn_recalibrate: before evaluating a point, recompute BatchNorm running statistics on
            the training data (BN layers in train mode, ``momentum=None`` so the statistics
            are the average over equal-sized chunks), then evaluate in eval mode.
        precision: ``fp32`` (float32 everywhere), ``tf32`` (TensorFloat-32 matmuls and
            convolutions; CUDA only) or ``bf16`` (bfloat16 autocast); see ``precision_error``.
        channels_last: keep the model and the inputs in channels-last (NHWC) memory format;
            needs image inputs of shape (N, C, H, W).
        device: ``cuda``, ``mps``, ``cpu`` or None for the best available.
        chunk: examples per forward pass (bounds memory; losses and accuracies do not depend
            on it beyond rounding; recalibrated BatchNorm variances average over the chunks).
        num_classes: width of the ``mse`` loss's one-hot targets (default: the outputs').
    """

    def __init__(self, model: nn.Module, data: DataBundle | tuple[torch.Tensor, torch.Tensor],
                 directions: Sequence[Direction], *,
                 metrics: Sequence[str] = ("train_loss", "train_acc"),
                 loss: str | LossFn = "cross_entropy", bn_recalibrate: bool = False,
                 precision: str = "fp32", device: str | torch.device | None = None,
                 chunk: int = 8192, num_classes: int | None = None,
                 channels_last: bool = False) -> None:
        if chunk < 1:
            raise LandscapeError("chunk must be at least 1")
        self.model = model
        self.metrics = tuple(metrics)
        self.bn_recalibrate = bn_recalibrate
        self.chunk = int(chunk)
        self.device = pick_device(device)
        self.precision = _check_precision(precision, self.device)
        self.channels_last = bool(channels_last)
        first = next(iter(model.state_dict().values()), None)
        self._home = first.device if first is not None else torch.device("cpu")
        self._was_training = model.training
        needed = {split_metric(m)[0] for m in self.metrics}
        if bn_recalibrate:
            needed.add("train")
        self.splits = self._load_splits(data, needed)
        self.loss_fn = loss_function(loss, num_classes)
        self._fast_ce = loss == "cross_entropy"
        self._masks: dict[tuple, torch.Tensor] = {}
        self._relayout = self.channels_last and not _is_channels_last(model)
        model.to(self.device).eval()
        if self._relayout:
            model.to(memory_format=torch.channels_last)
        with torch.no_grad():
            self._saved = {n: t.detach().clone() for n, t in model.state_dict().items()}
            try:
                self._prepare(directions)
            except BaseException:  # directions that do not fit: leave the model as it was
                self._give_back()
                raise
        self._bns = [m for m in model.modules()
                     if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self.closed = False

    # -- setup -------------------------------------------------------------------------

    def _load_splits(self, data, needed: set[str]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        dtype = next((t.dtype for t in self.model.parameters() if t.is_floating_point()),
                     torch.float32)
        pairs = as_splits(data)
        out = {}
        for split in sorted(needed):
            if split not in pairs:
                raise LandscapeError(f"{split} metrics need a {split} split: pass a DataBundle, "
                                     "not an (x, y) pair")
            x, y = pairs[split]
            if len(y) == 0:
                raise LandscapeError(f"the {split} split is empty")
            if torch.is_floating_point(x) and x.dtype != dtype:
                x = x.to(dtype)
            x = x.to(self.device)
            if self.channels_last:
                if x.ndim != 4:
                    raise LandscapeError(f"channels-last needs image inputs of shape (N, C, H, "
                                         f"W); the {split} inputs have shape {tuple(x.shape)}")
                x = x.contiguous(memory_format=torch.channels_last)
            out[split] = (x, y.to(self.device))
        return out

    def _prepare(self, directions: Sequence[Direction]) -> None:
        live = dict(self.model.state_dict(keep_vars=True))
        names: list[str] = []
        for k, d in enumerate(directions):
            for n, t in d.items():
                if n not in live or not torch.is_floating_point(live[n]):
                    raise LandscapeError(f"direction {k} does not fit the model: it has no "
                                         f"floating entry named {n!r}")
                if tuple(t.shape) != tuple(live[n].shape):
                    raise LandscapeError(f"direction {k} does not fit the model: entry {n!r} has "
                                         f"shape {tuple(t.shape)}, the model's "
                                         f"{tuple(live[n].shape)}")
                if n not in names:
                    names.append(n)
        self.names = names
        self._targets = [live[n] for n in names]
        self.base = {n: live[n].detach().clone() for n in names}
        self._base_list = [self.base[n] for n in names]
        # per direction: (indices into names, tensors) of the entries it has
        self._dirs = []
        self.directions = []
        for d in directions:
            # same memory format as the entry it moves (channels-last convolution weights)
            moved = {n: torch.empty_like(live[n], requires_grad=False).copy_(t.detach())
                     for n, t in d.items()}
            self.directions.append(moved)
            idx = [i for i, n in enumerate(names) if n in moved]
            self._dirs.append(([self._targets[i] for i in idx], [moved[names[i]] for i in idx],
                               [self._base_list[i] for i in idx]))

    # -- points ------------------------------------------------------------------------

    @torch.no_grad()
    def set_point(self, coords: Sequence[float]) -> None:
        """Set the model's entries to ``base + sum_k coords[k] * directions[k]`` in place."""
        coords = [float(c) for c in coords]
        if len(coords) != len(self._dirs):
            raise LandscapeError(f"{len(coords)} coordinates for {len(self._dirs)} directions")
        moving = [(c, d) for c, d in zip(coords, self._dirs) if c != 0.0 and d[0]]
        if moving and len(moving[0][1][0]) == len(self._targets):
            # the first direction's step written over the base in one pass (the same add
            # kernel as in place, so the same bits): a quarter less memory traffic than
            # copying the base first, which is most of a point on a wide model
            c, (targets, dirs, bases) = moving.pop(0)
            for target, base, d in zip(targets, bases, dirs):
                torch.add(base, d, alpha=c, out=target)
        else:
            torch._foreach_copy_(self._targets, self._base_list)
        for c, (targets, dirs, _) in moving:
            torch._foreach_add_(targets, dirs, alpha=c)

    def evaluate(self, coords: Sequence[float], precision: str | None = None
                 ) -> dict[str, float]:
        """Metrics at one point (NaN/inf losses are returned as such).

        Args:
            coords: one coordinate per direction.
            precision: override the evaluator's precision for this call.

        Returns:
            metric name -> value.
        """
        self._check_open()
        self.set_point(coords)
        if self.bn_recalibrate:
            self.recalibrate()
        totals = {}
        with torch.inference_mode(), self._numerics(precision or self.precision):
            for split in self._splits_needed():
                totals[split] = self._split_totals(split)
        return self._metrics_from(totals)

    def _splits_needed(self) -> list[str]:
        return sorted({split_metric(m)[0] for m in self.metrics})

    def _split_totals(self, split: str) -> tuple[float, float]:
        x, y = self.splits[split]
        sums = []
        for i in range(0, len(y), self.chunk):
            xb, yb = x[i:i + self.chunk], y[i:i + self.chunk]
            out = self.model(xb)
            if out.dtype in (torch.bfloat16, torch.float16):
                out = out.float()
            sums.append(torch.stack(self._loss_sum_and_hits(out, yb, (split, i, len(yb)))))
        total = sums[0] if len(sums) == 1 else torch.stack(sums).sum(0)
        loss_sum, hits = total.tolist()  # one device sync per split
        return loss_sum / len(y), hits / len(y)

    def _loss_sum_and_hits(self, out: torch.Tensor, y: torch.Tensor,
                           key: tuple | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed loss and number of correct top-1 predictions, both float64 scalars.

        ``key`` names the data chunk ``y`` is (split, start, length), to cache the
        ``class < target`` mask of the fast cross-entropy path.
        """
        if self._fast_ce and out.ndim == 2 and y.ndim == 1:
            key = None if key is None else key + (out.dtype,)
            earlier = self._masks.get(key) if key is not None else None
            if earlier is None:
                before = torch.arange(out.shape[1], device=y.device).unsqueeze(0) < y.unsqueeze(1)
                earlier = torch.zeros(before.shape, dtype=out.dtype, device=y.device)
                earlier.masked_fill_(~before, float("-inf"))
                if key is not None:
                    self._masks[key] = earlier
            return _cross_entropy_sum_and_hits(out, y, earlier)
        return self.loss_fn(out, y).double() * len(y), _correct(out, y)

    def _metrics_from(self, totals: dict[str, tuple[float, float]]) -> dict[str, float]:
        out = {}
        for m in self.metrics:
            split, what = split_metric(m)
            out[m] = totals[split][0 if what == "loss" else 1]
        return out

    @contextlib.contextmanager
    def _numerics(self, precision: str) -> Iterator[None]:
        """Float32 math mode and autocast for ``precision``."""
        precision = _check_precision(precision, self.device)
        with float32_mode("tf32" if precision == "tf32" else "ieee",
                          enabled=self.device.type == "cuda"), \
                torch.autocast(device_type=self.device.type, dtype=torch.bfloat16,
                               enabled=precision == "bf16"):
            yield

    def recalibrate(self) -> None:
        """Recompute BatchNorm running statistics at the current point on the training data.

        BN layers alone go to train mode (dropout and the like stay in eval mode) with
        ``momentum=None``, so the statistics are the plain average over the forward passes.
        The data is cut into chunks of (nearly) equal size so that each example weighs the
        same in the mean; with one chunk (``chunk`` >= training examples) the variance is the
        exact unbiased variance of the data, with several it is the average of the chunks'.
        """
        if not self._bns:
            return
        x, _ = self.splits["train"]
        momenta = [m.momentum for m in self._bns]
        with torch.no_grad():
            for m in self._bns:
                m.reset_running_stats()
                m.momentum = None
                m.train()
        try:
            pieces = max(1, math.ceil(len(x) / self.chunk))
            with torch.inference_mode(), self._numerics(self.precision):
                for xb in torch.tensor_split(x, pieces):
                    self.model(xb)
        finally:
            for m, mom in zip(self._bns, momenta):
                m.momentum = mom
                m.eval()

    # -- several points in one batched forward -----------------------------------------

    def evaluate_batch(self, coords_list: Sequence[Sequence[float]]) -> list[dict[str, float]]:
        """Metrics at several points in one batched forward (``torch.func.functional_call``
        under ``vmap``): the model's entries become a leading batch axis of points.

        Equal to ``evaluate`` at each point up to floating-point rounding (the weights are
        formed as ``base + sum_k c_k d_k`` in one expression). Falls back to ``evaluate`` per
        point when BatchNorm recalibration is on (running statistics cannot be batched).

        Returns:
            one dict of metrics per point.
        """
        self._check_open()
        coords_list = [[float(c) for c in cs] for cs in coords_list]
        if not coords_list:
            return []
        if self.bn_recalibrate or len(coords_list) == 1:
            return [self.evaluate(cs) for cs in coords_list]
        self.restore_base()
        params = self._batched_entries(coords_list)
        totals = {}
        with torch.inference_mode(), self._numerics(self.precision):
            for split in self._splits_needed():
                totals[split] = self._batched_totals(split, params, len(coords_list))
        return [self._metrics_from({s: (v[0][b], v[1][b]) for s, v in totals.items()})
                for b in range(len(coords_list))]

    def _batched_entries(self, coords_list: list[list[float]]) -> dict[str, torch.Tensor]:
        coords = torch.tensor(coords_list, dtype=torch.float64)
        params = {}
        for n in self.names:
            base = self.base[n]
            value = base.unsqueeze(0).expand(len(coords_list), *base.shape).clone()
            for k, d in enumerate(self.directions):
                if n in d:
                    c = coords[:, k].to(self.device, base.dtype).view(-1, *([1] * base.ndim))
                    value = value + c * d[n].unsqueeze(0)
            params[n] = value
        return params

    def _batched_totals(self, split: str, params: dict[str, torch.Tensor], count: int
                        ) -> tuple[list[float], list[float]]:
        from torch.func import functional_call, vmap

        x, y = self.splits[split]
        model = self.model

        def one(entries, xb, yb):
            out = functional_call(model, entries, (xb,))
            if out.dtype in (torch.bfloat16, torch.float16):
                out = out.float()
            return self._loss_sum_and_hits(out, yb)

        batched = vmap(one, in_dims=(0, None, None))
        step = max(1, self.chunk // count)  # keep count x step examples per forward
        loss_sum = torch.zeros(count, dtype=torch.float64, device=self.device)
        correct = torch.zeros(count, dtype=torch.float64, device=self.device)
        for i in range(0, len(y), step):
            l, c = batched(params, x[i:i + step], y[i:i + step])
            loss_sum += l
            correct += c
        return (loss_sum / len(y)).tolist(), (correct / len(y)).tolist()

    # -- precision -----------------------------------------------------------------------

    def precision_error(self, coords_list: Sequence[Sequence[float]]) -> dict[str, float]:
        """Largest absolute difference between the evaluator's precision and fp32 over points.

        Returns:
            metric name -> max |precision - fp32| over ``coords_list`` (NaN if a value is
            NaN); zeros when the precision is fp32.
        """
        worst = {m: 0.0 for m in self.metrics}
        if self.precision == "fp32":
            return worst
        for cs in coords_list:
            ref = self.evaluate(cs, precision="fp32")
            low = self.evaluate(cs, precision=self.precision)
            for m in self.metrics:
                err = abs(low[m] - ref[m])
                worst[m] = err if (math.isnan(err) or err > worst[m]) else worst[m]
        return worst

    # -- cleanup -------------------------------------------------------------------------

    @torch.no_grad()
    def restore_base(self) -> None:
        """Put back the original entries and buffers (the model stays on the device)."""
        live = self.model.state_dict(keep_vars=True)
        for n, t in self._saved.items():
            live[n].copy_(t)

    def close(self) -> None:
        """Restore the original entries, buffers, device, memory format and train/eval mode."""
        if self.closed:
            return
        self.restore_base()
        self._give_back()
        self.closed = True

    def _give_back(self) -> None:
        """The model's own memory format, device and train/eval mode."""
        if self._relayout:
            self.model.to(memory_format=torch.contiguous_format)
        self.model.to(self._home)
        self.model.train(self._was_training)

    def _check_open(self) -> None:
        if self.closed:
            raise LandscapeError("this evaluator is closed")

    def __enter__(self) -> "Evaluator":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _check_precision(precision: str, device: torch.device) -> str:
    if precision not in PRECISIONS:
        raise LandscapeError(f"unknown precision {precision!r}: use {', '.join(PRECISIONS)}")
    if precision == "tf32" and device.type != "cuda":
        raise LandscapeError(f"precision tf32 needs a CUDA GPU (TensorFloat-32 is a tensor-core "
                             f"format), this runs on {device.type}: use fp32 or bf16")
    return precision


def _is_channels_last(model: nn.Module) -> bool:
    """True if some 4-D entry of ``model`` is stored channels-last (and not also NCHW)."""
    return any(t.ndim == 4 and t.is_contiguous(memory_format=torch.channels_last)
               and not t.is_contiguous() for t in model.state_dict().values())


def _cross_entropy_sum_and_hits(out: torch.Tensor, y: torch.Tensor, earlier: torch.Tensor
                                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy and top-1 hits of (N, C) logits, sharing one row maximum.

    On the CPU, ``log_softmax`` and ``argmax`` over a short last axis (C = 10 classes) are
    slow: for (4000, 10) logits they cost more than the forward pass of a small MLP, while
    ``amax`` is cheap. So: log-sum-exp around the row maximum, and a hit where the target's
    logit is the maximum and no earlier class ties it (``argmax`` picks the first maximum).
    ``earlier[n, c]`` is 0 for classes ``c < y[n]`` and -inf otherwise, so that the largest
    logit of the earlier classes is one ``amax``. About 3x faster than cross_entropy +
    argmax; a row with a NaN logit has a NaN loss and counts as a miss.

    Kept over the fused ``F.cross_entropy(reduction="sum")`` plus ``argmax`` for a measured
    reason: on MNIST-1D's (4000, 10) logits on this project's 2-core CPU the fused pair took
    524 us (1 thread) and 277 us (2 threads) against 165 us and 118 us here (median of 300
    alternating calls), and a whole grid point of the 2.7k-parameter MLP costs 1.09x a bare
    forward plus ``F.cross_entropy`` (``benchmarks/surface.py``).
    """
    top = out.amax(1)
    lse = top + (out - top.unsqueeze(1)).exp_().sum(1).log_()
    picked = out.gather(1, y.unsqueeze(1)).squeeze(1)
    hits = (picked == top) & ((out + earlier).amax(1) < top)
    return (lse - picked).sum().double(), hits.sum().double()


def _correct(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Number of examples whose top output is the target (as float64)."""
    if out.ndim < 2 or y.ndim != 1:
        return torch.zeros((), dtype=torch.float64, device=out.device)
    return (out.argmax(-1) == y).sum().double()
