"""Re-measuring a 1-D basin width that the first grid does not resolve."""
import numpy as np
import pytest

from landscape.errors import LandscapeError
from landscape.refine import STEPS_PER_WIDTH, refine_width


@pytest.mark.parametrize("curvature", [1e4, 1e6, 3e2])
def test_a_width_below_one_grid_step_is_resolved(curvature):
    rise = 0.1
    analytic = 2 * np.sqrt(2 * rise / curvature)  # f = c x^2 / 2 reaches rise at +-sqrt(2r/c)
    calls = []

    def loss(x):
        calls.append(len(x))
        return 0.5 * curvature * np.asarray(x) ** 2

    x = np.linspace(-1, 1, 11)  # step 0.2: wider than every basin here
    assert analytic < 0.2
    found = refine_width(loss, x, rise=rise)
    assert found.resolved and found.rounds >= 1
    assert found.width == pytest.approx(analytic, rel=0.1)
    assert found.width >= STEPS_PER_WIDTH * np.max(np.diff(found.x))
    assert found.x[0] < 0 < found.x[-1] and 0.0 in found.x.tolist()
    assert len(calls) == 1 + found.rounds


def test_a_resolved_width_is_not_refined():
    x = np.linspace(-1, 1, 21)
    found = refine_width(lambda v: np.asarray(v) ** 2, x, rise=0.1)
    assert found.rounds == 0 and found.resolved
    assert found.width == pytest.approx(2 * np.sqrt(0.1), rel=0.05)


def test_bad_points_are_refused():
    with pytest.raises(LandscapeError, match="odd"):
        refine_width(lambda v: v ** 2, np.linspace(-1, 1, 5), points=20)


def test_a_basin_never_bounded_stops_unresolved():
    calls = []

    def flat(x):
        calls.append(1)
        return np.zeros(len(x))

    found = refine_width(flat, np.linspace(-1, 1, 11), rise=0.1, max_rounds=3)
    assert not found.resolved and found.width is None and found.rounds == 3
    assert found.x[-1] > 1.0 and len(calls) == 4  # it widened the grid each round
