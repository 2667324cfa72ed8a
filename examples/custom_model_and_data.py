"""Your own model and dataset: plug them in as ``module:function`` (CLI) or call directly.

Run: python examples/custom_model_and_data.py
CLI equivalent:
  landscape train --dataset examples/custom_model_and_data.py:spirals \
      --model examples/custom_model_and_data.py:small_net --batch-size 16 --epochs 30 --out runs/spiral
  landscape surface runs/spiral/model.pt --x=-1:1:31 --y=-1:1:31 --out spiral.h5
"""
import math

import numpy as np
import torch
from torch import nn

import landscape


def spirals(n: int = 600, seed: int = 0):
    """Two interleaved spirals (2 classes): returns (x_train, y_train, x_test, y_test)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(n, generator=g) * 3 * math.pi
    label = torch.arange(n) % 2
    r = t / (3 * math.pi)
    angle = t + math.pi * label
    x = torch.stack([r * torch.cos(angle), r * torch.sin(angle)], 1)
    x += 0.02 * torch.randn(x.shape, generator=g)
    cut = int(0.8 * n)
    return x[:cut], label[:cut], x[cut:], label[cut:]


def small_net(input_shape, num_classes, hidden: int = 32):
    """A two-hidden-layer tanh network; the registry calls it with the data's shapes."""
    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0], hidden), nn.Tanh(),
                         nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, num_classes))


if __name__ == "__main__":
    bundle = landscape.load_dataset(f"{__file__}:spirals")
    model = landscape.build_model(f"{__file__}:small_net", bundle, hidden=32)
    result = landscape.train(model, bundle, landscape.TrainConfig(optimizer="adam", lr=0.01,
                                                                  batch_size=16, epochs=30))
    print("test accuracy", result.final["test_acc"])
    landscape.save_checkpoint("spiral_model.pt", model)  # reloadable with no other flags
    dirs = landscape.random_directions(model, count=2, seed=0)
    grid = np.linspace(-1, 1, 21)
    surf = landscape.compute_surface(model, bundle, dirs, x=grid, y=grid)
    print(surf.summary())
