"""``landscape shape`` and ``landscape sharpness`` through click's test runner."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from landscape_cli.main import cli
from landscape.checkpoint import load_checkpoint, save_checkpoint
from landscape.models import build_model
from landscape.shape import surface_shape
from landscape.sharpness import epsilon_sharpness
from landscape.store import save_surface
from landscape.surface import Surface


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def surface_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("surfaces")
    x = np.linspace(-2, 2, 41)
    y = np.linspace(-1, 1, 21)
    xx, yy = np.meshgrid(x, y, indexing="ij")
    plane = Surface(x=x, y=y, metrics={"train_loss": (xx ** 2 - 1) ** 2 + yy ** 2,
                                       "test_loss": xx ** 2 + yy ** 2},
                    done=np.ones(xx.shape, dtype=bool))
    line = Surface(x=x, y=None, metrics={"train_loss": np.abs(x)},
                   done=np.ones(x.shape, dtype=bool))
    partial = Surface(x=x, y=None, metrics={"train_loss": np.abs(x)},
                      done=np.arange(len(x)) < 10)
    paths = {}
    for name, surf in (("plane", plane), ("line", line), ("partial", partial)):
        paths[name] = save_surface(root / f"{name}.h5", surf)
    paths["text"] = root / "not_a_surface.h5"
    paths["text"].write_text("hello\n")
    return paths


def test_shape_of_a_double_well_surface(surface_files, tmp_path):
    out = tmp_path / "shape.json"
    result = run("shape", surface_files["plane"], "--json", out)
    assert result.exit_code == 0, result.output
    assert "label          W  (2 basins" in result.output
    saved = json.loads(out.read_text())
    from landscape.store import load_surface
    expected = surface_shape(load_surface(surface_files["plane"])).to_dict()
    assert saved["shape"] == json.loads(json.dumps(expected))
    assert saved["metric"] == "train_loss" and len(saved["surface_sha256"]) == 64
    assert "provenance" in saved


def test_shape_options_and_1d(surface_files):
    result = run("shape", surface_files["plane"], "--metric", "test_loss", "--rise", "0.5")
    assert result.exit_code == 0, result.output
    assert "label          V  (1 basin; a basin needs depth >= 1 x (value + 0.05))" in result.output
    line = run("shape", surface_files["line"], "--rise", "0.5")
    assert line.exit_code == 0, line.output
    assert "width          1  " in line.output  # |x| reaches 0.5 at +-0.5


@pytest.mark.parametrize("args,message", [
    (["missing.h5"], "does not exist"),
    (["@text"], "not a readable HDF5"),
    (["@plane", "--metric", "train_acc"], "no metric 'train_acc'"),
    (["@partial"], "incomplete"),
])
def test_shape_errors(surface_files, tmp_path, args, message):
    args = [str(surface_files[a[1:]]) if a.startswith("@") else a for a in args]
    out = tmp_path / "shape.json"
    result = run("shape", *args, "--json", out)
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output
    assert result.output.strip().startswith("Error:") and result.output.count("\n") == 1
    assert not out.exists()


def test_shape_bad_rise(surface_files):
    result = run("shape", surface_files["plane"], "--rise", "-1")
    assert result.exit_code == 2 and "--rise" in result.output


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from landscape.data import load_dataset

    bundle = load_dataset("mnist1d", train_subset=96, test_subset=32)
    model = build_model("mlp", bundle, seed=0, width=8)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt", model)


SMALL = ["--maxiter", "3", "--steps", "2", "--samples", "2", "--quiet"]


def test_sharpness_command(checkpoint, tmp_path):
    out = tmp_path / "sharp.json"
    result = run("sharpness", checkpoint, "--eps", "1e-3,5e-4", "--subspace-dim", "2",
                 "--out", out, *SMALL)
    assert result.exit_code == 0, result.output
    assert "epsilon (Keskar)" in result.output and "adaptive worst-case l2" in result.output
    saved = json.loads(out.read_text())
    model, info = load_checkpoint(checkpoint)
    assert saved["dataset"] == info["dataset"]  # the checkpoint's own 96-example subset
    eps = saved["sharpness"]["epsilon"]
    assert [(e["eps"], e["subspace_dim"]) for e in eps] == [(1e-3, 0), (1e-3, 2), (5e-4, 0),
                                                            (5e-4, 2)]
    from landscape.data import load_dataset
    direct = epsilon_sharpness(model, load_dataset(**info["dataset"]), 1e-3, maxiter=3)
    assert eps[0]["value"] == direct.value and eps[0]["base_loss"] == direct.base_loss
    assert saved["options"]["samples"] == 2 and len(saved["checkpoint_sha256"]) == 64
    assert saved["provenance"]["versions"]["torch"]
    assert saved["reparametrization"] is None
    again = tmp_path / "again.json"
    assert run("sharpness", checkpoint, "--eps", "1e-3,5e-4", "--subspace-dim", "2",
               "--out", again, *SMALL).exit_code == 0
    strip = lambda d: [{k: v for k, v in e.items() if k != "seconds"}  # noqa: E731
                       for e in d["sharpness"]["epsilon"] + d["sharpness"]["adaptive"]]
    assert strip(json.loads(again.read_text())) == strip(saved)


def test_sharpness_reparam_and_other_split(checkpoint, tmp_path):
    out = tmp_path / "sharp.json"
    result = run("sharpness", checkpoint, "--eps", "1e-3", "--split", "test",
                 "--reparam-alpha", "5", "--adaptive-rho-inf", "0", "--out", out, *SMALL)
    assert result.exit_code == 0, result.output
    assert "reparametrization: layer 1 x 5" in result.output
    saved = json.loads(out.read_text())
    names = [m["name"] for m in saved["reparametrization"]["measures"]]
    assert "top_hessian_eigenvalue" in names and "adaptive_sharpness_eta0" in names
    assert [a["p"] for a in saved["sharpness"]["adaptive"]] == ["2"]
    assert saved["sharpness"]["split"] == "test"


@pytest.mark.parametrize("args,code,message", [
    (["--eps", "abc"], 2, "--eps"),
    (["--eps", "1e-3,-1"], 2, "positive"),
    (["--samples", "1"], 2, "--samples"),
    (["--adaptive-rho", "-0.1"], 2, "--adaptive-rho"),
    (["--average-rho", "nan"], 2, "--average-rho"),
    (["--reparam-alpha", "0"], 2, "--reparam-alpha"),
])
def test_sharpness_bad_options(checkpoint, tmp_path, args, code, message):
    out = tmp_path / "sharp.json"
    result = run("sharpness", checkpoint, *args, "--out", out, "--quiet")
    assert result.exit_code == code and message in result.output
    assert not out.exists()


def test_sharpness_missing_checkpoint(tmp_path):
    result = run("sharpness", tmp_path / "nope.pt", "--quiet")
    assert result.exit_code == 1
    assert result.output.startswith("Error:") and "does not exist" in result.output


# ----------------------------------------------------------------------- outputs and guards

def test_shape_json_never_overwrites_its_surface(surface_files, tmp_path):
    from landscape._util import sha256_file

    src = surface_files["line"]
    before = sha256_file(src)
    for extra in ([], ["--force"]):
        result = run("shape", src, "--json", src, *extra)
        assert result.exit_code == 1 and "is an input" in result.stderr
        assert result.stderr.startswith("Error:") and result.stderr.count("\n") == 1
        assert sha256_file(src) == before


def test_shape_existing_json_needs_force(surface_files, tmp_path):
    out = tmp_path / "shape.json"
    out.write_text("keep me\n")
    result = run("shape", surface_files["line"], "--json", out)
    assert result.exit_code == 1 and "--force" in result.stderr
    assert "label" not in result.stdout and out.read_text() == "keep me\n"
    result = run("shape", surface_files["line"], "--json", out, "--force")
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["shape"]["label"] == "V"


def test_shape_refuses_an_accuracy(tmp_path):
    x = np.linspace(-1, 1, 21)
    acc = 0.9 - 0.5 * x ** 2  # a clean maximum: as a "loss" it would look like two basins
    path = save_surface(tmp_path / "acc.h5", Surface(
        x=x, y=None, metrics={"train_loss": x ** 2, "train_acc": acc},
        done=np.ones(x.shape, dtype=bool)))
    out = tmp_path / "shape.json"
    result = run("shape", path, "--metric", "train_acc", "--json", out)
    assert result.exit_code == 1 and "accuracy" in result.stderr and "train_loss" in result.stderr
    assert result.stderr.startswith("Error:") and result.stderr.count("\n") == 1
    assert not out.exists()


def test_shape_warns_on_an_edge_minimum_and_a_coarse_grid(tmp_path):
    edge = np.linspace(0.1, 0.5, 5)  # the minimum of x^2 (at 0) lies off the grid
    coarse = np.linspace(-0.5, 0.5, 5)  # 4 (x^2 + y^2) reaches +0.1 well within one step
    xx, yy = np.meshgrid(coarse, coarse, indexing="ij")
    fine = np.linspace(-1, 1, 41)
    fx, fy = np.meshgrid(fine, fine, indexing="ij")
    done = lambda *a: np.ones(tuple(len(v) for v in a), dtype=bool)  # noqa: E731
    paths = {name: save_surface(tmp_path / f"{name}.h5", surf) for name, surf in (
        ("edge", Surface(x=edge, y=None, metrics={"train_loss": edge ** 2}, done=done(edge))),
        ("coarse", Surface(x=coarse, y=coarse, metrics={"train_loss": 4 * (xx ** 2 + yy ** 2)},
                           done=done(coarse, coarse))),
        ("fine", Surface(x=fine, y=fine, metrics={"train_loss": fx ** 2 + fy ** 2},
                         done=done(fine, fine))))}
    result = run("shape", paths["edge"])
    assert result.exit_code == 0, result.output
    assert "grid's edge at (0.1)" in result.stderr and "warning" not in result.stdout
    result = run("shape", paths["coarse"])
    assert result.exit_code == 0, result.output
    assert "not resolved by the grid" in result.stderr and "edge" not in result.stderr
    result = run("shape", paths["fine"])
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr


def test_sharpness_out_never_overwrites_the_checkpoint(checkpoint, tmp_path):
    from landscape._util import sha256_file

    copy = tmp_path / "c.pt"
    copy.write_bytes(checkpoint.read_bytes())
    before = sha256_file(copy)
    for extra in ([], ["--force"]):
        result = run("sharpness", copy, "--out", copy, *SMALL, *extra)
        assert result.exit_code == 1 and "is an input" in result.stderr
        assert result.stderr.startswith("Error:") and result.stderr.count("\n") == 1
        assert sha256_file(copy) == before


def test_sharpness_existing_out_needs_force(checkpoint, tmp_path):
    out = tmp_path / "sharp.json"
    out.write_text("keep me\n")
    fast = ["--eps", "1e-3", "--adaptive-rho-inf", "0", "--samples", "0", *SMALL[:4], "--quiet"]
    result = run("sharpness", checkpoint, "--out", out, *fast)
    assert result.exit_code == 1 and "--force" in result.stderr
    assert "epsilon" not in result.stdout and out.read_text() == "keep me\n"
    result = run("sharpness", checkpoint, "--out", out, *fast, "--force")
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["sharpness"]["epsilon"][0]["eps"] == 1e-3


def test_sharpness_subspace_larger_than_the_model(checkpoint, tmp_path):
    model, _ = load_checkpoint(checkpoint)
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    out = tmp_path / "sharp.json"
    result = run("sharpness", checkpoint, "--subspace-dim", n + 1, "--out", out, *SMALL)
    assert result.exit_code == 1
    assert f"at most the number of parameters ({n})" in result.stderr
    assert result.stderr.startswith("Error:") and result.stderr.count("\n") == 1
    assert "epsilon" not in result.stdout and not out.exists()


def test_sharpness_eta_message_matches_what_zero_does(checkpoint):
    result = run("sharpness", checkpoint, "--eta", "-1", "--quiet")
    assert result.exit_code == 2 and "--eta" in result.output
    assert "skips" not in result.output and "|w| alone" in result.output


# ----------------------------------------------------------------------- persistence diagram

def test_shape_diagram_writes_pairs_with_saddles(surface_files, tmp_path):
    from landscape.shape import surface_diagram
    from landscape.store import load_surface

    out = tmp_path / "diagram.json"
    result = run("shape", surface_files["plane"], "--diagram", out)
    assert result.exit_code == 0, result.output
    assert "roughness      0  (share of the relief in 0 minima below the basin rule)" \
        in result.stdout
    saved = json.loads(out.read_text())
    expected = surface_diagram(load_surface(surface_files["plane"])).to_dict()
    assert saved["diagram"] == json.loads(json.dumps(expected))
    # (x^2 - 1)^2 + y^2: the second well dies at the pass (0, 0), value 1, the saddle of
    # the barrier that `shape --json` reports.
    pair = saved["diagram"]["pairs"][1]
    assert pair["saddle"]["at"] == [0.0, 0.0] and pair["death"] == 1.0
    shape = surface_shape(load_surface(surface_files["plane"]))
    assert shape.barriers[0][1] == pytest.approx(pair["death"], abs=1e-12)
    assert saved["metric"] == "train_loss" and "provenance" in saved


def test_shape_diagram_guards(surface_files, tmp_path):
    out = tmp_path / "same.json"
    result = run("shape", surface_files["plane"], "--json", out, "--diagram", out)
    assert result.exit_code == 1 and "same file" in result.stderr
    assert result.stderr.count("\n") == 1 and not out.exists()
    out.write_text("keep me\n")
    result = run("shape", surface_files["plane"], "--diagram", out)
    assert result.exit_code == 1 and "--force" in result.stderr
    assert out.read_text() == "keep me\n"
    result = run("shape", surface_files["plane"], "--diagram", surface_files["plane"], "--force")
    assert result.exit_code == 1 and "is an input" in result.stderr


def test_shape_diagram_figure_draws_the_pairs(surface_files, tmp_path):
    """--diagram-figure: each pair's (birth, death) is a point of the diagram and a branch of
    the merge tree from birth to death, joined to the minimum it merges into."""
    from landscape.figures import plot_persistence
    from landscape.shape import surface_diagram
    from landscape.store import load_surface

    fig_path = tmp_path / "pairs.png"
    result = run("shape", surface_files["plane"], "--diagram-figure", fig_path)
    assert result.exit_code == 0, result.output
    assert fig_path.stat().st_size > 0
    d = surface_diagram(load_surface(surface_files["plane"])).to_dict()
    fig = plot_persistence(d)
    diagram, tree = fig.axes[:2]
    points = [tuple(c.get_offsets()[0]) for c in diagram.collections]
    # (x^2 - 1)^2 + y^2: two minima at 0; one dies at the pass (value 1), one never does
    assert sorted(p[0] for p in points) == [0.0, 0.0]
    assert (0.0, 1.0) in points
    branches = [line.get_ydata() for line in tree.lines if line.get_xdata()[0] ==
                line.get_xdata()[-1]]
    assert sorted(tuple(b) for b in branches)[0] == (0.0, 1.0)
    joins = [line for line in tree.lines if line.get_xdata()[0] != line.get_xdata()[-1]]
    assert len(joins) == 1 and tuple(joins[0].get_ydata()) == (1.0, 1.0)
    with pytest.raises(Exception, match="not a persistence diagram"):
        plot_persistence({"pairs": [{"birth": 0.0}]})
    bad = run("shape", surface_files["plane"], "--diagram-figure", tmp_path / "p.bmp")
    assert bad.exit_code != 0 and "bmp" in bad.output and not (tmp_path / "p.bmp").exists()
    same = run("shape", surface_files["plane"], "--diagram", fig_path, "--diagram-figure",
               fig_path, "--force")
    assert same.exit_code == 1 and "same file" in same.stderr
