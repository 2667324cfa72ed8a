"""``landscape train``: train one model and save checkpoints, history and the command."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Iterator

import click
from click.core import ParameterSource

from .common import (MAX_EPOCHS, MAX_STEPS, batch_callback, bundle_from, dataset_options,
                     device_option, interrupt_status, user_error, wraps_threads)

# The files a training run writes into its folder (``landscape.train.train`` and this command).
RUN_FILES = ("model.pt", "history.json", "history.csv", "config.json", "command.json",
             "resume.pt", "last.pt")
# Optimizers that take no momentum.
NO_MOMENTUM = ("rprop", "adam", "adamw")
# Options that --resume accepts (everything else is the run's own, read from its folder).
RESUME_OPTIONS = ("resume", "out", "quiet", "device", "threads", "trust_code", "model_name")


def holds_run(folder: Path) -> bool:
    """True if ``folder`` holds a training run: model.pt, history.json or checkpoints/*.pt."""
    checkpoints = folder / "checkpoints"
    return ((folder / "model.pt").exists() or (folder / "history.json").exists()
            or (checkpoints.is_dir() and any(checkpoints.glob("*.pt"))))


def check_run_folder(out: Path, force: bool) -> None:
    """Refuse an ``--out`` that is not a folder, or that holds a run when ``force`` is off."""
    if out.exists() and not out.is_dir():
        raise user_error(f"--out {str(out)!r} exists and is not a folder")
    if not force and (out / "resume.pt").is_file():
        raise user_error(f"--out {str(out)!r} holds an interrupted training run: continue "
                             f"it with `landscape train --resume {out}`, or pass --force to "
                             "replace it")
    if not force and out.is_dir() and holds_run(out):
        raise user_error(f"--out {str(out)!r} already holds a training run: pass --force "
                             "to replace it, or choose another folder")


def _run_files(out: Path) -> list[Path]:
    """The files of a run in ``out``, relative to it (and nothing else)."""
    files = [Path(name) for name in RUN_FILES if (out / name).is_file()
             or (out / name).is_symlink()]
    checkpoints = out / "checkpoints"
    if checkpoints.is_dir():
        files += [p.relative_to(out) for p in sorted(checkpoints.glob("*.pt"))
                  if p.is_file() or p.is_symlink()]
    return files


def remove_run(out: Path) -> None:
    """Delete the files of an earlier run in ``out`` (and nothing else)."""
    for name in _run_files(out):
        (out / name).unlink()
    checkpoints = out / "checkpoints"
    if checkpoints.is_dir() and not any(checkpoints.iterdir()):
        checkpoints.rmdir()


@contextlib.contextmanager
def replacing_run(out: Path, force: bool) -> Iterator[None]:
    """With ``force``, move the run in ``out`` aside (to ``out/.replaced``) for the block:
    removed when the block succeeds, put back when it fails, so a failed re-run (full
    disk, Ctrl-C, bad data) leaves the old run as it was. Call it holding ``out``'s lock."""
    aside = out / ".replaced"
    if not force:
        yield
        return
    if aside.exists():  # an earlier re-run was killed: its old run is older than this one
        shutil.rmtree(aside)
    moved = _run_files(out)
    for name in moved:
        (aside / name).parent.mkdir(parents=True, exist_ok=True)
        os.replace(out / name, aside / name)
    try:
        yield
    except BaseException:
        if moved:  # else there is nothing to put back, and the new run's files are kept
            remove_run(out)
        for name in moved:
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(aside / name, out / name)
        shutil.rmtree(aside, ignore_errors=True)
        raise
    shutil.rmtree(aside, ignore_errors=True)


@click.command("train")
@dataset_options
@click.option("--model", "model_name", default="cnn1d", show_default=True,
              help="mlp | cnn1d | lenet | vgg9 | resnet20 | resnet56 | resnet1d | transformer | "
                   "module:function")
@click.option("--width", type=click.IntRange(min=1), default=None,
              help="Width (mlp, vgg9, resnets; d_model of the transformer).")
@click.option("--depth", type=click.IntRange(min=0), default=None, help="Hidden layers (mlp); layers, 6 n + 2 (resnet1d); blocks (transformer).")
@click.option("--activation", type=click.Choice(["relu", "tanh", "gelu"]), default=None,
              help="Activation (mlp, cnn1d, lenet).")
@click.option("--batchnorm/--no-batchnorm", default=None,
              help="BatchNorm layers (default: the model's own).")
@click.option("--skip/--no-skip", default=None, help="Shortcut connections (resnets).")
@click.option("--heads", type=click.IntRange(min=1), default=None,
              help="Attention heads (transformer; --width is its d_model).")
@click.option("--optimizer", type=click.Choice(["sgd", "rmsprop", "rprop", "adam", "adamw",
                                               "sam", "asam"]),
              default="sgd", show_default=True,
              help="Optimizer; sam / asam: sharpness-aware steps of --sam-base.")
@click.option("--sam-rho", type=float, default=None,
              help="SAM/ASAM ascent radius (> 0; default 0.05 for sam, 0.5 for asam).")
@click.option("--sam-base", type=click.Choice(["sgd", "rmsprop", "rprop", "adam", "adamw"]),
              default="sgd", show_default=True,
              help="The optimizer SAM/ASAM steps with (sgd uses --momentum).")
@click.option("--swa-start", type=int, default=None, metavar="EPOCH",
              help="Stochastic weight averaging: average the weights at the end of every epoch "
                   "from EPOCH on; model.pt is the average (BatchNorm statistics recomputed), "
                   "last.pt the last iterate.")
@click.option("--swa-lr", type=float, default=None,
              help="Constant learning rate from --swa-start on (default: keep the schedule).")
@click.option("--lr", type=float, default=0.01, show_default=True, help="Learning rate.")
@click.option("--momentum", type=float, default=None,
              help="Momentum in [0, 1) (sgd, rmsprop); default 0.9 for sgd, PyTorch's 0 for "
                   "rmsprop.")
@click.option("--nesterov", is_flag=True, help="Nesterov momentum (sgd).")
@click.option("--weight-decay", type=float, default=0.0, show_default=True,
              help="L2 penalty (decoupled for adamw).")
@click.option("--batch-size", default="32", show_default=True, callback=batch_callback,
              help="Examples per step, or 'full' for full-batch training.")
@click.option("--epochs", type=click.IntRange(min=1, max=MAX_EPOCHS), default=60, show_default=True,
              help="Passes over the training set.")
@click.option("--steps", type=click.IntRange(min=1, max=MAX_STEPS), default=None,
              help="Total optimizer steps (overrides --epochs).")
@click.option("--schedule", type=click.Choice(["constant", "cosine", "step"]),
              default="constant", show_default=True,
              help="Learning-rate schedule: cosine decays to 0; step multiplies by 0.1 every "
                   "30 epochs.")
@click.option("--lr-scaling", is_flag=True,
              help="Scale lr linearly with batch size (relative to batch 32).")
@click.option("--drop-last", is_flag=True, help="Drop the last incomplete batch of each epoch.")
@click.option("--loss", type=click.Choice(["cross_entropy", "mse"]), default="cross_entropy",
              show_default=True, help="Training loss (mse: on one-hot targets).")
@click.option("--checkpoint-every", type=click.IntRange(min=0, max=MAX_EPOCHS), default=None,
              help="Save a checkpoint every N epochs (0: none; default: about 50 per run).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of initialization and shuffling.")
@click.option("--track-eigenvalues", "track_every", type=click.IntRange(min=0, max=MAX_EPOCHS), default=0,
              metavar="EVERY", help="Record the top Hessian eigenvalue of the training loss "
              "every EVERY epochs (and at the end) as lambda_max in the history (warm-started "
              "Lanczos, a few Hessian-vector products each; 0: never).")
@click.option("--track-curvature", type=click.Choice(["hessian", "ggn", "fisher", "empirical-fisher"]),
              default="hessian", show_default=True,
              help="With --track-eigenvalues: the matrix whose top eigenvalue is tracked: the "
              "Hessian, the Gauss-Newton J^T H_out J, the exact Fisher (the GGN for "
              "cross-entropy and mse) or the empirical Fisher (observed labels).")
@device_option
@click.option("--compile", "compile_model", is_flag=True,
              help="Compile the model for the training steps (torch.compile).")
@click.option("--compile-backend", default="inductor", show_default=True,
              help="torch.compile backend (inductor needs a C++ compiler on the CPU).")
@click.option("--out", type=click.Path(file_okay=False), default="runs/train", show_default=True,
              help="Run folder for checkpoints, history and the command.")
@click.option("--force", is_flag=True,
              help="Replace a run already in --out (its model, checkpoints and history).")
@click.option("--resume", is_flag=False, flag_value="", default=None, metavar="[OUT]",
              help="Continue the interrupted run in OUT (default: --out) from its last "
                   "checkpoint, with its own settings; ends as if never interrupted.")
@click.option("--trust-code", is_flag=True,
              help="With --resume: let a run whose model or dataset is module:function or "
                   "file.py:function import and run that code.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@wraps_threads
def train_command(dataset, data_root, train_subset, test_subset, data_seed, model_name, width,
                  depth, activation, batchnorm, skip, heads, optimizer, sam_rho, sam_base,
                  swa_start, swa_lr, lr, momentum, nesterov,
                  weight_decay, batch_size, epochs, steps, schedule, lr_scaling, drop_last, loss,
                  checkpoint_every, seed, track_every, track_curvature, device, compile_model,
                  compile_backend,
                  out, force, resume, trust_code, quiet):
    """Train a model; writes OUT/model.pt, OUT/checkpoints/, OUT/history.{json,csv}.

    An interrupted run (Ctrl-C, a kill) continues with `landscape train --resume OUT`.
    """
    if resume is not None:
        folder = Path(resume or out)
        with _interrupt_message(folder, force=False):
            result, config = _resume_run(folder, model_name, device, quiet, trust_code)
        _report(result, folder, config)
        return
    from landscape import TrainConfig, build_model, count_parameters
    from landscape.util import output_lock, pick_device, provenance, write_json

    # Everything is checked before the run folder is touched.
    config = TrainConfig(optimizer=optimizer, lr=lr, momentum=momentum, nesterov=nesterov,
                         weight_decay=weight_decay, batch_size=batch_size, epochs=epochs,
                         steps=steps, schedule=schedule, lr_scaling=lr_scaling, seed=seed,
                         device=device, drop_last=drop_last, loss=loss,
                         checkpoint_every=checkpoint_every, progress=not quiet,
                         compile=compile_model, compile_backend=compile_backend,
                         track_eigenvalues=track_every, track_curvature=track_curvature,
                         sam_rho=sam_rho, sam_base=sam_base,
                         swa_start=swa_start, swa_lr=swa_lr)
    config.validate()
    pick_device(device)
    out_dir = Path(out)
    with output_lock(out_dir) if out_dir.is_dir() else contextlib.nullcontext():
        check_run_folder(out_dir, force)  # a run being written is named as such
    bundle = bundle_from(dataset, data_root, train_subset, test_subset, data_seed)
    options = {k: v for k, v in dict(width=width, depth=depth, activation=activation,
                                     batchnorm=batchnorm, skip=skip, heads=heads).items()
               if v is not None}
    model = build_model(model_name, bundle, seed=seed, **options)
    n_train = len(bundle.train[1])
    batch = config.resolved_batch(n_train)
    config.validate_for(n_train)
    given = click.get_current_context().get_parameter_source
    _warn_flat_minimum(config, given)
    if optimizer in NO_MOMENTUM and given("momentum") is not ParameterSource.DEFAULT:
        click.echo(f"warning: {optimizer} takes no momentum: --momentum {momentum} is ignored",
                   err=True)
    if nesterov and (optimizer != "sgd" or config.momentum == 0):
        click.echo("warning: --nesterov needs sgd with momentum > 0: it is ignored", err=True)
    if batch_size != "full" and batch_size > n_train:
        click.echo(f"warning: --batch-size {batch_size} is larger than the training set "
                   f"({n_train} examples): training full batch ({n_train})", err=True)
    used_lr = f"{lr:g}"
    if lr_scaling and batch != config.base_batch:
        used_lr = (f"{lr * batch / config.base_batch:g} ({lr:g} scaled by "
                   f"{batch}/{config.base_batch})")

    # The run folder's lock (inside it), held until the command ends: a second writer is
    # refused at once, and --force never removes a run that a live process is writing.
    out_dir.mkdir(parents=True, exist_ok=True)
    click.get_current_context().with_resource(output_lock(out_dir))
    check_run_folder(out_dir, force)  # again, now that no other process can write there
    with _interrupt_message(out_dir, force), replacing_run(out_dir, force):
        write_json(out_dir / "command.json",
                   provenance(model_parameters=count_parameters(model)))
        click.echo(f"training {model_name} ({count_parameters(model):,} parameters) on "
                   f"{bundle.name}: batch {batch_size}, {_optimizer_text(config)} lr {used_lr}"
                   f"{_momentum_text(config)} -> {out_dir}",
                   err=True)
        result = _train_user_code(model, bundle, config, out_dir, model_name)
    _report(result, out_dir, config)


def _train_user_code(model, bundle, config, out_dir: Path, model_name: str):
    """``train``; a user's model that fails in its first epoch leaves no run folder claiming
    an interrupted run (its files are removed) and gives one line naming the model."""
    from landscape import train
    from landscape.errors import LandscapeError

    try:
        return train(model, bundle, config, out_dir=out_dir)
    except LandscapeError:
        raise
    except Exception as exc:
        if ":" not in model_name:
            raise
        if not list((out_dir / "checkpoints").glob("epoch_*[1-9]*.pt")):
            remove_run(out_dir)
        raise user_error(f"model {model_name!r} failed in training: "
                         f"{type(exc).__name__}: {exc}") from exc


def _warn_flat_minimum(config, given) -> None:
    """Warn about SAM/SWA options that the chosen optimizer ignores."""
    for name in ("sam_rho", "sam_base"):
        if config.optimizer not in ("sam", "asam") \
                and given(name) is not ParameterSource.DEFAULT:
            click.echo(f"warning: --{name.replace('_', '-')} applies to sam and asam only: it "
                       "is ignored", err=True)


def _optimizer_text(config) -> str:
    """The optimizer as the start line names it (with the SAM radius and base, SWA start)."""
    text = config.optimizer
    if config.optimizer in ("sam", "asam"):
        text += f" (rho {config.resolved_rho():g}, {config.sam_base})"
    if config.swa_start is not None:
        text += f", SWA from epoch {config.swa_start}"
    return text


def _resume_run(folder: Path, model_name: str, device: str | None, quiet: bool,
                trust_code: bool):
    """Continue the interrupted run in ``folder`` with the settings it was started with."""
    import dataclasses

    from landscape import TrainConfig, load_checkpoint, train
    from landscape.util import output_lock
    from landscape.checkpoint import trusted_code
    from landscape.train import RESUME_FILE

    ctx = click.get_current_context()
    given = [f"--{name.replace('_', '-')}" for name in ctx.params
             if name not in RESUME_OPTIONS
             and ctx.get_parameter_source(name) is not ParameterSource.DEFAULT]
    if given:
        raise user_error(f"--resume continues a run with its own settings: drop "
                             f"{', '.join(given)}")
    if not (folder / "config.json").is_file():
        raise user_error(f"--resume {str(folder)!r}: not a training run folder "
                             "(no config.json)")
    ctx.with_resource(output_lock(folder))
    if not (folder / RESUME_FILE).is_file():
        raise user_error(f"--resume {str(folder)!r}: nothing to resume (the run finished, "
                             "or was trained without checkpoints)")
    stored = json.loads((folder / "config.json").read_text())
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in stored.items() if k in fields})
    config = dataclasses.replace(config, progress=not quiet,
                                 device=device if device is not None else config.device)
    builder = model_name if ctx.get_parameter_source("model_name") \
        is not ParameterSource.DEFAULT else None
    with trusted_code(trust_code, builder):
        model, info = load_checkpoint(folder / RESUME_FILE)
        bundle = bundle_from(None, None, None, None, None, like=info["dataset"])
    done = (info["extra"].get("resume") or {}).get("epoch")
    click.echo(f"resuming {folder} from its last checkpoint (epoch {done}), continuing with "
               f"epoch {done + 1}" if isinstance(done, int) else
               f"resuming {folder} from its last checkpoint", err=True)
    return train(model, bundle, config, out_dir=folder, resume=True), config


@contextlib.contextmanager
def _interrupt_message(out: Path, force: bool) -> Iterator[None]:
    """Ctrl-C or SIGTERM during training: say what was kept and how to continue, exit 130
    or 143."""
    try:
        yield
    except KeyboardInterrupt as exc:
        if force:
            text = f"the run that was in {out} is kept as it was (nothing replaced)"
        elif (out / "resume.pt").is_file():
            text = (f"checkpoints so far kept; continue from the last one with "
                    f"`landscape train --resume {out}`")
        else:
            text = "no checkpoint was written yet: nothing to resume"
        click.echo(f"interrupted: {text}", err=True)
        sys.exit(interrupt_status(exc))


def _momentum_text(config) -> str:
    """``, momentum 0.9`` for the optimizers that take one (printed: RMSprop's default is 0)."""
    if config.optimizer in NO_MOMENTUM:
        return ""
    return f", momentum {config.momentum:g}"


def _report(result, out_dir: Path, config) -> None:
    """Print the final metrics (and the tracked top eigenvalue), or the divergence (exit 3)."""
    from landscape.tracking import MATRIX_NAMES, threshold_applies
    from landscape.train import stability_threshold

    if result.diverged:
        click.echo(f"error: {result.message}; checkpoints so far kept in {out_dir}", err=True)
        sys.exit(3)
    f = result.final
    click.echo(f"train loss {f['train_loss']:.4f}  train acc {f['train_acc']:.4f}  "
               f"test loss {f['test_loss']:.4f}  test acc {f['test_acc']:.4f}  "
               f"({result.seconds:.1f} s)")
    if config.swa_start is not None:
        click.echo(f"(weight average of the last {f['swa_models']} epochs; last iterate in "
                   f"{out_dir / 'last.pt'})")
    if config.track_eigenvalues:
        limit = (stability_threshold(config.optimizer, result.history[-1]["lr"],
                                     config.momentum, config.nesterov)
                 if threshold_applies(config.track_curvature) else None)
        click.echo(f"top {MATRIX_NAMES[config.track_curvature]} eigenvalue "
                   f"{f['lambda_max']:.6g}"
                   + (f" (stability threshold {limit:.4g})" if limit else ""))
        if "lambda_max_preconditioned" in f:
            click.echo(f"preconditioned sharpness (top eigenvalue of P^-1 H) "
                       f"{f['lambda_max_preconditioned']:.6g} (threshold "
                       f"{f['preconditioned_threshold']:.4g})")


def register(group: click.Group) -> None:
    """Add ``train`` to the main group."""
    group.add_command(train_command)
