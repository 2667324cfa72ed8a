"""Users' data formats (imagefolder, npz, npy, csv) on files the tests write, and specs that
load from any folder."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from landscape.data import load_dataset
from landscape.errors import DataError
from landscape_cli.main import cli


def _arrays(seed=0):
    rng = np.random.default_rng(seed)
    return {"x_train": rng.normal(2.0, 3.0, (30, 4)).astype(np.float64),
            "y_train": rng.integers(0, 3, 30), "x_test": rng.normal(2.0, 3.0, (10, 4)),
            "y_test": rng.integers(0, 3, 10)}


def test_npz_loads_and_standardizes(tmp_path):
    arrays = _arrays()
    np.savez(tmp_path / "d.npz", **arrays)
    bundle = load_dataset(f"npz:{tmp_path / 'd.npz'}")
    x, y = bundle.train
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and bundle.num_classes == 3
    assert torch.allclose(x.mean(0), torch.zeros(4), atol=1e-5)
    assert torch.allclose(x.std(0), torch.ones(4), atol=1e-5)
    mean, std = arrays["x_train"].mean(0), arrays["x_train"].std(0, ddof=1)
    np.testing.assert_allclose(bundle.test[0].numpy(), (arrays["x_test"] - mean) / std,
                               rtol=1e-4, atol=1e-5)
    assert torch.equal(bundle.test[1], torch.as_tensor(arrays["y_test"]))
    raw = load_dataset(f"npz:{tmp_path / 'd.npz'}", options={"normalize": False})
    np.testing.assert_allclose(raw.train[0].numpy(), arrays["x_train"], rtol=1e-6)
    np.savez(tmp_path / "bad.npz", x_train=arrays["x_train"])
    with pytest.raises(DataError, match="lacks array"):
        load_dataset(f"npz:{tmp_path / 'bad.npz'}")


def test_npy_folder_and_relative_paths_become_absolute(tmp_path, monkeypatch):
    folder = tmp_path / "arrays"
    folder.mkdir()
    for name, value in _arrays().items():
        np.save(folder / f"{name}.npy", value)
    monkeypatch.chdir(tmp_path)
    bundle = load_dataset("npy:arrays")
    assert bundle.spec["name"] == f"npy:{folder}"
    monkeypatch.chdir(tmp_path.parent)  # the stored spec loads from another folder
    again = load_dataset(**bundle.spec)
    assert torch.equal(again.train[0], bundle.train[0])
    (folder / "y_test.npy").unlink()
    with pytest.raises(DataError, match="lacks y_test.npy"):
        load_dataset(f"npy:{folder}")


def test_csv_with_string_labels_is_split_by_seed(tmp_path):
    rng = np.random.default_rng(1)
    rows = ["a,b,species,c"] + [f"{rng.normal():.4f},{rng.normal():.4f},"
                                f"{['setosa', 'virginica'][k % 2]},{k}" for k in range(25)]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    bundle = load_dataset(f"csv:{tmp_path / 't.csv'}", options={"target": "species"})
    assert bundle.num_classes == 2 and bundle.input_shape == (3,)
    assert len(bundle.train[1]) == 20 and len(bundle.test[1]) == 5
    again = load_dataset(**bundle.spec)
    assert torch.equal(again.test[0], bundle.test[0])
    other = load_dataset(f"csv:{tmp_path / 't.csv'}", seed=3, options={"target": "species"})
    assert not torch.equal(other.test[0], bundle.test[0])
    with pytest.raises(DataError, match="--target"):
        load_dataset(f"csv:{tmp_path / 't.csv'}")
    with pytest.raises(DataError, match="no column 'kind'"):
        load_dataset(f"csv:{tmp_path / 't.csv'}", options={"target": "kind"})


def test_csv_folder_with_train_and_test(tmp_path):
    for split, n in (("train", 8), ("test", 4)):
        body = [f"{k},{k * 0.5},{k % 3}" for k in range(n)]
        (tmp_path / f"{split}.csv").write_text("x1,x2,label\n" + "\n".join(body) + "\n")
    bundle = load_dataset(f"csv:{tmp_path}", options={"target": "label"})
    assert len(bundle.train[1]) == 8 and len(bundle.test[1]) == 4 and bundle.num_classes == 3
    assert bundle.train[1].tolist() == [k % 3 for k in range(8)]


def _image_folder(root, size=(12, 10)):
    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("test", 2)):
        for label in ("cat", "dog"):
            (root / split / label).mkdir(parents=True)
            for k in range(n):
                pixels = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / label / f"{k}.png")
    return root


def test_image_folder_resizes_and_names_classes(tmp_path):
    root = _image_folder(tmp_path / "images")
    bundle = load_dataset(f"imagefolder:{root}")
    assert bundle.input_shape == (3, 12, 10) and bundle.num_classes == 2
    assert bundle.train[1].tolist() == [0, 0, 0, 1, 1, 1] and len(bundle.test[1]) == 4
    small = load_dataset(f"imagefolder:{root}", options={"size": 8})
    assert small.input_shape == (3, 8, 8)
    with pytest.raises(DataError, match="train/ and test/"):
        load_dataset(f"imagefolder:{root / 'train'}")


def test_options_are_refused_for_builtin_datasets_and_missing_paths(tmp_path):
    with pytest.raises(DataError, match="apply to a user's files"):
        load_dataset("mnist1d", options={"target": "y"})
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(f"npz:{tmp_path / 'none.npz'}")


def test_cli_trains_on_csv_and_hessian_runs_from_another_folder(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, 3))
    rows = ["f1,f2,f3,label"] + [f"{a:.4f},{b:.4f},{c:.4f},{int(a + b > 0)}" for a, b, c in x]
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n")
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, ["train", "--dataset", "csv:data.csv", "--target", "label",
                                   "--model", "mlp", "--epochs", "2", "--batch-size", "8",
                                   "--out", "run", "--quiet"])
    assert res.exit_code == 0, res.output
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.chdir(elsewhere)
    res = CliRunner().invoke(cli, ["hessian", str(tmp_path / "run" / "model.pt"),
                                   "--top-k", "1"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["train", "--dataset", "csv:data.csv", "--out", "r2"])
    assert res.exit_code == 1 and "Error:" in res.output
    assert not (elsewhere / "r2").exists()


MODEL_CODE = ("import torch\n"
              "def net(input_shape, num_classes, hidden=5):\n"
              "    return torch.nn.Sequential(torch.nn.Flatten(),\n"
              "        torch.nn.Linear(input_shape[0], hidden), torch.nn.Tanh(),\n"
              "        torch.nn.Linear(hidden, num_classes))\n")


def test_relative_code_path_works_from_another_folder(tmp_path, monkeypatch, mnist1d_small):
    """A model built by a relative file.py:function is stored with an absolute path and the
    file's hash; loading from another folder works; a moved file is named, with --model."""
    from landscape.checkpoint import load_checkpoint, save_checkpoint
    from landscape.models import build_model
    from landscape.util.hashing import sha256_file

    (tmp_path / "mine.py").write_text(MODEL_CODE)
    monkeypatch.chdir(tmp_path)
    model = build_model("mine.py:net", mnist1d_small, hidden=4)
    spec = model.landscape_spec
    assert spec["name"] == f"{tmp_path / 'mine.py'}:net"
    assert spec["code"] == {"path": str(tmp_path / "mine.py"),
                            "sha256": sha256_file(tmp_path / "mine.py")}
    save_checkpoint(tmp_path / "m.pt", model)
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(other)
    loaded, _ = load_checkpoint(tmp_path / "m.pt", trust_code=True)
    x = mnist1d_small.train[0][:4]
    assert torch.equal(loaded(x), model.eval()(x))
    (tmp_path / "mine.py").write_text(MODEL_CODE + "# edited\n")
    with pytest.warns(UserWarning, match="changed since the checkpoint"):
        load_checkpoint(tmp_path / "m.pt", trust_code=True)
    (tmp_path / "mine.py").rename(other / "moved.py")
    res = CliRunner().invoke(cli, ["hessian", str(tmp_path / "m.pt"), "--top-k", "1",
                                   "--trust-code"])
    assert res.exit_code == 1
    assert str(tmp_path / "mine.py") in res.output and "--model" in res.output
    res = CliRunner().invoke(cli, ["hessian", str(tmp_path / "m.pt"), "--top-k", "1",
                                   "--model", "moved.py:net"])
    assert res.exit_code == 0, res.output
