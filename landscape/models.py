"""Model registry: ``build_model(name, bundle, **options) -> nn.Module``.

Every model built here carries ``model.landscape_spec``, a plain dict (name, options, seed,
input shape, classes, dataset spec) from which ``rebuild_model`` makes the same architecture.
Checkpoints store it, so a checkpoint needs no other flags to be reloaded.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

import torch
from torch import nn

from .errors import LandscapeError
from .transformer import check_input_kind, transformer

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


def _act(name: str) -> nn.Module:
    if name not in _ACTIVATIONS:
        raise LandscapeError(f"unknown activation {name!r}: use one of {', '.join(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]()


def _norm(kind: str, channels: int, enabled: bool) -> nn.Module:
    if not enabled:
        return nn.Identity()
    return {"1d": nn.BatchNorm1d, "2d": nn.BatchNorm2d}[kind](channels)


def mlp(input_shape, num_classes, width: int = 32, depth: int = 2, activation: str = "relu",
        batchnorm: bool = False) -> nn.Module:
    """Fully connected network: ``depth`` hidden layers of ``width`` units."""
    if depth < 0 or width < 1:
        raise LandscapeError("mlp needs depth >= 0 and width >= 1")
    layers: list[nn.Module] = [nn.Flatten()]
    fan_in = int(torch.tensor(input_shape).prod())
    for _ in range(depth):
        layers += [nn.Linear(fan_in, width), _norm("1d", width, batchnorm), _act(activation)]
        fan_in = width
    layers.append(nn.Linear(fan_in, num_classes))
    return nn.Sequential(*[m for m in layers if not isinstance(m, nn.Identity)])


class _AddChannel(nn.Module):
    """(N, L) -> (N, 1, L) for 1-D signals given without a channel axis."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(1) if x.ndim == 2 else x


def cnn1d(input_shape, num_classes, channels: int = 32, activation: str = "relu",
          batchnorm: bool = False) -> nn.Module:
    """Small MNIST-1D convnet: three strided 1-D convolutions and a linear head (8,010
    parameters at 32 channels on 40-sample inputs)."""
    in_ch = 1 if len(input_shape) == 1 else input_shape[0]
    body = nn.Sequential(
        _AddChannel(),
        nn.Conv1d(in_ch, channels, 5, stride=2, padding=1), _norm("1d", channels, batchnorm),
        _act(activation),
        nn.Conv1d(channels, channels, 3, stride=2, padding=1), _norm("1d", channels, batchnorm),
        _act(activation),
        nn.Conv1d(channels, channels, 3, stride=2, padding=1), _norm("1d", channels, batchnorm),
        _act(activation),
        nn.Flatten(),
    )
    feat = _feature_size(body, input_shape)
    return nn.Sequential(*[m for m in body if not isinstance(m, nn.Identity)],
                         nn.Linear(feat, num_classes))


def lenet(input_shape, num_classes, activation: str = "relu", batchnorm: bool = False
          ) -> nn.Module:
    """LeNet-style 2-D CNN for (C, H, W) images."""
    _need_image(input_shape, "lenet")
    body = nn.Sequential(
        nn.Conv2d(input_shape[0], 6, 5, padding=2), _norm("2d", 6, batchnorm), _act(activation),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), _norm("2d", 16, batchnorm), _act(activation), nn.MaxPool2d(2),
        nn.Flatten(),
    )
    feat = _feature_size(body, input_shape)
    return nn.Sequential(*[m for m in body if not isinstance(m, nn.Identity)],
                         nn.Linear(feat, 120), _act(activation), nn.Linear(120, 84),
                         _act(activation), nn.Linear(84, num_classes))


def vgg9(input_shape, num_classes, batchnorm: bool = True, width: int = 64) -> nn.Module:
    """VGG-9: seven 3x3 convolutions and two linear layers."""
    _need_image(input_shape, "vgg9")
    cfg = [1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, "M"]
    layers: list[nn.Module] = []
    ch = input_shape[0]
    for item in cfg:
        if item == "M":
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
            continue
        out = item * width
        layers += [nn.Conv2d(ch, out, 3, padding=1, bias=not batchnorm),
                   _norm("2d", out, batchnorm), nn.ReLU()]
        ch = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(ch, ch), nn.ReLU(),
               nn.Linear(ch, num_classes)]
    return nn.Sequential(*[m for m in layers if not isinstance(m, nn.Identity)])


class BasicBlock(nn.Module):
    """Two convolutions (kernel 3; 2-D, or 1-D with ``dims=1``) with an optional identity or
    projection shortcut; with ``skip=False`` the same layers without the addition."""

    def __init__(self, cin: int, cout: int, stride: int, skip: bool, batchnorm: bool,
                 dims: int = 2):
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv1d
        self.skip = skip
        self.conv1 = conv(cin, cout, 3, stride, 1, bias=not batchnorm)
        self.bn1 = _norm(f"{dims}d", cout, batchnorm)
        self.conv2 = conv(cout, cout, 3, 1, 1, bias=not batchnorm)
        self.bn2 = _norm(f"{dims}d", cout, batchnorm)
        self.shortcut: nn.Module = nn.Identity()
        if skip and (stride != 1 or cin != cout):
            self.shortcut = nn.Sequential(conv(cin, cout, 1, stride, bias=not batchnorm),
                                          _norm(f"{dims}d", cout, batchnorm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        if self.skip:
            out = out + self.shortcut(x)
        return torch.relu(out)


class CifarResNet(nn.Module):
    """ResNet for 32x32 images: three stages of ``n`` blocks, 16/32/64 channels (6n+2 layers)."""

    def __init__(self, input_shape, num_classes: int, n: int, skip: bool = True,
                 batchnorm: bool = True, width: int = 16):
        super().__init__()
        _need_image(input_shape, f"resnet{6 * n + 2}")
        self.conv = nn.Conv2d(input_shape[0], width, 3, 1, 1, bias=not batchnorm)
        self.bn = _norm("2d", width, batchnorm)
        blocks, cin = [], width
        for stage in range(3):
            cout = width * 2 ** stage
            for i in range(n):
                blocks.append(BasicBlock(cin, cout, 2 if (i == 0 and stage > 0) else 1,
                                         skip, batchnorm))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(torch.relu(self.bn(self.conv(x))))
        return self.head(out.mean(dim=(2, 3)))


def resnet20(input_shape, num_classes, skip: bool = True, batchnorm: bool = True,
             width: int = 16) -> nn.Module:
    """ResNet-20 (``skip=False``: the same depth without shortcuts)."""
    return CifarResNet(input_shape, num_classes, 3, skip, batchnorm, width)


def resnet56(input_shape, num_classes, skip: bool = True, batchnorm: bool = True,
             width: int = 16) -> nn.Module:
    """ResNet-56 (``skip=False``: the chaotic no-shortcut variant)."""
    return CifarResNet(input_shape, num_classes, 9, skip, batchnorm, width)


class ResNet1d(nn.Module):
    """Residual network for 1-D signals (MNIST-1D): a stem convolution, three stages of ``n``
    blocks (``width``, 2 ``width``, 4 ``width`` channels; stride 2 between stages), global
    average pooling and a linear head: ``6 n + 2`` layers."""

    def __init__(self, input_shape, num_classes: int, n: int, skip: bool = True,
                 batchnorm: bool = True, width: int = 8):
        super().__init__()
        if len(input_shape) not in (1, 2):
            raise LandscapeError(f"resnet1d needs 1-D signals (L,) or (C, L); this dataset's "
                                 f"inputs have shape {tuple(input_shape)}")
        in_ch = 1 if len(input_shape) == 1 else input_shape[0]
        self.add_channel = _AddChannel()
        self.conv = nn.Conv1d(in_ch, width, 3, 1, 1, bias=not batchnorm)
        self.bn = _norm("1d", width, batchnorm)
        blocks, cin = [], width
        for stage in range(3):
            cout = width * 2 ** stage
            for i in range(n):
                blocks.append(BasicBlock(cin, cout, 2 if (i == 0 and stage > 0) else 1, skip,
                                         batchnorm, dims=1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(torch.relu(self.bn(self.conv(self.add_channel(x)))))
        return self.head(out.mean(dim=2))


def resnet1d(input_shape, num_classes, depth: int = 20, skip: bool = True,
             batchnorm: bool = True, width: int = 8) -> nn.Module:
    """1-D ResNet of ``depth`` = 6 n + 2 layers (8, 14, 20, 56, ...) for MNIST-1D;
    ``skip=False``: the same layers without shortcuts (Li et al. 2018's no-skip nets)."""
    if depth < 8 or (depth - 2) % 6:
        raise LandscapeError(f"resnet1d depth must be 6 n + 2 with n >= 1 (8, 14, 20, 56, "
                             f"...), got {depth}")
    return ResNet1d(input_shape, num_classes, (depth - 2) // 6, skip, batchnorm, width)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": mlp, "cnn1d": cnn1d, "lenet": lenet, "vgg9": vgg9,
    "resnet20": resnet20, "resnet56": resnet56, "resnet1d": resnet1d,
    "transformer": transformer,
}


def _need_image(shape, name: str) -> None:
    if len(shape) != 3:
        raise LandscapeError(f"{name} needs image inputs (C, H, W); this dataset's inputs have "
                             f"shape {tuple(shape)}: use mlp or cnn1d")


def _feature_size(body: nn.Module, input_shape) -> int:
    with torch.no_grad():
        return int(body(torch.zeros(1, *input_shape)).shape[1])


def build_model(name: str, bundle=None, *, seed: int = 0, input_shape=None,
                num_classes: int | None = None, **options: Any) -> nn.Module:
    """Build a registered model (or a user's ``module:function``) for a dataset.

    Args:
        name: ``mlp``, ``cnn1d``, ``lenet``, ``vgg9``, ``resnet20``, ``resnet56``,
            ``resnet1d``, ``transformer`` (token inputs: ``landscape.transformer``) or
            ``module:function`` (called as ``function(input_shape, num_classes, **options)``).
        bundle: the DataBundle that fixes input shape and classes (or pass both explicitly).
        seed: initialization seed; the same seed gives the same initial weights.
        **options: architecture options (``width``, ``depth``, ``activation``, ``batchnorm``,
            ``skip``, ``channels``, ``heads``, ...), checked against the builder's signature.

    Returns:
        The model in float32 on the CPU, with ``model.landscape_spec`` set.
    """
    if bundle is not None:
        input_shape = bundle.input_shape
        num_classes = bundle.num_classes
    if input_shape is None or num_classes is None:
        raise LandscapeError("build_model needs a DataBundle or input_shape and num_classes")
    builder = _builder(name)
    allowed = [p for p in inspect.signature(builder).parameters][2:]
    unknown = sorted(set(options) - set(allowed))
    if unknown and not any(p.kind is p.VAR_KEYWORD
                           for p in inspect.signature(builder).parameters.values()):
        raise LandscapeError(f"model {name!r} has no option(s) {', '.join(unknown)}; "
                             f"it takes: {', '.join(allowed) or 'none'}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = builder(tuple(input_shape), int(num_classes), **options)
    if not isinstance(model, nn.Module):
        raise LandscapeError(f"model {name!r} did not return a torch.nn.Module")
    if bundle is not None and name in MODELS:
        check_input_kind(name, model, bundle.train[0])
    model.landscape_spec = {
        "name": name, "options": dict(options), "seed": seed,
        "input_shape": list(input_shape), "num_classes": int(num_classes),
        "dataset": dict(bundle.spec) if bundle is not None else None,
    }
    return model


def rebuild_model(spec: dict[str, Any]) -> nn.Module:
    """Build the architecture described by a ``landscape_spec`` dict (weights at init)."""
    model = build_model(spec["name"], seed=spec.get("seed", 0),
                        input_shape=spec["input_shape"], num_classes=spec["num_classes"],
                        **spec.get("options", {}))
    model.landscape_spec = dict(spec)
    return model


def _builder(name: str) -> Callable[..., nn.Module]:
    if name in MODELS:
        return MODELS[name]
    if ":" in name:
        from .data import load_callable
        return load_callable(name, "model")
    raise LandscapeError(f"unknown model {name!r}: use one of {', '.join(MODELS)} "
                         "or module:function")


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
