"""The sweep's figures and report: accuracy, sharpness, convergence and throughput against
batch size, the optimizers' training curves, and ``sweep_report.md`` / ``sweep_report.html``
with the table of runs and the observations.

Only draws and formats the rows ``run_sweep`` measured; matplotlib loads inside the function.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .document import provenance_line, write_document

__all__ = ["write_sweep_report"]


def write_sweep_report(summary: dict[str, Any], out: Path) -> dict[str, str]:
    """Draw the sweep's figures and write ``sweep_report.md`` and ``sweep_report.html``.

    Args:
        summary: the sweep's summary (``rows``, ``observations``, ``setup``, ``provenance``,
            ``reused_steps``).
        out: the sweep folder (figures under ``figures/``).

    Returns:
        name -> path (as text) of the figures and the two report files.
    """
    from ..figures import plot_history, plot_sweep

    rows = summary["rows"]
    batch = [r for r in rows if r["group"] == "batch" and not r["diverged"]]
    figs = out / "figures"
    files: dict[str, Path] = {}
    panels = [("accuracy", ["test_accuracy", "train_accuracy"], "accuracy", False,
               "Accuracy vs batch size"),
              ("sharpness", ["top_eigenvalue", "sharpness"], "sharpness", True,
               "Sharpness vs batch size"),
              ("convergence", ["epochs_to_target", "seconds_to_target"],
               "to reach the loss target", True, "Convergence vs batch size"),
              ("throughput", ["samples_per_s"], "samples / s", True, "Training throughput")]
    for name, keys, ylabel, log, title in panels:
        if not any(r.get(k) is not None for r in batch for k in keys):
            continue  # e.g. no run reached the loss target: nothing to draw
        files[name] = figs / f"{name}_vs_batch.png"
        plot_sweep(batch, "batch_size", keys, ylabel=ylabel, log=log, title=title,
                   out=files[name])
    opt = [r for r in rows if r["group"] == "optimizer" and r["train_loss_curve"]]
    if opt:
        hist = [[{"epoch": e, "train_loss": v} for e, v in zip(r["curve_epochs"],
                                                                r["train_loss_curve"])]
                for r in opt]
        files["optimizers"] = figs / "optimizers.png"
        plot_history(hist, labels=[f"{r['optimizer']} batch {r['batch_size']}" for r in opt],
                     metrics=("loss",), title="Rprop vs RMSprop",
                     out=files["optimizers"])
    header = ("run", "batch", "lr", "epochs", "train loss", "test acc", "gap", "top eig",
              "sharpness", "epochs to target", "samples/s")
    table = [(r["label"], r["batch_size"], f"{r['lr']:.3g}", r["epochs"],
              _g(r["train_loss"]), _g(r["test_accuracy"]), _g(r["generalization_gap"]),
              _g(r.get("top_eigenvalue")), _g(r.get("sharpness")),
              r["epochs_to_target"] if r["epochs_to_target"] is not None else "not reached",
              _g(r["samples_per_s"])) for r in rows]
    cfg = summary["setup"]["config"]
    blocks: list[tuple] = [
        ("h1", "Batch-size sweep"),
        ("p", f"Dataset **{summary['setup']['dataset']}**, model **{summary['setup']['model']}**"
              f", seed {cfg['seed']}. SGD (momentum {cfg['momentum']}) with lr = "
              f"{cfg['base_lr']} x batch / {cfg['base_batch']} capped at {cfg['max_lr']}; about "
              f"{cfg['target_steps']} steps per run, {cfg['min_epochs']}-{cfg['max_epochs']} "
              f"epochs. Converged = training loss <= {cfg['target_loss']}."),
        ("table", header, table),
        ("h2", "Observations"), ("ul", summary["observations"]),
        ("h2", "Figures"),
    ]
    blocks += [("figure", name.replace("_", " "), str(Path(p).relative_to(out)))
               for name, p in files.items()]
    summary_for_line = dict(summary, seconds=0.0)
    blocks += [("h2", "Provenance"), ("p", provenance_line(summary_for_line))]
    docs = write_document(blocks, out, "sweep_report", "landscape: batch-size sweep")
    return {k: str(v) for k, v in {**files, **docs}.items()}


def _g(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
