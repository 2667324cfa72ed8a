"""`landscape hessian` through click's CliRunner on a tiny MNIST-1D checkpoint."""
from __future__ import annotations

import json

import click
import numpy as np
import pytest
from click.testing import CliRunner

from landscape_cli.main import cli
from landscape import hessian as hs
from landscape._util import sha256_file
from landscape.checkpoint import load_checkpoint, save_checkpoint
from landscape.data import load_dataset
from landscape.models import build_model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    bundle = load_dataset("mnist1d", train_subset=128, test_subset=64)
    model = build_model("mlp", bundle, width=8)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, model)
    return path


def run(*args):
    return CliRunner().invoke(cli, ["hessian", *map(str, args)])


def test_table_and_json(checkpoint, tmp_path):
    out = tmp_path / "spec.json"
    result = run(checkpoint, "--top-k", 3, "--bottom-k", 1, "--trace", "--trace-products", 12,
                 "--density", "--density-probes", 1, "--density-steps", 20, "--out", out,
                 "--quiet")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["end", "eigenvalue", "residual"]
    # the table lists the top eigenvalue first; the file keeps ascending order
    assert [line.split()[0] for line in lines[2:6]] == ["top", "top", "top", "bottom"]
    assert "Hessian-vector products" in result.stdout and "eval mode" in result.stdout
    assert "trace" in result.stdout and "density" in result.stdout

    spec = json.loads(out.read_text())
    assert spec["format"] == "landscape-spectrum" and spec["mode"] == "eval"
    eig = spec["eigenvalues"]
    assert len(eig["values"]) == 4 and eig["values"] == sorted(eig["values"])
    assert eig["bottom"] == eig["values"][:1] and eig["top"] == eig["values"][1:]
    assert len(eig["residuals"]) == 4 and eig["n_products"] > 0 and eig["mode"] == "eval"
    # the CLI is a thin shell: the library on the same data gives the same numbers
    model, info = load_checkpoint(checkpoint)
    data = load_dataset(**info["dataset"]).train
    lib = hs.hessian_eigenvalues(model, data, k=3, which="both", k_smallest=1)
    np.testing.assert_allclose(eig["values"], lib.values, rtol=1e-12)
    printed = [float(line.split()[1]) for line in lines[2:6]]
    np.testing.assert_allclose(printed, lib.values[::-1], rtol=1e-7)
    assert printed == sorted(printed, reverse=True)

    assert spec["trace"]["n_products"] == 12 and spec["trace"]["stderr"] > 0
    grid, density = np.array(spec["density"]["grid"]), np.array(spec["density"]["density"])
    assert grid.shape == density.shape and np.trapezoid(density, grid) == pytest.approx(1.0)
    assert spec["provenance"]["checkpoint_sha256"] == sha256_file(checkpoint)
    assert "versions" in spec["provenance"] and spec["dataset"]["train_subset"] == 128


def test_bottom_tolerance_reaches_the_library(checkpoint, tmp_path):
    out = tmp_path / "bottom.json"
    result = run(checkpoint, "--top-k", 0, "--bottom-k", 2, "--bottom-tol", 1e-9, "--out", out,
                 "--quiet")
    assert result.exit_code == 0, result.output
    eig = json.loads(out.read_text())["eigenvalues"]
    assert eig["bottom_tol"] == 1e-9 and eig["which"] == "smallest"
    model, info = load_checkpoint(checkpoint)
    data = load_dataset(**info["dataset"]).train
    tight = hs.hessian_eigenvalues(model, data, k=2, which="smallest", bottom_tol=1e-9)
    loose = hs.hessian_eigenvalues(model, data, k=2, which="smallest")
    np.testing.assert_allclose(eig["values"], tight.values, rtol=1e-12)
    assert eig["n_products"] == tight.n_products > loose.n_products
    text = CliRunner().invoke(cli, ["hessian", "--help"]).output
    assert "--bottom-tol" in text and "bracketed" in text and "--dist-timeout" in text


def test_train_mode_and_test_split_are_reported(checkpoint):
    result = run(checkpoint, "--top-k", 1, "--mode", "train", "--split", "test", "--quiet")
    assert result.exit_code == 0, result.output
    assert "train mode" in result.stdout
    assert "test (64 examples), train mode" in result.stderr


@pytest.mark.parametrize("bad", ["missing.pt", "garbage.pt"])
def test_bad_checkpoint_is_one_line_error_and_no_json(tmp_path, bad):
    path = tmp_path / bad
    if bad == "garbage.pt":
        path.write_bytes(b"not a checkpoint at all")
    out = tmp_path / "spec.json"
    result = run(path, "--out", out)
    assert result.exit_code != 0
    assert result.stderr.startswith("Error: ") and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ([bad] if path.exists() else [])


def test_nothing_to_compute_is_an_error(checkpoint, tmp_path):
    result = run(checkpoint, "--top-k", 0, "--out", tmp_path / "spec.json")
    assert result.exit_code == 1 and "nothing to compute" in result.stderr
    assert not (tmp_path / "spec.json").exists()


def test_out_never_overwrites_the_checkpoint(checkpoint, tmp_path):
    copy = tmp_path / "c.pt"
    copy.write_bytes(checkpoint.read_bytes())
    before = sha256_file(copy)
    for extra in ([], ["--force"]):
        result = run(copy, "--top-k", 1, "--out", copy, "--quiet", *extra)
        assert result.exit_code == 1 and "is an input" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert sha256_file(copy) == before
    assert load_checkpoint(copy)[0] is not None


def test_existing_out_needs_force(checkpoint, tmp_path):
    out = tmp_path / "spec.json"
    out.write_text("keep me\n")
    result = run(checkpoint, "--top-k", 1, "--out", out, "--quiet")
    assert result.exit_code == 1 and "--force" in result.stderr
    assert "Hessian-vector products" not in result.stdout  # refused before any work
    assert out.read_text() == "keep me\n"
    result = run(checkpoint, "--top-k", 1, "--out", out, "--quiet", "--force")
    assert result.exit_code == 0, result.output
    assert len(json.loads(out.read_text())["eigenvalues"]["values"]) == 1


def test_trace_standard_error_is_finite_at_the_minimum(checkpoint, tmp_path):
    too_few = run(checkpoint, "--top-k", 0, "--trace", "--trace-products", 3, "--quiet")
    assert too_few.exit_code == 2 and "--trace-products" in too_few.stderr
    out = tmp_path / "trace.json"
    result = run(checkpoint, "--top-k", 0, "--trace", "--trace-products", 4, "--out", out,
                 "--quiet")
    assert result.exit_code == 0, result.output
    assert "inf" not in result.stdout and "+- " in result.stdout
    stderr = json.loads(out.read_text())["trace"]["stderr"]
    assert np.isfinite(stderr) and stderr > 0


def test_too_few_density_steps_are_refused(checkpoint):
    result = run(checkpoint, "--top-k", 0, "--density", "--density-steps", 1, "--quiet")
    assert result.exit_code == 2 and "--density-steps" in result.stderr


def test_power_iteration_says_what_converged_means(checkpoint, tmp_path):
    out = tmp_path / "power.json"
    result = run(checkpoint, "--top-k", 1, "--method", "power", "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    assert "changed by less than --tol" in result.stdout
    eig = json.loads(out.read_text())["eigenvalues"]
    assert eig["method"] == "power" and "relative change" in eig["stopping_rule"]
    printed = float(result.stdout.split("reach ")[1].split()[0])
    ratio = eig["residuals"][0] / abs(eig["values"][0])
    assert printed == pytest.approx(ratio, rel=0.05)
    lanczos = run(checkpoint, "--top-k", 1, "--out", tmp_path / "l.json", "--quiet")
    assert lanczos.exit_code == 0 and "changed by less than" not in lanczos.stdout
    assert "residual" in json.loads((tmp_path / "l.json").read_text())["eigenvalues"][
        "stopping_rule"]


def test_every_option_has_help():
    from landscape_cli.hessian_cmd import hessian_command

    bare = [p.name for p in hessian_command.params
            if isinstance(p, click.Option) and not (p.help or "").strip()]
    assert bare == []
    text = CliRunner().invoke(cli, ["hessian", "--help"]).output
    assert "relative change of the eigenvalue" in text and "--force" in text


def test_curvature_option_gives_the_library_numbers(checkpoint, tmp_path):
    out = tmp_path / "ggn.json"
    result = run(checkpoint, "--top-k", 2, "--curvature", "ggn", "--trace",
                 "--trace-products", 6, "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("ggn of mlp")
    spec = json.loads(out.read_text())
    assert spec["curvature"] == {"matrix": "ggn", "fisher_samples": 0}
    model, info = load_checkpoint(checkpoint)
    data = load_dataset(**info["dataset"]).train
    lib = hs.hessian_eigenvalues(model, data, k=2, options=hs.HessianOptions(curvature="ggn"))
    np.testing.assert_allclose(spec["eigenvalues"]["values"], lib.values, rtol=1e-12)
    hess = hs.hessian_eigenvalues(model, data, k=2)
    assert not np.allclose(lib.values, hess.values, rtol=1e-6)  # a different matrix
    assert f"{lib.n_products} matrix-vector products" in result.output


@pytest.mark.parametrize("args, hint", [
    (["--curvature", "ggn", "--fisher-samples", 2], "--fisher-samples"),
    (["--curvature", "fisher", "--per-batch", 2], "--curvature"),
])
def test_curvature_option_refuses_bad_pairs(checkpoint, args, hint):
    result = run(checkpoint, *args)
    assert result.exit_code == 2 and hint in result.output and "Traceback" not in result.output


def test_by_layer_and_params_blocks(checkpoint, tmp_path):
    from landscape.curvature.blocks import block_curvature

    out = tmp_path / "blocks.json"
    result = run(checkpoint, "--top-k", 0, "--by-layer", "--params", "*.bias",
                 "--trace-products", 6, "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].split()[:3] == ["block", "parameters", "top"]
    blocks = json.loads(out.read_text())["blocks"]
    model, info = load_checkpoint(checkpoint)
    data = load_dataset(**info["dataset"]).train
    lib = block_curvature(model, data, trace_products=6)
    assert [b["name"] for b in blocks] == [b.name for b in lib] + ["*.bias"]
    np.testing.assert_allclose([b["top"] for b in blocks[:-1]], [b.top for b in lib],
                               rtol=1e-6)
    assert sum(b["n_params"] for b in blocks[:-1]) == sum(p.numel() for p in model.parameters())


def test_by_layer_figure(checkpoint, tmp_path):
    """--figure with --by-layer draws the blocks' numbers as bars (the bars' lengths are the
    numbers written to --out); with --per-batch as well it is refused before any work."""
    from landscape.figures import plot_layer_curvature

    out, fig = tmp_path / "blocks.json", tmp_path / "blocks.png"
    result = run(checkpoint, "--top-k", 0, "--by-layer", "--trace-products", 6, "--out", out,
                 "--figure", fig, "--quiet")
    assert result.exit_code == 0, result.output
    assert fig.stat().st_size > 0
    blocks = json.loads(out.read_text())["blocks"]
    drawn = plot_layer_curvature(blocks)
    top, trace = drawn.axes[:2]
    np.testing.assert_allclose([p.get_width() for p in top.patches], [b["top"] for b in blocks])
    np.testing.assert_allclose([p.get_width() for p in trace.patches],
                               [b["trace"] for b in blocks])
    shares = [t.get_text() for t in trace.texts]
    total = sum(b["trace"] for b in blocks)
    assert shares[0].endswith(f"({100 * blocks[0]['trace'] / total:.0f}%)")
    assert [t.get_text().split()[0] for t in top.get_yticklabels()] == \
        [b["name"] for b in blocks]
    both = run(checkpoint, "--top-k", 0, "--by-layer", "--per-batch", 2, "--batch-size", 32,
               "--figure", tmp_path / "x.png", "--quiet")
    assert both.exit_code != 0 and "two runs" in both.output and "Traceback" not in both.output
    assert not (tmp_path / "x.png").exists()
    alone = run(checkpoint, "--top-k", 1, "--figure", tmp_path / "x.png", "--quiet")
    assert alone.exit_code != 0 and "--by-layer" in alone.output
