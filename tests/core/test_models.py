import pytest
import torch
from torch import nn

from landscape.errors import LandscapeError
from landscape.models import build_model, count_parameters, rebuild_model


def test_cnn1d_is_the_8k_mnist1d_convnet(mnist1d_small):
    model = build_model("cnn1d", mnist1d_small)
    assert count_parameters(model) == 8010
    assert model(mnist1d_small.train[0][:5]).shape == (5, 10)


def test_mlp_default_size(mnist1d_small):
    assert count_parameters(build_model("mlp", mnist1d_small)) == 2698


@pytest.mark.parametrize("name,opts", [
    ("lenet", {}), ("vgg9", {"width": 8}), ("resnet20", {}), ("resnet20", {"skip": False}),
    ("resnet20", {"batchnorm": False}), ("resnet56", {"width": 4}),
])
def test_image_models_forward(name, opts):
    model = build_model(name, input_shape=(3, 32, 32), num_classes=10, **opts)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_skip_false_removes_shortcuts():
    with_skip = build_model("resnet20", input_shape=(3, 32, 32), num_classes=10)
    no_skip = build_model("resnet20", input_shape=(3, 32, 32), num_classes=10, skip=False)
    assert count_parameters(no_skip) < count_parameters(with_skip)
    x = torch.randn(2, 3, 32, 32)
    no_skip.load_state_dict(with_skip.state_dict(), strict=False)
    assert not torch.allclose(with_skip.eval()(x), no_skip.eval()(x))


def test_same_seed_same_init_and_spec(mnist1d_small):
    a = build_model("cnn1d", mnist1d_small, seed=7)
    b = build_model("cnn1d", mnist1d_small, seed=7)
    c = build_model("cnn1d", mnist1d_small, seed=8)
    for (_, p), (_, q), (_, r) in zip(a.named_parameters(), b.named_parameters(),
                                      c.named_parameters()):
        assert torch.equal(p, q)
    assert not all(torch.equal(p, r) for p, r in zip(a.parameters(), c.parameters()))
    assert a.landscape_spec["dataset"]["name"] == "mnist1d"
    rebuilt = rebuild_model(a.landscape_spec)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), rebuilt.parameters()))


def test_building_does_not_touch_global_rng(mnist1d_small):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_model("mlp", mnist1d_small, seed=1)
    assert torch.equal(torch.rand(3), expected)


def test_bad_model_inputs(mnist1d_small):
    with pytest.raises(LandscapeError, match="unknown model"):
        build_model("no-such-model", mnist1d_small)
    with pytest.raises(LandscapeError, match="has no option"):
        build_model("mlp", mnist1d_small, skip=False)
    with pytest.raises(LandscapeError, match="image inputs"):
        build_model("resnet20", mnist1d_small)


def test_user_model(tmp_path, mnist1d_small):
    src = tmp_path / "mymodel.py"
    src.write_text("import torch\n"
                   "def net(input_shape, num_classes, hidden=5):\n"
                   "    return torch.nn.Sequential(torch.nn.Flatten(),\n"
                   "        torch.nn.Linear(input_shape[0], hidden), torch.nn.ReLU(),\n"
                   "        torch.nn.Linear(hidden, num_classes))\n")
    model = build_model(f"{src}:net", mnist1d_small, hidden=7)
    assert count_parameters(model) == 40 * 7 + 7 + 7 * 10 + 10


@pytest.mark.parametrize("depth", [8, 20])
def test_resnet1d_without_skips_is_the_same_network_minus_the_additions(depth, mnist1d_small):
    skip = build_model("resnet1d", mnist1d_small, seed=0, depth=depth)
    plain = build_model("resnet1d", mnist1d_small, seed=0, depth=depth, skip=False)
    # Parameters: the plain net's are exactly the skip net's minus the projection shortcuts.
    with_skip = dict(skip.named_parameters())
    without = dict(plain.named_parameters())
    extra = set(with_skip) - set(without)
    assert not set(without) - set(with_skip)
    assert extra and all(".shortcut." in name for name in extra)
    convs = sum(1 for m in plain.modules() if isinstance(m, nn.Conv1d))
    assert convs + 1 == depth  # 6 n + 1 convolutions and the linear head
    # Forward: copy the shared weights, drop the additions by hand, compare.
    plain.load_state_dict({k: v for k, v in skip.state_dict().items() if ".shortcut." not in k})
    skip.eval(), plain.eval()
    x = mnist1d_small.train[0][:16]
    with torch.no_grad():
        for block in skip.blocks:
            block.skip = False
        assert torch.equal(skip(x), plain(x))
        for block in skip.blocks:
            block.skip = True
        assert not torch.allclose(skip(x), plain(x))


def test_resnet1d_depth_and_batchnorm_options(mnist1d_small):
    no_bn = build_model("resnet1d", mnist1d_small, depth=8, batchnorm=False)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in no_bn.modules())
    assert no_bn(mnist1d_small.train[0][:4]).shape == (4, 10)
    with pytest.raises(LandscapeError, match="6 n \\+ 2"):
        build_model("resnet1d", mnist1d_small, depth=10)
