"""Curvature and accuracy of one run on one step axis (``plot_curvature_accuracy``)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from landscape.errors import LandscapeError
from landscape.figures import plot_curvature_accuracy


def _history(n: int = 40, every: int = 10):
    """A grokking-like history: train accuracy jumps first, test accuracy later."""
    rows = []
    for step in range(1, n + 1):
        rows.append({"step": step, "train_acc": min(1.0, step / 10),
                     "test_acc": 0.05 if step < 30 else 0.95, "train_loss": 2.0 / step,
                     "lambda_max": 50.0 / step if step % every == 0 else math.nan})
    return rows


def test_figure_draws_the_given_curves_with_labels_and_marks(tmp_path):
    traces = [{"step": 0, "trace": 400.0, "trace_stderr": 10.0},
              {"step": 20, "trace": 30.0, "trace_stderr": 2.0}]
    out = tmp_path / "curves.png"
    fig = plot_curvature_accuracy(_history(), traces=traces, marks={"memorized": 10,
                                  "grokked": 30}, title="t", out=out)
    assert out.stat().st_size > 10_000
    top, ratio, acc = fig.axes
    assert top.get_yscale() == "log" and ratio.get_ylim()[0] == 0
    assert acc.get_xlabel() == "optimizer step" and acc.get_ylabel() == "accuracy (%)"
    assert "Hessian" in top.get_ylabel() and "train loss" in ratio.get_ylabel()
    eig = top.get_lines()[0]
    assert list(eig.get_xdata()) == [10, 20, 30, 40]  # NaN steps skipped
    assert list(eig.get_ydata()) == [5.0, 2.5, 50 / 30, 1.25]
    assert np.allclose(ratio.get_lines()[0].get_ydata(), 25.0)  # (50/s) / (2/s)
    labels = [t.get_text() for t in top.get_legend().get_texts()]
    assert any("trace" in t for t in labels) and any("tracked" in t for t in labels)
    assert [t.get_text() for t in acc.get_legend().get_texts()] == ["train accuracy",
                                                                  "test accuracy"]
    assert np.allclose(acc.get_lines()[1].get_ydata()[-1], 95.0)
    notes = [t.get_text() for t in acc.texts]
    assert notes == ["memorized\n(step 10)", "grokked\n(step 30)"]
    for ax in fig.axes:  # both marks in every panel
        xs = [line.get_xdata()[0] for line in ax.get_lines() if line.get_linestyle() == ":"]
        assert sorted(xs) == [10, 30]


def test_figure_without_eigenvalues_is_refused():
    rows = [dict(r, lambda_max=math.nan) for r in _history()]
    with pytest.raises(LandscapeError, match="track-eigenvalues"):
        plot_curvature_accuracy(rows)
