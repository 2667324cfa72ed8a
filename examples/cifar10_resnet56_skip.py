"""ResNet-56 with and without skip connections on CIFAR-10: smooth versus chaotic landscapes.

Needs the CIFAR-10 python files under DATA_ROOT (download them once yourself, e.g. with
torchvision.datasets.CIFAR10(DATA_ROOT, download=True)) and, realistically, a GPU: training
takes hours on a CPU and each 51 x 51 surface is 2,601 passes over 50,000 images.

Run: python examples/cifar10_resnet56_skip.py DATA_ROOT [OUT]
"""
import sys
from pathlib import Path

import numpy as np

import landscape
from landscape.figures import plot_contours
from landscape.figures import render_surface

root = sys.argv[1] if len(sys.argv) > 1 else "data"
out = Path(sys.argv[2] if len(sys.argv) > 2 else "resnet56")
bundle = landscape.load_dataset("cifar10", root=root)
surfaces = []
for skip in (True, False):
    name = "resnet56" if skip else "resnet56-noshort"
    model = landscape.build_model("resnet56", bundle, skip=skip, seed=0)
    config = landscape.TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4,
                                   batch_size=128, epochs=300, schedule="step", step_epochs=150)
    landscape.train(model, bundle, config, out_dir=out / name)
    dirs = landscape.random_directions(model, count=2, norm="filter", ignore="biasbn", seed=0)
    grid = np.linspace(-1, 1, 51)
    surfaces.append(landscape.compute_surface(
        model, bundle, dirs, x=grid, y=grid,
        options=landscape.SurfaceOptions(metrics=("train_loss",)),
        out=out / f"{name}.h5", resume=True))
labels = ["with skip connections", "without skip connections"]
plot_contours(surfaces, labels=labels, levels=[0.1 + 0.5 * i for i in range(20)],
              out=out / "contours.png")
render_surface(surfaces, out / "surfaces_3d.png", labels=labels, log=True, zmax=10)
