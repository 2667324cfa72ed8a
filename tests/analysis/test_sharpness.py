"""Sharpness measures against closed forms on quadratic losses, and the rescaling check."""
from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from landscape.errors import LandscapeError
from landscape.models import build_model
from landscape.sharpness import (adaptive_sharpness, average_sharpness, epsilon_sharpness,
                                 keskar_value, measure_sharpness, random_subspace,
                                 relu_layer_pairs, reparametrization_report,
                                 rescale_relu_layers)


class Quadratic(nn.Module):
    """Loss 1/2 w^T diag(a) w + b^T w, emitted once per example (mean = the quadratic)."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor, w: torch.Tensor):
        super().__init__()
        self.register_buffer("a", a)
        self.register_buffer("b", b)
        self.w = nn.Parameter(w.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value = 0.5 * (self.a * self.w ** 2).sum() + (self.b * self.w).sum()
        return value.expand(len(x))


def mean_output(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return out.mean()


A = torch.tensor([3.0, 0.5, 1.5, 2.0, 0.25, 1.0], dtype=torch.float64)
B = torch.tensor([0.3, -0.2, 0.1, -0.4, 0.05, 0.2], dtype=torch.float64)
DATA = (torch.zeros(5, 1, dtype=torch.float64), torch.zeros(5, dtype=torch.long))


def quad(w) -> Quadratic:
    return Quadratic(A, B, torch.as_tensor(w, dtype=torch.float64))


def f(w: torch.Tensor) -> float:
    return float(0.5 * (A * w ** 2).sum() + (B * w).sum())


W_AWAY = torch.tensor([0.7, -1.2, 0.4, 2.0, -0.3, 0.9], dtype=torch.float64)
W_MIN = -B / A


# For the adaptive closed forms: a minimum w* whose T A T has a clear top eigenvalue
# (m = a (|w*| + eta)^2 = 2.04, then 0.37 at most), so projected ascent converges fast.
A2 = torch.tensor([2.0, 1.0, 3.0, 0.5, 4.0, 1.0], dtype=torch.float64)
W2 = torch.tensor([1.0, -0.5, 0.3, 0.8, -0.2, 0.6], dtype=torch.float64)


def quad_min() -> Quadratic:
    return Quadratic(A2, -A2 * W2, W2)


# ----------------------------------------------------------------------------- Keskar

@pytest.mark.parametrize("eps", [1e-3, 5e-4, 0.05])
def test_keskar_box_maximum_is_the_closed_form_corner(eps):
    # Separable convex quadratic: max over |z_i| <= r_i is at z_i = sign(g_i) r_i, so
    # max = f(x) + sum |g_i| r_i + a_i r_i^2 / 2 exactly; L-BFGS-B projects onto the bounds,
    # so the corner is hit to rounding (tolerance 1e-12 relative).
    model = quad(W_AWAY)
    res = epsilon_sharpness(model, DATA, eps, loss=mean_output)
    g = A * W_AWAY + B
    r = eps * (W_AWAY.abs() + 1)
    exact = f(W_AWAY) + float((g.abs() * r + 0.5 * A * r ** 2).sum())
    assert res.base_loss == pytest.approx(f(W_AWAY), rel=1e-14)
    assert res.max_loss == pytest.approx(exact, rel=1e-12)
    assert res.value == pytest.approx(100 * (exact - f(W_AWAY)) / (1 + f(W_AWAY)), rel=1e-10)
    assert res.subspace_dim == 0 and res.evaluations >= 2 and res.iterations >= 1


def test_keskar_at_an_exact_minimum_needs_the_random_start():
    # Zero gradient at x: from x itself there is no ascent direction; from a random point
    # of the box every coordinate climbs to a corner: max = f* + sum a_i r_i^2 / 2.
    eps = 1e-2
    r = eps * (W_MIN.abs() + 1)
    exact = f(W_MIN) + float((0.5 * A * r ** 2).sum())
    stuck = epsilon_sharpness(quad(W_MIN), DATA, eps, loss=mean_output)
    found = epsilon_sharpness(quad(W_MIN), DATA, eps, loss=mean_output, random_start=True)
    assert stuck.value == pytest.approx(0.0, abs=1e-12)
    assert found.max_loss == pytest.approx(exact, rel=1e-12)


def test_keskar_subspace_of_dimension_one_is_the_closed_form():
    # p = 1: maximize f(x + A y) over |y| <= eps (|A^+ x| + 1), a 1-D convex quadratic with
    # slope A^T g and curvature A^T diag(a) A: the max is at an end, in closed form.
    eps, seed = 0.02, 3
    res = epsilon_sharpness(quad(W_AWAY), DATA, eps, loss=mean_output, subspace_dim=1,
                            seed=seed)
    a = random_subspace(len(W_AWAY), 1, seed)[:, 0]
    r = eps * (abs(float(a @ W_AWAY) / float(a @ a)) + 1)
    slope, curv = float(a @ (A * W_AWAY + B)), float(a @ (A * a))
    exact = f(W_AWAY) + abs(slope) * r + 0.5 * curv * r ** 2
    assert res.max_loss == pytest.approx(exact, rel=1e-12)
    assert res.subspace_dim == 1


def test_keskar_seeded_and_leaves_the_model_alone(tiny):
    model, data = tiny
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    one = epsilon_sharpness(model, data, 1e-3, subspace_dim=5, seed=1)
    two = epsilon_sharpness(model, data, 1e-3, subspace_dim=5, seed=1)
    other = epsilon_sharpness(model, data, 1e-3, subspace_dim=5, seed=2)
    assert model.training  # mode restored
    model.eval()
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert one.value == two.value and one.max_loss == two.max_loss
    assert one.value != other.value
    assert one.max_loss > one.base_loss  # a trained ReLU net is not flat in every direction


def test_keskar_value_formula():
    assert keskar_value(1.5, 0.5) == pytest.approx(100 * 1.0 / 1.5)


@pytest.mark.parametrize("kwargs", [dict(eps=0.0), dict(eps=-1e-3), dict(subspace_dim=-1),
                                    dict(maxiter=0)])
def test_keskar_bad_input(kwargs):
    kwargs = {"eps": 1e-3, **kwargs}
    with pytest.raises(LandscapeError):
        epsilon_sharpness(quad(W_AWAY), DATA, loss=mean_output, **kwargs)


def test_keskar_subspace_at_most_the_number_of_weights():
    # six weights: p = 6 is the whole space, p = 7 is refused before the data is touched
    # (``None`` as data would fail at once if the objective were built).
    full = epsilon_sharpness(quad(W_AWAY), DATA, 1e-3, loss=mean_output, subspace_dim=6)
    assert full.subspace_dim == 6
    for call in (lambda: epsilon_sharpness(quad(W_AWAY), None, 1e-3, subspace_dim=7),
                 lambda: measure_sharpness(quad(W_AWAY), None, subspace_dim=7)):
        with pytest.raises(LandscapeError, match=r"at most the number of parameters \(6\), "
                                                 r"got 7"):
            call()


# ----------------------------------------------------------------------------- adaptive

def test_adaptive_l2_is_rho_squared_top_eigenvalue_over_two():
    # At a minimum of a quadratic, f(w + t*u) - f(w) = u^T (T A T) u / 2, whose max over
    # ||u||_2 <= rho is rho^2 lambda_max(T A T) / 2. T A T is diagonal here; the ascent acts
    # like a power iteration gaining a factor >= 1.6 per step on the top component: 40 steps,
    # tolerance 1e-9 relative.
    rho, eta = 0.3, 0.01
    res = adaptive_sharpness(quad_min(), DATA, rho, p=2, eta=eta, steps=40,
                             loss=mean_output)
    m = A2 * (W2.abs() + eta) ** 2
    exact = rho ** 2 * float(m.max()) / 2
    assert res.value == pytest.approx(exact, rel=1e-9)
    assert res.value <= exact * (1 + 1e-12)  # a maximum over the ball is never exceeded


def test_adaptive_linf_is_the_corner():
    # Over ||u||_inf <= rho the max of sum m_i u_i^2 / 2 is at any corner: rho^2 sum m_i / 2.
    rho, eta = 0.2, 0.05
    res = adaptive_sharpness(quad_min(), DATA, rho, p="inf", eta=eta, steps=3,
                             loss=mean_output)
    exact = rho ** 2 * float((A2 * (W2.abs() + eta) ** 2).sum()) / 2
    assert res.value == pytest.approx(exact, rel=1e-12)
    assert res.p == "inf"


def test_average_sharpness_matches_the_expectation():
    # E[u^T M u / 2] with u ~ N(0, rho^2 I) is rho^2 tr(M) / 2; 400 seeded draws must land
    # within 4 standard errors, and the standard error must be below 10% of the mean.
    rho, eta = 0.3, 0.01
    res = average_sharpness(quad_min(), DATA, rho, eta=eta, samples=400, seed=5,
                            loss=mean_output)
    exact = rho ** 2 * float((A2 * (W2.abs() + eta) ** 2).sum()) / 2
    assert abs(res.mean - exact) < 4 * res.stderr
    assert res.stderr < 0.1 * exact
    assert len(res.increases) == 400 and min(res.increases) >= 0


def test_adaptive_seeded(tiny):
    model, data = tiny
    one = adaptive_sharpness(model, data, 0.05, steps=3, seed=4)
    two = adaptive_sharpness(model, data, 0.05, steps=3, seed=4)
    avg1 = average_sharpness(model, data, 0.05, samples=3, seed=4)
    avg2 = average_sharpness(model, data, 0.05, samples=3, seed=4)
    avg3 = average_sharpness(model, data, 0.05, samples=3, seed=5)
    assert one.value == two.value
    assert avg1.increases == avg2.increases and avg1.increases != avg3.increases


@pytest.mark.parametrize("call", [
    lambda: adaptive_sharpness(quad(W_MIN), DATA, 0.0, loss=mean_output),
    lambda: adaptive_sharpness(quad(W_MIN), DATA, 0.1, p=1, loss=mean_output),
    lambda: adaptive_sharpness(quad(W_MIN), DATA, 0.1, eta=-1.0, loss=mean_output),
    lambda: average_sharpness(quad(W_MIN), DATA, 0.1, samples=1, loss=mean_output),
])
def test_adaptive_bad_input(call):
    with pytest.raises(LandscapeError):
        call()


def test_measure_sharpness_summary(tiny):
    model, data = tiny
    summary = measure_sharpness(model, data, eps=(1e-3, 5e-4), subspace_dim=3, samples=2,
                                maxiter=3, steps=2)
    assert [(e.eps, e.subspace_dim) for e in summary.epsilon] == [
        (1e-3, 0), (1e-3, 3), (5e-4, 0), (5e-4, 3)]
    assert [a.p for a in summary.adaptive] == ["2", "inf"]
    assert summary.average.samples == 2
    assert summary.base_loss == summary.epsilon[0].base_loss
    text = json.dumps(summary.to_dict())
    assert json.loads(text)["epsilon"][1]["subspace_dim"] == 3
    assert len(summary.rows()) == 7


# ----------------------------------------------------------------------------- rescaling

def test_relu_layer_pairs():
    mlp = build_model("mlp", input_shape=(40,), num_classes=10, width=8)
    cnn = build_model("cnn1d", input_shape=(40,), num_classes=10, channels=4)
    bn = build_model("mlp", input_shape=(40,), num_classes=10, width=8, batchnorm=True)
    assert relu_layer_pairs(mlp) == [("1", "3"), ("3", "5")]
    assert relu_layer_pairs(cnn) == [("1", "3"), ("3", "5"), ("5", "8")]
    assert relu_layer_pairs(bn) == []  # BatchNorm in eval mode is not homogeneous


@pytest.mark.parametrize("name,pair", [("mlp", ("1", "3")), ("cnn1d", ("5", "8"))])
def test_rescaling_keeps_the_function(name, pair):
    model = build_model(name, input_shape=(40,), num_classes=10, seed=1).double().eval()
    x = torch.randn(16, 40, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    before = model(x).detach()
    w_a = dict(model.named_modules())[pair[0]].weight.detach().clone()
    rescale_relu_layers(model, *pair, 7.5)
    assert torch.allclose(dict(model.named_modules())[pair[0]].weight, 7.5 * w_a, rtol=1e-15)
    assert torch.allclose(model(x), before, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("args", [("1", "3", 0.0), ("1", "3", -2.0), ("1", "5", 2.0),
                                  ("3", "1", 2.0), ("0", "1", 2.0)])
def test_rescaling_bad_input(args):
    model = build_model("mlp", input_shape=(40,), num_classes=10, width=8)
    with pytest.raises(LandscapeError):
        rescale_relu_layers(model, *args)


def test_reparametrization_report(tiny):
    """Rescaling by 10 across a ReLU: the function, the loss, the filter-normalized curve and
    eta = 0 adaptive sharpness stay (float64: relative 1e-9); the raw top Hessian eigenvalue
    (checked against a dense Hessian) and Keskar sharpness change."""
    from landscape.hessian import dense_hessian

    model, data = tiny
    state = {k: v.clone() for k, v in model.state_dict().items()}
    report = reparametrization_report(model, data, 10.0, steps=5, maxiter=5)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k])  # the report rescales a copy
    assert (report.layer_a, report.layer_b) == ("1", "3")
    assert report.output_max_abs_diff < 1e-12
    for name in ("loss", "adaptive_sharpness_eta0", "filter_normalized_curve_max"):
        assert report.measure(name).relative_change < 1e-9, name
    scaled = rescale_relu_layers(copy.deepcopy(model), "1", "3", 10.0)
    dense = [float(torch.linalg.eigvalsh(dense_hessian(m, data))[-1]) for m in (model, scaled)]
    top = report.measure("top_hessian_eigenvalue")
    assert top.before == pytest.approx(dense[0], rel=1e-6)
    assert top.after == pytest.approx(dense[1], rel=1e-6)
    assert top.relative_change > 1.0
    # Invariant measures agree to 1e-9; Keskar's box eps (|w| + 1) is not scale-aware, so it
    # moves by far more than rounding (0.33 measured here; 0.1 demanded).
    assert report.measure("epsilon_sharpness").relative_change > 0.1
    assert not report.measure("epsilon_sharpness").invariant
    json.dumps(report.to_dict())
