"""ResNet-20 on a tiny CIFAR-10 written in torchvision's format: train, surface, hessian, compare."""
import json

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from cli_helpers import one_line_error
from image_files import write_cifar
from landscape_cli.main import cli


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def cifar_runs(tmp_path_factory):
    """Two ResNet-20s (width 4), one epoch each on 40 generated CIFAR-10 images."""
    root = tmp_path_factory.mktemp("cifar")
    write_cifar(root / "data", n_train=40, n_test=20)
    runs = []
    for seed in (0, 1):
        run = root / f"run{seed}"
        res = invoke("train", "--dataset", "cifar10", "--data-root", root / "data",
                     "--model", "resnet20", "--width", 4, "--epochs", 1, "--batch-size", 20,
                     "--lr", 0.05, "--seed", seed, "--out", run, "--quiet")
        assert res.exit_code == 0, res.output
        runs.append(run)
    return runs


def test_resnet20_on_a_tiny_cifar_surface_and_hessian(cifar_runs, tmp_path):
    surf = tmp_path / "surf.h5"
    res = invoke("surface", cifar_runs[0] / "model.pt", "--x", "-1:1:3", "--out", surf,
                 "--quiet")
    assert res.exit_code == 0, res.output
    with h5py.File(surf) as fh:
        assert np.isfinite(fh["metrics/train_loss"][()]).all() and fh["done"][()].all()
    spec = tmp_path / "spec.json"
    res = invoke("hessian", cifar_runs[0] / "model.pt", "--top-k", 2, "--out", spec, "--quiet")
    assert res.exit_code == 0, res.output
    eig = json.loads(spec.read_text())["eigenvalues"]
    assert len(eig["top"]) == 2 and max(eig["top"]) > 0 and max(eig["residuals"]) < 1e-3


@pytest.mark.slow
def test_resnet20_on_a_tiny_cifar_compare(cifar_runs, tmp_path):
    out = tmp_path / "cmp"
    res = invoke("compare", *cifar_runs, "--out", out, "--quick", "--quiet", "--no-3d",
                 "--plane-points", 3, "--top-k", 1, "--curve-epochs", 0,
                 "--train-subset", 8, "--test-subset", 4)
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["setup"]["model"] == "resnet20"
    assert all(np.isfinite(summary["models"][m]["top_eigenvalue"]) for m in summary["labels"])


def test_missing_data_root_is_one_line(tmp_path):
    res = invoke("train", "--dataset", "cifar10", "--data-root", tmp_path / "nowhere",
                 "--model", "resnet20", "--out", tmp_path / "run", "--epochs", 1)
    line = one_line_error(res, res.exit_code)
    assert "cifar-10-batches-py" in line and res.exit_code != 0
    assert not (tmp_path / "run" / "model.pt").exists()
