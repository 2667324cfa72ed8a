"""Optimizers' paths on analytic landscapes: a V-shaped funnel and a W-shaped double well.

SGD, SGD with momentum, RMSprop and Rprop start from the same point, with and without gradient
noise (a stand-in for mini-batch noise). Rprop follows only the gradient's sign, so with noise
its steps wander; RMSprop's running mean of squared gradients keeps them steady.

Run: python examples/analytic_paths.py [OUT_DIR]   (a few seconds; writes PNGs)
"""
import sys
from pathlib import Path

import numpy as np
import torch

from landscape.figures import plot_contours
from landscape.shape import basin_shape
from landscape.surface import Surface


def funnel(w: torch.Tensor) -> torch.Tensor:
    """V: one smooth funnel with its minimum at the origin."""
    return torch.sqrt(w[0] ** 2 + 0.5 * w[1] ** 2 + 0.01)


def double_well(w: torch.Tensor) -> torch.Tensor:
    """W: two basins at x = -1 and x = +1 (the left one slightly deeper)."""
    return (w[0] ** 2 - 1) ** 2 + 0.5 * w[1] ** 2 + 0.15 * w[0]


OPTIMIZERS = {
    "SGD": lambda p: torch.optim.SGD(p, lr=0.05),
    "SGD + momentum": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
    "RMSprop": lambda p: torch.optim.RMSprop(p, lr=0.02),
    "Rprop": lambda p: torch.optim.Rprop(p, lr=0.02),
}


def path(fn, make, start, steps=150, noise=0.0, seed=0):
    """Positions of an optimizer minimizing ``fn`` from ``start``; ``noise`` adds Gaussian
    gradient noise of that standard deviation."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    opt = make([w])
    points = [w.detach().clone().numpy()]
    for _ in range(steps):
        opt.zero_grad()
        fn(w).backward()
        if noise:
            w.grad += noise * torch.randn(2, generator=gen, dtype=torch.float64)
        opt.step()
        points.append(w.detach().clone().numpy())
    return np.array(points)


def grid_surface(fn, lim=2.0, n=121):
    """The function on a grid, as a Surface (values computed here, drawn by plot2d)."""
    x = np.linspace(-lim, lim, n)
    xx, yy = np.meshgrid(x, x, indexing="ij")
    values = fn(torch.tensor(np.stack([xx, yy]))).numpy()
    return Surface(x=x, y=x, metrics={"loss": values}, done=np.ones(values.shape, bool))


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, fn in (("funnel", funnel), ("double_well", double_well)):
        surface = grid_surface(fn)
        shape = basin_shape(surface.x, surface.metrics["loss"], surface.y)
        print(f"{name}: label {shape.label}, {shape.n_basins} basin(s)")
        for noise in (0.0, 1.0):
            paths = {k: path(fn, make, [1.6, 1.4], noise=noise) for k, make in OPTIMIZERS.items()}
            fig = plot_contours(surface, metric="loss", levels=25, mark_min=False,
                                title=f"{name}, gradient noise {noise}")
            ax = fig.axes[0]
            colors = ["tab:blue", "tab:orange", "tab:green", "tab:purple"]
            for key, color in zip(paths, colors):
                ax.plot(*paths[key].T, "-", lw=1.3, color=color, label=key)
                ax.plot(*paths[key][-1], "s", color=color, ms=6, mec="black")
            ax.plot(*paths[key][0], "o", color="white", mec="black", ms=9, label="start")
            ax.legend(fontsize="small", loc="lower left")
            target = out / f"{name}_noise{noise:g}.png"
            fig.savefig(target, dpi=150)
            for key, pts in paths.items():
                print(f"  noise {noise}: {key:15s} ends at ({pts[-1, 0]:+.3f}, {pts[-1, 1]:+.3f})"
                      f" loss {float(fn(torch.tensor(pts[-1]))):.4f}")
            print(f"  wrote {target}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "analytic_paths"))
