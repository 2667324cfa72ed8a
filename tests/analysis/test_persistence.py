"""0-dimensional persistence against a brute-force sweep (connected components of every
sublevel set, labelled from scratch) and against analytic wells whose saddles are known."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from landscape.errors import LandscapeError
from landscape.persistence import persistence_diagram, persistence_pairs
from landscape.shape import basin_minima, basin_shape


def brute_force_pairs(values: np.ndarray) -> dict:
    """``{minimum: (birth, saddle, death)}`` by labelling the components of the sublevel set
    ``{rank <= r}`` anew for every r (4-neighbour components; NaN never enters). A minimum is
    a point with no lower-ranked finite neighbour; it dies at the first r whose component of
    it holds a point ranked before it. Pairs of zero persistence are left out."""
    finite = np.isfinite(values)
    order = np.argsort(np.where(finite, values, np.inf), axis=None, kind="stable")
    rank = np.empty(values.size, dtype=np.int64)
    rank[order] = np.arange(values.size)
    rank = rank.reshape(values.shape)
    alive = {}
    for idx in zip(*np.nonzero(finite)):
        lower = [rank[n] < rank[idx] for n in _grid_neighbours(idx, values.shape) if finite[n]]
        if not any(lower):
            alive[tuple(int(i) for i in idx)] = None
    out = {}
    for r in range(int(finite.sum())):
        labels, _ = ndimage.label(finite & (rank <= r))
        saddle = tuple(int(i) for i in np.unravel_index(order[r], values.shape))
        for m in [m for m in alive if rank[m] <= r]:
            component = labels == labels[m]
            if rank[component].min() < rank[m]:
                del alive[m]
                out[m] = (float(values[m]), saddle, float(values[saddle]))
    for m in alive:
        out[m] = (float(values[m]), None, math.inf)
    return {m: v for m, v in out.items() if v[2] > v[0]}


def _grid_neighbours(idx, shape):
    for axis in range(len(shape)):
        for step in (-1, 1):
            n = list(idx)
            n[axis] += step
            if 0 <= n[axis] < shape[axis]:
                yield tuple(n)


def _as_dict(pairs):
    return {p.minimum: (p.birth, p.saddle, p.death) for p in pairs}


@pytest.mark.parametrize("seed", range(50))
def test_pairs_equal_brute_force_on_random_arrays(seed):
    # Random shapes; every fifth array has integer values (ties, plateaus) and every third
    # some NaN walls: the (value, index) order decides ties in both computations.
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in rng.integers(3, 13, size=2))
    values = rng.integers(0, 4, shape).astype(float) if seed % 5 == 0 else rng.normal(size=shape)
    if seed % 3 == 0:
        values[rng.random(shape) < 0.15] = np.nan
    pairs = persistence_pairs(values)
    assert _as_dict(pairs) == brute_force_pairs(values)
    assert len(pairs) == len(_as_dict(pairs))
    for p in pairs:  # the older minimum is lower in the order and in the merged component
        if p.into is not None:
            assert (values[p.into], np.ravel_multi_index(p.into, shape)) < \
                (values[p.minimum], np.ravel_multi_index(p.minimum, shape))
            assert values[p.into] <= p.death


def test_random_1d_arrays_equal_brute_force():
    for seed in range(10):
        values = np.random.default_rng(100 + seed).normal(size=30)
        assert _as_dict(persistence_pairs(values)) == brute_force_pairs(values)


def test_pairs_agree_with_basin_minima_and_shape_barriers():
    rng = np.random.default_rng(7)
    values = rng.normal(size=(15, 11))
    pairs = persistence_pairs(values)
    depths = {m: d for m, _v, d in basin_minima(values) if d > 0}
    assert {p.minimum: p.depth for p in pairs} == depths
    x, y = np.arange(15.0), np.arange(11.0)
    shape = basin_shape(x, values, y, threshold=0.5)
    diagram = persistence_diagram(x, values, y, threshold=0.5)
    saddles = [(tuple(diagram.at(p.minimum)), p.death)
               for p, b in zip(diagram.pairs, diagram.basins) if b and p.saddle is not None]
    assert [at for at, _ in saddles] == [at for at, _ in shape.barriers]
    assert [s for _, s in saddles] == pytest.approx([s for _, s in shape.barriers], abs=1e-12)
    assert sum(diagram.basins) == shape.n_basins


def test_double_well_saddle_at_the_origin():
    # f = (x^2 - 1)^2 + y^2: minima (+-1, 0) of value 0; the pass between them is (0, 0) at
    # value 1, where the younger well (the later one on an exact tie: +1) dies.
    g = np.linspace(-2, 2, 41)
    y = np.linspace(-1, 1, 21)
    xx, yy = np.meshgrid(g, y, indexing="ij")
    diagram = persistence_diagram(g, (xx ** 2 - 1) ** 2 + yy ** 2, y)
    assert len(diagram.pairs) == 2 and diagram.basins == (True, True)
    deep, young = diagram.pairs
    assert diagram.at(deep.minimum) == pytest.approx([-1.0, 0.0], abs=1e-12)
    assert deep.saddle is None and deep.depth == pytest.approx(9.0 + 1.0, abs=1e-12)
    assert diagram.at(young.minimum) == pytest.approx([1.0, 0.0], abs=1e-12)
    assert diagram.at(young.saddle) == pytest.approx([0.0, 0.0], abs=1e-12)
    assert young.death == pytest.approx(1.0, abs=1e-12)
    assert diagram.at(young.into) == diagram.at(deep.minimum)
    assert diagram.roughness == 0.0


def test_three_wells_merge_in_order_of_their_saddles():
    # Wells of depth 0, 0.2 and 0.5 at x = -2, 0, 2 on a curve made of parabolas: the shallow
    # right well meets the middle one at the crest x = 1, the middle one the left at x = -1.
    x = np.linspace(-3, 3, 601)
    wells = [(-2.0, 0.0), (0.0, 0.2), (2.0, 0.5)]
    f = np.min([2 * (x - c) ** 2 + v for c, v in wells], axis=0)
    pairs = persistence_diagram(x, f, threshold=0.1).pairs
    at = lambda i: float(x[i[0]])  # noqa: E731
    assert [at(p.minimum) for p in pairs] == pytest.approx([-2.0, 0.0, 2.0], abs=1e-12)
    # The crests: 2 (x + 2)^2 = 2 x^2 + 0.2 at x = -0.975; 2 x^2 + 0.2 = 2 (x - 2)^2 + 0.5 at
    # x = 1.0375. In 1-D the saddle is the highest sample between the wells: within one grid
    # step (0.01) of the crest, its value within slope (4.1) x step of the crest's.
    assert at(pairs[1].saddle) == pytest.approx(-0.975, abs=0.01)
    assert pairs[1].death == pytest.approx(2 * 1.025 ** 2, abs=0.041)
    assert at(pairs[2].saddle) == pytest.approx(1.0375, abs=0.01)
    # By then (2.35) the middle well has joined the left one (at 2.10): the right well merges
    # into the oldest minimum of that component, the left one.
    assert pairs[2].death > pairs[1].death
    assert at(pairs[2].into) == at(pairs[1].into) == pytest.approx(-2.0, abs=1e-12)


def test_roughness_separates_funnel_from_rugged_plateau():
    g = np.linspace(-1, 1, 41)
    xx, yy = np.meshgrid(g, g, indexing="ij")
    funnel = persistence_diagram(g, xx ** 2 + yy ** 2, g)
    noise = np.random.default_rng(3).uniform(-0.01, 0.01, xx.shape)
    plateau = persistence_diagram(g, 2.0 + noise, g)
    noisy_funnel = persistence_diagram(g, xx ** 2 + yy ** 2 + noise, g)
    assert funnel.roughness == 0.0 and len(funnel.pairs) == 1
    # The plateau's relief (0.02) is below the rule even for its deepest minimum: no basin
    # ("flat"), and all of its persistence is noise.
    assert plateau.roughness == 1.0 and sum(plateau.basins) == 0
    assert basin_shape(g, 2.0 + noise, g).label == "flat"
    # the same noise on a funnel of range 2 adds a few minima that carry little of its relief
    assert len(noisy_funnel.pairs) > 1 and 0 < noisy_funnel.roughness < 0.01
    # roughness is the shallow minima's share of the summed depths
    total = sum(p.depth for p in plateau.pairs)
    assert plateau.roughness == pytest.approx(plateau.noise_persistence / total, rel=1e-12)


def test_diagram_json_lists_saddles_and_nulls():
    g = np.linspace(-2, 2, 41)
    f = (g ** 2 - 1) ** 2
    out = persistence_diagram(g, f).to_dict()
    assert out["ndim"] == 1 and out["n_pairs"] == 2 and out["n_basins"] == 2
    first, second = out["pairs"]
    assert first["death"] is None and first["saddle"] is None and first["merges_into"] is None
    assert second["saddle"]["at"] == pytest.approx([0.0], abs=1e-12)
    assert second["persistence"] == pytest.approx(1.0, abs=1e-12)


def test_bad_input_is_refused():
    with pytest.raises(LandscapeError, match="1-D or 2-D"):
        persistence_pairs(np.zeros((3, 3, 3)))
    with pytest.raises(LandscapeError, match="no finite values"):
        persistence_diagram(np.arange(3.0), np.full(3, np.nan))
    with pytest.raises(LandscapeError, match="shape"):
        persistence_diagram(np.arange(3.0), np.zeros(4))
