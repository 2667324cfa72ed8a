"""``CompareConfig``: what a comparison measures around each minimum, and how finely.

One frozen object carries every setting of the measurements (grids, ranges, products, seeds,
the V-versus-W section, the device); ``StudyConfig`` extends it with what a study trains. The
defaults are the demo's; ``CompareConfig.quick()`` is a coarse smoke run.
"""
from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["CompareConfig"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class CompareConfig:
    """What is measured around each minimum. The defaults are the demo's.

    Attributes:
        seed: seed of the random directions (the same for every minimum), of Lanczos start
            vectors and of sharpness draws.
        line_points, line_range: 1-D filter-normalized surfaces.
        plane_points, plane_range: 2-D filter-normalized surfaces (square grid, training
            loss and accuracy only: the figures and basin shapes use the training loss). The
            default half-width 0.5 holds the basins of the MNIST-1D CNN (its loss passes 10
            near 0.6); 25 points per side resolve them (step 0.042, a fifth of their width).
        interp_points, interp_range: interpolation from the first minimum to the second.
        top_k: Hessian eigenvalues per model.
        trace_products: Hessian-vector products for the trace (Hutch++).
        density_probes, density_steps: stochastic Lanczos quadrature.
        eps: Keskar sharpness box sizes.
        rho: adaptive sharpness radius (l2).
        sharpness_samples: draws for average-case adaptive sharpness.
        rise: loss increase that bounds a basin (basin width).
        eigen_points, eigen_range: 1-D slices along each model's top Hessian eigenvector
            (unit norm; 0 points: none).
        render_3d: draw the 3-D figure and the interactive scene (pyvista, offscreen).
        device: torch device (None: best available).
        w_plane_points, w_plane_margin: the plane through the first three minima (points per
            side, margin beyond them), when there are three or more.
        curvatures: other curvature matrices to measure besides the Hessian (any of
            ``ggn``, ``fisher``, ``empirical-fisher``): each model's top eigenvalue and
            trace of each, a row each in the report (default none).
        ggn_top: also each model's top eigenvalue of the generalized Gauss-Newton matrix,
            beside the Hessian's (same tolerance; about 20 products on the demo's minima).
        bottom_eigenvalue: also the most negative Hessian eigenvalue, bracketed tightly
            enough to tell a negative one from zero (on the demo's minima 75-115 products
            beyond the top eigenvalues' 21: most of the curvature step; off in ``quick()``).
        barrier_points: points on the straight line between each pair of minima (the
            barrier matrix, with three minima or more).
        curve_epochs, curve_points: a Bezier curve trained between the first two minima
            against the straight line (0 epochs: none).
    """

    seed: int = 0
    line_points: int = 51
    line_range: tuple[float, float] = (-0.5, 0.5)
    plane_points: int = 25
    plane_range: tuple[float, float] = (-0.5, 0.5)
    interp_points: int = 61
    interp_range: tuple[float, float] = (-1.0, 2.0)
    top_k: int = 5
    trace_products: int = 60
    density_probes: int = 2
    density_steps: int = 60
    eps: tuple[float, ...] = (1e-3, 5e-4)
    rho: float = 0.05
    sharpness_samples: int = 10
    rise: float = 0.1
    eigen_points: int = 41
    eigen_range: tuple[float, float] = (-0.3, 0.3)
    render_3d: bool = True
    device: str | None = None
    w_plane_points: int = 17
    w_plane_margin: float = 0.35
    curve_epochs: int = 30
    curve_points: int = 21
    barrier_points: int = 21
    curvatures: tuple[str, ...] = ()
    ggn_top: bool = True
    bottom_eigenvalue: bool = True

    def __post_init__(self) -> None:
        """Refuse an unknown curvature matrix before any work."""
        from ..errors import LandscapeError

        bad = [c for c in self.curvatures if c not in ("ggn", "fisher", "empirical-fisher")]
        if bad:
            raise LandscapeError(f"unknown curvature matrix {bad[0]!r}: use ggn, fisher or "
                                 "empirical-fisher (the Hessian is always measured)")

    QUICK = dict(line_points=21, plane_points=13, interp_points=25, eigen_points=21, top_k=3,
                 trace_products=30, density_probes=1, density_steps=40, eps=(1e-3,),
                 sharpness_samples=3, w_plane_points=11, curve_points=11, curve_epochs=10,
                 barrier_points=11, bottom_eigenvalue=False)
    """Coarse grids and fewer products, no most negative eigenvalue: a smoke run
    (``quick()``)."""

    @classmethod
    def quick(cls, **overrides: Any):
        """The same measurements on coarse grids with fewer products."""
        return cls(**{**cls.QUICK, **overrides})
