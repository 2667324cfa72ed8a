"""``landscape connect``: train a low-loss curve between two minima and evaluate it."""
from __future__ import annotations

from pathlib import Path

import click

from .common import (MAX_EPOCHS, MAX_POINTS, bundle_from, dataset_options, device_option,
                     guard_output, main_output_lock, memory_option, wraps_threads)


def endpoint_name(path: Path) -> str:
    """The run folder's name for ``<run>/model.pt`` (the name `landscape train` writes), else
    the file's stem."""
    return path.parent.name if path.name == "model.pt" and path.parent.name else path.stem


def state_file(out: str) -> Path:
    """Where the curve's training state lives: next to the output (``curve.state.pt``)."""
    return Path(out).with_suffix(".state.pt")


def line_file(out: str) -> Path:
    """Default file of the straight line: ``curve_line.h5`` beside ``curve.h5``."""
    p = Path(out)
    return p.with_name(f"{p.stem}_line{p.suffix or '.h5'}")


def _labels(text: str | None, paths: list[Path]) -> tuple[str, str]:
    if text is None:
        names = [endpoint_name(p) for p in paths]
        return (names[0], names[1]) if names[0] != names[1] else (str(paths[0]), str(paths[1]))
    parts = [t.strip() for t in text.split(",")]
    if len(parts) != 2 or not all(parts):
        raise click.BadParameter(f"{text!r}: give two names separated by a comma",
                                 param_hint="--labels")
    return parts[0], parts[1]


@click.command("connect")
@click.argument("model_a", type=click.Path())
@click.argument("model_b", type=click.Path())
@dataset_options
@click.option("--out", type=click.Path(dir_okay=False), required=True,
              help="Surface file (HDF5) of the curve: train/test loss and accuracy at each t.")
@click.option("--curve", type=click.Choice(["bezier", "polychain"]), default="bezier",
              show_default=True, help="Quadratic Bezier curve or polygonal chain through the "
                                      "trained bend.")
@click.option("--epochs", type=click.IntRange(min=0, max=MAX_EPOCHS), default=20, show_default=True,
              help="Passes over the training set while training the bend (0: the untrained "
                   "bend at the midpoint).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=0.05,
              show_default=True, help="SGD learning rate of the bend.")
@click.option("--momentum", type=click.FloatRange(min=0, max=1, max_open=True), default=0.9,
              help="SGD momentum.", show_default=True)
@click.option("--weight-decay", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="L2 penalty on the bend.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Examples per step (one t drawn per step).")
@click.option("--points", type=click.IntRange(min=3, max=MAX_POINTS), default=21, show_default=True,
              help="Evaluation points along t in [0, 1].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the shuffling "
              "and the draws of t.")
@click.option("--line-out", type=click.Path(dir_okay=False), default=None,
              help="Also write the straight line here (default: OUT's name + _line).")
@click.option("--no-line", is_flag=True, help="Do not evaluate the straight line.")
@click.option("--figure", type=click.Path(dir_okay=False), default=None,
              help="Draw the curve against the straight line into this PNG/PDF/SVG.")
@click.option("--labels", default=None,
              help="Names of A and B, comma-separated (default: run folder or file names).")
@click.option("--checkpoint-seconds", type=click.FloatRange(min=0), default=30.0,
              show_default=True, help="Save the training state at most this often.")
@click.option("--resume", is_flag=True,
              help="Continue from OUT's saved training state (OUT.state.pt) after an "
                   "interruption.")
@click.option("--force", is_flag=True, help="Start over: replace OUT, its line and its state.")
@memory_option
@device_option
@click.option("--quiet", is_flag=True, help="No progress bar.")
@wraps_threads
def connect_command(model_a, model_b, dataset, data_root, train_subset, test_subset, data_seed,
                    out, curve, epochs, lr, momentum, weight_decay, batch_size, points, seed,
                    line_out, no_line, figure, labels, checkpoint_seconds, resume, force,
                    max_memory, device, quiet):
    """Train a curve of low loss between the minima MODEL_A and MODEL_B (checkpoints or run
    folders) with its endpoints fixed (Garipov et al. 2018), and write train/test loss and
    accuracy along it, and along the straight line, as 1-D surfaces over t."""
    from landscape import load_checkpoint
    from landscape.util import pick_device
    from landscape.connect import ConnectOptions, connect
    from landscape.errors import LandscapeError
    from landscape.store import save_surface

    if resume and force:
        raise click.UsageError("--resume and --force exclude each other")
    options = ConnectOptions(curve=curve, epochs=epochs, lr=lr, momentum=momentum,
                             weight_decay=weight_decay, batch_size=batch_size, points=points,
                             seed=seed, device=device, checkpoint_seconds=checkpoint_seconds,
                             line=not no_line)
    options.validate()
    pick_device(device)
    from landscape.checkpoint import checkpoint_path

    paths = [checkpoint_path(model_a), checkpoint_path(model_b)]
    names = _labels(labels, paths)
    line_path = None if no_line else Path(line_out or line_file(out))
    state = state_file(out)
    outputs = [Path(out), state] + ([line_path] if line_path else []) + \
        ([Path(figure)] if figure else [])
    if len({p.resolve() for p in outputs}) != len(outputs):
        raise LandscapeError("--out, --line-out and --figure must be different files")
    ctx = click.get_current_context()
    for path in outputs:  # one writer per output: a second connect is refused at once
        ctx.with_resource(main_output_lock(path))
    for path, option in zip(outputs, ("--out", "--out (its state file)", "--line-out",
                                      "--figure")):
        # A leftover state gets its own message below (continue it or start over).
        guard_output(path, inputs=paths, force=force or resume or path == state,
                     option=option)
    if state.exists() and not (resume or force):
        raise LandscapeError(f"{str(state)!r} holds an earlier curve's training state: continue "
                             "it with --resume or start over with --force")
    if figure:
        from landscape.figures import figure_format

        figure_format(figure)
    (ma, info), (mb, _) = load_checkpoint(paths[0]), load_checkpoint(paths[1])
    bundle = bundle_from(dataset, data_root, train_subset, test_subset, data_seed,
                         like=info["dataset"])
    _fits(ma, bundle, options, max_memory)
    if force and state.exists():
        state.unlink()
    click.echo(f"connecting {names[0]} and {names[1]} ({curve}, {epochs} epochs) on "
               f"{bundle.name}", err=True)
    result = connect(ma, mb, bundle, options=options, state_path=state, resume=resume,
                     progress=not quiet, names=names)
    save_surface(out, result.curve)
    if line_path is not None:
        save_surface(line_path, result.line)
    _report(result, out, line_path, names)
    if figure:
        from landscape.figures import plot_paths

        plot_paths([result.curve, result.line], out=figure)
        click.echo(f"wrote {figure}", err=True)


def _fits(model, bundle, options, max_memory: int | None) -> None:
    """Refuse in one line, before anything is written, if the bend's training would not fit
    (naming the batch size that does)."""
    from landscape.connect import connect_batch_hint, connect_memory
    from landscape.train_memory import step_profile
    from landscape.util.memory import fit_or_refuse, memory_limit

    profile = step_profile(model, bundle, options.loss)
    estimate = connect_memory(model, bundle, options, profile=profile)
    fit_or_refuse("the curve's training", estimate, memory_limit(estimate.device, max_memory),
                  lambda lim: connect_batch_hint(model, bundle, options, lim, profile=profile))


def _report(result, out, line_path, names) -> None:
    if result.epochs_resumed:
        click.echo(f"resumed after epoch {result.epochs_resumed}", err=True)
    ends = next(iter(result.summary.values()))["end_train_losses"]
    click.echo(f"train loss at the ends: {names[0]} {ends[0]:.4g}, {names[1]} {ends[1]:.4g}")
    for key, s in result.summary.items():
        label = getattr(result, key).provenance["path_label"]
        click.echo(f"{label:14s} train loss: ends {s['endpoint_train_loss']:.4g}, max "
                   f"{s['max_train_loss']:.4g} (barrier {s['train_barrier']:.4g});  test error: "
                   f"ends {100 * s['endpoint_test_error']:.2f}%, max "
                   f"{100 * s['max_test_error']:.2f}%")
    click.echo(f"wrote {out}" + (f" and {line_path}" if line_path else "")
               + f" ({result.seconds:.1f} s)", err=True)


def register(group: click.Group) -> None:
    """Add ``connect`` to the main group."""
    group.add_command(connect_command)
