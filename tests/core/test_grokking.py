"""The curvature of a run's checkpoints (``landscape.grokking.checkpoint_traces``)."""
from __future__ import annotations

import pytest
import torch

from landscape.checkpoint import save_checkpoint
from landscape.curvature import hessian_trace
from landscape.errors import LandscapeError
from landscape.grokking import checkpoint_traces
from landscape.hessian import dense_hessian
from tests.core.test_modular import tiny_transformer


@pytest.fixture(scope="module")
def two_checkpoint_run(tmp_path_factory):
    """A run folder with two different tiny transformers saved at epochs 0 and 10."""
    run = tmp_path_factory.mktemp("traces") / "run"
    models = {}
    for epoch in (0, 10):
        model, bundle = tiny_transformer()
        torch.manual_seed(epoch)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.3 * torch.randn_like(p))
        save_checkpoint(run / "checkpoints" / f"epoch_{epoch:04d}.pt", model,
                        extra={"epoch": epoch})
        models[epoch] = model.eval()
    save_checkpoint(run / "model.pt", models[10])
    return run, models, bundle


def test_traces_of_checkpoints_are_the_checkpoints_traces(two_checkpoint_run):
    run, models, bundle = two_checkpoint_run
    records = checkpoint_traces(run, bundle.train, epochs=[10, 0], n_products=12, seed=3)
    assert [r["step"] for r in records] == [0, 10]
    for r in records:
        direct = hessian_trace(models[r["step"]], bundle.train, n_products=12, seed=3)
        assert r["trace"] == pytest.approx(direct.estimate, rel=1e-6)
        assert r["trace_stderr"] == pytest.approx(direct.stderr, rel=1e-6)
        assert r["n_products"] == direct.n_products
        exact = float(torch.trace(dense_hessian(models[r["step"]], bundle.train)))
        assert abs(r["trace"] - exact) <= 4 * r["trace_stderr"] + 1e-3 * abs(exact)
    assert records[0]["trace"] != pytest.approx(records[1]["trace"], rel=1e-3)


def test_traces_name_a_missing_checkpoint(two_checkpoint_run):
    run, _, bundle = two_checkpoint_run
    with pytest.raises(LandscapeError, match="no checkpoint of epoch 5"):
        checkpoint_traces(run, bundle.train, epochs=[0, 5])
