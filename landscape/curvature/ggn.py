"""Gauss-Newton and Fisher curvature of a mean loss: products with a parameter vector.

All three matrices are ``J^T Q J``: ``J`` is the Jacobian of the network's outputs (logits)
with respect to the parameters, ``Q`` a positive semi-definite matrix on the outputs, one
block per example:

- ``ggn``: ``Q`` is the Hessian of the loss with respect to the outputs (the generalized
  Gauss-Newton matrix; positive semi-definite for a loss convex in the outputs, such as
  cross-entropy and mse). It drops from the Hessian the term that weighs the network's
  second derivatives by the loss gradient, and equals the Hessian for a linear model.
- ``fisher``: the Fisher information of the model's own predictive distribution,
  ``Q_n = E_{y ~ p(y | x_n)}[g g^T] / N`` with ``g`` the gradient of the example's loss with
  respect to its outputs. Cross-entropy is a categorical likelihood and mse (a mean over
  ``C`` outputs) a Gaussian one of variance ``C / 2``; for both the exact Fisher equals the
  GGN. With ``samples > 0`` the expectation is replaced by that many labels drawn per
  example (drawn once, so the operator is one fixed matrix).
- ``empirical-fisher``: ``Q_n = g_n g_n^T / N`` at the observed labels: the mean outer
  product of the per-example gradients.

Contract: pure functions over one chunk of data, and ``OutputCurvatureOperator``, which sums
them over a data split for the solvers. ``fn(params) -> logits`` is the network on
that chunk (``torch.func.functional_call`` with the data bound); ``params`` and tangents are
dicts of tensors in the model's parameter order; a chunk of ``n`` of ``N`` examples carries
the weight ``n / N``, so products summed over chunks are those of the mean over all ``N``.
Products cost one ``jvp`` and one ``vjp`` of ``fn``; nothing is kept between calls.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Callable

import torch
from torch import nn

from ..errors import LandscapeError
from .hessian import HessianOperator
from .options import LossArg

KINDS = ("hessian", "ggn", "fisher", "empirical-fisher")
"""The curvature matrices of a mean loss the toolkit knows (``hessian`` lives elsewhere)."""

FISHER_LOSSES = ("cross_entropy", "mse")
"""Losses with a likelihood, so that the true Fisher is defined."""

Params = dict[str, torch.Tensor]
OutputProduct = Callable[[torch.Tensor], torch.Tensor]


def jqj_product(fn: Callable[[Params], torch.Tensor], params: Params, tangent: Params,
                apply_q: OutputProduct) -> Params:
    """``J^T Q J v`` for the Jacobian ``J`` of ``fn`` at ``params``.

    Args:
        fn: the network on one chunk, ``params -> outputs``.
        params: where the Jacobian is taken.
        tangent: ``v``, shaped like ``params``.
        apply_q: ``u -> Q u`` on tensors shaped like the outputs.

    Returns:
        The product, shaped like ``params``.
    """
    with warnings.catch_warnings():
        # torch's forward-mode AD scripts its decompositions on first use and warns that
        # torch.jit.script is deprecated: torch's own business, not the user's
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*deprecated",
                                category=FutureWarning)
        _, jv = torch.func.jvp(fn, (params,), (tangent,))
    _, pullback = torch.func.vjp(fn, params)
    return pullback(apply_q(jv))[0]


def output_factor(kind: str, loss: str | Callable, logits: torch.Tensor, y: torch.Tensor, *,
                  weight: float = 1.0, samples: int = 0,
                  generator: torch.Generator | None = None) -> OutputProduct:
    """``u -> Q u`` for one chunk's outputs: the middle factor of ``J^T Q J``.

    Args:
        kind: ``ggn``, ``fisher`` or ``empirical-fisher``.
        loss: ``cross_entropy``, ``mse`` or a mean-reduced ``loss(outputs, targets)``
            (not for ``fisher``, which needs a likelihood).
        logits: the chunk's outputs at the parameters, ``(n, C)``.
        y: the chunk's targets.
        weight: the chunk's share of the mean, ``n / N``.
        samples: ``fisher`` only: labels drawn per example (0: the exact expectation).
        generator: the random source of those labels.
    """
    from ..losses import loss_function

    logits = logits.detach()
    loss_fn = loss_function(loss)
    if kind == "ggn":
        return lambda u: output_hessian_product(loss_fn, logits, y, u, weight)
    if kind == "empirical-fisher":
        grads = example_gradients(loss_fn, logits, y)[None]
        return lambda u: gradient_outer_product(grads, u, weight)
    if kind != "fisher":
        raise LandscapeError(f"unknown curvature {kind!r}: use one of {', '.join(KINDS[1:])}")
    if loss not in FISHER_LOSSES:
        raise LandscapeError(f"the Fisher needs a likelihood: loss {loss!r} has none here "
                             f"(use {' or '.join(FISHER_LOSSES)}, or ggn / empirical-fisher)")
    if samples > 0:
        grads = sampled_gradients(loss, logits, samples, generator)
        return lambda u: gradient_outer_product(grads, u, weight)
    return lambda u: fisher_output_product(loss, logits, u, weight)


def output_hessian_product(loss_fn: Callable, logits: torch.Tensor, y: torch.Tensor,
                           u: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    """``H_out u``: the Hessian of ``weight * loss_fn(outputs, y)`` with respect to the
    outputs, at ``logits``, times ``u`` (forward over reverse)."""
    grad = torch.func.grad(lambda z: loss_fn(z, y) * weight)
    return torch.func.jvp(grad, (logits,), (u,))[1]


def example_gradients(loss_fn: Callable, logits: torch.Tensor, y: torch.Tensor
                      ) -> torch.Tensor:
    """Gradient of each example's loss with respect to its outputs, ``(n, C)``: ``n`` times
    the gradient of the mean-reduced loss (each example's outputs enter only its own term)."""
    return len(y) * torch.func.grad(lambda z: loss_fn(z, y))(logits)


def sampled_gradients(loss: str, logits: torch.Tensor, samples: int,
                      generator: torch.Generator | None) -> torch.Tensor:
    """Output gradients of each example's loss at labels drawn from the model,
    ``(samples, n, C)``.

    Cross-entropy: ``softmax(z) - onehot(y)`` with ``y ~ softmax(z)``. mse (a Gaussian of
    variance ``C / 2`` around the outputs): ``sqrt(2 / C) * e`` with ``e`` standard normal.
    """
    n, width = logits.shape
    if loss == "cross_entropy":
        probs = torch.softmax(logits, dim=-1)
        drawn = torch.multinomial(probs, samples, replacement=True, generator=generator)
        onehot = torch.nn.functional.one_hot(drawn.T, width).to(logits.dtype)
        return probs[None] - onehot
    noise = torch.randn((samples, n, width), generator=generator, dtype=logits.dtype,
                        device=logits.device)
    return math.sqrt(2.0 / width) * noise


def gradient_outer_product(grads: torch.Tensor, u: torch.Tensor, weight: float = 1.0
                           ) -> torch.Tensor:
    """``Q u`` with ``Q_n = weight / (n S) * sum_s g_sn g_sn^T`` for gradients ``(S, n, C)``."""
    s, n = grads.shape[:2]
    coef = (grads * u[None]).sum(-1, keepdim=True)
    return (grads * coef).sum(0) * (weight / (n * s))


def fisher_output_product(loss: str, logits: torch.Tensor, u: torch.Tensor,
                          weight: float = 1.0) -> torch.Tensor:
    """The exact Fisher's output factor times ``u``, in closed form: per example
    ``(diag(p) - p p^T) u`` for cross-entropy, ``2 u / C`` for mse; times ``weight / n``."""
    n, width = logits.shape
    if loss == "cross_entropy":
        p = torch.softmax(logits, dim=-1)
        out = p * u - p * (p * u).sum(-1, keepdim=True)
    else:
        out = (2.0 / width) * u
    return out * (weight / n)


NAMES = {"ggn": "GGN", "fisher": "Fisher", "empirical-fisher": "empirical Fisher"}


class OutputCurvatureOperator(HessianOperator):
    """The GGN, Fisher or empirical Fisher of the mean loss over a data split, ``J^T Q J``,
    as a ``CurvatureOperator`` every solver takes (eigenvalues, trace, density).

    It shares the Hessian operator's setup (chunks weighted by size, the model's shell and
    buffers, devices and dtypes, counting and recording); each chunk's output factor ``Q``
    (and, for the sampled Fisher, its labels) is fixed at construction.

    Args:
        model, data, loss: as for ``HessianOperator``.
        kind: ``ggn``, ``fisher`` or ``empirical-fisher``.
        samples: ``fisher`` only: labels drawn per example (0, the default: exact).
        seed: seed of those labels.
        **options: the other ``HessianOperator`` arguments (``hvp`` is not used).
    """

    def __init__(self, model: nn.Module, data: Any, loss: LossArg = "cross_entropy", *,
                 kind: str = "ggn", samples: int = 0, seed: int = 0, **options: Any):
        if kind not in NAMES:
            raise LandscapeError(f"unknown curvature {kind!r}: use one of {', '.join(KINDS)}")
        if samples < 0 or (samples and kind != "fisher"):
            raise LandscapeError(f"samples must be >= 0 and only go with the Fisher, got "
                                 f"{samples} for {kind}")
        progress = options.pop("progress", False)
        super().__init__(model, data, loss, **options)
        self.kind, self.samples = kind, samples
        gen = torch.Generator(device=self.device).manual_seed(seed)
        self._factors = []
        with torch.no_grad(), self._float32():
            for x, y, w in self._chunks:
                fn = self._outputs_of(x)
                self._factors.append((fn, output_factor(kind, loss, fn(self.params), y,
                                                        weight=w, samples=samples,
                                                        generator=gen)))
        if progress:
            self._show_progress(f"{self.matrix_name}-vector products", "Gv")

    @property
    def matrix_name(self) -> str:
        """``GGN``, ``Fisher`` (with its samples when drawn) or ``empirical Fisher``."""
        drawn = f" ({self.samples} sampled label{'s' if self.samples > 1 else ''})"
        return NAMES[self.kind] + (drawn if self.samples else "")

    @property
    def hvp_description(self) -> str:
        """How products are made: one jvp and one vjp of the network per chunk."""
        return f"{NAMES[self.kind]}: J^T Q J (jvp + vjp)"

    def _outputs_of(self, x: torch.Tensor) -> Callable[[Params], torch.Tensor]:
        def fn(params: Params) -> torch.Tensor:
            return torch.func.functional_call(self._shell, {**params, **self._buffers()}, (x,))
        return fn

    def _flat_product(self, v: torch.Tensor) -> torch.Tensor:
        tangent = self.unflatten(v)
        total = torch.zeros_like(v)
        for fn, apply_q in self._factors:
            out = jqj_product(fn, self.params, tangent, apply_q)
            total += torch.cat([t.reshape(-1) for t in out.values()])
        return total
