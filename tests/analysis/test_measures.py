"""Quick (coarse) flatness measures: what they change, and that the resolution they claim holds."""
import math

import pytest
import torch
from torch import nn

from landscape.generalization import pacbayes_flatness
from landscape.measures import MEASURES, PACBAYES_BRACKET, MeasureOptions, coarse_notes

from closed_forms import mean_output


def test_default_and_finer_options_are_not_coarse():
    assert coarse_notes(MeasureOptions()) == {}
    finer = MeasureOptions(trace_products=60, line_points=81, plane_points=31,
                           pacbayes_iterations=20, pacbayes_samples=4, eig_tol=1e-6)
    assert coarse_notes(finer) == {}


def test_quick_options_name_every_coarse_measure_and_its_resolution():
    quick = MeasureOptions.quick()
    d = MeasureOptions()
    assert quick.plane_points < d.plane_points
    assert quick.line_points < d.line_points
    assert quick.pacbayes_iterations < d.pacbayes_iterations and quick.eig_tol > d.eig_tol
    notes = coarse_notes(quick)
    assert set(notes) == {"top_eigenvalue", "basin_width_1d", "basin_width_2d",
                          "basin_width_top_eigenvector", "pacbayes_flatness",
                          "pacbayes_mag_flatness"}
    assert set(notes) <= set(MEASURES)
    assert "Hutch++ with 12 products (default 30)" in coarse_notes(
        MeasureOptions.quick(trace_products=12))["trace"]
    assert "9 x 9 plane, grid step 0.25" in notes["basin_width_2d"]
    assert "21-point line, grid step 0.1" in notes["basin_width_1d"]
    # 8 halvings of log(1e6): sigma known within 1e6 ** (1 / 256) = 1.0554
    assert "sigma within a factor 1.06" in notes["pacbayes_flatness"]
    assert "1/sigma^2 within 1.11" in notes["pacbayes_flatness"]
    # overrides win; an override back to the default is no longer coarse
    assert "basin_width_2d" not in coarse_notes(MeasureOptions.quick(plane_points=15))


class _Quadratic(nn.Module):
    """Outputs 0.5 a |theta|^2 for every example."""

    def __init__(self, d: int, a: float) -> None:
        super().__init__()
        self.a = a
        self.theta = nn.Parameter(torch.linspace(-1, 1, d, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (0.5 * self.a * self.theta.pow(2).sum()).expand(x.shape[0], 1)


@pytest.mark.parametrize("curvature", [3.0, 0.07, 40.0])
def test_the_claimed_pacbayes_resolution_holds(curvature):
    """The coarse bisection's sigma is within the factor the note states of a converged one
    (same draws), and below it (the bisection keeps the last sigma within the bound)."""
    model, data = _Quadratic(500, curvature), (torch.zeros(2, 1), torch.zeros(2))
    lo, hi = PACBAYES_BRACKET
    runs = {k: pacbayes_flatness(model, data, loss=mean_output, bound=0.1, samples=2,
                                 iterations=k, lo=lo, hi=hi).sigma for k in (8, 40)}
    factor = (hi / lo) ** (0.5 ** 8)
    assert factor == pytest.approx(1.0554, abs=1e-4)
    assert runs[8] <= runs[40] <= runs[8] * factor
    # the converged run hits sqrt(2 bound / (a D)): with 2 pairs of 500 draws, mean |z|^2 / D
    # has a relative sd of sqrt(2 / 1000) = 4.5%, 2.2% on sigma; tolerance 10% (4.5 sd)
    assert runs[40] == pytest.approx(math.sqrt(2 * 0.1 / (curvature * 500)), rel=0.1)
