"""Barrier matrices: every pair's straight-line barrier, symmetric with a zero diagonal, equal
to ``path_barrier`` of each pair's path, and minima grouped into basins by the basin rule."""
import numpy as np
import pytest
import torch

from landscape.barriers import (barrier_matrix, basin_groups, matrix_from_paths, path_values,
                                straight_line)
from landscape.connect import ConnectOptions, connect
from landscape.errors import LandscapeError
from landscape.shape import path_barrier


def _path(ends, peak, err_peak=0.2, n=9):
    """A path from ends[0] to ends[1] with ``peak`` in the middle."""
    loss = np.linspace(ends[0], ends[1], n)
    loss[n // 2] = peak
    err = np.full(n, 0.1)
    err[n // 2 - 1:n // 2 + 2] = 0.1 + err_peak / 2, 0.1 + err_peak, 0.1 + err_peak / 2
    return {"train_loss": loss, "test_error": err}


def _constructed():
    """Five minima: 0~1 and 1~2 low, 0-2 high (a chain), 3~4 low, every other pair high.
    The relative rule at loss v asks for depth 1 x (v + 0.05)."""
    loss = [0.01, 0.02, 0.01, 0.03, 0.05]
    low = {(0, 1): 0.04, (1, 2): 0.05, (3, 4): 0.09}
    paths = {}
    for i in range(5):
        for j in range(i + 1, 5):
            higher = max(loss[i], loss[j])
            paths[i, j] = _path((loss[i], loss[j]), higher + low.get((i, j), 2.0))
    return paths


def test_constructed_matrix_groups_and_equals_path_barrier():
    paths = _constructed()
    m = matrix_from_paths(paths, list("ABCDE"))
    for a in (m.train_barrier, m.test_error_barrier):
        assert a.shape == (5, 5)
        np.testing.assert_array_equal(a, a.T)
        np.testing.assert_array_equal(np.diag(a), 0.0)
    for (i, j), p in paths.items():
        assert m.train_barrier[i, j] == path_barrier(p["train_loss"])
        assert m.test_error_barrier[i, j] == path_barrier(p["test_error"])
    np.testing.assert_allclose(m.train_barrier[0, 1], 0.04, atol=1e-12)
    np.testing.assert_allclose(m.train_barrier[0, 2], 2.0, atol=1e-12)
    np.testing.assert_allclose(m.test_error_barrier[2, 4], 0.2, atol=1e-12)
    np.testing.assert_array_equal(m.train_loss, [0.01, 0.02, 0.01, 0.03, 0.05])
    # 0~1 (0.04 < 0.07), 1~2 (0.05 < 0.07), 3~4 (0.09 < 0.10); 0-2 alone would not pass
    assert m.groups == ((0, 1, 2), (3, 4))
    assert m.group_labels() == [["A", "B", "C"], ["D", "E"]]
    assert not m.connected[0, 2] and m.connected[1, 2] and m.connected[4, 3]
    d = m.to_dict()
    assert d["n_basins"] == 2
    assert d["groups"] == [{"members": ["A", "B", "C"], "direct": False},
                           {"members": ["D", "E"], "direct": True}]
    assert d["curve_train_barrier"] is None


def test_rule_boundary_and_absolute_threshold():
    """A barrier equal to the rule's depth is a barrier (the rule asks depth >= need)."""
    paths = {(0, 1): _path((0.05, 0.05), 0.05 + 0.1)}  # need 1 x (0.05 + 0.05) = 0.1
    assert matrix_from_paths(paths, ["a", "b"]).groups == ((0,), (1,))
    assert matrix_from_paths(paths, ["a", "b"], relative=1.01).groups == ((0, 1),)
    assert matrix_from_paths(paths, ["a", "b"], threshold=0.5).groups == ((0, 1),)
    assert "absolute" in matrix_from_paths(paths, ["a", "b"], threshold=0.5).rule


def test_basin_groups_components():
    c = np.eye(4, dtype=bool)
    c[0, 3] = c[3, 0] = True
    assert basin_groups(c) == ((0, 3), (1,), (2,))
    assert basin_groups(np.ones((3, 3), dtype=bool)) == ((0, 1, 2),)


def test_bad_input():
    with pytest.raises(LandscapeError, match="at least two"):
        matrix_from_paths({}, ["a"])
    with pytest.raises(LandscapeError, match="every pair"):
        matrix_from_paths({(0, 1): _path((0, 0), 1)}, ["a", "b", "c"])


def _seeds(bundle, count=3):
    from torch import nn

    from landscape.models import build_model

    x, y = bundle.train
    models = []
    for seed in range(count):
        model = build_model("mlp", bundle, seed=seed, width=8)
        opt = torch.optim.SGD(model.parameters(), lr=0.2)
        for _ in range(30):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        models.append(model.eval())
    return models


def test_matrix_of_three_models_equals_each_line(mnist1d_small):
    from landscape.surface import SurfaceOptions

    models = _seeds(mnist1d_small)
    options = SurfaceOptions(progress=False, device="cpu")
    m = barrier_matrix(models, mnist1d_small, labels=["s0", "s1", "s2"], points=5,
                       options=options)
    np.testing.assert_array_equal(m.train_barrier, m.train_barrier.T)
    np.testing.assert_array_equal(np.diag(m.test_error_barrier), 0.0)
    for i in range(3):
        for j in range(i + 1, 3):
            line = path_values(straight_line(models[i], models[j], mnist1d_small, points=5,
                                             options=options.__class__(
                                                 metrics=("train_loss", "train_acc",
                                                          "test_loss", "test_acc"),
                                                 progress=False, device="cpu")))
            assert m.train_barrier[i, j] == path_barrier(line["train_loss"])
            assert m.test_error_barrier[j, i] == path_barrier(line["test_error"])
    # seeds of a net trained from different initializations are separated by a barrier
    assert np.all(m.train_barrier[~np.eye(3, dtype=bool)] > 0)
    assert sum(len(g) for g in m.groups) == 3


def test_curve_barriers_per_pair(mnist1d_small):
    from landscape.surface import SurfaceOptions

    models = _seeds(mnist1d_small, 2)
    opts = ConnectOptions(epochs=1, points=5, device="cpu", batch_size=64)
    m = barrier_matrix(models, mnist1d_small, points=5, connect_options=opts,
                       options=SurfaceOptions(progress=False, device="cpu"))
    curve = connect(models[0], models[1], mnist1d_small, options=opts, progress=False)
    again = path_values(curve.curve)
    assert m.curve_train_barrier[0, 1] == m.curve_train_barrier[1, 0] == \
        path_barrier(again["train_loss"])
    assert m.curve_test_error_barrier[0, 1] == path_barrier(again["test_error"])
    assert m.curve_train_barrier[0, 0] == 0.0


def test_barrier_figure_orders_by_basin(tmp_path):
    from landscape.figures import plot_barrier_matrix

    paths = _constructed()
    # seed order interleaves the basins: the figure puts each basin together
    d = matrix_from_paths(paths, ["a", "b", "c", "d", "e"]).to_dict()
    d["groups"] = [{"members": ["d", "e"]}, {"members": ["a", "b", "c"]}]
    fig = plot_barrier_matrix(d, out=tmp_path / "b.png", title="t")
    assert (tmp_path / "b.png").stat().st_size > 0
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["training-loss barrier",
                                                 "test-error barrier (points)"]
    assert [t.get_text() for t in panels[0].get_yticklabels()] == list("deabc")
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text()
             for t in panels[0].texts}
    assert cells[(0, 1)] == "0.09" and cells[(2, 3)] == "0.04" and cells[(0, 2)] == "2"
    assert {t.get_text() for t in panels[1].texts} == {"0", "20"}
    with pytest.raises(LandscapeError, match="shape"):
        plot_barrier_matrix({**d, "train_barrier": [[0.0]]})
    with pytest.raises(LandscapeError, match="every label"):
        plot_barrier_matrix({**d, "groups": [{"members": ["a"]}]})
