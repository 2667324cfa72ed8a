"""`landscape plot` of runs' history.json and of spectrum files' eigenvalues; names with
commas; output names checked before any work."""
from __future__ import annotations

import json

import click
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from landscape import TrainConfig, build_model, train
from landscape import figures as plot2d
from landscape.data import load_dataset
from landscape.hessian import EigenResult, spectrum_record
from landscape.store import save_surface
from landscape.surface import Surface
from landscape_cli.common import split_names
from landscape_cli.main import cli

from cli_helpers import one_line_error


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _spectrum(path, values):
    eigen = EigenResult(values=np.sort(values), vectors=None,
                        residuals=np.full(len(values), 1e-6),
                        n_products=10, seconds=0.1, which="largest", mode="eval",
                        method="lanczos", hvp="double", converged=True, n_params=50)
    path.write_text(json.dumps(spectrum_record(eigen=eigen, checkpoint="x.pt")))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    bundle = load_dataset("mnist1d", train_subset=128, test_subset=64)
    for name, batch in (("small", 16), ("large", 128)):
        train(build_model("mlp", bundle, width=8), bundle,
              TrainConfig(lr=0.05, batch_size=batch, epochs=6, checkpoint_every=0,
                          progress=False), out_dir=root / name)
    return root


def test_split_names_commas_escapes_and_repeats():
    assert split_names(("a,b",)) == ["a", "b"]
    assert split_names(("lr 0.1\\, bs 32,full batch",)) == ["lr 0.1, bs 32", "full batch"]
    assert split_names(("lr 0.1, bs 32", "full batch")) == ["lr 0.1, bs 32", "full batch"]
    assert split_names(()) is None
    with pytest.raises(click.BadParameter, match="1 labels for 2 inputs"):
        split_names(("a\\,b",), 2)


def test_axis_names_keep_their_commas(tmp_path, monkeypatch):
    x = np.linspace(-1, 1, 7)
    xx, yy = np.meshgrid(x, x, indexing="ij")
    loss = 1 + xx ** 2 + yy ** 2
    path = save_surface(tmp_path / "s.h5", Surface(x=x, y=x, metrics={"train_loss": loss},
                                                   done=np.ones(loss.shape, bool)))
    seen = {}
    real = plot2d.plot_contours

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(plot2d, "plot_contours", spy)
    out = tmp_path / "fig.png"
    res = run("plot", path, "--axis-names", "delta (filter, seed 0)", "--axis-names", "eta",
              "--labels", "run a\\, b", "--out", out)
    assert res.exit_code == 0, res.output
    assert seen["axis_names"] == ["delta (filter, seed 0)", "eta"]
    assert seen["labels"] == ["run a, b"]
    res = run("plot", path, "--axis-names", "a\\,b,c", "--out", tmp_path / "fig2.png")
    assert res.exit_code == 0, res.output
    assert seen["axis_names"] == ["a,b", "c"]


def test_training_curves_from_history_json(runs, tmp_path):
    out = tmp_path / "curves.png"
    res = run("plot", runs / "small" / "history.json", runs / "large" / "history.json",
              "--out", out)
    assert res.exit_code == 0, res.output
    fig = plot2d.plot_history([json.loads((runs / n / "history.json").read_text())["epochs"]
                               for n in ("small", "large")], labels=["small", "large"])
    legend = [t.get_text() for t in fig.axes[-1].get_legend().get_texts()]
    assert legend[0] == "small, train" and "large, test" in legend
    assert Image.open(out).size[0] > 500
    # a history file given as a spectrum is refused in one line
    res = run("plot", runs / "small" / "history.json", "--kind", "eigenvalues",
              "--out", tmp_path / "x.png")
    assert "not a landscape spectrum file" in one_line_error(res)
    assert not (tmp_path / "x.png").exists()


def test_eigenvalue_bars_from_spectrum_files(tmp_path):
    a = _spectrum(tmp_path / "small.json", np.array([3.0, 40.0, 12.0]))
    b = _spectrum(tmp_path / "large.json", np.array([90.0, 150.0, -2.0]))
    out = tmp_path / "eig.png"
    res = run("plot", a, b, "--kind", "eigenvalues", "--out", out)
    assert res.exit_code == 0, res.output
    assert Image.open(out).size[0] > 500
    # without --kind a spectrum with eigenvalues and no density is drawn as bars too
    res = run("plot", a, "--out", tmp_path / "eig2.png")
    assert res.exit_code == 0, res.output
    # a spectrum without eigenvalues (trace only) says what is missing
    (tmp_path / "trace.json").write_text(json.dumps({**spectrum_record(), "trace": {}}))
    res = run("plot", tmp_path / "trace.json", "--kind", "eigenvalues",
              "--out", tmp_path / "t.png")
    assert "holds no eigenvalues" in one_line_error(res)


def test_plot_eigenvalues_bars_are_largest_first():
    fig = plot2d.plot_eigenvalues([[3.0, 40.0, 12.0], [90.0, 150.0, -2.0]],
                                  labels=["small", "large"])
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights == [40.0, 12.0, 3.0, 150.0, 90.0, -2.0]
    centers = [p.get_x() + p.get_width() / 2 for p in fig.axes[0].patches]
    np.testing.assert_allclose(centers, [0.8, 1.8, 2.8, 1.2, 2.2, 3.2])
    fig = plot2d.plot_eigenvalues([5.0, 7.0])  # one spectrum as a plain list
    assert [p.get_height() for p in fig.axes[0].patches] == [7.0, 5.0]
    with pytest.raises(Exception, match="finite"):
        plot2d.plot_eigenvalues([1.0, float("nan")])


def test_surface_output_must_be_hdf5(tmp_path):
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"never read: the output name fails first")
    for command in ("surface", "interpolate"):
        for name in ("s.png", "s", "s.json"):
            args = [checkpoint] * (2 if command == "interpolate" else 1)
            res = run(command, *args, "--out", tmp_path / name)
            assert res.exit_code == 2
            assert "name it .h5 or .hdf5" in res.output, res.output
    assert list(tmp_path.iterdir()) == [checkpoint]


def test_plot_to_a_place_that_cannot_be_written_fails_before_drawing(tmp_path, monkeypatch):
    """An --out under a file (not a folder) is refused in one line before any surface is
    read or drawn; nothing is written."""
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    spec = _spectrum(tmp_path / "spec.json", np.array([3.0, 2.0, 1.0]))

    def never(*_a, **_k):
        raise AssertionError("drew before checking the output")

    monkeypatch.setattr(plot2d, "plot_eigenvalues", never)
    res = run("plot", spec, "--kind", "eigenvalues", "--out", blocker / "fig.png")
    line = one_line_error(res)
    assert "cannot be written" in line and "is a file, not a folder" in line
    assert blocker.read_text() == "a file, not a folder"


def test_rise_marks_basin_edges_in_plot_and_render(tmp_path, monkeypatch):
    """`plot --rise` and `render --rise` hand the rise to the drawing functions (the dashed
    edge of the contours, the red ring of the 3-D scene); a kind that marks no basin edge
    refuses it in one line."""
    from landscape import figures as plot3d

    x = np.linspace(-1, 1, 9)
    xx, yy = np.meshgrid(x, x, indexing="ij")
    loss = 0.05 + xx ** 2 + yy ** 2
    path = save_surface(tmp_path / "s.h5", Surface(
        x=x, y=x, metrics={"train_loss": loss, "train_acc": 1 / (1 + loss)},
        done=np.ones(loss.shape, bool), provenance={}))
    seen = {}
    for module, name in ((plot2d, "plot_contours"), (plot3d, "render_surface")):
        original = getattr(module, name)

        def spy(*args, _original=original, _name=name, **kwargs):
            seen[_name] = kwargs.get("rise")
            return _original(*args, **kwargs)
        monkeypatch.setattr(module, name, spy)
    res = run("plot", path, "--kind", "filled", "--rise", "0.2", "--out", tmp_path / "f.png")
    assert res.exit_code == 0, res.output
    res = run("render", path, "--rise", "0.2", "--size", "300x240", "--out", tmp_path / "r.png")
    assert res.exit_code == 0, res.output
    assert seen == {"plot_contours": 0.2, "render_surface": 0.2}
    assert (tmp_path / "f.png").is_file() and (tmp_path / "r.png").is_file()
    line = one_line_error(run("plot", path, "--kind", "eig-ratio", "--rise", "0.2",
                              "--out", tmp_path / "e.png"), code=2)
    assert "marks no basin edge" in line and not (tmp_path / "e.png").exists()
