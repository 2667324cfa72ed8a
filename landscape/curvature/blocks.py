"""Curvature per layer or per named parameter group: the diagonal blocks of a curvature
matrix (Hessian, GGN, Fisher) and their top eigenvalue and trace.

Contract: a block is the operator restricted to a set of coordinates of the flat parameter
vector (``BlockOperator``: each of its products is one product of the full operator on a
vector that is zero outside the block). Groups are made from parameter names
(``parameter_groups``): one per layer (the name's module prefix) or the names matching a
shell-style pattern. The traces of blocks that partition the parameters sum to the trace of
the whole matrix.
"""
from __future__ import annotations

import dataclasses
import fnmatch
from typing import Any

import numpy as np

from ..errors import LandscapeError
from .base import CurvatureOperator
from .eigen import hessian_eigenvalues
from .hessian import solver_operator
from .options import HessianOptions
from .trace import hessian_trace


class BlockOperator(CurvatureOperator):
    """The diagonal block ``A[idx, idx]`` of a symmetric operator.

    Args:
        op: the full operator (its products are counted there too).
        index: the block's coordinates in the flat parameter vector.
    """

    def __init__(self, op: CurvatureOperator, index: np.ndarray):
        self.op, self.index = op, np.asarray(index, dtype=np.int64)
        self.mode = getattr(op, "mode", "given operator")
        self.hvp_description = getattr(op, "hvp_description", "given operator")
        super().__init__(len(self.index))

    def _product(self, x: np.ndarray) -> np.ndarray:
        full = np.zeros(self.op.shape[0])
        full[self.index] = x
        self._tally()
        return np.asarray(self.op.matvec(full))[self.index]


def parameter_groups(shapes: dict[str, tuple[int, ...]], pattern: str | None = None
                     ) -> dict[str, np.ndarray]:
    """Flat coordinates of each group of parameters, in the parameters' order.

    Args:
        shapes: parameter name -> shape, in the order of the flat vector.
        pattern: None: one group per layer (``conv1.weight`` and ``conv1.bias`` form
            ``conv1``); else one group of the names matching this shell pattern
            (``"conv*"``, ``"*.bias"``).
    """
    groups: dict[str, list[np.ndarray]] = {}
    start = 0
    for name, shape in shapes.items():
        size = int(np.prod(shape, dtype=np.int64))
        key = name.rsplit(".", 1)[0] if pattern is None else (
            pattern if fnmatch.fnmatchcase(name, pattern) else None)
        if key is not None:
            groups.setdefault(key, []).append(np.arange(start, start + size))
        start += size
    if not groups:
        raise LandscapeError(f"no parameter matches {pattern!r} (the names are "
                             f"{', '.join(list(shapes)[:6])}{' ...' if len(shapes) > 6 else ''})")
    return {k: np.concatenate(v) for k, v in groups.items()}


@dataclasses.dataclass(frozen=True)
class BlockCurvature:
    """Top eigenvalue and trace of one diagonal block.

    Attributes:
        name: the layer or the pattern.
        n_params: the block's dimension.
        top: its largest eigenvalue.
        trace: its trace (Hutch++ estimate, or exact when the budget covers the block).
        trace_stderr: the estimate's standard error.
        n_products: products of the full operator spent on the block.
    """

    name: str
    n_params: int
    top: float
    trace: float
    trace_stderr: float
    n_products: int


def block_curvature(model: Any, data: Any, *, pattern: str | None = None,
                    options: HessianOptions | None = None, tol: float = 1e-6,
                    trace_products: int = 60, seed: int = 0) -> list[BlockCurvature]:
    """Top eigenvalue and trace of each layer's (or the pattern's) diagonal block of the
    curvature matrix that ``options`` names (``options.curvature``: Hessian by default).

    Args:
        model, data: the network (not modified) and its data, as for the solvers.
        pattern: None for one block per layer, else one block of the matching parameters.
        options: how products are made (``HessianOptions``).
        tol: eigenvalue tolerance (``hessian_eigenvalues``).
        trace_products: Hutch++ budget per block (a block of at most a third of it in
            dimension has its trace taken exactly).
        seed: seed of start vectors and probes.

    Returns:
        One BlockCurvature per group, in the parameters' order.
    """
    op = solver_operator(model, data, options, record=False)
    shapes = {n: tuple(t.shape) for n, t in op.params.items()}
    out = []
    try:
        for name, index in parameter_groups(shapes, pattern).items():
            block = BlockOperator(op, index)
            before = op.n_products
            top = hessian_eigenvalues(block, k=1, tol=tol, seed=seed).values[-1]
            tr = hessian_trace(block, n_products=max(3, trace_products), seed=seed)
            out.append(BlockCurvature(name=name, n_params=len(index), top=float(top),
                                      trace=tr.estimate, trace_stderr=tr.stderr,
                                      n_products=op.n_products - before))
    finally:
        op.close()
    return out
