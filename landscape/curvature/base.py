"""Symmetric curvature operators over a flat parameter vector, as scipy LinearOperators.

Contract: ``CurvatureOperator`` is the one place that counts products, records them (each
``(x, Ax)`` pair, up to ``record_limit`` products and ``RECORD_BYTES``; past either the record
is dropped) and shows their progress; every solver of this
package takes any subclass (the Hessian, a caller's matrix wrapped by ``GivenOperator``, a
Gauss-Newton or Fisher operator) and reads ``n_params``, ``n_products``, ``mode``,
``hvp_description`` and ``history`` from it. The scipy side is float64. Residuals of vectors
in the span of the recorded products cost no further product (``residuals``).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy.sparse.linalg import LinearOperator, aslinearoperator

from ..errors import LandscapeError

RECORD_BYTES = 1 << 29
"""Most bytes of recorded products (for free residuals); past it residuals cost a product each."""
RECORD_FLOOR = 1 << 25
"""Bytes of record always allowed (32 MiB: 777 products of the 2.7k MLP, 261 of the 8k CNN):
small operators keep every product whatever the solver's iteration count, so their residuals
cost no product; a run past its estimate's count holds at most this much more."""


def eigsh_products(n_params: int, top_k: int, ncv: int | None = None) -> int:
    """Products eigsh usually takes for the top ``top_k``: its basis (``ncv``, default
    ``max(2 top_k + 1, 20)``) once and about three more per eigenvalue, plus two (a fit to
    ``benchmarks/scale.py`` at tol 1e-6 on the MNIST-1D MLP and CNN and a 4.2M-parameter MLP:
    top-1 took 21-31 products, top-5 35-48; 0 when ``top_k`` is 0)."""
    if not top_k:
        return 0
    basis = min(n_params, ncv or max(2 * top_k + 1, 20))
    return min(n_params, basis + 3 * top_k + 2)


def record_limit(n_params: int, top_k: int, ncv: int | None = None) -> int:
    """Products an eigenvalue run records: what eigsh usually takes (``eigsh_products``), at
    least what ``RECORD_FLOOR`` holds, at most what ``RECORD_BYTES`` holds (16 bytes a
    parameter a product). A run that takes more drops its record and pays one product per
    residual, so the record never passes what a memory estimate assumed."""
    each = 16 * max(n_params, 1)
    return min(max(eigsh_products(n_params, top_k, ncv), RECORD_FLOOR // each),
               RECORD_BYTES // each)


class CurvatureOperator(LinearOperator):
    """A symmetric ``n_params x n_params`` operator that counts and may record its products.

    Subclasses compute one product in ``_product`` (float64 in, float64 out) and call
    ``_tally`` once per product they make (scipy's or their own direct ones), and set ``mode``
    (the layers' mode, or a description) and ``hvp_description`` (how products are made).

    Args:
        n_params: dimension of the operator.
        record: keep every scipy product ``(x, A x)`` (16 bytes per parameter each) until they
            would pass ``record_limit`` products (None: no limit) or ``RECORD_BYTES``; then
            recording stops and the record is dropped.
    """

    fresh_output = False
    """True where ``_product`` returns a new array no one else holds (recorded uncopied)."""

    def __init__(self, n_params: int, *, record: bool = False):
        self.n_params = n_params
        self.n_products = 0
        self.history: list[tuple[np.ndarray, np.ndarray]] = []
        self._record = record
        self.record_limit: int | None = None
        self._orthonormal = 0  # leading records already made orthonormal (``_from_history``)
        self._bar: Any = None
        super().__init__(dtype=np.float64, shape=(n_params, n_params))

    def _product(self, x: np.ndarray) -> np.ndarray:
        """``A x`` for a flat float64 vector, as a float64 array (each subclass its own)."""
        raise NotImplementedError(f"{type(self).__name__} does not define its product")

    def _tally(self) -> None:
        """Count one product (and advance the progress bar, if any)."""
        self.n_products += 1
        if self._bar is not None:
            self._bar.update(1)

    def _show_progress(self, label: str, unit: str) -> None:
        from ..util.progress import progress

        self._bar = progress(None, label, True, unit=unit)

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        out = self._product(x)
        if self._record and self._record_full():
            self._record = False
            self.history.clear()
            self._orthonormal = 0
        if self._record:  # ARPACK reuses x's memory; a fresh output needs no copy
            self.history.append((x.copy(), out if self.fresh_output else out.copy()))
        return out

    def _record_full(self) -> bool:
        """Whether one more product would pass the record's limit or ``RECORD_BYTES``."""
        count = len(self.history) + 1
        return (count * 16 * self.n_params > RECORD_BYTES
                or (self.record_limit is not None and count > self.record_limit))

    def _rmatvec(self, x: np.ndarray) -> np.ndarray:
        return self._matvec(x)

    def _adjoint(self) -> "CurvatureOperator":
        return self

    def close(self) -> None:
        """Close the progress bar, if any."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def residuals(self, vals: np.ndarray, vecs: np.ndarray) -> np.ndarray:
        """``||A v - lambda v||`` for each column ``v`` of ``vecs``: from the recorded products
        when the vectors lie in their span (Ritz vectors of a Krylov method do), else by one
        product each."""
        hv = self._from_history(vecs)
        if hv is None:
            hv = np.stack([self.matvec(vecs[:, i]) for i in range(vecs.shape[1])], axis=1)
        return np.linalg.norm(hv - vecs * vals, axis=0)

    def _from_history(self, vecs: np.ndarray) -> np.ndarray | None:
        """``A vecs`` from the record when ``vecs`` lie in its span (else None), in place: the
        record becomes an orthonormal basis ``q`` with ``A q`` (A is linear), so nothing
        record-sized is stacked or copied."""
        self._orthonormalize()
        if not self.history:
            return None
        coef = np.stack([q @ vecs for q, _ in self.history])
        rest = np.array(vecs, dtype=np.float64)
        out = np.zeros_like(rest)
        for (q, aq), c in zip(self.history, coef):
            rest -= np.outer(q, c)
            out += np.outer(aq, c)
        # only trust it when v is (numerically) in the record's span
        if np.max(np.linalg.norm(rest, axis=0)) > 1e-10 or not np.all(np.isfinite(coef)):
            return None
        return out

    def _orthonormalize(self) -> None:
        """Gram-Schmidt (twice) over the records not yet orthonormal; the products follow the
        same combinations. Records (numerically) in the span of earlier ones are dropped."""
        kept = self.history[:self._orthonormal]
        for x, ax in self.history[self._orthonormal:]:
            size = np.linalg.norm(x)
            for _ in range(2):
                for q, aq in kept:
                    d = q @ x
                    x -= d * q
                    ax -= d * aq
            r = np.linalg.norm(x)
            if r > 1e-8 * size and np.isfinite(r):
                x /= r
                ax /= r
                kept.append((x, ax))
        self.history[:] = kept
        self._orthonormal = len(kept)


class GivenOperator(CurvatureOperator):
    """A caller's symmetric operator (a scipy LinearOperator or a dense or sparse matrix),
    counted and (optionally) recorded like the package's own.

    Args:
        op: the operator; its ``mode`` and ``hvp_description``, if any, are reported.
        record: as for ``CurvatureOperator``.
    """

    def __init__(self, op: Any, record: bool):
        self.inner = aslinearoperator(op)
        if self.inner.shape[0] != self.inner.shape[1]:
            raise LandscapeError(f"the operator must be square, got shape {self.inner.shape}")
        self.mode = getattr(op, "mode", "given operator")
        self.hvp_description = getattr(op, "hvp_description", "given operator")
        super().__init__(self.inner.shape[0], record=record)

    def _product(self, x: np.ndarray) -> np.ndarray:
        out = np.asarray(self.inner.matvec(x), dtype=np.float64).reshape(-1)
        self._tally()
        return out


class ShiftedOperator(LinearOperator):
    """``A - s I`` over another operator (its products are counted there)."""

    def __init__(self, op: LinearOperator, shift: float):
        self.op, self.shift = op, shift
        super().__init__(dtype=np.float64, shape=op.shape)

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        return self.op.matvec(x) - self.shift * x

    def _rmatvec(self, x: np.ndarray) -> np.ndarray:
        return self._matvec(x)
