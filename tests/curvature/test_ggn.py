"""GGN, Fisher and empirical-Fisher products against dense float64 matrices built
independently: ``J^T H_out J`` from torch.func Jacobians and output Hessians, and Fisher
matrices summed from per-example parameter gradients (every label weighted by its
probability, the drawn labels, or the observed ones)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from landscape.errors import LandscapeError
from landscape.curvature.ggn import jqj_product, output_factor
from landscape.losses import loss_function

N, C = 12, 4
ATOL = 1e-8


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, C)).double()


def cnn() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Unflatten(1, (1, 8)), nn.Conv1d(1, 3, 3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(18, C)).double()


def linear() -> nn.Module:
    torch.manual_seed(2)
    return nn.Sequential(nn.Linear(6, C)).double()


class Problem:
    """A model on fixed data, with flat-vector views of its parameters."""

    def __init__(self, model: nn.Module, width: int, loss: str = "cross_entropy"):
        gen = torch.Generator().manual_seed(3)
        self.x = torch.randn(N, width, generator=gen, dtype=torch.float64) * 2
        self.y = torch.randint(0, C, (N,), generator=gen)
        self.model, self.loss = model, loss
        self.params = {n: p.detach() for n, p in model.named_parameters()}
        self.flat = torch.cat([p.reshape(-1) for p in self.params.values()])
        self.logits = self.fn(self.params).detach()
        self._matrices = {}

    def fn(self, params, x=None):
        return torch.func.functional_call(self.model, params, (self.x if x is None else x,))

    def unflat(self, flat):
        out, start = {}, 0
        for name, p in self.params.items():
            out[name] = flat[start:start + p.numel()].view_as(p)
            start += p.numel()
        return out

    def matrix(self, kind, **kw):
        """The operator's matrix, one product per column (kept unless labels are drawn)."""
        key = (kind, tuple(sorted(kw.items())))
        if key not in self._matrices or kw:
            apply_q = output_factor(kind, self.loss, self.logits, self.y, **kw)

            def column(e):
                out = jqj_product(self.fn, self.params, self.unflat(e), apply_q)
                return torch.cat([t.reshape(-1) for t in out.values()])

            eye = torch.eye(self.flat.numel(), dtype=torch.float64)
            self._matrices[key] = torch.func.vmap(column)(eye).T
        return self._matrices[key]

    def dense_ggn(self):
        jac = torch.func.jacrev(lambda f: self.fn(self.unflat(f)))(self.flat).reshape(N * C, -1)
        loss_fn = loss_function(self.loss)
        h_out = torch.func.hessian(lambda z: loss_fn(z.view(N, C), self.y))(
            self.logits.reshape(-1))
        return jac.T @ h_out @ jac

    def dense_hessian(self):
        loss_fn = loss_function(self.loss)
        return torch.func.hessian(lambda f: loss_fn(self.fn(self.unflat(f)), self.y))(self.flat)

    def example_grads(self, labels):
        """Parameter gradients of each example's cross-entropy at ``labels``, ``(N, P)``."""
        def losses(f):
            return nn.functional.cross_entropy(self.fn(self.unflat(f)), labels, reduction="none")
        return torch.func.jacrev(losses)(self.flat)


MODELS = {"mlp": (mlp, 6), "cnn": (cnn, 8)}


@pytest.fixture(params=sorted(MODELS), scope="module")
def problem(request):
    build, width = MODELS[request.param]
    return Problem(build(), width)


def test_ggn_equals_dense_jacobian_reference(problem):
    ggn = problem.matrix("ggn")
    torch.testing.assert_close(ggn, problem.dense_ggn(), rtol=0, atol=ATOL)
    # a nonlinear network: the Hessian has the extra term, so the check above is not vacuous
    assert float((problem.dense_hessian() - ggn).abs().max()) > 1e-3


def test_fisher_equals_probability_weighted_outer_products(problem):
    probs = torch.softmax(problem.logits, -1)
    ref = sum(torch.einsum("n,np,nq->pq", probs[:, c], g, g)
              for c in range(C)
              for g in [problem.example_grads(torch.full((N,), c))]) / N
    fisher = problem.matrix("fisher")
    torch.testing.assert_close(fisher, ref, rtol=0, atol=ATOL)
    # for cross-entropy the true Fisher is the GGN
    torch.testing.assert_close(fisher, problem.matrix("ggn"), rtol=0, atol=ATOL)


def test_empirical_fisher_equals_gradient_outer_products(problem):
    g = problem.example_grads(problem.y)
    torch.testing.assert_close(problem.matrix("empirical-fisher"), g.T @ g / N, rtol=0,
                               atol=ATOL)


def test_sampled_fisher_uses_the_drawn_labels(problem):
    samples = 3
    drawn = torch.multinomial(torch.softmax(problem.logits, -1), samples, replacement=True,
                              generator=torch.Generator().manual_seed(5))
    ref = sum(g.T @ g for s in range(samples)
              for g in [problem.example_grads(drawn[:, s])]) / (N * samples)
    got = problem.matrix("fisher", samples=samples, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(got, ref, rtol=0, atol=ATOL)


@pytest.mark.parametrize("kind", ["ggn", "fisher", "empirical-fisher"])
def test_positive_semidefinite(problem, kind):
    evals = torch.linalg.eigvalsh(problem.matrix(kind))
    assert float(evals[-1]) > 0
    assert float(evals[0]) >= -1e-8 * float(evals[-1])


def test_ggn_equals_hessian_for_a_linear_model():
    lin = Problem(linear(), 6)
    torch.testing.assert_close(lin.matrix("ggn"), lin.dense_hessian(), rtol=0, atol=ATOL)


def test_mse_ggn_fisher_and_sampled_fisher():
    # mse is a Gaussian likelihood of variance C / 2: the exact Fisher is the GGN, and the
    # sampled Fisher tends to it (Monte-Carlo error ~ 1 / sqrt(samples): 4000 draws, 5%).
    prob = Problem(mlp(), 6, loss="mse")
    ggn = prob.matrix("ggn")
    torch.testing.assert_close(ggn, prob.dense_ggn(), rtol=0, atol=ATOL)
    torch.testing.assert_close(prob.matrix("fisher"), ggn, rtol=0, atol=ATOL)
    sampled = prob.matrix("fisher", samples=4000, generator=torch.Generator().manual_seed(0))
    assert float((sampled - ggn).norm() / ggn.norm()) < 0.05


def test_chunks_weighted_by_size_sum_to_the_full_product(problem):
    v = problem.unflat(torch.randn(problem.flat.numel(), generator=torch.Generator()
                                   .manual_seed(9), dtype=torch.float64))
    for kind in ("ggn", "fisher", "empirical-fisher"):
        full = jqj_product(problem.fn, problem.params, v,
                           output_factor(kind, "cross_entropy", problem.logits, problem.y))
        total = None
        for part in (slice(0, 5), slice(5, N)):
            x, y = problem.x[part], problem.y[part]
            fn = lambda p, x=x: problem.fn(p, x)  # noqa: E731
            apply_q = output_factor(kind, "cross_entropy", fn(problem.params).detach(), y,
                                    weight=len(y) / N)
            part_v = jqj_product(fn, problem.params, v, apply_q)
            total = part_v if total is None else {k: total[k] + part_v[k] for k in total}
        for name in full:
            torch.testing.assert_close(total[name], full[name], rtol=0, atol=1e-12)


def test_fisher_needs_a_likelihood(problem):
    def custom(z, y):
        return (z ** 4).mean()

    with pytest.raises(LandscapeError, match="likelihood"):
        output_factor("fisher", custom, problem.logits, problem.y)
    with pytest.raises(LandscapeError, match="unknown curvature"):
        output_factor("gauss", "cross_entropy", problem.logits, problem.y)
    # the GGN of any loss is defined (here x^4, convex: still PSD)
    apply_q = output_factor("ggn", custom, problem.logits, problem.y)
    u = torch.ones_like(problem.logits)
    assert float((apply_q(u) * u).sum()) >= 0


# ----------------------------------------------------------------------------- the operator

@pytest.mark.parametrize("kind", ["ggn", "fisher", "empirical-fisher"])
def test_operator_over_chunks_equals_the_dense_matrix(problem, kind):
    from landscape.curvature import OutputCurvatureOperator

    op = OutputCurvatureOperator(problem.model, (problem.x, problem.y), kind=kind, chunk=5)
    dense = op.matmat(np.eye(op.n_params))
    np.testing.assert_allclose(dense, problem.matrix(kind).numpy(), rtol=0, atol=ATOL)
    assert op.n_products == op.n_params and "J^T Q J" in op.hvp_description


def test_solvers_take_the_curvature_option(problem):
    from landscape.curvature import HessianOptions, hessian_eigenvalues, hessian_trace

    ggn = problem.matrix("ggn").numpy()
    exact = np.linalg.eigvalsh(ggn)
    opts = HessianOptions(curvature="ggn", chunk=5)
    res = hessian_eigenvalues(problem.model, (problem.x, problem.y), k=3, tol=1e-10,
                              options=opts)
    np.testing.assert_allclose(res.values, exact[-3:], rtol=1e-8)
    # Hutch++ with a sketch as wide as the matrix takes the whole trace exactly
    tr = hessian_trace(problem.model, (problem.x, problem.y), n_products=3 * len(exact) + 3,
                       options=opts)
    assert tr.estimate == pytest.approx(np.trace(ggn), rel=1e-9)


def test_sampled_fisher_operator_is_fixed_and_seeded(problem):
    from landscape.curvature import OutputCurvatureOperator

    data = (problem.x, problem.y)
    make = lambda seed: OutputCurvatureOperator(problem.model, data, kind="fisher",  # noqa
                                                samples=2, seed=seed)
    v = np.random.default_rng(0).normal(size=problem.flat.numel())
    a = make(1)
    np.testing.assert_array_equal(a.matvec(v), a.matvec(v))
    np.testing.assert_array_equal(a.matvec(v), make(1).matvec(v))
    assert not np.allclose(a.matvec(v), make(2).matvec(v))
    assert a.matrix_name == "Fisher (2 sampled labels)"
    with pytest.raises(LandscapeError, match="only go with the Fisher"):
        OutputCurvatureOperator(problem.model, data, kind="ggn", samples=2)
