"""Basin shape (V versus W) on analytic curves and surfaces whose answers are known."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from landscape.errors import LandscapeError
from landscape.shape import basin_minima, basin_shape, surface_shape
from landscape.surface import Surface

X = np.linspace(-1.0, 1.0, 201)        # spacing 0.01, centre exactly at index 100
XW = np.linspace(-2.0, 2.0, 401)       # spacing 0.01
G = np.linspace(-1.0, 1.0, 81)         # spacing 0.025, centre at index 40
GX = np.linspace(-2.0, 2.0, 81)        # spacing 0.05


def noise(shape, amplitude, seed=0):
    return np.random.default_rng(seed).uniform(-amplitude, amplitude, shape)


# ----------------------------------------------------------------------------- 1-D

def test_v_curve():
    # f = 3|x|: one basin, width where 3|x| = rise is 2 rise / 3 (exact: piecewise linear);
    # the three-point second difference of |x| at its kink is 2 * 3 / h.
    shape = basin_shape(X, 3 * np.abs(X), rise=0.3)
    assert shape.label == "V" and shape.n_basins == 1
    assert shape.width == pytest.approx(0.2, abs=1e-12)
    assert shape.radii == pytest.approx((0.1, 0.1), abs=1e-12)
    assert shape.curvature[0] == pytest.approx(2 * 3 / 0.01, rel=1e-9)
    assert shape.minima[0][0] == pytest.approx((0.0,), abs=1e-12)
    assert shape.minima[0][2] == pytest.approx(3.0)  # the global basin's depth is the range


def test_quadratic_curve_width_and_curvature():
    # f = a x^2 / 2: width 2 sqrt(2 rise / a); the crossing is linearly interpolated between
    # grid points, an error below a h^2 / (8 slope) ~ 1e-5 here (tolerance 1e-4); the second
    # difference of a quadratic is exact.
    a, rise = 4.0, 0.5
    shape = basin_shape(X, 0.5 * a * X ** 2, rise=rise)
    assert shape.label == "V"
    assert shape.width == pytest.approx(2 * math.sqrt(2 * rise / a), abs=1e-4)
    assert shape.curvature[0] == pytest.approx(a, rel=1e-9)
    assert shape.axis_widths == (shape.width,)


def test_double_well():
    # f = (x^2 - 1)^2: minima at x = +-1 (value 0), barrier f(0) = 1, so the second basin's
    # depth is exactly 1; f''(0) = -4 (second difference error 2 h^2); from the centre the
    # value first reaches 1 + rise at x^2 = 1 + sqrt(1 + rise).
    rise = 0.1
    f = (XW ** 2 - 1) ** 2
    shape = basin_shape(XW, f, rise=rise)
    assert shape.label == "W" and shape.n_basins == 2
    assert sorted(m[0][0] for m in shape.minima) == pytest.approx([-1.0, 1.0], abs=1e-12)
    assert shape.minima[1][2] == pytest.approx(1.0, abs=1e-12)
    assert shape.minima[0][2] == pytest.approx(float(f.max()), abs=1e-12)
    assert shape.curvature[0] == pytest.approx(-4.0, abs=3e-4)
    r = math.sqrt(1 + math.sqrt(1 + rise))
    assert shape.width == pytest.approx(2 * r, abs=1e-4)


def test_tilted_double_well_depths():
    # f = (x^2 - 1)^2 + 0.3 x: stationary points are the roots of f' = 4x^3 - 4x + 0.3; the
    # shallower basin (right) is as deep as f(barrier) - f(right minimum). The grid resolves
    # the stationary values to about f'' h^2 / 2 ~ 4e-4 (tolerance 1e-3).
    tilt = 0.3
    f = (XW ** 2 - 1) ** 2 + tilt * XW
    roots = np.sort(np.roots([4.0, 0.0, -4.0, tilt]).real)
    g = lambda x: (x ** 2 - 1) ** 2 + tilt * x  # noqa: E731
    depth = g(roots[1]) - g(roots[2])
    shape = basin_shape(XW, f)
    assert shape.n_basins == 2 and shape.label == "W"
    deep, shallow = shape.minima
    assert deep[0][0] == pytest.approx(roots[0], abs=0.01)
    assert shallow[0][0] == pytest.approx(roots[2], abs=0.01)
    assert shallow[2] == pytest.approx(depth, abs=1e-3)
    # A threshold above that depth leaves one basin: the label follows the threshold.
    assert basin_shape(XW, f, threshold=depth + 0.01).label == "V"


def test_piecewise_linear_w():
    # f = ||x| - 0.5|: minima at +-0.5, barrier 0.5 at the centre; from the centre (value
    # 0.5) the value reaches 0.5 + rise at |x| = 1 + rise only beyond the grid: no width.
    shape = basin_shape(X, np.abs(np.abs(X) - 0.5), rise=0.2)
    assert shape.label == "W" and shape.n_basins == 2
    assert sorted(m[0][0] for m in shape.minima) == pytest.approx([-0.5, 0.5], abs=1e-12)
    assert shape.minima[1][2] == pytest.approx(0.5, abs=1e-12)
    assert shape.width is None and shape.radii == (None, None)


def test_noise_below_the_threshold_makes_no_basins():
    # On a slope, uniform noise of amplitude a makes minima at most 2a deep (the way downhill
    # never rises above the true value + a, the minimum sits at >= true value - a). With
    # a = 0.01 a threshold of 0.05 ignores all of them, while with no threshold the same curve
    # (slope 0.5: 0.005 per grid step, below the noise) shows many: the noise is really there.
    f = 0.5 * np.abs(X) + noise(X.shape, 0.01)
    assert basin_shape(X, f, threshold=0.05).label == "V"
    assert basin_shape(X, f, threshold=0.0).n_basins > 5
    w = (XW ** 2 - 1) ** 2 + noise(XW.shape, 0.01, seed=1)
    assert basin_shape(XW, w, threshold=0.05).n_basins == 2


def test_flat_and_out_of_grid_centre():
    assert basin_shape(X, np.full_like(X, 2.0)).label == "flat"
    shape = basin_shape(X, 0.5 * (X - 0.3) ** 2, rise=0.02, center=0.3)
    assert shape.center == pytest.approx((0.3,), abs=1e-12)
    assert shape.width == pytest.approx(0.4, abs=1e-4)
    # a centre beyond the grid snaps to the nearest end
    assert basin_shape(X, X ** 2, center=5.0).center == (1.0,)


def test_minima_against_scipy_prominence_for_interior_minima():
    # For minima with lower ground on both sides, depth = topographic prominence.
    from scipy.signal import find_peaks

    x = np.linspace(0, 20, 800)
    f = np.sin(x) + 0.6 * np.sin(2.3 * x + 1) + 0.3 * np.sin(5.1 * x)
    ours = {m[0][0]: m[2] for m in basin_minima(f)}
    peaks, props = find_peaks(-f, prominence=0)
    interior = [(p, pr) for p, pr in zip(peaks, props["prominences"])
                if f[:p].min() < f[p] and f[p + 1:].min() < f[p]]
    assert len(interior) >= 5
    for p, prominence in interior:
        assert ours[p] == pytest.approx(prominence, abs=1e-12)


def test_nan_is_a_wall():
    # NaN (a diverged point) counts as infinitely high: rays stop there, no basin appears
    # where the values rise toward it.
    f = 3 * np.abs(X)
    f[190:] = np.nan
    shape = basin_shape(X, f, rise=3.0)
    assert shape.n_basins == 1
    assert shape.radii[1] == pytest.approx(0.9, abs=1e-12)
    assert shape.radii[0] == pytest.approx(1.0, abs=1e-12)
    # An infinite wall that cuts a curve in two leaves two regions, each with its minimum.
    cut = 3 * np.abs(X)
    cut[150] = np.inf
    assert [m[0][0] for m in basin_shape(X, cut, threshold=0.05).minima] == pytest.approx(
        [0.0, 0.51])


@pytest.mark.parametrize("kwargs", [
    dict(x=X, values=X[:-1]),
    dict(x=X[::-1], values=X),
    dict(x=X[:2], values=X[:2]),
    dict(x=X, values=np.full_like(X, np.nan)),
    dict(x=X, values=X, rise=0.0),
    dict(x=X, values=X, threshold=-1.0),
    dict(x=X, values=np.zeros((201, 3))),
    dict(x=X, values=X, center=(0.0, 0.0)),
    dict(x=G, values=np.zeros((81, 81)), y=G, directions=6),
])
def test_bad_input(kwargs):
    with pytest.raises(LandscapeError):
        basin_shape(**kwargs)


# ----------------------------------------------------------------------------- 2-D



def grid(x, y):
    return np.meshgrid(x, y, indexing="ij")


def test_paraboloid_2d():
    # f = (a x^2 + b y^2) / 2: one basin; curvatures (a, b) exactly; along ray theta the
    # level rise is reached at r = sqrt(2 rise / (a cos^2 + b sin^2)); bilinear interpolation
    # of the grid errs by about a h^2 / 8 in value: tolerance 1e-3 on widths.
    a, b, rise = 2.0, 8.0, 0.2
    xx, yy = grid(G, G)
    shape = basin_shape(G, 0.5 * (a * xx ** 2 + b * yy ** 2), G, rise=rise, directions=16)
    assert shape.label == "V" and shape.n_basins == 1 and shape.ndim == 2
    assert shape.curvature == pytest.approx((a, b), rel=1e-9)
    assert shape.axis_widths[0] == pytest.approx(2 * math.sqrt(2 * rise / a), abs=1e-3)
    assert shape.axis_widths[1] == pytest.approx(2 * math.sqrt(2 * rise / b), abs=1e-3)
    theta = 2 * np.pi * np.arange(16) / 16
    radii = np.sqrt(2 * rise / (a * np.cos(theta) ** 2 + b * np.sin(theta) ** 2))
    assert shape.radii == pytest.approx(tuple(radii), abs=1e-3)
    assert shape.width == pytest.approx(2 * radii.mean(), abs=1e-3)
    assert shape.center == (0.0, 0.0)


def test_double_well_2d():
    # f = (x^2 - 1)^2 + y^2: basins at (+-1, 0), saddle f(0, 0) = 1: second depth exactly 1;
    # curvatures at the centre (-4, 2) (second differences: error 2 h^2 on x, exact on y).
    xx, yy = grid(GX, G)
    shape = basin_shape(GX, (xx ** 2 - 1) ** 2 + yy ** 2, G)
    assert shape.label == "W" and shape.n_basins == 2
    assert sorted(m[0] for m in shape.minima) == [(-1.0, 0.0), (1.0, 0.0)]
    assert shape.minima[1][2] == pytest.approx(1.0, abs=1e-12)
    assert shape.curvature == pytest.approx((-4.0, 2.0), abs=2 * 0.05 ** 2 + 1e-9)


def test_four_wells_and_noise_2d():
    xx, yy = grid(GX, GX)
    f = (xx ** 2 - 1) ** 2 + (yy ** 2 - 1) ** 2
    assert basin_shape(GX, f, GX).n_basins == 4
    noisy = 0.5 * (xx ** 2 + yy ** 2) + noise(xx.shape, 0.01, seed=2)
    assert basin_shape(GX, noisy, GX, threshold=0.05).label == "V"
    assert basin_shape(GX, noisy, GX, threshold=0.0).n_basins > 5


def test_surface_shape_and_json():
    xx, yy = grid(G, G)
    surf = Surface(x=G, y=G, metrics={"train_loss": xx ** 2 + yy ** 2,
                                      "test_loss": (xx ** 2 - 0.25) ** 2 + yy ** 2},
                   done=np.ones(xx.shape, dtype=bool))
    assert surface_shape(surf).label == "V"
    shape = surface_shape(surf, "test_loss", threshold=0.01)
    assert shape.label == "W"
    out = json.loads(json.dumps(shape.to_dict()))
    assert out["label"] == "W" and len(out["minima"]) == 2 and out["ndim"] == 2
    with pytest.raises(LandscapeError, match="no metric"):
        surface_shape(surf, "train_acc")
    partial = Surface(x=G, y=G, metrics=surf.metrics, done=np.zeros(xx.shape, dtype=bool))
    with pytest.raises(LandscapeError, match="incomplete"):
        surface_shape(partial)
    line = Surface(x=X, y=None, metrics={"train_loss": np.abs(X)}, done=np.ones(X.shape, bool))
    assert surface_shape(line, rise=0.1).width == pytest.approx(0.2, abs=1e-12)


def test_basin_shape_flags_an_edge_minimum():
    inside = np.linspace(-1, 1, 21)
    off = np.linspace(0.1, 0.5, 5)  # the minimum of x^2 is at 0, off the grid
    assert not basin_shape(inside, inside ** 2).min_on_edge
    shape = basin_shape(off, off ** 2)
    assert shape.min_on_edge and shape.min_at == (pytest.approx(0.1),)
    xx, yy = np.meshgrid(inside, inside, indexing="ij")
    tilted = basin_shape(inside, xx ** 2 + (yy - 1.5) ** 2, inside)  # lowest on the y = 1 edge
    assert tilted.min_on_edge and tilted.min_at == (pytest.approx(0.0), pytest.approx(1.0))
    flat = basin_shape(inside, np.zeros_like(inside))  # ties with the interior: no warning
    assert not flat.min_on_edge
    out = json.loads(json.dumps(shape.to_dict()))
    assert out["min_on_edge"] is True and out["min_at"] == [pytest.approx(0.1)]


@pytest.mark.parametrize("points,resolved", [(5, False), (81, True)])
def test_basin_shape_flags_a_width_below_two_grid_steps(points, resolved):
    x = np.linspace(-0.5, 0.5, points)
    xx, yy = np.meshgrid(x, x, indexing="ij")
    shape = basin_shape(x, 4 * (xx ** 2 + yy ** 2), x)  # true width 2 sqrt(0.1 / 4) = 0.32
    step = 1.0 / (points - 1)
    assert shape.grid_steps == (pytest.approx(step), pytest.approx(step))
    assert shape.width_resolved is resolved
    assert (shape.width >= 2 * step) is resolved


def test_surface_shape_refuses_an_accuracy():
    from landscape.surface import Surface

    x = np.linspace(-1, 1, 21)
    surf = Surface(x=x, y=None, metrics={"test_loss": x ** 2, "test_acc": 0.9 - x ** 2},
                   done=np.ones(x.shape, dtype=bool))
    assert surface_shape(surf, "test_loss").label == "V"
    with pytest.raises(LandscapeError, match="accuracy.*use test_loss"):
        surface_shape(surf, "test_acc")


def _three_wells(x, y, reach=0.0):
    """Three Gaussian wells (bottom 0, plateau 2) at the corners of a triangle, plus a wall
    ``reach * r^4`` that only matters far from them."""
    xx, yy = np.meshgrid(x, y, indexing="ij")
    centres = ((0.0, 0.0), (1.0, 0.0), (0.5, 0.9))
    wells = sum(np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 0.15 ** 2)) for cx, cy in centres)
    r2 = (xx - 0.5) ** 2 + (yy - 0.3) ** 2
    return 2.0 * (1.0 - np.clip(wells, 0, 1)) + reach * r2 ** 2


def test_three_wells_give_three_basins_whatever_the_grid_reaches():
    near = np.linspace(-0.4, 1.4, 37)
    far = np.linspace(-4.0, 5.0, 181)
    small = basin_shape(near, _three_wells(near, near), near)
    big_vals = _three_wells(far, far, reach=1.0)
    big = basin_shape(far, big_vals, far)
    assert small.n_basins == big.n_basins == 3 and big.label == "W"
    assert sorted(round(m[0][0], 1) for m in big.minima) == [0.0, 0.5, 1.0]
    # Barriers: each of the two shallower basins joins a deeper one over the plateau (2).
    assert len(big.barriers) == 2
    assert all(1.5 < saddle <= 2.0 + 1e-9 for _, saddle in big.barriers)
    assert big.rule == "depth >= 1 x (value + 0.05)"
    # The old rule, 5% of the whole range, hides them once the grid reaches far enough.
    old = 0.05 * (np.nanmax(big_vals) - np.nanmin(big_vals))
    assert basin_shape(far, big_vals, far, threshold=old).n_basins == 1


def test_relative_rule_ignores_ripples_on_a_high_plateau():
    # A V whose walls carry ripples of 0.3 at loss ~ 5: basins a person would not see there,
    # while the same ripple depth near the bottom (loss ~ 0.01) is a real second basin.
    x = np.linspace(-1, 1, 401)
    v = 10 * np.abs(x) + 0.3 * (np.abs(x) > 0.4) * np.sin(40 * x) ** 2
    assert basin_shape(x, v).n_basins == 1
    assert basin_shape(x, v, threshold=0.01).n_basins > 5  # the ripples are local minima
    w = np.minimum(10 * np.abs(x + 0.3), 10 * np.abs(x - 0.3)) + 0.01
    shape = basin_shape(x, w)
    assert shape.n_basins == 2 and shape.barriers[0][1] == pytest.approx(3.01, abs=0.03)
    assert "absolute" in basin_shape(x, w, threshold=0.5).rule
