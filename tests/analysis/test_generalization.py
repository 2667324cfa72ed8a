"""PAC-Bayes flatness on a quadratic with a known answer; rank statistics on constructed tables."""
import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from landscape.errors import LandscapeError
from landscape.generalization import (bootstrap_interval, correlations, granulated_tau,
                                      kendall_tau, pacbayes_flatness)

from closed_forms import mean_output

D, CURV, BOUND = 20000, 3.0, 0.1
DATA = (torch.zeros(4, 1), torch.zeros(4))


class Isotropic(nn.Module):
    """Outputs 0.5 a |theta|^2 for every example (theta of D entries)."""

    def __init__(self, theta: torch.Tensor) -> None:
        super().__init__()
        self.theta = nn.Parameter(theta.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (0.5 * CURV * self.theta.pow(2).sum()).expand(x.shape[0], 1)


def _flatness(theta, model=None, **kw):
    return pacbayes_flatness(model or Isotropic(theta), DATA, loss=mean_output, bound=BOUND,
                             samples=8, iterations=30, **kw)


def test_pacbayes_sigma_on_a_quadratic():
    # E L(w + sigma z) - L(w) = 0.5 a sigma^2 D (antithetic pairs: exactly 0.5 a |u|^2 each),
    # so sigma* = sqrt(2 bound / (a D)). Monte Carlo: mean |z|^2 / D over 8 draws has a relative
    # sd of sqrt(2 / (8 D)) = 0.35%, i.e. 0.18% on sigma; tolerance 1%.
    expected = math.sqrt(2 * BOUND / (CURV * D))
    theta = torch.linspace(-1, 1, D, dtype=torch.float64)  # away from the minimum
    model = Isotropic(theta)
    res = _flatness(theta, model)
    assert res.sigma == pytest.approx(expected, rel=0.01)
    assert res.flatness == pytest.approx(1 / res.sigma ** 2)
    assert res.deviation <= BOUND and not res.at_limit
    assert torch.equal(model.theta.detach(), theta)  # the weights are untouched
    assert res.sigma != pytest.approx(expected * 1.05, rel=0.01)


def test_magnitude_aware_pacbayes_sigma_on_a_quadratic():
    # Noise variance sigma^2 w^2 + eps^2 with |w_i| = m: deviation 0.5 a D (sigma^2 m^2 + eps^2),
    # sigma* = sqrt(2 bound / (a D) - eps^2) / m.
    m, eps = 0.2, 1e-3
    theta = m * torch.where(torch.arange(D) % 2 == 0, 1.0, -1.0).double()
    expected = math.sqrt(2 * BOUND / (CURV * D) - eps ** 2) / m
    res = _flatness(theta, magnitude_aware=True, eps=eps)
    assert res.sigma == pytest.approx(expected, rel=0.01)
    # a larger weight scale tolerates proportionally less relative noise
    assert _flatness(2 * theta, magnitude_aware=True, eps=eps).sigma == \
        pytest.approx(expected / 2, rel=0.01)


def test_pacbayes_limits_and_bad_bound():
    theta = torch.ones(10, dtype=torch.float64)
    res = _flatness(theta, lo=1e-9, hi=1e-6)  # every sigma in the bracket is within the bound
    assert res.at_limit and res.sigma == 1e-6
    with pytest.raises(LandscapeError, match="bound must be positive"):
        pacbayes_flatness(Isotropic(theta), DATA, loss=mean_output, bound=0.0)


def _table():
    """Axes a in {1, 2, 3}, b in {1, 2}: measure 10 a + b, gap 10 a - b."""
    settings = [{"a": a, "b": b} for a in (1, 2, 3) for b in (1, 2)]
    measure = [10 * s["a"] + s["b"] for s in settings]
    gap = [10 * s["a"] - s["b"] for s in settings]
    return settings, measure, gap


def test_granulated_tau_on_a_constructed_table():
    # Within axis a (b fixed) the measure and the gap both rise: tau 1 in each of 2 groups.
    # Within axis b (a fixed) the measure rises and the gap falls: tau -1 in each of 3 groups.
    # Granulated: (1 + -1) / 2 = 0. Overall: of 15 pairs, the 3 with equal a are discordant,
    # tau = (12 - 3) / 15 = 0.6.
    settings, measure, gap = _table()
    res = granulated_tau(settings, measure, gap, ["a", "b"])
    assert res.per_axis == {"a": 1.0, "b": -1.0} and res.groups == {"a": 2, "b": 3}
    assert res.value == 0.0
    assert kendall_tau(measure, gap) == pytest.approx(0.6)
    # one axis alone: its own mean
    assert granulated_tau(settings, measure, gap, ["a"]).value == 1.0


def test_granulated_tau_holds_seeds_fixed_and_skips_undefined_groups():
    settings = [{"lr": lr, "seed": s} for lr in (0.1, 0.2, 0.4) for s in (0, 1)]
    measure = [s["lr"] * (1 if s["seed"] == 0 else -1) for s in settings]
    gap = [s["lr"] for s in settings]
    res = granulated_tau(settings, measure, gap, ["lr"])
    assert res.per_axis == {"lr": 0.0} and res.groups == {"lr": 2}
    res = granulated_tau(settings, [1.0] * 6, gap, ["lr"])  # constant measure: undefined
    assert math.isnan(res.value) and res.per_axis == {}


def test_kendall_tau_matches_scipy_and_drops_non_finite_runs():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=20), rng.normal(size=20)
    assert kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y).statistic)
    x[4], y[7] = np.nan, np.inf
    keep = np.isfinite(x) & np.isfinite(y)
    assert kendall_tau(x, y) == pytest.approx(stats.kendalltau(x[keep], y[keep]).statistic)
    assert kendall_tau([1, 2], [4, 3]) == -1.0 and math.isnan(kendall_tau([1], [3]))
    assert math.isnan(kendall_tau([1, 2, 3], [5, 5, 5]))


def test_bootstrap_interval():
    x = np.arange(12.0)
    assert bootstrap_interval(x, 2 * x, resamples=200) == pytest.approx((1.0, 1.0), abs=1e-12)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=40), rng.normal(size=40)
    low, high = bootstrap_interval(a, b, resamples=300, seed=1)
    assert low < kendall_tau(a, b) < high and low < 0 < high
    assert bootstrap_interval(a, b, resamples=300, seed=1) == (low, high)  # seeded


def test_correlations_of_runs():
    settings, measure, gap = _table()
    runs = [{"settings": {"lr": s["a"] / 10, "b": s["b"]}, "measures": {"m": m, "n": -m},
             "generalization_gap": g} for s, m, g in zip(settings, measure, gap)]
    table = correlations(runs, ["m", "n"], ["lr", "b"], resamples=100)
    assert table["m"]["kendall_tau"] == pytest.approx(0.6)
    assert table["n"]["kendall_tau"] == pytest.approx(-0.6)
    assert table["m"]["granulated_tau"] == 0.0 and table["m"]["runs"] == 6
    assert table["m"]["per_axis"] == {"lr": 1.0, "b": -1.0}
    # lr = a / 10: the measure orders the lrs perfectly except for ties in lr (tau-b)
    assert table["m"]["tau_vs_lr"] == pytest.approx(stats.kendalltau(
        measure, [s["a"] for s in settings]).statistic)
    low, high = table["m"]["interval"]
    assert low <= 0.6 <= high
