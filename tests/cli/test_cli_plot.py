"""``landscape plot`` and ``landscape render`` through click's test runner, on HDF5 files."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from landscape_cli.main import cli
from landscape import plot3d
from landscape.store import load_surface, save_surface
from landscape.surface import Surface


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _surface(x, y, loss, **extra) -> Surface:
    metrics = {"train_loss": loss, "test_loss": 1.1 * loss + 0.1, "train_acc": 1 / (1 + loss)}
    metrics.update(extra.pop("metrics", {}))
    return Surface(x=x, y=y, metrics=metrics, done=np.ones(np.shape(loss), bool), **extra)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("surfaces")
    x = np.linspace(-1, 1, 15)
    y = np.linspace(-1, 1, 11)
    xx, yy = np.meshgrid(x, y, indexing="ij")
    flat = 0.05 + 1.2 * np.hypot(xx, yy)
    sharp = 0.02 + 40 * (xx ** 2 - 0.25) ** 2 + 6 * yy ** 2
    eigs = {"eig_max": np.full(xx.shape, 12.0), "eig_min": 40 * (12 * xx ** 2 - 1.0)}
    t = np.linspace(0, 1, 8)
    trajectory = {"coords": np.column_stack([-0.8 + 0.8 * t, 0.5 * (1 - t)]),
                  "explained_variance_ratio": np.array([0.8, 0.1]),
                  "labels": np.array([f"epoch_{k}" for k in range(8)]),
                  "epochs": np.arange(8)}
    surfaces = {
        "flat": _surface(x, y, flat),
        "sharp": _surface(x, y, sharp, metrics=eigs),
        "line_a": _surface(x, None, flat[:, 5]),
        "line_b": _surface(x, None, sharp[:, 5]),
        "pca": _surface(x, y, flat, trajectory=trajectory),
    }
    paths = {name: save_surface(root / f"{name}.h5", s) for name, s in surfaces.items()}
    paths["text"] = root / "notes.h5"
    paths["text"].write_text("not a surface\n")
    grid = np.linspace(-1, 20, 100)
    paths["spec"] = root / "spec.json"
    paths["spec"].write_text(json.dumps({"density": {"grid": grid.tolist(),
                                                     "density": np.exp(-grid ** 2).tolist()},
                                         "top_eigenvalues": [14.4]}))
    paths["bad_spec"] = root / "bad.json"
    paths["bad_spec"].write_text(json.dumps({"eigenvalues": [1.0, 2.0]}))
    return paths


def image_size(path) -> tuple[int, int]:
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"))
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 30  # a real picture, not blank
    return rgb.shape[1], rgb.shape[0]


def assert_one_line_error(result, *fragments) -> None:
    assert result.exit_code == 1, result.output
    message = result.stderr.strip()
    assert message.startswith("Error: ") and "\n" not in message and "Traceback" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_plot_side_by_side_contours(files, tmp_path):
    out = tmp_path / "fig.png"
    result = run("plot", files["flat"], files["sharp"], "--kind", "filled", "--out", out,
                 "--labels", "small batch,large batch", "--vmax", "10", "--log",
                 "--size", "8x3.5", "--dpi", "50", "--title", "flat V vs sharp W")
    assert result.exit_code == 0, result.output
    assert image_size(out) == (400, 175)


@pytest.mark.parametrize("kind", ["contour", "heatmap", "eig-ratio", "trajectory"])
def test_plot_2d_kinds(files, tmp_path, kind):
    source = files["pca"] if kind == "trajectory" else files["sharp"]
    out = tmp_path / f"{kind}.svg"
    result = run("plot", source, "--kind", kind, "--out", out)
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"<?xml") and b"<svg" in out.read_bytes()


def test_plot_lines_by_default_for_1d_and_density_for_json(files, tmp_path):
    out = tmp_path / "lines.png"
    result = run("plot", files["line_a"], files["line_b"], "--out", out, "--dpi", "40",
                 "--labels", "small,large", "--log")
    assert result.exit_code == 0, result.output
    assert image_size(out) == (240, 160)
    out = tmp_path / "density.pdf"
    result = run("plot", files["spec"], "--out", out)
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"%PDF")


def test_plot_errors_are_one_line_and_leave_no_file(files, tmp_path):
    out = tmp_path / "fig.png"
    assert_one_line_error(run("plot", files["text"], "--out", out), "notes.h5")
    assert_one_line_error(run("plot", files["line_a"], "--kind", "contour", "--out", out),
                          "1-D surface", "--kind contour needs 2-D")
    assert_one_line_error(run("plot", files["flat"], "--kind", "line", "--out", out),
                          "2-D surface", "use --kind contour")
    assert_one_line_error(run("plot", files["flat"], "--metric", "val_loss", "--out", out),
                          "no metric 'val_loss'", "available: test_loss, train_acc, train_loss")
    assert_one_line_error(run("plot", files["flat"], "--out", tmp_path / "fig.bmp"),
                          "unknown figure format '.bmp'")
    assert_one_line_error(run("plot", files["bad_spec"], "--out", out),
                          "bad.json", "not a spectral density")
    assert_one_line_error(run("plot", files["flat"], "--kind", "density", "--out", out),
                          "not a JSON file")
    assert_one_line_error(run("plot", files["flat"], "--kind", "eig-ratio", "--out", out),
                          "no metric 'eig_min'")
    assert_one_line_error(run("plot", files["flat"], "--kind", "trajectory", "--out", out),
                          "no trajectory")
    assert_one_line_error(run("plot", files["flat"], "--cmap", "nope", "--out", out),
                          "unknown colour map")
    result = run("plot", files["flat"], files["sharp"], "--labels", "one", "--out", out)
    assert result.exit_code == 2 and "1 labels for 2 inputs" in result.output
    result = run("plot", files["flat"], "--size", "1000x1000", "--out", out)
    assert result.exit_code == 2 and "200,000 pixels across" in result.output
    result = run("plot", files["flat"], "--axis-names", "a,b,c", "--out", out)
    assert result.exit_code == 2 and "3 names for at most 2 directions" in result.output
    assert list(tmp_path.iterdir()) == []


def test_incomplete_surfaces_are_drawn_with_a_warning(files, tmp_path):
    from landscape.store import load_surface

    part = load_surface(files["flat"])
    part.done[:, 6:] = False
    path = save_surface(tmp_path / "part.h5", part)
    result = run("plot", path, "--out", tmp_path / "p.png")
    assert result.exit_code == 0, result.output
    assert "is incomplete (90 of 165 points computed)" in result.stderr
    assert "warning" not in run("plot", files["flat"], "--out", tmp_path / "q.png").stderr


def test_render_png_gif_and_vtk(files, tmp_path):
    import pyvista as pv

    png, gif, vts = tmp_path / "r.png", tmp_path / "o.gif", tmp_path / "s.vts"
    result = run("render", files["flat"], files["sharp"], "--out", png, "--gif", gif,
                 "--vtk", vts, "--size", "200x150", "--frames", "3", "--log",
                 "--labels", "small,large")
    assert result.exit_code == 0, result.output
    assert image_size(png) == (2 * 200 + 110, 150)
    assert gif.stat().st_size > 1000
    from landscape.store import load_surface
    for k, name in ((1, "flat"), (2, "sharp")):
        back = pv.read(tmp_path / f"s_{k}.vts")
        loss = load_surface(files[name]).metrics["train_loss"]
        np.testing.assert_array_equal(back.point_data["train_loss"], loss.ravel(order="F"))


def test_render_trajectory_path_to_vtp(files, tmp_path):
    import pyvista as pv

    vtp = tmp_path / "path.vtp"
    result = run("render", files["pca"], "--vtp", vtp)
    assert result.exit_code == 0, result.output
    assert pv.read(vtp).n_points == 8


def test_render_errors_leave_no_file(files, tmp_path, monkeypatch):
    png = tmp_path / "r.png"
    assert_one_line_error(run("render", files["line_a"], "--out", png),
                          "1-D surface", "--kind line")
    assert_one_line_error(run("render", files["text"], "--out", png), "notes.h5")
    assert_one_line_error(run("render", files["flat"], "--out", png, "--gif",
                              tmp_path / "o.avi"), "unknown GIF format '.avi'")
    assert_one_line_error(run("render", files["flat"], "--out", png, "--metric", "nope"),
                          "no metric 'nope'")
    assert_one_line_error(run("render", files["flat"], "--vtk", tmp_path / "s.vts", "--vtp",
                              tmp_path / "p.vtp"), "carries no training path for --vtp")
    monkeypatch.setattr("landscape.figures.outputs.mp4_writer", lambda: None)
    assert_one_line_error(run("render", files["flat"], "--out", png, "--mp4",
                              tmp_path / "o.mp4"), "MP4 needs the imageio-ffmpeg or av")
    result = run("render", files["flat"])
    assert result.exit_code == 2 and "nothing to do" in result.output
    assert_one_line_error(run("render", files["flat"], "--out", png, "--zmax", "-1"),
                          "--zmax (-1) must be above the smallest train_loss (0.05)")
    result = run("render", files["flat"], "--out", png, "--size", "90000x700")
    assert result.exit_code == 2 and "at most 30000 pixels a side" in result.output
    assert list(tmp_path.iterdir()) == []


def test_plot_saddles_marks_each_basins_saddle(files, tmp_path, monkeypatch):
    """--saddles: the double well's two basins meet at the pass (0, 0); the flat funnel has
    one basin and no saddle. The crosses are drawn where the persistence pairs put them."""
    import landscape.figures.contours as contours

    seen = []
    original = contours.plot_contours

    def spy(*args, **kwargs):
        seen.append(kwargs.get("saddles"))
        return original(*args, **kwargs)

    monkeypatch.setattr(contours, "plot_contours", spy)
    out = tmp_path / "saddles.png"
    result = run("plot", files["sharp"], files["flat"], "--kind", "filled", "--saddles",
                 "--out", out)
    assert result.exit_code == 0, result.output
    image_size(out)
    sharp, flat = seen[0]
    np.testing.assert_array_equal(sharp, [[0.0, 0.0]])
    assert flat.shape == (0, 2)
    fig = original(load_surface(files["sharp"]), kind="filled", saddles=[sharp])
    crosses = [line for line in fig.axes[0].lines if line.get_label() == "saddle"]
    assert len(crosses) == 1 and list(crosses[0].get_xydata()[0]) == [0.0, 0.0]
    bad = run("plot", files["line_a"], "--kind", "line", "--saddles", "--out", tmp_path / "l.png")
    assert bad.exit_code == 2 and "--saddles" in bad.output and not (tmp_path / "l.png").exists()
