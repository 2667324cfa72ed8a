"""The plane through three models, on a grid through all three (``landscape.planes``)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from landscape.errors import LandscapeError
from landscape.grid import auto_axis
from landscape.planes import plane_axes, plane_through
from landscape.store import load_surface
from landscape.surface import SurfaceOptions
from landscape.train import evaluate_split
from tests.core.test_modular import tiny_transformer


def _three_models():
    models = []
    for seed in range(3):
        model, bundle = tiny_transformer()
        torch.manual_seed(seed)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.5 * torch.randn_like(p))
        models.append(model.eval())
    return models, bundle


def test_plane_grid_passes_through_the_three_models_and_holds_their_losses(tmp_path):
    models, bundle = _three_models()
    out = tmp_path / "plane.h5"
    plane = plane_through(models, bundle, labels=["init", "mem", "grok"], points=7,
                          margin=0.3, out=out,
                          options=SurfaceOptions(metrics=("train_loss", "test_loss")))
    coords = plane.anchors["coords"]
    assert list(plane.anchors["labels"]) == ["init", "mem", "grok"]
    assert np.allclose(coords[:2], [[0, 0], [1, 0]]) and coords[2, 1] > 0
    for model, (cx, cy) in zip(models, coords):
        i, j = int(np.flatnonzero(plane.x == cx)[0]), int(np.flatnonzero(plane.y == cy)[0])
        for split in ("train", "test"):
            loss, _ = evaluate_split(model, *getattr(bundle, split), nn.functional.cross_entropy)
            assert plane.metrics[f"{split}_loss"][i, j] == pytest.approx(loss, rel=1e-5)
    assert plane.x.min() == pytest.approx(coords[:, 0].min() - 0.3)
    assert plane.y.max() == pytest.approx(coords[:, 1].max() + 0.3)
    saved = load_surface(out)
    assert np.array_equal(saved.x, plane.x) and saved.provenance["type"] == "plane"
    assert saved.provenance["axis_labels"][1] == "grok - init (orthogonal part)"


def test_plane_inputs_are_checked():
    models, bundle = _three_models()
    with pytest.raises(LandscapeError, match="three models with three labels"):
        plane_through(models[:2], bundle, labels=["a", "b"])
    with pytest.raises(LandscapeError, match="at least 3 points"):
        plane_axes(np.zeros((3, 2)), 2, 0.1)


def test_auto_axis_through_puts_every_value_on_the_axis():
    values = np.array([0.0, 1.0, 0.37])
    plain = auto_axis(values, 9)
    assert not np.isin(0.37, plain)
    axis = auto_axis(values, 9, through=True)
    assert np.isin(values, axis).all() and len(axis) == 9
    assert (axis[0], axis[-1]) == (plain[0], plain[-1])


def test_a_model_far_along_one_axis_keeps_a_margin_of_its_span():
    """Models 0, 1 and 89 units apart: the short axis keeps the given margin, the long one
    a twentieth of its span, so no model sits on the grid's edge."""
    coords = np.array([[0.0, 0.0], [1.0, 0.0], [4.4, 88.9]])
    x, y = plane_axes(coords, 11, 0.35)
    assert x.min() == pytest.approx(-0.35) and x.max() == pytest.approx(4.4 + 0.35)
    assert y.min() == pytest.approx(-0.05 * 88.9) and y.max() == pytest.approx(88.9 * 1.05)
    for axis, column in ((x, 0), (y, 1)):
        assert all(np.any(np.isclose(axis, c)) for c in coords[:, column])
