"""Modular arithmetic tables and the transformer: data, model, checkpoints, curvature against
an exact float64 reference, filter-normalized directions, surfaces and the command line."""
from __future__ import annotations

import copy

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from landscape.checkpoint import load_checkpoint, save_checkpoint
from landscape.data import load_dataset
from landscape.directions import random_directions
from landscape.errors import DataError, LandscapeError
from landscape.hessian import HVP_METHODS, HessianOperator, dense_hessian, hessian_eigenvalues
from landscape.models import build_model, count_parameters, rebuild_model
from landscape.modular import modular_splits, parse_name, table
from landscape.train import evaluate_split
from tests.cli_helpers import one_line_error
from tests.curvature.test_hessian import autograd_hessian

PY_OPS = {"add": lambda a, b, p: (a + b) % p, "sub": lambda a, b, p: (a - b) % p,
          "mul": lambda a, b, p: (a * b) % p}


# ------------------------------------------------------------------------------ data

@pytest.mark.parametrize("op", sorted(PY_OPS))
def test_table_holds_every_pair_once_with_its_result(op):
    x, y = table(op, 7)
    assert x.dtype == torch.int64 and y.dtype == torch.int64
    assert x.shape == (49, 3) and torch.all(x[:, 2] == 7)
    assert {(int(a), int(b)) for a, b, _ in x} == {(a, b) for a in range(7) for b in range(7)}
    assert all(int(t) == PY_OPS[op](int(a), int(b), 7) for (a, b, _), t in zip(x, y))


def test_division_skips_zero_and_inverts_multiplication():
    x, y = table("div", 11)
    assert len(y) == 11 * 10 and torch.all(x[:, 1] != 0)
    assert torch.all((y * x[:, 1]) % 11 == x[:, 0])


def test_split_is_a_seeded_partition_of_the_table():
    train, test, classes = modular_splits("modular-sub-13-0.4", seed=3)
    assert classes == 13
    assert len(train[1]) == round(0.4 * 169) and len(train[1]) + len(test[1]) == 169
    rows = {tuple(r.tolist()) for r in torch.cat([train[0], test[0]])}
    assert len(rows) == 169
    again = modular_splits("modular-sub-13-0.4", seed=3)
    other = modular_splits("modular-sub-13-0.4", seed=4)
    assert torch.equal(train[0], again[0][0]) and not torch.equal(train[0], other[0][0])


def test_load_dataset_names_the_table_and_rebuilds_it():
    bundle = load_dataset("modular-add-11", seed=2, test_subset=20)
    assert bundle.num_classes == 11 and bundle.input_shape == (3,)
    assert bundle.train[0].dtype == torch.int64 and len(bundle.train[1]) == round(0.3 * 121)
    assert len(bundle.test[1]) == 20
    again = load_dataset(**bundle.spec)
    assert torch.equal(bundle.train[0], again.train[0])
    assert torch.equal(bundle.test[1], again.test[1])
    assert parse_name("modular-mul-97-0.25") == ("mul", 97, 0.25)


@pytest.mark.parametrize("name,words", [
    ("modular-pow-7", "unknown operation"), ("modular-add-1", "between 2"),
    ("modular-div-12", "prime"), ("modular-add-7-1.5", "(0, 1)"),
    ("modular-add-7-0.1.2", "not a fraction"), ("modular-add", "modular-<op>-<p>"),
    ("modular-add-3-0.01", "leaves a split empty"),
])
def test_bad_names_are_clear(name, words):
    with pytest.raises(DataError, match=words.replace("(", r"\(").replace(")", r"\)")):
        load_dataset(name)


# ------------------------------------------------------------------------------ model

def tiny_transformer(p: int = 5, **options) -> nn.Module:
    bundle = load_dataset(f"modular-add-{p}-0.6")
    opts = dict(width=8, heads=2, mlp_width=8, **options)
    return build_model("transformer", bundle, seed=0, **opts), bundle


def test_parameter_count_and_forward_shape():
    model, bundle = tiny_transformer(depth=2, layernorm=True)
    width, mlp, vocab, p = 8, 8, 6, 5
    block = 4 * width * width + 2 * width * mlp + mlp + width + 4 * width
    assert count_parameters(model) == (vocab + 3) * width + 2 * block + 2 * width + p * width
    assert model(bundle.train[0][:4]).shape == (4, 5)


def test_last_position_shortcut_equals_the_full_computation():
    model, bundle = tiny_transformer(depth=2)
    x = bundle.train[0]
    h = model.embed(x) + model.position(torch.arange(3))
    for block in model.blocks:  # every position through every block, read the last one
        a = block.attn.out(_full_attention(block.attn, h))
        h = h + a
        h = h + block.mlp(h)
    torch.testing.assert_close(model(x), model.unembed(h[:, -1]), rtol=1e-5, atol=1e-6)


def _full_attention(attn, h):
    q, k, v = (attn._split(f(h)) for f in (attn.query, attn.key, attn.value))
    w = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1)
    return (w @ v).transpose(1, 2).reshape(h.shape)


def test_float_inputs_and_bad_shapes_are_refused():
    model, bundle = tiny_transformer()
    with pytest.raises(LandscapeError, match="int64 token ids"):
        model(bundle.train[0].float())
    with pytest.raises(LandscapeError, match="multiple of heads"):
        build_model("transformer", bundle, width=10, heads=4)
    with pytest.raises(LandscapeError, match="token sequences"):
        build_model("transformer", input_shape=(1, 3), num_classes=5)


def test_checkpoint_round_trip(tmp_path):
    model, bundle = tiny_transformer()
    path = save_checkpoint(tmp_path / "t.pt", model)
    loaded, info = load_checkpoint(path)
    assert info["dataset"]["name"] == "modular-add-5-0.6"
    x = bundle.test[0]
    assert torch.equal(loaded(x), model.eval()(x))
    assert count_parameters(rebuild_model(info["model"])) == count_parameters(model)


# ------------------------------------------------------------------------------ curvature

@pytest.fixture(scope="module")
def float64_case():
    """A float64 transformer with LayerNorms on a table, and its Hessian by plain double
    backward. Not torch.func.hessian: with torch 2.14 its reverse-over-reverse pass under vmap
    is 3% off through nn.LayerNorm, where double backward and jvp-of-grad agree with central
    differences of the gradient to 1e-8."""
    model, bundle = tiny_transformer(layernorm=True)
    model = model.double().eval()
    x, y = bundle.train
    return model, (x, y), autograd_hessian(model, x, y)


@pytest.mark.parametrize("hvp", HVP_METHODS)
def test_products_on_token_inputs_match_the_exact_hessian(float64_case, hvp):
    model, data, h = float64_case
    op = HessianOperator(model, data, hvp=hvp, chunk=7)  # unequal chunks of int64 inputs
    v = torch.randn(op.n_params, generator=torch.Generator().manual_seed(1),
                    dtype=torch.float64)
    assert torch.linalg.norm(op.hvp(v) - h @ v) <= 1e-10 * torch.linalg.norm(h @ v)


def test_dense_hessian_and_top_eigenvalues_match(float64_case):
    model, data, h = float64_case
    torch.testing.assert_close(dense_hessian(model, data), h, rtol=0, atol=1e-10)
    top = hessian_eigenvalues(model, data, k=3, tol=1e-10).values
    exact = torch.linalg.eigvalsh(h).flip(0)[:3].numpy()
    assert abs(sorted(top, reverse=True) - exact).max() <= 1e-8 * abs(exact[0])


# ------------------------------------------------------------------------------ directions

def test_filter_normalization_groups_of_the_transformer():
    model, _ = tiny_transformer(layernorm=True)
    d = random_directions(model, count=1, norm="filter", ignore="biasbn", seed=0)[0]
    weights = dict(model.named_parameters())
    rows = ["embed.weight", "position.weight", "blocks.0.attn.query.weight",
            "blocks.0.attn.out.weight", "blocks.0.mlp.0.weight", "unembed.weight"]
    for name in rows:  # one group per token, position or output unit
        torch.testing.assert_close(d[name].norm(dim=1), weights[name].detach().norm(dim=1))
    ignored = [n for n in d if n.endswith("bias") or "norm" in n]
    assert "blocks.0.norm1.weight" in ignored and "blocks.0.mlp.0.bias" in ignored
    assert all(torch.count_nonzero(d[n]) == 0 for n in ignored)


def test_surface_center_is_the_models_loss():
    from landscape.surface import SurfaceOptions, compute_surface

    model, bundle = tiny_transformer()
    dirs = random_directions(model, count=1, seed=0)
    surface = compute_surface(model, bundle, dirs, torch.linspace(-1, 1, 5).numpy(),
                              options=SurfaceOptions(metrics=("train_loss", "train_acc")))
    loss, acc = evaluate_split(model, *bundle.train, nn.functional.cross_entropy)
    assert surface.metrics["train_loss"][2] == pytest.approx(loss, rel=1e-6)
    assert surface.metrics["train_acc"][2] == pytest.approx(acc)
    assert surface.metrics["train_loss"][0] != pytest.approx(loss, rel=1e-3)


# ------------------------------------------------------------------------------ command line

def test_cli_trains_a_transformer_on_a_table(tmp_path):
    from landscape_cli.main import cli

    out = tmp_path / "run"
    result = CliRunner().invoke(cli, [
        "train", "--dataset", "modular-add-7-0.5", "--model", "transformer", "--width", "8",
        "--heads", "2", "--optimizer", "adamw", "--lr", "0.01", "--weight-decay", "1",
        "--batch-size", "full", "--steps", "5", "--quiet", "--out", str(out)])
    assert result.exit_code == 0, result.output
    model, info = load_checkpoint(out / "model.pt")
    assert info["model"]["options"] == {"width": 8, "heads": 2}
    assert info["dataset"]["name"] == "modular-add-7-0.5"
    before = copy.deepcopy(model.state_dict())
    assert any(not torch.equal(before[k], v) for k, v in
               load_checkpoint(out / "checkpoints" / "epoch_0000.pt")[0].state_dict().items())


def test_cli_refuses_a_bad_table_name(tmp_path):
    from landscape_cli.main import cli

    result = CliRunner().invoke(cli, ["train", "--dataset", "modular-add-7-2", "--model",
                                      "transformer", "--out", str(tmp_path / "r")])
    assert "training fraction" in one_line_error(result)
    assert not (tmp_path / "r" / "model.pt").exists()


# ------------------------------------------------------------------------------ milestones

def fake_run(tmp_path, accuracies):
    """A run folder whose checkpoints record (epoch, train_acc, test_acc)."""
    model, _ = tiny_transformer()
    run = tmp_path / "run"
    save_checkpoint(run / "checkpoints" / "epoch_0000.pt", model, extra={"epoch": 0})
    for epoch, train_acc, test_acc in accuracies:
        save_checkpoint(run / "checkpoints" / f"epoch_{epoch:04d}.pt", model,
                        extra={"epoch": epoch, "metrics": {"train_acc": train_acc,
                                                           "test_acc": test_acc}})
    save_checkpoint(run / "model.pt", model)
    return run


def test_milestones_pick_first_memorizing_then_first_generalizing(tmp_path):
    from landscape.grokking import grokking_milestones, run_milestones

    run = fake_run(tmp_path, [(50, 0.6, 0.1), (100, 1.0, 0.3), (150, 1.0, 0.5),
                              (200, 1.0, 0.97), (250, 1.0, 1.0)])
    assert [m.epoch for m in run_milestones(run)] == [50, 100, 150, 200, 250]
    memorized, grokked = grokking_milestones(run)
    assert (memorized.epoch, memorized.test_acc) == (100, 0.3)
    assert (grokked.epoch, grokked.path.name) == (200, "epoch_0200.pt")
    assert grokking_milestones(run, grokked=0.99)[1].epoch == 250


def test_milestones_say_what_is_missing(tmp_path):
    from landscape.grokking import grokking_milestones

    run = fake_run(tmp_path, [(50, 0.6, 0.1), (100, 1.0, 0.3), (150, 1.0, 0.5)])
    with pytest.raises(LandscapeError, match="never reached test accuracy 0.95 \\(best 0.500"):
        grokking_milestones(run)
    with pytest.raises(LandscapeError, match="no checkpoint .* memorized"):
        grokking_milestones(run, memorized=1.0, grokked=0.2)
    with pytest.raises(LandscapeError, match="in \\(0, 1\\]"):
        grokking_milestones(run, memorized=0)


def test_filter_normalized_slices_ignore_the_query_key_rescaling():
    """Scaling one head's query rows by a and its key rows by 1 / a leaves the function as it
    is; filter-normalized directions of the same seed scale with those rows, so every slice
    of the rescaled model equals the original's (a raw Gaussian direction's would not)."""
    model, bundle = tiny_transformer(layernorm=True)
    model = model.double().eval()
    twin = copy.deepcopy(model)
    attn = twin.blocks[0].attn
    with torch.no_grad():
        attn.query.weight[:4] *= 3.0  # rows 0-3: head 0 of width 8, heads 2
        attn.key.weight[:4] /= 3.0
    x, y = bundle.train

    def slice_losses(net, norm):
        d = random_directions(net, count=1, norm=norm, seed=5)[0]
        params = dict(net.named_parameters())
        return torch.stack([nn.functional.cross_entropy(torch.func.functional_call(
            net, {n: p + t * d[n] for n, p in params.items()}, (x,)), y)
            for t in (-0.5, 0.25, 1.0)]).detach()

    torch.testing.assert_close(twin(x), model(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(slice_losses(twin, "filter"), slice_losses(model, "filter"),
                               rtol=1e-10, atol=0)
    assert not torch.allclose(slice_losses(twin, "none"), slice_losses(model, "none"),
                              rtol=1e-3)


def test_compare_measures_two_transformer_checkpoints(tmp_path):
    """The whole compare path (surfaces, curvature, sharpness, figures) on token inputs."""
    from landscape.compare import CompareConfig, compare

    bundle = load_dataset("modular-add-5-0.6")
    paths = []
    for seed in (0, 1):
        model = build_model("transformer", bundle, seed=seed, width=8, heads=2, mlp_width=8)
        opt = torch.optim.AdamW(model.parameters(), lr=0.05)
        for _ in range(60):
            opt.zero_grad()
            nn.functional.cross_entropy(model(bundle.train[0]), bundle.train[1]).backward()
            opt.step()
        paths.append(save_checkpoint(tmp_path / f"m{seed}.pt", model))
    config = CompareConfig.quick(curve_epochs=0, render_3d=False, line_points=11,
                                 plane_points=5, interp_points=7, eigen_points=5)
    study = compare(paths, tmp_path / "cmp", config=config, progress=False, log=None)
    for name in ("m0.pt", "m1.pt"):
        entry = study.summary["models"][name]
        assert entry["train_accuracy"] == 1.0
        assert entry["top_eigenvalue"] > 0 and entry["trace"] > 0
    assert study.summary["interpolation"]["between"] == ["m0.pt", "m1.pt"]


@pytest.mark.parametrize("model,dataset,words", [
    ("transformer", "mnist1d", "reads int64 token ids"),
    ("mlp", "modular-add-7", "use --model transformer"),
])
def test_cli_refuses_a_model_that_cannot_read_the_data_before_writing(tmp_path, model, dataset,
                                                                      words):
    from landscape_cli.main import cli

    out = tmp_path / "r"
    result = CliRunner().invoke(cli, ["train", "--dataset", dataset, "--model", model,
                                      "--train-subset", "8", "--steps", "2", "--quiet",
                                      "--out", str(out)])
    assert words in one_line_error(result)
    assert not out.exists() or not any(out.rglob("*.pt"))
