"""Caveats travel with numbers: what a comparison's steps know about their results reaches the
console, ``summary.json`` and the report, next to the numbers they qualify."""
import json
import types

import numpy as np
import pytest
import torch

from landscape.compare import CompareConfig, compare
from landscape.shape import basin_shape
from landscape.workflows.caveats import (basin_caveats, basin_note, cross_model_caveats,
                                         grid_misses, nan_caveats)
from landscape.workflows.report import v_versus_w_rows

TINY = dict(line_points=5, plane_points=5, interp_points=5, eigen_points=0, top_k=2,
            trace_products=4, density_probes=1, density_steps=6, eps=(1e-3,),
            sharpness_samples=2, curve_epochs=0, w_plane_points=5, render_3d=False)


def test_basin_caveats_name_what_the_grid_cannot_resolve():
    x = np.linspace(-1, 1, 11)  # step 0.2
    narrow = basin_shape(x, 1e4 * x ** 2, rise=0.1).to_dict()  # analytic width 0.0063
    assert basin_note(narrow) == "unresolved"
    (line,) = basin_caveats(narrow, "m: 1-D basin")
    assert line.startswith("m: 1-D basin: width") and "below two grid steps" in line
    wide = basin_shape(x, 1e-3 * x ** 2, rise=0.1).to_dict()
    assert basin_note(wide) == "wider than the grid"
    assert "wider than the grid" in basin_caveats(wide, "w")[0]
    edge = basin_shape(x, (x - 1.5) ** 2, rise=0.1).to_dict()
    assert any("grid's edge" in s for s in basin_caveats(edge, "e"))
    good = basin_shape(x, x ** 2, rise=0.1).to_dict()
    assert basin_note(good) is None and basin_caveats(good, "g") == []


def test_nan_and_missed_grid_points():
    vals = np.full((4, 4), np.nan)
    vals[0, 0] = 1.0
    assert "mostly NaN" in nan_caveats(vals, "s")[0]
    assert nan_caveats(np.ones((4, 4)), "s") == []
    axis = np.linspace(-1, 2, 7)  # step 0.5
    anchors = {"coords": np.array([[0.0, 0.0], [1.0, 0.0], [0.3, 1.0]]),
               "labels": np.array(["a", "b", "c"])}
    plane = types.SimpleNamespace(x=axis, y=axis, anchors=anchors)
    assert grid_misses(plane) == ["c"]
    rows = v_versus_w_rows({"v": {"label": "V", "basins": 1},
                            "w_plane": {"label": "W", "basins": 8, "barriers": [],
                                        "through": ["a", "b", "c"], "missed": ["c"]}})
    assert rows[1][1] == "not resolved (!)" and "8" not in rows[1][2]


def test_cross_model_caveats_flag_loss_and_norm():
    models = {"sgd": {"label": "SGD", "train_loss": 0.001, "parameter_norm": 21.0},
              "rms": {"label": "RMSprop", "train_loss": 0.10, "parameter_norm": 21.5},
              "rprop": {"label": "Rprop", "train_loss": 0.002, "parameter_norm": 2082.0}}
    out = cross_model_caveats(models)
    assert out["sgd"] == []
    assert len(out["rms"]) == 1 and "not at a minimum" in out["rms"][0]
    assert len(out["rprop"]) == 1 and "parameter norm 2.08e+03" in out["rprop"][0]
    assert "top Hessian eigenvalue" in out["rprop"][0]
    # near-zero losses 20x apart are both at a minimum
    close = cross_model_caveats({"a": {"label": "a", "train_loss": 1e-4},
                                 "b": {"label": "b", "train_loss": 2e-3}})
    assert close == {"a": [], "b": []}


@pytest.fixture(scope="module")
def three(tmp_path_factory, mnist1d_small):
    """A trained MLP; the same function with its first layer scaled by 100 and its last by
    1/100 (a blown-up norm, Dinh et al.); and the untrained network (far from converged)."""
    from torch import nn

    from landscape.checkpoint import save_checkpoint
    from landscape.models import build_model

    tmp = tmp_path_factory.mktemp("three")
    x, y = mnist1d_small.train
    model = build_model("mlp", mnist1d_small, seed=0, width=16, depth=1)
    save_checkpoint(tmp / "untrained.pt", model)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(200):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    save_checkpoint(tmp / "trained.pt", model)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        linears[0].weight.mul_(100.0)
        linears[0].bias.mul_(100.0)
        linears[-1].weight.div_(100.0)
    save_checkpoint(tmp / "blown.pt", model)
    lines = []
    result = compare([tmp / "trained.pt", tmp / "blown.pt", tmp / "untrained.pt"],
                     tmp / "cmp", config=CompareConfig(**TINY), data=mnist1d_small,
                     labels=["trained", "blown", "untrained"],
                     progress=False, log=lines.append)
    return result, lines, tmp / "cmp"


def test_warnings_reach_summary_console_and_report(three):
    result, lines, out = three
    summary = json.loads((out / "summary.json").read_text())
    models, warnings = summary["models"], summary["warnings"]["models"]
    assert models["blown"]["parameter_norm"] > 50 * models["trained"]["parameter_norm"]
    assert models["blown"]["train_loss"] == pytest.approx(models["trained"]["train_loss"],
                                                         rel=1e-4)
    assert any("parameter norm" in s and "not comparable" in s for s in warnings["blown"])
    assert not any("parameter norm" in s for s in warnings["trained"] + warnings["untrained"])
    assert any("not at a minimum" in s for s in warnings["untrained"])
    assert not any("not at a minimum" in s for s in warnings["trained"] + warnings["blown"])
    console = [s for s in lines if s.startswith("warning: ")]
    for line in warnings["blown"] + warnings["untrained"]:
        assert f"warning: {line}" in console
    html = (out / "report.html").read_text()
    md = (out / "report.md").read_text()
    for line in warnings["blown"] + warnings["untrained"]:
        assert line in md
    assert "Caveats" in html and "not at a minimum" in html and "(!)" in html
    norm_row = next(r for r in md.splitlines() if r.startswith("| parameter norm (total) |"))
    assert norm_row.count("(!)") == 1
    assert "not ranked: the parameter norms differ" in md and "is the sharpest" not in md
    assert "worst case in the adapted l2 ball of radius 0.05" in md
    assert "adapted radius about" in md


def test_the_plane_through_three_minima_has_grid_points_on_them(three):
    from landscape.store import load_surface

    _, _, out = three
    summary = json.loads((out / "summary.json").read_text())
    plane = load_surface(out / "surfaces" / "w_plane.h5")
    for point in plane.anchors["coords"]:
        assert np.min(np.abs(plane.x - point[0])) == 0.0
        assert np.min(np.abs(plane.y - point[1])) == 0.0
    assert grid_misses(plane) == []
    assert summary["v_versus_w"]["w_plane"]["missed"] == []
    # The grid samples every model, so no grid-miss caveat; its 5 + 3 points per side do not
    # resolve their basins (steps of several units on this plane), so the count is withheld.
    plane_warnings = summary["warnings"]["steps"].get("v_versus_w_w_plane", [])
    assert not any("no grid point lies on" in s for s in plane_warnings)
    assert summary["v_versus_w"]["w_plane"]["unresolved"]
    assert any("does not resolve the basin of" in s for s in plane_warnings)
    md = (out / "report.md").read_text()
    assert "no grid point lies on" not in md


def test_axis_through_puts_points_on_the_grid():
    from landscape.errors import LandscapeError
    from landscape.grid import axis_through

    axis = axis_through(-1.0, 3.0, 9, [0.0, 1.37, 0.1])  # step 0.5; 0.0 and 0.1 share 0.0
    assert {0.0, 1.37, 0.1} <= set(axis.tolist())
    assert len(axis) == 10 and np.all(np.diff(axis) > 0)
    assert axis[0] == -1.0 and axis[-1] == 3.0
    assert np.array_equal(axis_through(0.0, 1.0, 5, [0.5]), np.linspace(0, 1, 5))
    with pytest.raises(LandscapeError, match="outside"):
        axis_through(0.0, 1.0, 5, [2.0])


def test_report_ratios_keep_three_significant_digits():
    from landscape.workflows.report import _ratio

    assert _ratio(41.74, 0.02639) == "0.000632x"
    assert _ratio(2.0, 3.0) == "1.5x" and _ratio(1.0, 150.23) == "150x"
    assert _ratio(0.0, 1.0) == "" and _ratio(None, 1.0) == ""


def test_a_width_below_the_first_grid_step_is_refined_to_the_fine_grid_value(three,
                                                                             mnist1d_small):
    """The trained MLP's 1-D basin spans fewer than three steps of TINY's 5-point line: compare
    refines it, and the width agrees with a 401-point grid along the same direction."""
    from landscape.checkpoint import load_checkpoint
    from landscape.refine import STEPS_PER_WIDTH
    from landscape.surface import SurfaceOptions, compute_surface
    from landscape.workflows.widths import refined_shape

    _, _, out = three
    summary = json.loads((out / "summary.json").read_text())
    entry = summary["models"]["trained"]
    first_step = 1.0 / (TINY["line_points"] - 1)
    assert entry["basin_width_1d_method"] == "refined"
    assert entry["basin_width_1d_first_grid"] < STEPS_PER_WIDTH * first_step
    assert entry["basin_width_1d"] >= STEPS_PER_WIDTH * entry["basin_width_1d_step"]
    assert entry["basin_width_1d_note"] is None
    model, _ = load_checkpoint(out.parent / "trained.pt")
    x = np.linspace(-1.5 * entry["basin_width_1d"], 1.5 * entry["basin_width_1d"], 401)
    fine = compute_surface(model, mnist1d_small, out / "models" / "trained" / "directions.h5",
                           x=x, options=SurfaceOptions(metrics=("train_loss",)))
    width = basin_shape(x, fine.metrics["train_loss"], rise=0.1).width
    assert entry["basin_width_1d"] == pytest.approx(width, rel=0.02)
    assert not any("trained: 1-D basin" in s for s in summary["warnings"]["models"]["trained"])
    md = (out / "report.md").read_text()
    assert "(refined)" in md
    record = json.loads((out / "models" / "trained" / "width_1d.json").read_text())
    assert refined_shape({"width": 1.0, "grid_steps": [0.25]}, record, 0.1)["width"] == \
        record["width"]
    # the 2-D width: the mean diameter of eight refined lines through the centre
    assert entry["basin_width_2d_method"] == "refined" and entry["basin_width_2d_note"] is None
    record2 = json.loads((out / "models" / "trained" / "width_2d.json").read_text())
    assert len(record2["line_widths"]) == 8 and record2["resolved"]
    assert entry["basin_width_2d"] == pytest.approx(np.mean(record2["line_widths"]))
    assert record2["line_widths"][0] == pytest.approx(entry["basin_width_1d"], rel=0.05)


def test_gradient_norms_and_the_not_converged_caveat(three, mnist1d_small):
    from landscape.checkpoint import load_checkpoint
    from landscape.params import flatten, gradient_norms
    from landscape.workflows.caveats import gradient_caveats

    _, _, out = three
    summary = json.loads((out / "summary.json").read_text())
    models, warnings = summary["models"], summary["warnings"]["models"]
    model, _ = load_checkpoint(out.parent / "untrained.pt")
    x, y = mnist1d_small.train
    found = gradient_norms(model, x, y, torch.nn.functional.cross_entropy, chunk=7)
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    grad = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).double()
    theta = flatten([p.detach() for p in model.parameters()]).double()
    assert found.total == pytest.approx(float(grad.norm()), rel=1e-5)
    assert found.relative == pytest.approx(float((grad * theta).norm()), rel=1e-5)
    assert models["untrained"]["gradient_norm"] == pytest.approx(found.total, rel=1e-5)
    bound = found.total ** 2 / (2 * models["untrained"]["top_eigenvalue"])
    assert models["untrained"]["descent_bound"] == pytest.approx(bound, rel=1e-5)
    assert any("full-batch gradient norm" in s for s in warnings["untrained"])
    assert not any("full-batch gradient norm" in s for s in warnings["trained"])
    row = next(r for r in (out / "report.md").read_text().splitlines()
               if r.startswith("| full-batch gradient norm"))
    assert row.count("(!)") == 1
    # the rule alone: the bound against half the loss and the absolute margin
    entry = {"label": "m", "gradient_norm": 1.0, "top_eigenvalue": 10.0, "train_loss": 0.5}
    assert gradient_caveats({**entry, "descent_bound": 0.06})  # above the 0.05 margin
    assert not gradient_caveats({**entry, "descent_bound": 0.04})
    assert gradient_caveats({**entry, "train_loss": 0.01, "descent_bound": 0.006})
    assert not gradient_caveats({**entry, "train_loss": 0.01, "descent_bound": 0.004})
    assert not gradient_caveats({**entry, "descent_bound": None})


def test_a_plane_that_does_not_resolve_a_models_basin_counts_nothing():
    from landscape.workflows.caveats import anchor_unresolved

    x = np.linspace(-1.0, 2.0, 7)  # step 0.5
    y = np.linspace(-1.0, 20.0, 8)  # step 3: a model far along y
    xx, yy = np.meshgrid(x, y, indexing="ij")
    wide = 0.05 * (xx ** 2 + yy ** 2 / 100)  # width 2.8 along x at (0, 0): resolved
    narrow = np.minimum(wide, 1e3 * ((xx - 1) ** 2 + (yy - 20) ** 2))  # width 0.02 at (1, 20)
    anchors = {"coords": np.array([[0.0, 0.0], [1.0, 20.0]]), "labels": np.array(["a", "b"])}
    plane = types.SimpleNamespace(x=x, y=y, anchors=anchors, metrics={"train_loss": narrow})
    assert anchor_unresolved(plane, 0.1) == ["b"]
    plane.metrics = {"train_loss": wide}
    assert anchor_unresolved(plane, 0.1) == []
    rows = v_versus_w_rows({"v": {"label": "V", "basins": 1},
                            "w_plane": {"label": "W", "basins": 3, "barriers": [],
                                        "through": ["a", "b", "c"], "missed": [],
                                        "unresolved": ["b"]}})
    assert rows[1][1] == "not resolved (!)" and "resolve the basin of b" in rows[1][2]


def test_a_plane_far_longer_than_wide_is_drawn_with_a_scale_per_axis(tmp_path):
    from landscape.figures import plot_contours
    from landscape.grid import Surface

    x, y = np.linspace(-0.35, 4.5, 9), np.linspace(-0.35, 89.0, 11)
    values = np.add.outer(x ** 2, (y / 20) ** 2) + 0.01
    far = Surface(x=x, y=y, metrics={"train_loss": values}, done=np.ones(values.shape, bool))
    fig = plot_contours(far, kind="filled", out=tmp_path / "far.png")
    assert fig.axes[0].get_aspect() == "auto"
    assert "axes not to scale" in fig.axes[0].get_xlabel()
    square = Surface(x=x, y=x, metrics={"train_loss": np.add.outer(x ** 2, x ** 2)},
                     done=np.ones((9, 9), bool))
    fig = plot_contours(square, kind="filled", out=tmp_path / "square.png")
    assert fig.axes[0].get_aspect() == 1.0 and "not to scale" not in fig.axes[0].get_xlabel()


def test_a_coarse_plane_through_three_narrow_minima_counts_only_the_basins_at_the_models():
    """Three wells far narrower than the grid step, each on a grid point, with a high ridge
    between: the three basins at the models are counted (barriers as upper bounds); when one
    model is not a minimum of its own on the grid, nothing is counted."""
    from landscape.shape import surface_shape
    from landscape.workflows.summary import _anchored_only, _plane_caveats

    x = np.linspace(-0.4, 1.4, 10)  # step 0.2
    y = np.linspace(-0.4, 1.4, 10)
    centres = np.array([[x[2], y[2]], [x[7], y[2]], [x[4], y[7]]])
    xx, yy = np.meshgrid(x, y, indexing="ij")
    values = np.full(xx.shape, 2.0)
    for cx, cy in centres:
        values = np.minimum(values, 0.1 + 500 * ((xx - cx) ** 2 + (yy - cy) ** 2))
    anchors = {"coords": centres, "labels": np.array(["a", "b", "c"])}
    plane = types.SimpleNamespace(x=x, y=y, anchors=anchors, metrics={"train_loss": values},
                                  done=np.ones(values.shape, bool), complete=True)
    shape = surface_shape(plane, metric="train_loss", rise=0.1)
    minima = [{"at": list(at), "train_loss": v} for at, v, _ in shape.minima]
    barriers = [{"at": list(at), "saddle": s, "height": s - 0.1} for at, s in shape.barriers]
    caveats = _plane_caveats(plane, 0.1, minima)
    assert caveats["unresolved"] == ["a", "b", "c"] and caveats["anchored_basins"] == 3
    assert "only the 3 basins at the models" in caveats["warnings"][0]
    only = _anchored_only(plane, {"label": "W", "minima": minima, "barriers": barriers})
    assert only["basins"] == 3 and only["label"] == "W" and only["barriers_upper_bounds"]
    rows = v_versus_w_rows({"v": {"label": "V", "basins": 1},
                            "w_plane": {"through": ["a", "b", "c"], "missed": [],
                                        **caveats, **only}})
    assert rows[1][1] == "W (!)" and rows[1][2].startswith("3 at the models")
    assert "(upper bounds)" in rows[1][3]
    # the third model one grid step beside its well's lowest grid point: still its basin
    plane.anchors = {"coords": np.array([centres[0], centres[1], [x[4], y[6]]]),
                     "labels": np.array(["a", "b", "c"])}
    assert _plane_caveats(plane, 0.1, minima)["anchored_basins"] == 3
    # the third model on the ridge, not in a basin of its own: nothing is counted
    plane.anchors = {"coords": np.array([centres[0], centres[1], [x[4], y[5]]]),
                     "labels": np.array(["a", "b", "c"])}
    caveats = _plane_caveats(plane, 0.1, minima)
    assert "anchored_basins" not in caveats
    assert "its basin count and barriers are not counted" in caveats["warnings"][0]
