"""The Hessian under torchrun: examples shared by the ranks, products summed on rank 0.

Contract: every rank holds a contiguous shard of the examples (``shard_range``). Rank 0 drives
a ``DistributedHessianOperator`` (any solver takes it, e.g. through ``DistributedHessian`` as
``HessianOptions.factory``) while the other ranks serve its products
(``serve_hessian_products``); products equal the one-process ones up to rounding.
``sharded_hessian_vector_product`` is the one-product collective that every rank calls.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from ..data import split_of
from ..distributed import DistContext, DistributedError, Link
from ..errors import LandscapeError
from .hessian import HessianOperator, hessian_vector_product
from .options import DEFAULT_CHUNK, GRAPH_CACHE_BYTES


def shard_range(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Contiguous share ``[start, stop)`` of ``n`` examples for ``rank`` (sizes differ by at
    most one)."""
    return n * rank // world_size, n * (rank + 1) // world_size


_STOP, _PRODUCT, _GRADIENT = 0.0, 1.0, 2.0


class DistributedHessianOperator(HessianOperator):
    """The Hessian of the mean loss over data shared by the ranks of ``context``.

    Every rank keeps its contiguous shard of the examples (``shard_range``). Rank 0 drives: each
    ``hvp`` (and ``matvec``, so scipy solvers work unchanged) broadcasts the vector, every rank
    multiplies by its shard's Hessian weighted by ``shard / n``, and the pieces are summed on
    rank 0 (``reduce``; NCCL on GPUs). Meanwhile the other ranks run ``serve`` (or
    ``serve_hessian_products``, which builds the operator from rank 0's arguments). Rank 0's
    ``close`` releases them. The product equals the one-process product up to rounding (the
    sum is taken in another order).

    Args:
        model, data, loss, chunk, mode, device, hvp, dtype, split, record, progress,
            graph_cache: as for ``HessianOperator`` (all ranks give the same;
            ``device`` defaults to ``context.device``; only rank 0 shows progress).
        context: from ``init_distributed``.
    """

    def __init__(self, model: nn.Module, data: Any, loss: Any = "cross_entropy", *,
                 chunk: int | None = DEFAULT_CHUNK, mode: str = "eval",
                 device: str | torch.device | None = None, hvp: str = "double",
                 dtype: torch.dtype | None = None, split: str = "train", record: bool = False,
                 progress: bool = False, graph_cache: int = GRAPH_CACHE_BYTES,
                 context: DistContext):
        x, y = split_of(data, split)
        n = len(y)
        if n < context.world_size:
            raise DistributedError(f"{n} examples cannot be shared by {context.world_size} "
                                   "ranks")
        lo, hi = shard_range(n, context.rank, context.world_size)
        self.context = context
        self.share = (hi - lo) / n
        self.total_examples = n
        self._link = Link(context)
        self._released = False
        super().__init__(model, (x[lo:hi], y[lo:hi]), loss, chunk=chunk, mode=mode,
                         device=device if device is not None else context.device, hvp=hvp,
                         dtype=dtype, record=record, progress=progress and context.is_main,
                         graph_cache=graph_cache)

    def _collective(self, what: str, fn: Callable[[], Any]) -> Any:
        return self._link.call(what, fn)

    def _order(self, flag: float, v: torch.Tensor | None) -> torch.Tensor:
        """Rank 0 sends (flag, vector) to all ranks (its arguments are ignored elsewhere);
        returns what arrived."""
        import torch.distributed as dist

        msg = torch.zeros(self.n_params + 1, device=self.device, dtype=self.torch_dtype)
        if self.context.is_main:
            msg[0] = flag
            if v is not None:
                msg[1:] = v
        self._collective("Hessian product request", lambda: dist.broadcast(msg, src=0))
        return msg

    def _sum_on_main(self, local: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        self._collective("sum of Hessian products", lambda: dist.reduce(local, dst=0))
        return local

    def hvp(self, v: torch.Tensor) -> torch.Tensor:
        """``H v`` over all shards (rank 0 only; the others must be serving)."""
        self._check_driver()
        v = v.to(self.device, self.torch_dtype).reshape(-1)
        if v.numel() != self.n_params:
            raise LandscapeError(f"vector has {v.numel()} entries, the Hessian has "
                                 f"{self.n_params}")
        msg = self._order(_PRODUCT, v)
        return self._sum_on_main(super().hvp(msg[1:]) * self.share)

    def loss_and_grad(self) -> tuple[float, torch.Tensor]:
        """Mean loss and flat gradient over all shards (rank 0 only)."""
        self._check_driver()
        self._order(_GRADIENT, None)
        return self._local_loss_and_grad()

    def _local_loss_and_grad(self) -> tuple[float, torch.Tensor]:
        loss, grad = super().loss_and_grad()
        packed = torch.cat([torch.tensor([loss], device=grad.device, dtype=grad.dtype), grad])
        packed = self._sum_on_main(packed * self.share)
        return float(packed[0]), packed[1:]

    def serve(self) -> int:
        """On ranks other than 0: answer rank 0's requests until it closes the operator.

        Returns:
            The number of products served.
        """
        if self.context.is_main:
            raise DistributedError("rank 0 drives the operator; serve() is for the other ranks")
        served = 0
        while True:
            msg = self._order(_STOP, None)
            flag = float(msg[0])
            if flag == _PRODUCT:
                self._sum_on_main(HessianOperator.hvp(self, msg[1:]) * self.share)
                served += 1
            elif flag == _GRADIENT:
                self._local_loss_and_grad()
            else:
                return served

    def close(self) -> None:
        """On rank 0: release the serving ranks (once); close the progress bar."""
        if self.context.is_main and not self._released:
            self._released = True
            self._order(_STOP, None)
        super().close()

    def _check_driver(self) -> None:
        if not self.context.is_main:
            raise DistributedError("only rank 0 requests products; the other ranks serve()")
        if self._released:
            raise DistributedError("this operator was closed")


class DistributedHessian:
    """On rank 0: makes ``DistributedHessianOperator``s, a drop-in for ``HessianOperator(...)``
    in any solver, while the other ranks run ``serve_hessian_products``.

    Each call sends the operator's settings to the serving ranks, which build the same
    operator over their shards; ``finish()`` releases them when no more operators come.
    Operators run on ``context.device`` whatever ``device`` they are given.
    """

    def __init__(self, context: DistContext):
        if not context.is_main:
            raise DistributedError("rank 0 makes the operators; the other ranks run "
                                   "serve_hessian_products")
        self.context = context
        self._link = Link(context)
        self.finished = False

    def __call__(self, model: nn.Module, data: Any, loss: Any = "cross_entropy", *,
                 chunk: int | None = DEFAULT_CHUNK, mode: str = "eval",
                 device: str | torch.device | None = None, hvp: str = "double",
                 dtype: torch.dtype | None = None, split: str = "train", record: bool = False,
                 progress: bool = False, graph_cache: int = GRAPH_CACHE_BYTES
                 ) -> DistributedHessianOperator:
        if self.finished:
            raise DistributedError("finish() was called: the serving ranks are gone")
        if callable(loss):
            raise DistributedError("a distributed Hessian needs a named loss (cross_entropy or "
                                   "mse), not a callable: the other ranks must rebuild it")
        settings = dict(loss=loss, chunk=chunk, mode=mode, hvp=hvp, dtype=dtype,
                        split=split, graph_cache=graph_cache)
        self._send(settings)
        return DistributedHessianOperator(model, data, record=record, progress=progress,
                                          context=self.context, **settings)

    def finish(self) -> None:
        """Tell the serving ranks that no more operators come (once)."""
        if not self.finished:
            self.finished = True
            self._send(None)

    def _send(self, settings: dict[str, Any] | None) -> None:
        import torch.distributed as dist

        order = [settings]
        self._link.call("Hessian operator request",
                        lambda: dist.broadcast_object_list(order, src=0,
                                                           group=self.context.group))

    def __enter__(self) -> "DistributedHessian":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.finish()


def serve_hessian_products(model: nn.Module, data: Any, context: DistContext) -> int:
    """On ranks other than 0: serve every operator rank 0's ``DistributedHessian`` makes,
    until it calls ``finish()``.

    Args:
        model, data: the same as rank 0's.
        context: from ``init_distributed``.

    Returns:
        The number of operators served.
    """
    import torch.distributed as dist

    if context.is_main:
        raise DistributedError("rank 0 drives the products; serve on the other ranks")
    link = Link(context)
    count = 0
    while True:
        order: list[Any] = [None]
        link.call("Hessian operator request",
                  lambda: dist.broadcast_object_list(order, src=0, group=context.group))
        if order[0] is None:
            return count
        DistributedHessianOperator(model, data, context=context, **order[0]).serve()
        count += 1


def sharded_hessian_vector_product(model: nn.Module, data: Any, vector: torch.Tensor,
                                   loss: Any = "cross_entropy",
                                   chunk: int | None = DEFAULT_CHUNK, mode: str = "eval",
                                   hvp: str = "double", dtype: torch.dtype | None = None,
                                   *, context: DistContext | None) -> torch.Tensor:
    """``H v`` of the mean loss over ``data``, each rank working on its shard (a collective:
    every rank calls it and every rank gets the product; rank 0's ``vector`` is used).

    Args:
        model: the network (not modified); the same on every rank.
        data: ``(inputs, targets)`` or a DataBundle (its train split); the same on every rank.
        vector: flat tensor, one entry per trainable parameter.
        loss, chunk, mode, hvp, dtype: as for ``HessianOperator``.
        context: from ``init_distributed``; None computes the one-process product.

    Returns:
        ``H v`` as a flat tensor on ``context.device``.
    """
    import torch.distributed as dist

    if context is None or context.world_size == 1:
        return hessian_vector_product(model, data, vector, loss, chunk, mode,
                                      None if context is None else context.device, hvp)
    op = DistributedHessianOperator(model, data, loss, chunk=chunk, mode=mode, hvp=hvp,
                                    dtype=dtype, context=context)
    v = vector.to(op.device, op.torch_dtype).reshape(-1).clone()
    if v.numel() != op.n_params:
        raise LandscapeError(f"vector has {v.numel()} entries, the Hessian has {op.n_params}")
    op._collective("vector broadcast", lambda: dist.broadcast(v, src=0))
    out = op._sum_on_main(HessianOperator.hvp(op, v) * op.share)
    op._collective("product broadcast", lambda: dist.broadcast(out, src=0))
    return out
