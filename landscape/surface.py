"""Loss surfaces over 1-D and 2-D grids of parameter-space offsets."""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class Surface:
    """Values of metrics on a 1-D or 2-D grid around a model.

    Attributes:
        x: 1-D coordinates along the first direction.
        y: 1-D coordinates along the second direction, or None for a 1-D surface.
        metrics: name -> array of shape ``(len(x),)`` or ``(len(x), len(y))``; entry ``[i, j]``
            is the point ``x[i], y[j]``; NaN where not computed (or where the loss was NaN).
        done: bool array of the same shape; True where the point has been computed.
        provenance: how it was made (command, seeds, versions, hashes, ...).
        path: the file it was read from or written to, if any.
    """

    x: np.ndarray
    y: np.ndarray | None
    metrics: dict[str, np.ndarray]
    done: np.ndarray
    provenance: dict[str, Any] = dataclasses.field(default_factory=dict)
    path: str | None = None

    @property
    def ndim(self) -> int:
        """1 for a line, 2 for a plane."""
        return 1 if self.y is None else 2

    @property
    def shape(self) -> tuple[int, ...]:
        """Grid shape."""
        return (len(self.x),) if self.y is None else (len(self.x), len(self.y))

    @property
    def complete(self) -> bool:
        """True when every grid point is computed."""
        return bool(np.all(self.done))
