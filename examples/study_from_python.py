"""The sharp-vs-flat study from Python, step by step, on MNIST-1D (no download).

Run: python examples/study_from_python.py   (about 3 minutes on 2 CPU cores)
"""
import numpy as np

import landscape
from landscape.curvature import hessian_eigenvalues
from landscape.shape import surface_shape
from landscape.sharpness import epsilon_sharpness
from landscape.figures import plot_contours, plot_lines

bundle = landscape.load_dataset("mnist1d")
runs = {"small batch": dict(batch_size=32, lr=0.01, epochs=60),
        "full batch": dict(batch_size="full", lr=0.1, epochs=600)}

surfaces, lines = [], []
for name, settings in runs.items():
    model = landscape.build_model("cnn1d", bundle, seed=0)
    result = landscape.train(model, bundle, landscape.TrainConfig(**settings))
    top = hessian_eigenvalues(model, bundle.train, k=1)
    sharp = epsilon_sharpness(model, bundle, eps=1e-3)
    dirs = landscape.random_directions(model, count=2, norm="filter", ignore="biasbn", seed=0)
    grid = np.linspace(-1, 1, 25)
    plane = landscape.compute_surface(model, bundle, dirs, x=grid, y=grid,
                                      options=landscape.SurfaceOptions(metrics=("train_loss",)))
    line = landscape.compute_surface(
        model, bundle, dirs[:1], x=np.linspace(-1, 1, 41),
        options=landscape.SurfaceOptions(metrics=("train_loss", "test_loss")))
    shape = surface_shape(plane)
    print(f"{name:12s} test acc {result.final['test_acc']:.3f}  top eigenvalue "
          f"{top.values[-1]:.2f}  Keskar sharpness {sharp.value:.3g}  basin {shape.label}"
          f" (width {shape.width})")
    surfaces.append(plane)
    lines.append(line)

plot_contours(surfaces, labels=list(runs), kind="filled", out="study_contours.png")
plot_lines(lines, labels=list(runs), out="study_lines.png")
print("wrote study_contours.png and study_lines.png")

# The whole pipeline, with report, in one call:
#   landscape.study.run_study(landscape.study.StudyConfig(), "study")
