"""2-D figures drawn from analytic surfaces: a flat V-shaped funnel and a sharp W double well."""
from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import LogNorm
from PIL import Image

from landscape import plot2d
from landscape.errors import LandscapeError
from landscape.surface import Surface


def funnel(n: int = 31) -> Surface:
    """Flat V: loss grows like the distance from the centre."""
    x = np.linspace(-1, 1, n)
    xx, yy = np.meshgrid(x, x, indexing="ij")
    loss = 0.05 + 1.2 * np.hypot(xx, yy)
    return _surface(x, x, loss, "flat_v")


def double_well(n: int = 31, m: int | None = None) -> Surface:
    """Sharp W along x (minima at x = +-0.5), a parabola along y."""
    x = np.linspace(-1, 1, n)
    y = np.linspace(-0.8, 0.8, m or n)
    xx, yy = np.meshgrid(x, y, indexing="ij")
    loss = 0.02 + 40 * (xx ** 2 - 0.25) ** 2 + 6 * yy ** 2
    # exact Hessian eigenvalues of the loss: d2/dx2 and d2/dy2 (no cross term)
    hxx, hyy = 40 * (12 * xx ** 2 - 1.0), np.full_like(xx, 12.0)
    metrics = {"eig_max": np.maximum(hxx, hyy), "eig_min": np.minimum(hxx, hyy)}
    return _surface(x, y, loss, "sharp_w", metrics)


def _surface(x, y, loss, name, extra=None) -> Surface:
    metrics = {"train_loss": loss, "test_loss": 1.1 * loss + 0.1,
               "train_acc": 1 / (1 + loss), "test_acc": 0.9 / (1 + loss)}
    metrics.update(extra or {})
    return Surface(x=x, y=y, metrics=metrics, done=np.ones(loss.shape, bool), path=f"{name}.h5")


def line_of(surface: Surface, name: str) -> Surface:
    j = len(surface.y) // 2
    return Surface(x=surface.x, y=None, metrics={k: v[:, j] for k, v in surface.metrics.items()},
                   done=surface.done[:, j], path=f"{name}.h5")


def with_holes(surface: Surface, fraction: float = 0.2, seed: int = 0) -> Surface:
    done = np.random.default_rng(seed).random(surface.shape) >= fraction
    metrics = {k: np.where(done, v, np.nan) for k, v in surface.metrics.items()}
    return Surface(x=surface.x, y=surface.y, metrics=metrics, done=done, path=surface.path)


def assert_real_image(path, size=None) -> None:
    """A PNG of the size asked, with many colours and real contrast (not blank)."""
    with Image.open(path) as im:
        assert im.format == "PNG"
        rgb = np.asarray(im.convert("RGB"))
    if size is not None:
        assert (rgb.shape[1], rgb.shape[0]) == size
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 30
    assert rgb.std() > 15 and (rgb < 100).any() and (rgb > 240).any()


def mappables(ax):
    """The colour-mapped artists of a panel (contour sets, meshes)."""
    return [c for c in ax.collections if getattr(c, "norm", None) is not None
            and c.get_array() is not None]


def test_line_overlay_draws_the_given_values_and_writes_png(tmp_path):
    small, large = line_of(funnel(), "sb"), line_of(double_well(), "lb")
    out = tmp_path / "line.png"
    fig = plot2d.plot_lines([small, large], labels=["small batch", "large batch"],
                            size=(4, 3), out=out, dpi=60)
    assert_real_image(out, (240, 180))
    ax, twin = fig.axes[0], fig.axes[1]
    loss_lines, acc_lines = ax.get_lines(), twin.get_lines()
    # two runs x (train, test) on each axis; the first curve is the small batch train loss
    assert len(loss_lines) == 4 and len(acc_lines) == 4
    np.testing.assert_allclose(loss_lines[0].get_ydata(), small.metrics["train_loss"])
    np.testing.assert_allclose(acc_lines[0].get_ydata(), 100 * small.metrics["train_acc"])
    assert loss_lines[1].get_linestyle() == "--"  # test split dashed
    assert loss_lines[0].get_color() != loss_lines[2].get_color()  # runs differ in colour
    assert twin.get_ylabel() == "accuracy (%)" and ax.get_ylabel() == "loss"
    legend_texts = {t.get_text() for t in fig.legends[0].get_texts()}
    assert {"small batch", "large batch", "train", "test"} <= legend_texts


def test_line_log_scale_clip_and_metric_choice():
    small = line_of(funnel(), "sb")
    fig = plot2d.plot_lines(small, ["test_loss"], accuracy=False, log=True, vmax=2.0)
    ax = fig.axes[0]
    assert len(fig.axes) == 1 and ax.get_yscale() == "log"
    assert ax.get_ylim()[1] == pytest.approx(2.0)
    assert len(ax.get_lines()) == 1


def test_line_marks_interpolation_anchors():
    x = np.linspace(-0.5, 1.5, 21)
    s = Surface(x=x, y=None, metrics={"train_loss": (x - 0.2) ** 2}, done=np.ones(21, bool),
                provenance={"type": "interpolation"},
                anchors={"coords": np.array([[0.0], [1.0]]), "labels": ["sb.pt", "lb.pt"]})
    fig = plot2d.plot_lines(s)
    ax = fig.axes[0]
    vertical = [ln for ln in ax.get_lines() if np.ptp(ln.get_xdata()) == 0]
    assert sorted(ln.get_xdata()[0] for ln in vertical) == [0.0, 1.0]
    assert "0: sb" in ax.get_xlabel() and "1: lb" in ax.get_xlabel()


@pytest.mark.parametrize("kind", ["contour", "filled", "heatmap"])
def test_side_by_side_panels_share_colour_scale_and_levels(kind, tmp_path):
    flat, sharp = funnel(), double_well()
    out = tmp_path / f"{kind}.png"
    fig = plot2d.plot_contours([flat, sharp], kind=kind, labels=["small", "large"],
                               size=(8, 3.5), dpi=50, out=out, vmax=float("inf"))
    assert_real_image(out, (400, 175))
    panels = fig.axes[:2]
    arts = [mappables(ax) for ax in panels]
    assert all(arts)
    lo = min(np.nanmin(s.metrics["train_loss"]) for s in (flat, sharp))
    hi = max(np.nanmax(s.metrics["train_loss"]) for s in (flat, sharp))
    for group in arts:
        for art in group:
            assert (art.norm.vmin, art.norm.vmax) == pytest.approx((lo, hi))
    # the flat panel alone would have stopped at its own maximum: sharing really changed it
    assert np.nanmax(flat.metrics["train_loss"]) < 0.5 * hi
    if kind != "heatmap":
        np.testing.assert_array_equal(arts[0][0].levels, arts[1][0].levels)
    assert [ax.get_title() for ax in panels] == ["small", "large"]
    assert len(fig.axes) == 3 and fig.axes[2].get_ylabel() == "train loss"  # one colour bar
    assert all(ax.get_aspect() == 1.0 for ax in panels)


def test_default_loss_cap_shows_every_basin_not_the_worst_corner():
    """Three panels, one with a corner at loss 651: the default colour range stops near the
    minima (round), below the corner, above every panel's basin edge (+0.1)."""
    flat, sharp = funnel(), double_well()
    far = _surface(flat.x, flat.y, flat.metrics["train_loss"] + 650 * (flat.x[:, None] > 0.9)
                   * (flat.y[None, :] > 0.9), "far")
    panels = [flat, sharp, far]
    fig = plot2d.plot_contours(panels, kind="filled")
    cs = mappables(fig.axes[0])[0]
    cap = cs.norm.vmax
    values = [p.metrics["train_loss"] for p in panels]
    assert cap == plot2d.loss_cap(values) and plot2d._is_round(cap)
    assert cap < 0.1 * max(v.max() for v in values) and cs.extend == "max"
    for v in values:
        assert cap > v.min() + 0.1  # each basin's +0.1 edge is inside the colour range
    # a metric that is not a loss keeps its full range; an explicit vmax wins; inf: no cap
    fig = plot2d.plot_contours(panels, "train_acc", kind="filled")
    assert mappables(fig.axes[0])[0].norm.vmax == pytest.approx(max(v.max() for v in
                                                                    (1 / (1 + x) for x in values)))
    assert mappables(plot2d.plot_contours(sharp, vmax=3.0).axes[0])[0].norm.vmax == 3.0
    assert plot2d.loss_cap([np.array([0.01, 0.02])]) == 0.02  # never above the largest value


def test_rise_marks_basin_widths_in_lines_and_panels():
    """The width drawn is basin_shape's: funnel 0.05 + 1.2 r reaches +0.1 at r = 1/12."""
    flat = funnel(61)
    line = line_of(flat, "flat")
    fig = plot2d.plot_lines([line, line_of(double_well(61), "sharp")], ["train_loss"],
                            accuracy=False, labels=["flat", "sharp"], rise=0.1)
    ax = fig.axes[0]
    assert ax.get_ylim()[0] == 0.0  # linear loss axis from 0, capped near the minima
    bars = [ln for ln in ax.get_lines() if len(ln.get_ydata()) == 2
            and np.ptp(ln.get_ydata()) == 0 and ln.get_linestyle() != "None"]
    assert np.ptp(bars[0].get_xdata()) == pytest.approx(2 / 12, abs=1e-9)
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "flat: width 0.167 at +0.1" in texts
    fig = plot2d.plot_contours(flat, rise=0.1, labels=["flat"])
    assert fig.axes[0].get_title().startswith("flat\nbasin width 0.16")


def test_vmax_clips_and_log_levels_are_round():
    sharp = double_well()
    fig = plot2d.plot_contours(sharp, kind="filled", vmax=3.0)
    cs = mappables(fig.axes[0])[0]
    assert cs.norm.vmax == 3.0 and cs.levels.max() <= 3.0 + 1e-12
    assert cs.extend == "max"  # clipped values shown in the top colour, not dropped
    fig = plot2d.plot_contours(sharp, kind="filled", log=True, levels=9)
    cs = mappables(fig.axes[0])[0]
    assert isinstance(cs.norm, LogNorm)
    inner = cs.levels[1:-1]
    assert len(inner) >= 5 and all(plot2d._is_round(v) for v in inner)
    ratios = inner[1:] / inner[:-1]  # about even on the log scale
    assert ratios.min() > 1.1 and ratios.max() < 3.5
    norm, levels = plot2d.shared_scale([np.array([0.003, 651.0])], levels=20, log=True,
                                       vmin=0.01)
    assert norm.vmin == 0.01 and all(plot2d._is_round(v) for v in levels[:-1])  # top: 651


def test_linear_levels_are_round_numbers_inside_the_range():
    norm, levels = plot2d.shared_scale([np.array([0.05, 9.7])], levels=11)
    inner = levels[1:-1]
    np.testing.assert_allclose(inner, np.round(inner))  # 1, 2, ..., 9
    assert levels[0] == 0.05 and levels[-1] == 9.7 and (norm.vmin, norm.vmax) == (0.05, 9.7)
    with pytest.raises(LandscapeError, match="vmin"):
        plot2d.shared_scale([np.array([0.0, 1.0])], vmin=2.0, vmax=1.0)
    with pytest.raises(LandscapeError, match=r"vmax \(0.01\) must be above the smallest"):
        plot2d.shared_scale([np.array([0.05, 1.0])], vmax=0.01)


def test_minimum_is_marked_and_axes_named():
    sharp = double_well()
    fig = plot2d.plot_contours(sharp, axis_names=["delta", "eta"])
    ax = fig.axes[0]
    stars = [ln for ln in ax.get_lines() if ln.get_marker() == "*"]
    assert len(stars) == 1
    i, j = np.unravel_index(np.argmin(sharp.metrics["train_loss"]), sharp.shape)
    assert (stars[0].get_xdata()[0], stars[0].get_ydata()[0]) == (sharp.x[i], sharp.y[j])
    assert abs(sharp.x[i]) == pytest.approx(0.5, abs=0.04)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("delta", "eta")


def test_axis_labels_from_the_recipe():
    s = funnel()
    random = Surface(s.x, s.y, s.metrics, s.done, provenance={"type": "random",
                                                             "norm": "filter"})
    assert plot2d.axis_labels(random) == ("direction 1 (filter-normalized)",
                                          "direction 2 (filter-normalized)")
    assert plot2d.axis_labels(s) == ("direction 1", "direction 2")
    pca = Surface(s.x, s.y, s.metrics, s.done,
                  trajectory={"coords": np.zeros((3, 2)),
                              "explained_variance_ratio": np.array([0.712, 0.143])})
    assert plot2d.axis_labels(pca) == ("PC1 (71.2% var.)", "PC2 (14.3% var.)")


def test_nan_points_do_not_crash_and_are_left_blank(tmp_path):
    holes = with_holes(double_well(), 0.25)
    for kind in ("contour", "filled", "heatmap"):
        fig = plot2d.plot_contours(holes, kind=kind, out=tmp_path / f"{kind}.png", dpi=40)
        assert_real_image(tmp_path / f"{kind}.png")
    mesh = mappables(fig.axes[0])[0]
    assert np.ma.getmaskarray(mesh.get_array()).sum() == (~holes.done).sum()
    empty = Surface(holes.x, holes.y, {"train_loss": np.full(holes.shape, np.nan)},
                    np.zeros(holes.shape, bool))
    with pytest.raises(LandscapeError, match="no computed points"):
        plot2d.plot_contours(empty)


def test_clear_errors_for_wrong_input():
    with pytest.raises(LandscapeError, match="1-D surface; a contour plot needs a 2-D"):
        plot2d.plot_contours(line_of(funnel(), "line"))
    with pytest.raises(LandscapeError, match="2-D surface; a line plot needs a 1-D"):
        plot2d.plot_lines(funnel())
    with pytest.raises(LandscapeError,
                       match="no metric 'val_loss'; available: test_acc, test_loss"):
        plot2d.plot_contours(funnel(), "val_loss")
    with pytest.raises(LandscapeError, match="unknown plot kind"):
        plot2d.plot_contours(funnel(), kind="surface")
    with pytest.raises(LandscapeError, match="2 labels for 1 surfaces"):
        plot2d.plot_contours(funnel(), labels=["a", "b"])
    with pytest.raises(LandscapeError, match="unknown colour map"):
        plot2d.plot_contours(funnel(), cmap="no-such-map")


def test_trajectory_over_pca_contours(tmp_path):
    s = funnel()
    t = np.linspace(0, 1, 12)
    path = np.column_stack([-0.8 + 0.8 * t, 0.6 * (1 - t) ** 2])
    pca = Surface(s.x, s.y, s.metrics, s.done, path="pca.h5",
                  trajectory={"coords": path, "explained_variance_ratio": [0.9, 0.05]})
    out = tmp_path / "traj.png"
    fig = plot2d.plot_trajectory(pca, out=out, dpi=50)
    assert_real_image(out)
    ax = fig.axes[0]
    drawn = [ln for ln in ax.get_lines() if len(ln.get_xdata()) == len(path)]
    np.testing.assert_allclose(np.column_stack(drawn[0].get_data()), path)
    assert ax.get_xlabel() == "PC1 (90.0% var.)" and ax.get_ylabel() == "PC2 (5.0% var.)"
    # explicit arguments win over the stored ones
    fig = plot2d.plot_trajectory(s, path[::-1], explained_variance=[60.0, 30.0])
    assert fig.axes[0].get_xlabel() == "PC1 (60.0% var.)"
    with pytest.raises(LandscapeError, match="no trajectory"):
        plot2d.plot_trajectory(s)


def test_eig_ratio_map_values_and_scale(tmp_path):
    sharp = double_well()
    expected = np.abs(sharp.metrics["eig_min"] / sharp.metrics["eig_max"])
    np.testing.assert_allclose(plot2d.eig_ratio(sharp), expected)
    out = tmp_path / "ratio.png"
    fig = plot2d.plot_eig_ratio([sharp, sharp], labels=["a", "b"], out=out, dpi=40)
    assert_real_image(out)
    mesh = mappables(fig.axes[0])[0]
    assert (mesh.norm.vmin, mesh.norm.vmax) == (0.0, 0.5)
    np.testing.assert_allclose(np.asarray(mesh.get_array()).reshape(expected.T.shape),
                               expected.T)
    # the non-convex ridge between the wells (d2/dx2 < 0) shows as a large ratio
    assert expected[len(sharp.x) // 2, 0] > 0.2 and expected[0, 0] < 0.05
    with pytest.raises(LandscapeError, match="no metric 'eig_min'"):
        plot2d.plot_eig_ratio(funnel())


def test_density_accepts_pairs_and_dicts(tmp_path):
    grid = np.linspace(-1, 20, 200)
    small = np.exp(-grid ** 2)
    large = np.exp(-grid ** 2) + 1e-3 * np.exp(-(grid - 14) ** 2)
    out = tmp_path / "density.png"
    fig = plot2d.plot_density([(grid, small),
                               {"density": {"grid": grid.tolist(), "density": large.tolist()}}],
                              labels=["small", "large"], out=out, dpi=50)
    assert_real_image(out)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    fig = plot2d.plot_density({"grid": grid, "density": small}, log=False)
    np.testing.assert_allclose(fig.axes[0].get_lines()[0].get_ydata(), small)
    with pytest.raises(LandscapeError, match="not a spectral density"):
        plot2d.density_arrays({"eigenvalues": [1, 2]})
    with pytest.raises(LandscapeError, match="equal length"):
        plot2d.density_arrays((grid, small[:-1]))


@pytest.mark.parametrize("suffix, magic", [(".pdf", b"%PDF"), (".svg", b"<?xml")])
def test_vector_formats(tmp_path, suffix, magic):
    out = tmp_path / f"fig{suffix}"
    plot2d.plot_contours([funnel(), double_well()], kind="filled", out=out)
    data = out.read_bytes()
    assert data.startswith(magic) and len(data) > 5000
    if suffix == ".svg":
        assert b"<svg" in data
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary file left


def test_unknown_suffix_and_failed_save_leave_no_file(tmp_path, monkeypatch):
    fig = plot2d.plot_lines(line_of(funnel(), "a"))
    with pytest.raises(LandscapeError, match="unknown figure format '.jpeg'"):
        plot2d.save_figure(fig, tmp_path / "fig.jpeg")

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(fig, "savefig", broken)
    with pytest.raises(RuntimeError):
        plot2d.save_figure(fig, tmp_path / "fig.png")
    assert list(tmp_path.iterdir()) == []


def test_plot_paths_names_each_path_and_planes_of_different_extent_keep_their_axes():
    t = np.linspace(0, 1, 11)
    paths = [Surface(x=t, y=None, metrics={"train_loss": 0.1 + h * np.sin(np.pi * t),
                                           "train_acc": 1 - 0.1 * np.sin(np.pi * t)},
                     done=np.ones(11, bool), provenance={"path_label": name},
                     anchors={"coords": np.array([[0.0], [1.0]]),
                              "labels": np.array(["runs/a/model.pt", "runs/b/model.pt"])})
             for name, h in (("bezier curve", 0.05), ("straight line", 2.0))]
    fig = plot2d.plot_paths(paths)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[:2] == ["bezier curve", "straight line"]
    # The endpoints are named by their run folders.
    assert {"a", "b"} <= {t.get_text() for t in fig.axes[0].texts}
    wide = Surface(x=np.linspace(-1, 2, 31), y=np.linspace(-1, 2, 31),
                   metrics={"train_loss": funnel().metrics["train_loss"]},
                   done=np.ones((31, 31), bool))
    fig = plot2d.plot_contours([funnel(), wide], share_axes=False)
    assert fig.axes[0].get_xlim() != fig.axes[1].get_xlim()
