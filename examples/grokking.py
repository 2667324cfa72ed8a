"""Grokking on a CPU, then the landscape of the memorizing and the generalizing minimum.

A one-block transformer (width 64, 4 heads, 57,280 parameters) learns a + b mod 59 from half of
the table, full batch, AdamW (lr 1e-3, weight decay 1). It fits its training half within a few
hundred steps while answering most of the other half wrongly, and only about two thousand steps
later does its test accuracy climb to 100%. The run keeps a checkpoint every 50 steps and
tracks the top Hessian eigenvalue every 250; ``landscape.grokking.grokking_milestones`` picks
the first checkpoint that memorized and the first that generalized, and then this script
writes, under OUT:

- ``compare/``: ``landscape.compare`` of the two (interpolation, filter-normalized 1-D and 2-D
  surfaces, Hessian spectrum, sharpness; report.html);
- ``traces.json`` and ``curvature_accuracy.png``: the Hessian trace of checkpoints
  (``checkpoint_traces``; every 250th, and every 50th while the run memorizes) and, on one
  step axis, the tracked top eigenvalue, the trace, the eigenvalue over the training loss,
  and train and test accuracy, both milestones marked;
- ``plane.h5``, ``plane_train.png``, ``plane_test.png``: the training and test loss on the
  plane through the initial weights, the memorizing and the grokked checkpoint
  (``landscape.planes.plane_through``: its grid passes through all three, which are marked).

docs/grokking.md has the numbers of one run, measured with one thread on a 2-core machine
shared with other jobs.

Usage: ``python examples/grokking.py [OUT]`` (default ``grokking``; a finished run in OUT/run is
reused, and so is every step already done). The training and the compare from the command line:

    landscape train --dataset modular-add-59-0.5 --model transformer --width 64 --heads 4 \\
        --optimizer adamw --lr 1e-3 --weight-decay 1 --batch-size full --steps 3000 \\
        --checkpoint-every 50 --track-eigenvalues 250 --out grokking/run
    landscape compare grokking/run/checkpoints/epoch_0250.pt \\
        grokking/run/checkpoints/epoch_2200.pt --labels memorized,grokked --quick \\
        --plane-points 25 --curve-epochs 0 --no-3d --out grokking/compare
    landscape plane grokking/run/checkpoints/epoch_0000.pt \\
        grokking/run/checkpoints/epoch_0250.pt grokking/run/checkpoints/epoch_2200.pt \\
        --orthogonal --labels init,memorized,grokked --out grokking/plane.h5
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from landscape import TrainConfig, build_model, train
from landscape.checkpoint import load_checkpoint
from landscape.compare import CompareConfig, compare
from landscape.data import load_dataset
from landscape.figures import plot_contours, plot_curvature_accuracy
from landscape.grokking import checkpoint_traces, grokking_milestones
from landscape.planes import plane_through
from landscape.store import load_surface
from landscape.surface import SurfaceOptions
from landscape.train import load_history

DATASET = "modular-add-59-0.5"
CONFIG = TrainConfig(optimizer="adamw", lr=1e-3, weight_decay=1.0, batch_size="full",
                     steps=3000, checkpoint_every=50, track_eigenvalues=250, progress=True)
TRACE_PRODUCTS = 30
PLANE_POINTS, PLANE_MARGIN = 21, 0.25


def main(out: Path) -> None:
    """Train (unless OUT/run is finished), pick the two checkpoints, compare them, and draw
    the curvature over training and the plane through init, memorized and grokked."""
    run, bundle = out / "run", load_dataset(DATASET)
    if not (run / "model.pt").is_file():
        model = build_model("transformer", bundle, seed=0, width=64, depth=1, heads=4)
        result = train(model, bundle, CONFIG, out_dir=run)
        print(f"trained {CONFIG.steps} steps in {result.seconds:.0f} s")
    memorized, grokked = grokking_milestones(run)
    for label, m in (("memorized", memorized), ("grokked", grokked)):
        print(f"{label}: step {m.epoch}, train acc {m.train_acc:.3f}, test acc "
              f"{m.test_acc:.3f} ({m.path})")
    # 25 points a side: the memorizing basin (width ~0.13) spans three grid steps, not 1.5.
    config = CompareConfig.quick(curve_epochs=0, render_3d=False, plane_points=25)
    study = compare([memorized.path, grokked.path], out / "compare", config=config,
                    labels=["memorized", "grokked"])
    print(f"report: {study.files.get('report_html', study.out_dir)}")
    marks = {"memorized": memorized.epoch, "grokked": grokked.epoch}
    curvature_figure(run, bundle, marks, out)
    plane_figures(run, bundle, [0, memorized.epoch, grokked.epoch], out)


def curvature_figure(run: Path, bundle, marks: dict[str, int], out: Path) -> None:
    """The trace of every 250th checkpoint (kept in traces.json) and the figure of curvature
    and accuracy over training."""
    # Every 250th (where the top eigenvalue was tracked), the two milestones, and every 50th
    # up to the first milestone: the trace peaks while the run memorizes, before step 250.
    epochs = sorted(set(range(0, CONFIG.steps + 1, 250)) | set(marks.values())
                    | set(range(0, marks["memorized"], 50)))
    path = out / "traces.json"
    saved = json.loads(path.read_text()) if path.is_file() else {}
    done = {r["step"]: r for r in saved.get("traces", [])
            if saved.get("n_products") == TRACE_PRODUCTS}
    missing = [e for e in epochs if e not in done]
    if missing:
        for r in checkpoint_traces(run, bundle.train, epochs=missing, n_products=TRACE_PRODUCTS):
            done[r["step"]] = r
        saved = {"n_products": TRACE_PRODUCTS, "traces": [done[e] for e in sorted(done)]}
        path.write_text(json.dumps(saved, indent=1))
    for r in saved["traces"]:
        print(f"step {r['step']:5d}: Hessian trace {r['trace']:9.4g} +- {r['trace_stderr']:.2g}")
    history = load_history(run)["epochs"]
    figure = out / "curvature_accuracy.png"
    plot_curvature_accuracy(history, traces=saved["traces"], marks=marks, out=figure,
                            title=f"Curvature and accuracy through grokking ({DATASET})")
    print(f"figure: {figure}")


def plane_figures(run: Path, bundle, epochs: list[int], out: Path) -> None:
    """Training and test loss on the plane through three checkpoints of the run."""
    path, labels = out / "plane.h5", ["init", "memorized", "grokked"]
    if path.is_file():
        plane = load_surface(path)
    else:
        models = [load_checkpoint(run / "checkpoints" / f"epoch_{e:04d}.pt")[0] for e in epochs]
        plane = plane_through(models, bundle, labels=labels, points=PLANE_POINTS,
                              margin=PLANE_MARGIN, out=path,
                              options=SurfaceOptions(metrics=("train_loss", "test_loss"),
                                                     progress=True))
    names = [f"{a} (step {e})" for a, e in zip(labels, epochs)]
    for metric in ("train_loss", "test_loss"):
        split = metric.split("_")[0]
        figure = out / f"plane_{split}.png"
        plot_contours(plane, metric=metric, kind="filled", log=True, levels=24, labels=[""],
                      title=f"{split.capitalize()} loss on the plane through {names[0]},\n"
                            f"{names[1]} and {names[2]}", out=figure)
        print(f"figure: {figure}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "grokking"))
