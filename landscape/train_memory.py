"""Memory of training steps (a model's, or a curve's bend between two minima), before they start.

Contract: ``step_profile`` traces one forward and backward (``TensorPeak``) on two small
slices of the training split and returns the step's peak tensor bytes as ``(fixed,
per_example)``; the model's weights, buffers and random state are left as they were.
``training_memory`` scales that profile to a batch and adds the weight-sized tensors the run
holds besides (optimizer state, copies of the weights), as a ``MemoryEstimate``.
``evaluation_memory`` is the same for evaluating both splits without gradients.
``fitting_batch`` is the largest batch, halving from the one asked for, whose estimate fits a
limit.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .data import split_of
from .util.memory import MemoryEstimate, TensorPeak, format_bytes, linear_in_examples

STEP_SLICE = 32
"""Examples of the first of two traced steps (the second twice as many)."""
EVAL_CHUNK = 8192
"""Examples per forward of ``landscape.train.evaluate_split`` (its default chunk)."""


def weight_bytes(model: nn.Module) -> int:
    """Bytes of the trainable parameters: the size of one gradient or optimizer buffer."""
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


def step_profile(model: nn.Module, data: Any, loss: str = "cross_entropy"
                 ) -> tuple[float, float]:
    """Peak tensor bytes of one training step (forward, loss, gradients of every parameter) as
    ``(fixed, per_example)``: the gradients are in ``fixed``, the activations kept for the
    backward pass in ``per_example``."""
    from .losses import loss_function

    x, y = split_of(data, "train")
    params = [p for p in model.parameters() if p.requires_grad]
    saved = [b.clone() for b in model.buffers()]
    was_training = model.training
    loss_fn = loss_function(loss, getattr(data, "num_classes", None))

    def measure(m: int) -> tuple[float]:
        with torch.random.fork_rng(devices=[]), TensorPeak() as peak:
            grads = torch.autograd.grad(loss_fn(model(x[:m]), y[:m]), params)
            del grads
        return (peak.peak,)

    model.train()
    try:
        [(fixed, per)] = linear_in_examples(measure, len(y), small=STEP_SLICE)
    finally:
        model.train(was_training)
        with torch.no_grad():
            for buffer, old in zip(model.buffers(), saved):
                buffer.copy_(old)
    return fixed, per


def evaluation_memory(model: nn.Module, data: Any, *, weight_copies: int,
                      loss: str = "cross_entropy", device: str = "cpu") -> MemoryEstimate:
    """Memory of evaluating both splits chunk by chunk (``evaluate_split``) while the run
    holds ``weight_copies`` weight-sized tensors: the activations of the largest chunk's
    forward without gradients (traced on two small slices, scaled)."""
    from .data import as_splits
    from .losses import loss_function

    loss_fn = loss_function(loss, getattr(data, "num_classes", None))
    was_training = model.training
    model.eval()
    activations = 0
    try:
        for x, y in as_splits(data).values():
            def measure(m: int, x=x, y=y) -> tuple[float]:
                with TensorPeak() as peak, torch.no_grad():
                    logits = model(x[:m])
                    loss_fn(logits, y[:m])
                    logits.argmax(1)
                return (peak.peak,)

            [(fixed, per)] = linear_in_examples(measure, len(y), small=STEP_SLICE)
            activations = max(activations, int(fixed + per * min(EVAL_CHUNK, len(y))))
    finally:
        model.train(was_training)
    return MemoryEstimate(added={"activations of one evaluation chunk": activations,
                                 "weight copies": weight_copies * weight_bytes(model)},
                          resident=_resident(model, data), device=str(device))


def _resident(model: nn.Module, data: Any) -> dict[str, int]:
    from .data import as_splits

    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    held = sum(t.numel() * t.element_size() for s in as_splits(data).values() for t in s)
    return {"model": weight_bytes(model) + buffers, "data": held}


def training_memory(model: nn.Module, data: Any, batch_size: int, *, weight_copies: int,
                    loss: str = "cross_entropy", device: str = "cpu",
                    profile: tuple[float, float] | None = None) -> MemoryEstimate:
    """Memory a training run adds at ``batch_size``, by part.

    Args:
        model, data: the network and its data (a DataBundle or ``(inputs, targets)``).
        batch_size: examples per step.
        weight_copies: weight-sized tensors the run holds besides the step's gradients
            (momentum: 1; a private copy of the model: 1; a curve's bend and its point: 2).
        loss: the training loss.
        device: where it runs, for the message.
        profile: ``step_profile``'s result, to estimate several batches from one trace.

    Returns:
        MemoryEstimate: added ``activations and gradients of one step`` and ``weight copies``;
        resident ``model`` and ``data``.
    """
    fixed, per = profile or step_profile(model, data, loss)
    batch = min(batch_size, len(split_of(data, "train")[1]))
    return MemoryEstimate(
        added={"activations and gradients of one step": int(fixed + per * batch),
               "weight copies": weight_copies * weight_bytes(model)},
        resident=_resident(model, data), device=str(device))


def fitting_batch(model: nn.Module, data: Any, batch_size: int, limit: int, *,
                  weight_copies: int, loss: str = "cross_entropy",
                  profile: tuple[float, float] | None = None) -> tuple[int, int] | None:
    """The largest batch (halving from ``batch_size``) whose estimate fits ``limit`` bytes,
    with that estimate's bytes; None when not even one example fits."""
    profile = profile or step_profile(model, data, loss)
    batch = batch_size
    while batch >= 1:
        est = training_memory(model, data, batch, weight_copies=weight_copies, loss=loss,
                              profile=profile)
        if est.total_added <= limit:
            return batch, est.total_added
        batch //= 2
    return None


def batch_hint(model: nn.Module, data: Any, batch_size: int, limit: int, option: str, *,
               weight_copies: int, loss: str = "cross_entropy",
               profile: tuple[float, float] | None = None) -> str | None:
    """``"--batch-size 64 fits (about 1.2 GiB)"`` for the largest fitting batch, or None."""
    found = fitting_batch(model, data, batch_size, limit, weight_copies=weight_copies,
                          loss=loss, profile=profile)
    if found is None or found[0] >= batch_size:
        return None
    return f"{option} {found[0]} fits (about {format_bytes(found[1])})"
