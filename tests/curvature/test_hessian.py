"""Curvature against exact references: dense Hessians of tiny float64 models (torch.func.hessian
+ torch.linalg.eigh) and quadratic losses whose Hessian is known in closed form."""
from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from landscape import hessian as hs
from landscape.data import DataBundle
from landscape.errors import LandscapeError
from landscape.models import build_model

N, FEATURES, CLASSES = 96, 12, 3


# ----------------------------------------------------------------------------- fixtures

def _data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(N, FEATURES, generator=gen, dtype=torch.float64)
    y = (x[:, :3].sum(1) > 0).long() + (x[:, 3] > 0.5).long()  # learnable, 3 classes
    return x, y


def _trained(name: str, steps: int = 150, **options) -> nn.Module:
    """A tiny float64 model after a few full-batch steps (an outlier-shaped spectrum)."""
    x, y = _data()
    model = build_model(name, input_shape=(FEATURES,), num_classes=CLASSES, seed=0,
                        **options).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


MODELS = {
    "mlp-tanh": lambda: _trained("mlp", width=10, depth=2, activation="tanh"),
    "mlp-relu": lambda: _trained("mlp", width=10, depth=2, activation="relu"),
    "cnn-bn": lambda: _trained("cnn1d", steps=60, channels=4, batchnorm=True),
}


@pytest.fixture(scope="module")
def data():
    return _data()


@pytest.fixture(scope="module", params=list(MODELS))
def case(request, data):
    """(model, dense Hessian, eigenvalues) for each tiny model."""
    model = MODELS[request.param]()
    h = exact_hessian(model, *data)
    return model, h, torch.linalg.eigvalsh(h).numpy()


@pytest.fixture(scope="module")
def tanh_case(data):
    model = MODELS["mlp-tanh"]()
    h = exact_hessian(model, *data)
    return model, h, torch.linalg.eigvalsh(h).numpy()


def exact_hessian(model: nn.Module, x, y, loss=nn.functional.cross_entropy) -> torch.Tensor:
    """Reference written independently of landscape.hessian: torch.func.hessian of the loss
    as a function of the flat trainable parameters (eval mode)."""
    train = False
    shell = copy.deepcopy(model).train(train)
    names = [n for n, p in shell.named_parameters() if p.requires_grad]
    params = dict(shell.named_parameters())
    shapes = [params[n].shape for n in names]
    sizes = [params[n].numel() for n in names]
    flat0 = torch.cat([params[n].detach().reshape(-1) for n in names])
    buffers = {n: b.clone() for n, b in shell.named_buffers()}

    def f(flat):
        tensors = {n: t.view(s) for n, t, s in zip(names, flat.split(sizes), shapes)}
        return loss(torch.func.functional_call(shell, {**tensors, **buffers}, (x,)), y)

    return torch.func.hessian(f)(flat0).detach()


def autograd_hessian(model: nn.Module, x, y) -> torch.Tensor:
    """Train-mode reference by plain double backward, one column per unit vector (torch.func's
    second derivatives through batch-statistics BatchNorm are off by ~0.6%, see below)."""
    shell = copy.deepcopy(model).train()
    params = [p for p in shell.parameters() if p.requires_grad]
    grad = torch.autograd.grad(nn.functional.cross_entropy(shell(x), y), params,
                               create_graph=True)
    flat = torch.cat([g.reshape(-1) for g in grad])
    rows = [torch.cat([r.reshape(-1) for r in torch.autograd.grad(flat[i], params,
                                                                   retain_graph=True)])
            for i in range(len(flat))]
    return torch.stack(rows).detach()


def snapshot(model: nn.Module) -> dict:
    return {"state": {k: v.clone() for k, v in model.state_dict().items()},
            "training": [m.training for m in model.modules()],
            "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()]}


def assert_unchanged(model: nn.Module, before: dict) -> None:
    after = model.state_dict()
    for k, v in before["state"].items():
        assert torch.equal(after[k], v), k
    assert [m.training for m in model.modules()] == before["training"]
    for p, g in zip(model.parameters(), before["grads"]):
        assert (p.grad is None and g is None) or torch.equal(p.grad, g)


def rel(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b)) / np.abs(np.asarray(b))))


# ----------------------------------------------------------------------------- products

@pytest.mark.parametrize("hvp", hs.HVP_METHODS)
def test_products_match_dense_hessian(case, data, hvp):
    model, h, _ = case
    op = hs.HessianOperator(model, data, hvp=hvp)
    v = torch.randn(op.n_params, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    hv = op.hvp(v)
    assert torch.linalg.norm(hv - h @ v) <= 1e-12 * torch.linalg.norm(h @ v)
    assert op.n_products == 1


def test_unequal_chunks_give_the_same_product(tanh_case, data):
    model, h, _ = tanh_case
    v = torch.randn(h.shape[0], generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    whole = hs.HessianOperator(model, data, chunk=None).hvp(v)
    for chunk in (25, 7, 50):  # 96 = 25+25+25+21 = 13*7+5 = 50+46
        for cache in (0, hs.GRAPH_CACHE_BYTES):
            part = hs.HessianOperator(model, data, chunk=chunk, graph_cache=cache).hvp(v)
            assert torch.linalg.norm(part - whole) <= 1e-13 * torch.linalg.norm(whole)


def test_graph_kept_and_recomputed_agree(tanh_case, data):
    model, h, _ = tanh_case
    kept = hs.HessianOperator(model, data)
    fresh = hs.HessianOperator(model, data, graph_cache=0)
    v = torch.randn(h.shape[0], generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for _ in range(3):  # the kept graph must survive repeated products
        assert torch.equal(kept.hvp(v), fresh.hvp(v))
    assert kept.hvp_description == "double (graph kept)"
    assert fresh.hvp_description == "double"


def test_linear_operator_view_counts_products(tanh_case, data):
    model, h, _ = tanh_case
    op = hs.HessianOperator(model, data)
    assert op.dtype == np.float64 and op.shape == tuple(h.shape)
    x = np.random.default_rng(0).standard_normal(op.n_params)
    np.testing.assert_allclose(op @ x, h.numpy() @ x, rtol=0, atol=1e-12 * float(h.abs().max()))
    np.testing.assert_allclose(op.rmatvec(x), op.matvec(x), rtol=0, atol=0)
    block = op @ np.stack([x, 2 * x], axis=1)
    np.testing.assert_allclose(block[:, 1], 2 * block[:, 0], rtol=1e-13)
    assert op.n_products == 5


class Point(nn.Module):
    """Outputs its parameter vector for every example, so the loss sees theta directly."""

    def __init__(self, theta: torch.Tensor):
        super().__init__()
        self.theta = nn.Parameter(theta)

    def forward(self, x):
        return self.theta.expand(len(x), len(self.theta))


def rotated(eig, seed):
    """A = Q diag(eig) Q^T for a random rotation Q, the loss 1/2 out^T A out, and the generator
    (left just after drawing Q)."""
    n = len(eig)
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    a = torch.tensor(q @ np.diag(eig) @ q.T)
    return a, (lambda out, _: 0.5 * torch.einsum("bi,ij,bj->b", out, a, out).mean()), rng


def test_quadratic_loss_hessian_is_its_matrix():
    """loss(theta) = 1/2 theta^T A theta - b^T theta has Hessian A, exactly."""
    n = 9
    eig = np.array([-2.0, -0.5, 0.0, 0.25, 1.0, 1.5, 3.0, 4.0, 10.0])
    a, _, rng = rotated(eig, 0)
    b = torch.tensor(rng.standard_normal(n))

    def quadratic(out, _):
        return (0.5 * torch.einsum("bi,ij,bj->b", out, a, out) - out @ b).mean()

    model = Point(torch.tensor(rng.standard_normal(n)))
    data = (torch.zeros(5, 1, dtype=torch.float64), torch.zeros(5))
    op = hs.HessianOperator(model, data, loss=quadratic, chunk=2)
    dense = op @ np.eye(n)
    np.testing.assert_allclose(dense, a.numpy(), rtol=0, atol=1e-14)
    np.testing.assert_allclose(hs.dense_hessian(model, data, loss=quadratic).numpy(), a.numpy(),
                               rtol=0, atol=1e-14)
    res = hs.hessian_eigenvalues(model, data, k=3, which="both", k_smallest=2,
                                 options=hs.HessianOptions(loss=quadratic))
    np.testing.assert_allclose(res.values, eig[[0, 1, 6, 7, 8]], rtol=1e-12, atol=1e-12)


def test_mse_regression_hessian_closed_form():
    """Linear model W x with mean squared error on one-hot targets: H = 2/(NC) (I_C kron X^T X)."""
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(40, 6, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 4, (40,), generator=gen)
    model = nn.Linear(6, 4, bias=False).double()
    expected = 2.0 / (40 * 4) * torch.kron(torch.eye(4, dtype=torch.float64), x.T @ x)
    got = hs.dense_hessian(model, (x, y), loss="mse", chunk=15)
    assert torch.allclose(got, expected, rtol=0, atol=1e-14)
    # Hutch++ is exact once its sketch spans the range of H (here all 24 dimensions)
    tr = hs.hessian_trace(model, (x, y), n_products=75, seed=0,
                          options=hs.HessianOptions(loss="mse"))
    assert tr.estimate == pytest.approx(float(torch.trace(expected)), rel=1e-12)
    assert tr.stderr <= 1e-12 * tr.estimate


# ----------------------------------------------------------------------------- eigenvalues

def test_top5_and_bottom1_match_eigh(case, data):
    model, h, exact = case
    before = snapshot(model)
    res = hs.hessian_eigenvalues(model, data, k=5, which="both", k_smallest=1, tol=1e-10,
                                 bottom_tol=1e-10, return_vectors=True)
    assert_unchanged(model, before)
    assert rel(res.values[1:], exact[-5:]) <= 1e-6
    assert rel(res.values[:1], exact[:1]) <= 1e-6
    assert exact[0] < 0  # the bottom end really is a negative eigenvalue here
    assert np.all(np.diff(res.values) >= 0)
    # residuals reported without extra products agree with ones from the dense Hessian
    direct = np.linalg.norm(h.numpy() @ res.vectors - res.vectors * res.values, axis=0)
    np.testing.assert_allclose(res.residuals, direct, rtol=0, atol=1e-10 * exact[-1])
    assert np.all(res.residuals <= 1e-8 * exact[-1])
    np.testing.assert_allclose(np.linalg.norm(res.vectors, axis=0), 1.0, rtol=1e-12)
    assert res.mode == "eval" and res.converged and res.n_params == h.shape[0]
    assert 0 < res.n_products < h.shape[0] and res.seconds > 0


def test_residuals_without_recorded_products_cost_one_product_each(tanh_case, data,
                                                                    monkeypatch):
    model, h, _ = tanh_case
    free = hs.hessian_eigenvalues(model, data, k=3, tol=1e-10, return_vectors=True)
    monkeypatch.setattr("landscape.curvature.base.RECORD_BYTES", 0)
    paid = hs.hessian_eigenvalues(model, data, k=3, tol=1e-10, return_vectors=True)
    assert paid.n_products == free.n_products + 3
    np.testing.assert_allclose(paid.values, free.values, rtol=1e-14)
    direct = np.linalg.norm(h.numpy() @ paid.vectors - paid.vectors * paid.values, axis=0)
    np.testing.assert_allclose(paid.residuals, direct, rtol=0, atol=1e-12)


def test_largest_smallest_and_bundle_input(tanh_case, data):
    model, _, exact = tanh_case
    bundle = DataBundle(train=data, test=_data(9), num_classes=CLASSES, name="toy")
    top = hs.hessian_eigenvalues(model, bundle, k=3, tol=1e-10)
    assert top.which == "largest" and len(top.values) == 3
    assert rel(top.values, exact[-3:]) <= 1e-6
    low = hs.hessian_eigenvalues(model, data, k=2, which="smallest", tol=1e-10,
                                 bottom_tol=1e-10)
    assert rel(low.values, exact[:2]) <= 1e-6
    test_split = hs.hessian_eigenvalues(model, bundle, k=1, tol=1e-10,
                                        options=hs.HessianOptions(split="test"))
    assert not np.isclose(test_split.values[0], exact[-1])  # another split, another Hessian


def test_power_iteration_baseline(tanh_case, data):
    model, _, exact = tanh_case
    res = hs.hessian_eigenvalues(model, data, k=2, method="power", tol=1e-10, maxiter=3000)
    assert res.method == "power"
    assert rel(res.values, exact[-2:]) <= 1e-4
    assert np.all(res.residuals <= 1e-2 * exact[-1])


def test_smallest_near_zero_converges_thanks_to_the_shift():
    """Smallest eigenvalue exactly 0: a relative stopping rule on H itself could never be met."""
    n = 60
    _, loss, _ = rotated(np.linspace(0.0, 5.0, n), 1)
    res = hs.hessian_eigenvalues(Point(torch.zeros(n, dtype=torch.float64)),
                                 (torch.zeros(1, 1), torch.zeros(1)), k=1, which="smallest",
                                 tol=1e-8, bottom_tol=1e-8, options=hs.HessianOptions(loss=loss))
    assert res.converged and abs(res.values[0]) <= 1e-9
    assert res.n_products <= 400


def test_default_bottom_tolerance_brackets_the_smallest_eigenvalue(case, data):
    """The looser default of the bottom end keeps its promise: the smallest eigenvalue lies in
    [value - BOTTOM_TOL * width, value]; a tight bottom_tol costs more products."""
    model, _, exact = case
    assert hs.BOTTOM_TOL > 1e-6
    width = exact[-1] - exact[0]
    for which in ("smallest", "both"):
        res = hs.hessian_eigenvalues(model, data, k=1, which=which)
        low, r = res.values[0], res.residuals[0]
        assert res.converged and exact[0] < 0
        assert -1e-12 * width <= low - exact[0] <= hs.BOTTOM_TOL * width
        assert r <= hs.BOTTOM_TOL * width * (1 + 1e-9)  # the stopping rule, checked densely
        if which == "both":
            assert rel(res.values[1:], exact[-1:]) <= 1e-6  # the top keeps tol 1e-6
    tight = hs.hessian_eigenvalues(model, data, k=1, which="smallest", bottom_tol=1e-10)
    assert rel(tight.values, exact[:1]) <= 1e-9
    loose = hs.hessian_eigenvalues(model, data, k=1, which="smallest")
    assert loose.n_products < tight.n_products
    # bottom_tol=None follows tol, as before the bottom end had its own tolerance
    same = hs.hessian_eigenvalues(model, data, k=1, which="smallest", tol=1e-10,
                                  bottom_tol=None)
    np.testing.assert_array_equal(same.values, tight.values)


def test_bottom_end_falls_back_to_eigsh_past_its_step_limit(tanh_case, data):
    model, h, exact = tanh_case
    res = hs.hessian_eigenvalues(model, data, k=2, which="smallest", bottom_tol=1e-10,
                                 maxiter=10, return_vectors=True)
    assert res.converged and rel(res.values, exact[:2]) <= 1e-6
    assert res.n_products > 10  # the 10 Lanczos steps were not enough on their own
    direct = np.linalg.norm(h.numpy() @ res.vectors - res.vectors * res.values, axis=0)
    np.testing.assert_allclose(res.residuals, direct, rtol=0, atol=1e-10 * exact[-1])
    with pytest.raises(LandscapeError, match="tolerances"):
        hs.hessian_eigenvalues(model, data, which="smallest", bottom_tol=-1.0)


def test_extreme_eigenvalues_match_eigh(case, data):
    model, _, exact = case
    before = snapshot(model)
    lmax, lmin = hs.extreme_eigenvalues(model, data)
    assert_unchanged(model, before)
    assert isinstance(lmax, float) and isinstance(lmin, float)
    width = exact[-1] - exact[0]
    # a Ritz value with residual r is within r of an eigenvalue; tol bounds r by tol * width
    assert abs(lmax - exact[-1]) <= 1e-3 * width and abs(lmin - exact[0]) <= 1e-3 * width
    tight = hs.extreme_eigenvalues(model, data, tol=1e-9)
    assert rel(tight, [exact[-1], exact[0]]) <= 1e-6


def test_train_mode_batchnorm_matches_its_dense_hessian(data):
    model = MODELS["cnn-bn"]()
    before = snapshot(model)
    h = autograd_hessian(model, *data)
    with pytest.warns(UserWarning, match="BatchNorm"):
        res = hs.hessian_eigenvalues(model, data, k=2, tol=1e-10,
                                     options=hs.HessianOptions(mode="train", chunk=None))
    assert res.mode == "train"
    assert rel(res.values, torch.linalg.eigvalsh(h).numpy()[-2:]) <= 1e-6
    assert_unchanged(model, before)  # running statistics were updated on copies only
    # the product agrees with central differences of the train-mode gradient
    v = torch.randn(h.shape[0], generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    eps = 1e-5
    diff = (_train_grad(model, data, eps * v) - _train_grad(model, data, -eps * v)) / (2 * eps)
    with pytest.warns(UserWarning, match="batch statistics"):
        op = hs.HessianOperator(model, data, mode="train", chunk=None, hvp="forward")
    assert op.hvp_method == "double"
    assert torch.linalg.norm(op.hvp(v) - diff) <= 1e-6 * torch.linalg.norm(diff)
    assert torch.allclose(hs.dense_hessian(model, data, mode="train", chunk=None), h,
                          rtol=0, atol=1e-12)


def _train_grad(model: nn.Module, data, offset: torch.Tensor) -> torch.Tensor:
    shell = copy.deepcopy(model).train()
    params = list(shell.parameters())
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(
            torch.nn.utils.parameters_to_vector(params) + offset, params)
    grad = torch.autograd.grad(nn.functional.cross_entropy(shell(data[0]), data[1]), params)
    return torch.cat([g.reshape(-1) for g in grad])


# ----------------------------------------------------------------------------- trace, density

@pytest.mark.parametrize("method", ["hutch++", "hutchinson"])
def test_trace_within_three_standard_errors(tanh_case, data, method):
    model, h, _ = tanh_case
    exact = float(torch.trace(h))
    res = hs.hessian_trace(model, data, method=method, n_products=60, seed=0)
    assert res.n_products == 60 and res.method == method and res.mode == "eval"
    assert 0 < res.stderr < abs(exact)
    assert abs(res.estimate - exact) <= 3 * res.stderr


def test_density_integrates_to_one_and_covers_the_spectrum(tanh_case, data):
    model, _, exact = tanh_case
    res = hs.hessian_density(model, data, n_probes=2, n_steps=60, seed=0)
    assert np.trapezoid(res.density, res.grid) == pytest.approx(1.0, abs=1e-12)
    assert np.all(res.density >= 0) and np.all(np.diff(res.grid) > 0)
    assert res.weights.sum() == pytest.approx(1.0, abs=1e-12)
    assert res.grid[0] <= exact[0] and res.grid[-1] >= exact[-1]
    # the extreme Ritz values converge first: within one kernel width of the true extremes
    assert abs(res.nodes.max() - exact[-1]) <= res.sigma
    assert abs(res.nodes.min() - exact[0]) <= res.sigma
    assert res.n_products == 2 * 60 and res.n_steps == 60


def test_density_with_a_full_krylov_space_is_exact():
    """With as many steps as dimensions, each probe's Ritz values are the eigenvalues."""
    n = 8
    eig = np.array([-1.0, 0.5, 1.0, 2.0, 2.5, 4.0, 7.0, 9.0])
    _, loss, _ = rotated(eig, 2)
    res = hs.hessian_density(Point(torch.zeros(n, dtype=torch.float64)),
                             (torch.zeros(1, 1), torch.zeros(1)), n_probes=3, n_steps=n, seed=0,
                             options=hs.HessianOptions(loss=loss))
    np.testing.assert_allclose(np.sort(res.nodes), np.repeat(eig, 3), atol=1e-10)
    assert res.weights.sum() == pytest.approx(1.0, abs=1e-14) and res.n_products == 3 * n


# ----------------------------------------------------------------------------- determinism

def test_same_seed_same_result(tanh_case, data):
    model, _, _ = tanh_case
    for fn in (lambda s: hs.hessian_eigenvalues(model, data, k=2, seed=s).values,
               lambda s: hs.hessian_trace(model, data, n_products=9, seed=s).estimate,
               lambda s: hs.hessian_density(model, data, n_probes=1, n_steps=10,
                                            seed=s).density,
               lambda s: np.array(hs.extreme_eigenvalues(model, data, seed=s))):
        assert np.array_equal(fn(0), fn(0))
    assert hs.hessian_trace(model, data, n_products=9, seed=0).estimate != \
        hs.hessian_trace(model, data, n_products=9, seed=1).estimate


def test_determinism_check_warns_for_dropout(data):
    model = nn.Sequential(nn.Linear(FEATURES, 16), nn.Tanh(), nn.Dropout(0.5),
                          nn.Linear(16, CLASSES)).double()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        assert hs.check_determinism(model, data, mode="eval") is True
    with pytest.warns(UserWarning) as record:
        assert hs.check_determinism(model, data, mode="train") is False
    text = " ".join(str(w.message) for w in record)
    assert "dropout" in text and "not deterministic" in text


def test_bad_input_is_a_clear_error(tanh_case, data):
    model, _, _ = tanh_case
    x, y = data
    with pytest.raises(LandscapeError, match="same"):
        hs.hessian_eigenvalues(model, (x, y[:-1]))
    with pytest.raises(LandscapeError, match="which"):
        hs.hessian_eigenvalues(model, data, which="middle")
    with pytest.raises(LandscapeError, match="mode"):
        hs.hessian_trace(model, data, options=hs.HessianOptions(mode="test"))
    with pytest.raises(LandscapeError, match="eigenvalues of a"):
        hs.hessian_eigenvalues(model, data, k=10_000)
    with pytest.raises(LandscapeError, match="entries"):
        hs.HessianOperator(model, data).hvp(torch.zeros(3))
    with pytest.raises(LandscapeError, match="loss"):
        hs.hessian_trace(model, data, options=hs.HessianOptions(loss="hinge"))


def test_solvers_take_a_plain_matrix_or_operator():
    """Every solver runs on a given symmetric operator: eigenvalues, Hutch++ and Lanczos
    quadrature of a 40 x 40 matrix with a known spectrum."""
    from scipy.sparse.linalg import aslinearoperator

    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((40, 40)))
    eig = np.linspace(-1.0, 10.0, 40)
    a = (q * eig) @ q.T
    res = hs.hessian_eigenvalues(a, k=3, which="both", k_smallest=1, tol=1e-10,
                                 bottom_tol=1e-10, return_vectors=True)
    np.testing.assert_allclose(res.values, eig[[0, 37, 38, 39]], rtol=0, atol=1e-8)
    np.testing.assert_allclose(a @ res.vectors, res.vectors * res.values, atol=1e-6)
    assert res.n_products > 0 and res.mode == "given operator"
    # a 40-column sketch spans the whole space: Hutch++ is then exact
    trace = hs.hessian_trace(aslinearoperator(a), n_products=120, seed=0)
    assert trace.estimate == pytest.approx(eig.sum(), rel=1e-10) and trace.n_products == 120
    # 40 Lanczos steps in 40 dimensions: the nodes are the eigenvalues
    density = hs.hessian_density(a, n_probes=1, n_steps=40, seed=0)
    np.testing.assert_allclose(np.sort(density.nodes), eig, atol=1e-8)
    with pytest.raises(LandscapeError, match="data goes with a model"):
        hs.hessian_eigenvalues(a, (torch.zeros(2, 1), torch.zeros(2)))
    with pytest.raises(LandscapeError, match="square"):
        hs.hessian_trace(np.ones((3, 4)))


def test_spectrum_file_has_one_layout_with_one_reader(tmp_path):
    """The record the CLI and the study write, read back by load_spectrum; strict JSON."""
    from landscape._util import write_json
    from landscape.errors import StoreError

    a = np.diag(np.linspace(-1.0, 4.0, 12))
    eig = hs.hessian_eigenvalues(a, k=2, which="both", k_smallest=1, tol=1e-10,
                                 bottom_tol=1e-10)
    trace = hs.hessian_trace(a, n_products=2, method="hutchinson", seed=0)
    density = hs.hessian_density(a, n_probes=1, n_steps=12, seed=0)
    record = hs.spectrum_record(eigen=eig, n_bottom=1, trace=trace, density=density,
                                split="train")
    write_json(tmp_path / "s.json", record)
    back = hs.load_spectrum(tmp_path / "s.json")
    assert back["format"] == "landscape-spectrum" and back["split"] == "train"
    assert back["eigenvalues"]["bottom"] == pytest.approx([-1.0])
    assert back["eigenvalues"]["top"] == pytest.approx(np.linspace(-1, 4, 12)[-2:].tolist())
    assert back["trace"]["stderr"] is not None and len(back["density"]["grid"]) == 1000
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(StoreError, match="not a landscape spectrum file"):
        hs.load_spectrum(tmp_path / "bad.json")
