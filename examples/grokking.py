"""Grokking on a CPU, then the landscape of the memorizing and the generalizing minimum.

A one-block transformer (width 64, 4 heads, 57,280 parameters) learns a + b mod 59 from half of
the table, full batch, AdamW (lr 1e-3, weight decay 1). It fits its training half within a few
hundred steps while answering most of the other half wrongly, and only about two thousand steps
later does its test accuracy climb to 100%. The run keeps a checkpoint every 50 steps;
``landscape.grokking.grokking_milestones`` picks the first that memorized and the first that
generalized, and ``landscape.compare`` measures both (interpolation, filter-normalized 1-D and
2-D surfaces, Hessian spectrum, sharpness). docs/grokking.md has the numbers of one run: 848 s
of training and 180 s of comparing, measured with one thread on a machine shared with other
jobs (about a quarter of a core).

Usage: ``python examples/grokking.py [OUT]`` (default ``grokking``; a finished run in OUT/run is
reused, and so is every compare step already done). The same from the command line:

    landscape train --dataset modular-add-59-0.5 --model transformer --width 64 --heads 4 \\
        --optimizer adamw --lr 1e-3 --weight-decay 1 --batch-size full --steps 3000 \\
        --checkpoint-every 50 --track-eigenvalues 250 --out grokking/run
    landscape compare grokking/run/checkpoints/epoch_0300.pt grokking/run/model.pt \\
        --labels memorized,grokked --quick --curve-epochs 0 --out grokking/compare
"""
from __future__ import annotations

import sys
from pathlib import Path

from landscape import TrainConfig, build_model, train
from landscape.compare import CompareConfig, compare
from landscape.data import load_dataset
from landscape.grokking import grokking_milestones

DATASET = "modular-add-59-0.5"
CONFIG = TrainConfig(optimizer="adamw", lr=1e-3, weight_decay=1.0, batch_size="full",
                     steps=3000, checkpoint_every=50, track_eigenvalues=250, progress=True)


def main(out: Path) -> None:
    """Train (unless OUT/run is finished), pick the two checkpoints and compare them."""
    run = out / "run"
    if not (run / "model.pt").is_file():
        bundle = load_dataset(DATASET)
        model = build_model("transformer", bundle, seed=0, width=64, depth=1, heads=4)
        result = train(model, bundle, CONFIG, out_dir=run)
        print(f"trained {CONFIG.steps} steps in {result.seconds:.0f} s")
    memorized, grokked = grokking_milestones(run)
    for label, m in (("memorized", memorized), ("grokked", grokked)):
        print(f"{label}: step {m.epoch}, train acc {m.train_acc:.3f}, test acc "
              f"{m.test_acc:.3f} ({m.path})")
    config = CompareConfig.quick(curve_epochs=0, render_3d=False)
    study = compare([memorized.path, grokked.path], out / "compare", config=config,
                    labels=["memorized", "grokked"])
    print(f"report: {study.files.get('report_html', study.out_dir)}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "grokking"))
