"""`landscape compare`: the study's measurements and report for checkpoints one already has."""
import dataclasses
import json

import pytest
from click.testing import CliRunner

from landscape.compare import CompareConfig, compare, slug
from landscape.errors import LandscapeError
from landscape.study import RunSpec, StudyConfig, run_study
from landscape_cli.main import cli

# Small settings: every step runs, on coarse grids and few products.
TINY = dict(line_points=5, plane_points=5, interp_points=5, eigen_points=5, top_k=2,
            trace_products=6, density_probes=1, density_steps=8, eps=(1e-3,),
            sharpness_samples=2, w_plane_points=5, curve_epochs=1, curve_points=5,
            render_3d=False)

USER_MODEL = """
from torch import nn

def build(input_shape, num_classes, width=8):
    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[-1], width), nn.ReLU(),
                         nn.Linear(width, num_classes))
"""


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    """A study on 400 MNIST-1D examples with short runs and the small settings."""
    out = tmp_path_factory.mktemp("study")
    config = StudyConfig(train_subset=400, test_subset=200, model="mlp",
                         model_options={"width": 16, "depth": 1},
                         small=RunSpec(batch_size=32, lr=0.05, epochs=4),
                         large=RunSpec(batch_size="full", lr=0.5, epochs=20),
                         track_points=2, v_versus_w=False, **TINY)
    return config, run_study(config, out, progress=False, log=None), out


def test_compare_reproduces_the_study_numbers(tiny_study, tmp_path):
    """The study is compare on the runs it trains: comparing its two checkpoints with the
    same settings gives every per-model number exactly."""
    config, study, out = tiny_study
    measured = CompareConfig(**{f.name: getattr(config, f.name)
                                for f in CompareConfig.__dataclass_fields__.values()})
    result = compare([out / "runs" / "small_batch", out / "runs" / "large_batch"],
                     tmp_path / "cmp", config=dataclasses.replace(measured, curve_epochs=0),
                     progress=False, log=None)
    assert result.summary["labels"] == study.summary["labels"] == ["small_batch", "large_batch"]
    for name, entry in study.summary["models"].items():
        again = result.summary["models"][name]
        numbers = {k: v for k, v in entry.items() if k not in ("label", "checkpoint")}
        assert numbers == {k: again[k] for k in numbers}, name
    assert result.summary["interpolation"]["train_loss"] == \
        study.summary["interpolation"]["train_loss"]
    # labels from the run folders; the study names them itself
    assert result.summary["models"]["small_batch"]["label"] == "small_batch"
    assert study.summary["models"]["small_batch"]["label"] == "small batch"
    assert "checks" in study.summary and "checks" not in result.summary


def test_compare_rerun_reuses_every_step(tiny_study, tmp_path):
    _, _, out = tiny_study
    runs = [out / "runs" / "small_batch", out / "runs" / "large_batch"]
    config = CompareConfig(**TINY)
    first = compare(runs, tmp_path / "c", config=config, progress=False, log=None)
    again = compare(runs, tmp_path / "c", config=config, progress=False, log=None)
    assert {"interpolation", "surfaces_small_batch", "curvature_large_batch",
            "sharpness_small_batch", "eigen_large_batch", "w_curve"} <= set(again.reused)
    assert again.summary["models"] == first.summary["models"]


def test_three_seeds_of_a_user_model(tmp_path):
    """Three seeds of a `file.py:function` model trained by `landscape train`, compared from
    the command line: one report with all three, the plane through them, the curve."""
    code = tmp_path / "mymodel.py"
    code.write_text(USER_MODEL)
    runs = []
    for seed in (1, 2, 3):
        run = tmp_path / f"seed{seed}"
        res = invoke("train", "--model", f"{code}:build", "--out", run, "--epochs", 3,
                     "--batch-size", 32, "--lr", 0.05, "--train-subset", 300,
                     "--test-subset", 100, "--seed", seed, "--quiet")
        assert res.exit_code == 0, res.output
        runs.append(run)
    out = tmp_path / "cmp"
    # the checkpoints name code: refused without trust, nothing written
    res = invoke("compare", *runs, "--out", out, "--quick", "--quiet")
    assert res.exit_code != 0 and "--trust-code" in res.output and "Traceback" not in res.output
    assert not out.exists()
    res = invoke("compare", *runs, "--out", out, "--quick", "--quiet", "--no-3d", "--trust-code",
                 "--plane-points", 5, "--top-k", 2, "--curve-epochs", 1)
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["labels"] == ["seed1", "seed2", "seed3"]
    assert summary["setup"]["model"] == f"{code}:build"
    for name in summary["labels"]:
        entry = summary["models"][name]
        assert entry["epochs"] == 3 and entry["batch_size"] == 32
        assert entry["top_eigenvalue"] > 0 and len(entry["top_eigenvalues"]) == 2
    vw = summary["v_versus_w"]
    assert vw["w_plane"]["through"] == ["seed1", "seed2", "seed3"]
    assert vw["curve"]["epochs"] == 1
    report = (out / "report.md").read_text()
    assert "| quantity | seed1 | seed2 | seed3 |" in report
    assert "plane through seed1, seed2, seed3" in report
    for rel in summary["figures"].values():
        assert (out / rel).is_file() and f"]({rel})" in report
    assert {"training", "v_versus_w_2d", "v_versus_w_paths"} <= set(summary["figures"])
    assert "seed1" in res.output and "report.html" in res.output
    # the barrier matrix: every pair's straight line, stored, and its barrier
    from landscape.barriers import path_values
    from landscape.shape import path_barrier
    from landscape.store import load_surface

    bar = summary["barriers"]
    assert bar["labels"] == ["seed1", "seed2", "seed3"] and bar["points"] == 11
    assert len(bar["surfaces"]) == 3
    for k in range(3):
        assert bar["train_barrier"][k][k] == 0.0 == bar["test_error_barrier"][k][k]
    for rel in bar["surfaces"]:
        _, a, b = rel[len("surfaces/"):-len(".h5")].split("_")
        i, j = bar["labels"].index(a), bar["labels"].index(b)
        line = path_values(load_surface(out / rel))
        assert len(line["train_loss"]) == 11
        assert bar["train_barrier"][i][j] == bar["train_barrier"][j][i] == \
            path_barrier(line["train_loss"])
        assert bar["test_error_barrier"][j][i] == path_barrier(line["test_error"])
    assert sorted(m for g in bar["groups"] for m in g["members"]) == bar["labels"]
    assert summary["figures"]["barriers"] == "figures/barriers.png"
    assert "## Barriers between every pair" in report and f"{bar['n_basins']} basin" in report
    again = invoke("compare", *runs, "--out", out, "--quick", "--quiet", "--no-3d",
                   "--trust-code", "--plane-points", 5, "--top-k", 2, "--curve-epochs", 1)
    assert again.exit_code == 0, again.output
    reused = json.loads((out / "summary.json").read_text())["reused_steps"]
    assert {"line_seed1_seed2", "line_seed1_seed3", "line_seed2_seed3"} <= set(reused)


def test_labels_option_and_bad_input(tiny_study, tmp_path):
    _, _, out = tiny_study
    runs = [out / "runs" / "small_batch", out / "runs" / "large_batch"]
    res = invoke("compare", runs[0], "--out", tmp_path / "one")
    assert res.exit_code != 0 and "at least two" in res.output
    res = invoke("compare", *runs, "--labels", "a", "--out", tmp_path / "x")
    assert res.exit_code != 0 and "1 labels for 2 inputs" in res.output
    res = invoke("compare", runs[0], tmp_path / "missing", "--out", tmp_path / "x")
    assert res.exit_code != 0 and "does not exist" in res.output
    for bad in ("one", "x"):
        assert not (tmp_path / bad).exists()
    with pytest.raises(LandscapeError, match="labels must differ"):
        compare(runs, tmp_path / "y", labels=["a b", "a/b"], log=None)
    assert slug("small batch") == "small_batch" and slug("a, b") == "a_b"


def test_different_architectures_are_refused(tmp_path, mnist1d_small):
    from landscape.checkpoint import save_checkpoint
    from landscape.models import build_model

    for name, width in (("a", 4), ("b", 6)):
        save_checkpoint(tmp_path / f"{name}.pt",
                        build_model("mlp", mnist1d_small, width=width, depth=1))
    with pytest.raises(LandscapeError, match="different networks"):
        compare([tmp_path / "a.pt", tmp_path / "b.pt"], tmp_path / "out", log=None)
    assert not (tmp_path / "out").exists()


def test_interrupted_compare_continues_where_it_stopped(tiny_study, tmp_path, monkeypatch):
    """Ctrl-C in the middle: one line saying how to continue, status 130; the rerun reuses
    the steps finished before it and computes the rest."""
    import landscape.workflows.measurements as cmp  # where measure looks the step up

    _, _, out = tiny_study
    runs = [out / "runs" / "small_batch", out / "runs" / "large_batch"]
    args = ["compare", *runs, "--out", tmp_path / "c", "--quick", "--quiet", "--no-3d",
            "--plane-points", 5, "--top-k", 1, "--curve-epochs", 0]

    def stop(**_):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(cmp, "_curvature", stop)
        res = invoke(*args)
    assert res.exit_code == 130
    assert "interrupted: the steps finished so far are kept" in res.output
    assert not (tmp_path / "c" / "summary.json").exists()
    res = invoke(*args)
    assert res.exit_code == 0, res.output
    reused = set(json.loads((tmp_path / "c" / "summary.json").read_text())["reused_steps"])
    assert {"interpolation", "surfaces_small_batch", "surfaces_large_batch"} <= reused
    assert not any(name.startswith("curvature") for name in reused)


DATA_CODE = """
from pathlib import Path
import torch
Path(__file__).with_name("imported").write_text("ran")

def make():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 5, generator=g)
    y = (x[:, 0] > 0).long()
    return x[:40], y[:40], x[40:], y[40:]
"""


def test_a_dataset_naming_code_is_not_run_without_trust(tmp_path):
    from landscape.checkpoint import save_checkpoint, trusted_code
    from landscape.data import load_dataset
    from landscape.models import build_model

    code = tmp_path / "mydata.py"
    code.write_text(DATA_CODE)
    bundle = load_dataset(f"{code}:make")
    for seed in (0, 1):
        save_checkpoint(tmp_path / f"m{seed}.pt",
                        build_model("mlp", bundle, seed=seed, width=4, depth=1))
    (tmp_path / "imported").unlink()
    paths, out = [tmp_path / "m0.pt", tmp_path / "m1.pt"], tmp_path / "out"
    with pytest.raises(LandscapeError, match="names code for its dataset"):
        compare(paths, out, log=None)
    assert not (tmp_path / "imported").exists() and not out.exists()
    config = CompareConfig(**{**TINY, "curve_epochs": 0})
    with trusted_code(True):
        result = compare(paths, out, config=config, progress=False, log=None)
    assert (tmp_path / "imported").exists()
    assert result.summary["setup"]["train_examples"] == 40


def test_compare_other_curvature_matrices(tiny_study, tmp_path):
    """--curvature ggn: each model's GGN top eigenvalue and trace, as the library gives them
    on the same data, in summary.json and a row of the report; unknown names are refused."""
    from landscape.checkpoint import load_checkpoint
    from landscape.curvature import HessianOptions, hessian_eigenvalues
    from landscape.data import load_dataset

    _, _, out = tiny_study
    runs = [out / "runs" / "small_batch", out / "runs" / "large_batch"]
    config = CompareConfig(**{**TINY, "curve_epochs": 0, "eigen_points": 0},
                           curvatures=("ggn",))
    result = compare(runs, tmp_path / "c", config=config, progress=False, log=None)
    model, info = load_checkpoint(runs[0] / "model.pt")
    data = load_dataset(**info["dataset"]).train
    top = hessian_eigenvalues(model, data, k=1, seed=0,
                              options=HessianOptions(curvature="ggn", progress=False))
    entry = result.summary["models"]["small_batch"]["curvatures"]["ggn"]
    assert entry["top_eigenvalue"] == pytest.approx(float(top.values[-1]), rel=1e-6)
    assert entry["trace"] > 0 and entry["trace_stderr"] >= 0
    report = (tmp_path / "c" / "report.md").read_text()
    assert "| GGN: top eigenvalue / trace |" in report
    with pytest.raises(LandscapeError, match="unknown curvature"):
        CompareConfig(curvatures=("hessian2",))


def test_ggn_top_eigenvalue_beside_the_hessians(tiny_study):
    """The study's summary.json and report (md, html) give each model's GGN top eigenvalue,
    as the library computes it at the same tolerance, in the row after the Hessian's."""
    import re

    from landscape.checkpoint import load_checkpoint
    from landscape.curvature import HessianOptions, hessian_eigenvalues
    from landscape.data import load_dataset
    from landscape.report import table_rows

    _, study, out = tiny_study
    summary = json.loads((out / "summary.json").read_text())
    model, info = load_checkpoint(out / "runs" / "large_batch" / "model.pt")
    top = hessian_eigenvalues(model, load_dataset(**info["dataset"]).train, k=1, seed=0,
                              options=HessianOptions(curvature="ggn", progress=False))
    large = summary["models"]["large_batch"]
    assert large["ggn_top_eigenvalue"] == pytest.approx(float(top.values[-1]), rel=1e-6)
    assert large["ggn_top_residual"] < 1e-4 * large["ggn_top_eigenvalue"]
    md, html = (out / "report.md").read_text(), (out / "report.html").read_text()
    assert re.search(r"\| top Hessian eigenvalue \|[^\n]+\n\| top GGN eigenvalue \| [^|]+ \| "
                     + re.escape(f"{large['ggn_top_eigenvalue']:.4g}"), md)
    assert "top GGN eigenvalue" in html
    for entry in summary["models"].values():  # off: no row
        del entry["ggn_top_eigenvalue"]
    assert not any(row[0] == "top GGN eigenvalue" for row in table_rows(summary))


def test_linear_model_ggn_equals_hessian_in_a_study(tmp_path):
    """A linear model under cross-entropy has GGN = Hessian: the study's two numbers agree
    (both at tolerance 1e-6 of the value)."""
    config = StudyConfig(train_subset=200, test_subset=100, model="mlp",
                         model_options={"depth": 0},
                         small=RunSpec(batch_size=32, lr=0.05, epochs=2),
                         large=RunSpec(batch_size="full", lr=0.5, epochs=4),
                         track_points=0, v_versus_w=False,
                         **{**TINY, "curve_epochs": 0, "eigen_points": 0})
    result = run_study(config, tmp_path / "s", progress=False, log=None)
    for entry in result.summary["models"].values():
        assert entry["ggn_top_eigenvalue"] == pytest.approx(entry["top_eigenvalue"], rel=1e-5)


def test_dry_run_counts_the_ggn_products(mnist1d_small):
    """compare's cost estimate counts the GGN's top eigenvalue per model, and none when off."""
    from landscape.models import build_model
    from landscape.workflows.cost import GGN_TOP_PRODUCTS, compare_cost

    model = build_model("mlp", mnist1d_small, width=8)
    on = compare_cost(model, mnist1d_small, CompareConfig.quick(), 3, measure_time=False)
    off = compare_cost(model, mnist1d_small, CompareConfig.quick(ggn_top=False), 3,
                       measure_time=False)
    assert on["ggn_products"] == 3 * GGN_TOP_PRODUCTS and off["ggn_products"] == 0
    assert on["products"] == off["products"]
