"""``landscape study``, ``landscape demo`` and ``landscape sweep``."""
from __future__ import annotations

import contextlib
import math
import sys
from pathlib import Path

import click

from .recipes_cmd import echo_run_costs, recipe_options, run_recipe_sweep, wants_recipes
from .common import (MAX_COUNT, MAX_EPOCHS, MAX_PLANE_SIDE, MAX_POINTS, MAX_STEPS,
                     batch_callback, code_options, dataset_options, device_option,
                     interrupt_status, memory_option, parse_batch, split_names, user_error,
                     wraps_threads)


def _check_out(out: str) -> None:
    """Refuse an ``--out`` that exists and is not a folder."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise user_error(f"--out {out!r} exists and is not a folder")


def _check_study(config) -> None:
    """Check what the study will build (device, data, model, both training runs) before its
    folder is made, so that a bad option fails at once and leaves nothing behind."""
    from landscape import TrainConfig
    from landscape.errors import LandscapeError
    from landscape.study import LABELS, load_setup

    runs = config.runs()
    for label, run in runs.items():
        try:
            TrainConfig(optimizer=run.optimizer, lr=run.lr, momentum=run.momentum,
                        weight_decay=run.weight_decay, batch_size=run.batch_size,
                        epochs=run.epochs).validate()
        except LandscapeError as exc:
            raise user_error(f"{LABELS[label]} run: {exc}") from None
    bundle = load_setup(config)
    n_train = len(bundle.train[1])
    sizes = {}
    for key in ("small", "large"):
        typed = runs[f"{key}_batch"].batch_size
        used = TrainConfig(batch_size=typed).resolved_batch(n_train)
        sizes[key] = (used, f"--{key}-batch {typed}"
                      + ("" if typed == used else f" ({used} of {n_train} examples)"))
    (small, small_text), (large, large_text) = sizes["small"], sizes["large"]
    if small > large:
        raise user_error(f"{small_text} is larger than {large_text}: swap them")
    if small == large:
        click.echo(f"warning: both runs train with batch {small} ({small_text}, {large_text})",
                   err=True)


def _check_sweep(config, max_memory: int | None = None):
    """Check the sweep's device, data and model before its folder is made, and refuse in one
    line if its largest step would not fit in memory (naming the training subset that does).
    Returns the model and the data."""
    from landscape.models import build_model
    from landscape.study import load_setup
    from landscape.util import pick_device
    from landscape.util.memory import fit_or_refuse, memory_limit
    from landscape.workflows.cost import sweep_fitting_subset, sweep_memory

    bundle = load_setup(config)
    model = build_model(config.model, bundle, seed=config.seed, **config.model_options)
    estimate = sweep_memory(model, bundle, config)
    fit_or_refuse("the sweep", estimate, memory_limit(pick_device(config.device), max_memory),
                  lambda lim: sweep_fitting_subset(model, bundle, config, lim))
    return model, bundle


@contextlib.contextmanager
def _steps_kept(out: str):
    """On Ctrl-C or SIGTERM: say that finished steps are kept and how to continue (exit
    status 130 or 143)."""
    try:
        yield
    except KeyboardInterrupt as exc:
        click.echo(f"interrupted: the steps finished so far are kept in {out}; run the same "
                   "command again to continue from the first unfinished one", err=True)
        sys.exit(interrupt_status(exc))


def _print_result(result) -> None:
    from landscape.report import table_header, table_rows

    from .common import echo_table

    echo_table(table_rows(result.summary), table_header(result.summary))
    click.echo("")
    if result.summary.get("v_versus_w"):
        from landscape.report import v_versus_w_rows

        echo_table(v_versus_w_rows(result.summary["v_versus_w"]),
                   ("V versus W", "shape", "basins", "barrier"))
        click.echo("")
    steps = result.summary.get("step_seconds") or {}
    if steps:
        click.echo("seconds per step: " + ", ".join(f"{k} {v:.0f}" for k, v in steps.items()))
    for name in ("report_html", "report_md", "summary"):
        click.echo(f"{name.replace('_', ' '):12s} {result.files[name]}")
    click.echo(f"done in {result.seconds:.0f} s"
               + (f" (reused: {', '.join(result.reused)})" if result.reused else ""))


def _study_options(default_out: str):
    """--out (default ``default_out``), --quick, --force, --no-3d, --quiet, --device."""
    def decorate(func):
        return _with_study_options(func, default_out)
    return decorate


def _with_study_options(func, default_out: str):
    options = [
        click.option("--out", type=click.Path(file_okay=False), default=default_out,
                     show_default=True, help="Folder for every output."),
        click.option("--quick", is_flag=True,
                     help="Coarse grids and fewer Hessian products, no most negative "
                          "eigenvalue (demo: also half the training set, the small batch "
                          "for 40 epochs at lr 0.02)."),
        click.option("--force", is_flag=True, help="Recompute steps already done."),
        click.option("--no-3d", "no_3d", is_flag=True, help="Skip the 3-D (pyvista) figure."),
        click.option("--quiet", is_flag=True, help="No progress bars."),
    ]
    for opt in reversed(options):
        func = opt(func)
    return device_option(func)


def _run(config_kwargs: dict, out: str, quick: bool, force: bool, no_3d: bool, quiet: bool):
    from landscape.study import StudyConfig, run_study

    if no_3d:
        config_kwargs["render_3d"] = False
    config = StudyConfig.quick(**config_kwargs) if quick else StudyConfig(**config_kwargs)
    _check_out(out)
    _check_study(config)
    log = None if quiet else (lambda msg: click.echo(msg, err=True))
    with _steps_kept(out):
        result = run_study(config, out, force=force, progress=not quiet, log=log)
    _print_result(result)


@click.command("demo")
@_study_options("demo")
@wraps_threads
def demo_command(out, quick, force, no_3d, quiet, device):
    """The built-in study: MNIST-1D CNN, batch 32 vs full batch; writes OUT/report.html.

    No download: MNIST-1D is generated on the fly. About 2-5 minutes on 2 idle CPU cores
    (--quick, about 75 s: the same recipes on half the training set, the small batch for 40
    epochs at lr 0.02, coarse grids, fewer products). Also trains the network from three
    more seeds for the "V versus W" section.
    """
    _run({"device": device}, out, quick, force, no_3d, quiet)


def _data_and_model_options(func):
    """--dataset, --data-root, --train-subset, --test-subset, --model (study and sweep)."""
    options = [
        click.option("--dataset", default="mnist1d", show_default=True,
                     help="mnist1d | mnist | fashion-mnist | cifar10 | cifar100 | "
                          "module:function"),
        click.option("--data-root", type=click.Path(file_okay=False), default=None,
                     help="Folder holding torchvision datasets (never downloaded)."),
        click.option("--train-subset", type=click.IntRange(min=1), default=None,
                     help="Use this many training examples."),
        click.option("--test-subset", type=click.IntRange(min=1), default=None,
                     help="Use this many test examples."),
        click.option("--model", "model_name", default="cnn1d", show_default=True,
                     help="mlp | cnn1d | lenet | vgg9 | resnet20 | resnet56 | module:function"),
    ]
    for opt in reversed(options):
        func = opt(func)
    return func


@click.command("study")
@_data_and_model_options
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of initialization, shuffling and directions.")
@click.option("--small-batch", default="32", show_default=True, callback=batch_callback,
              help="Batch size of the small-batch run (or 'full').")
@click.option("--small-lr", type=float, default=0.01, show_default=True,
              help="Learning rate of the small-batch run.")
@click.option("--small-epochs", type=click.IntRange(min=1, max=MAX_EPOCHS), default=60, show_default=True,
              help="Epochs of the small-batch run.")
@click.option("--large-batch", default="full", show_default=True, callback=batch_callback,
              help="Batch size of the large-batch run ('full': the whole training set).")
@click.option("--large-lr", type=float, default=0.1, show_default=True,
              help="Learning rate of the large-batch run.")
@click.option("--large-epochs", type=click.IntRange(min=1, max=MAX_EPOCHS), default=600, show_default=True,
              help="Epochs of the large-batch run.")
@click.option("--optimizer", type=click.Choice(["sgd", "rmsprop", "rprop", "adam", "adamw"]),
              default="sgd", show_default=True, help="Optimizer of both runs.")
@click.option("--momentum", type=float, default=0.9, show_default=True,
              help="Momentum of both runs (sgd, rmsprop).")
@click.option("--plane-points", type=click.IntRange(min=3, max=MAX_PLANE_SIDE), default=None,
              help="Points per side of the 2-D grids (default 25; --quick 13).")
@click.option("--line-points", type=click.IntRange(min=3, max=MAX_POINTS), default=None,
              help="Points of the 1-D surfaces (default 51; --quick 21).")
@click.option("--top-k", type=click.IntRange(min=1, max=MAX_COUNT), default=None,
              help="Hessian eigenvalues per model (default 5; --quick 3).")
@_study_options("study")
@wraps_threads
def study_command(dataset, data_root, train_subset, test_subset, model_name, seed, small_batch,
                  small_lr, small_epochs, large_batch, large_lr, large_epochs, optimizer,
                  momentum, plane_points, line_points, top_k, out, quick, force, no_3d, quiet,
                  device):
    """Train a small- and a large-batch model and compare their minima (report in OUT)."""
    from landscape.study import RunSpec

    kwargs = dict(dataset=dataset, data_root=data_root, train_subset=train_subset,
                  test_subset=test_subset, model=model_name, seed=seed, device=device,
                  small=RunSpec(small_batch, small_lr, small_epochs, optimizer, momentum),
                  large=RunSpec(large_batch, large_lr, large_epochs, optimizer, momentum))
    for key, value in (("plane_points", plane_points), ("line_points", line_points),
                       ("top_k", top_k)):
        if value is not None:
            kwargs[key] = value
    _run(kwargs, out, quick, force, no_3d, quiet)


def _sizes(ctx: click.Context, param: click.Parameter, text: str) -> tuple[int | str, ...]:
    """Click callback of --batch-sizes: the comma-separated sizes, in order."""
    sizes = tuple(parse_batch(part.strip()) for part in text.split(",") if part.strip())
    if not sizes:
        raise click.BadParameter("give at least one size")
    return sizes


def _unique(sizes: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """``sizes`` without repeats (first occurrence kept), with a note on stderr if any."""
    unique = tuple(dict.fromkeys(sizes))
    if len(unique) < len(sizes):
        dropped = [str(b) for k, b in enumerate(sizes) if b in sizes[:k]]
        click.echo(f"note: --batch-sizes: dropped the repeated size(s) {', '.join(dropped)}",
                   err=True)
    return unique


@click.command("sweep")
@_data_and_model_options
@click.option("--batchnorm/--no-batchnorm", default=False, show_default=True,
              help="BatchNorm in the model (off: batches below the class count may fail).")
@click.option("--batch-sizes", default="4,8,16,32,64,128,512,full", show_default=True,
              callback=_sizes, help="Comma-separated sizes; 'full' is the whole training set.")
@click.option("--base-lr", type=float, default=0.01, show_default=True,
              help="SGD lr at --base-batch; scaled linearly with batch size.")
@click.option("--base-batch", type=click.IntRange(min=1), default=32, show_default=True,
              help="Batch size at which the lr is --base-lr.")
@click.option("--max-lr", type=float, default=0.1, show_default=True, help="Cap of the scaled lr.")
@click.option("--target-steps", type=click.IntRange(min=1, max=MAX_STEPS), default=6000, show_default=True,
              help="Optimizer steps per run (epochs clamped to --min/--max-epochs).")
@click.option("--min-epochs", type=click.IntRange(min=1, max=MAX_EPOCHS), default=20, show_default=True,
              help="Fewest epochs of a run.")
@click.option("--max-epochs", type=click.IntRange(min=1, max=MAX_EPOCHS), default=600, show_default=True,
              help="Most epochs of a run.")
@click.option("--target-loss", type=float, default=0.05, show_default=True,
              help="Training loss that counts as converged.")
@click.option("--optimizer-batch", type=click.IntRange(min=0), default=32, show_default=True,
              help="Mini-batch of the Rprop/RMSprop comparison (0: skip it).")
@click.option("--optimizer-epochs", type=click.IntRange(min=1, max=MAX_EPOCHS), default=60, show_default=True,
              help="Epochs of each Rprop/RMSprop run.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of initialization and shuffling.")
@click.option("--out", type=click.Path(file_okay=False), default="sweep", show_default=True,
              help="Folder of the runs, figures and report (rerun to reuse finished runs).")
@click.option("--force", is_flag=True, help="Retrain runs already done.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--dry-run", is_flag=True, help="Print each run's optimizer steps, expected "
              "time (from one training step per batch size, one forward and one "
              "Hessian-vector product measured now) and memory, and the total; train and "
              "write nothing.")
@memory_option
@recipe_options
@device_option
@wraps_threads
def sweep_command(dataset, data_root, train_subset, test_subset, model_name, batchnorm,
                  batch_sizes,
                  base_lr, base_batch, max_lr, target_steps, min_epochs, max_epochs,
                  target_loss, optimizer_batch, optimizer_epochs, seed, out, force, quiet,
                  dry_run, max_memory, device, **recipe):
    """Batch-size sweep: accuracy, gap, sharpness, convergence speed and throughput vs batch
    size, plus Rprop full-batch vs Rprop and RMSprop mini-batch (report in OUT).

    With --lrs, --optimizers, --weight-decays, --seeds, --quick or --shard: a grid of recipes,
    each trained and measured with every flatness measure, and each measure's Kendall tau
    with the generalization gap (summary.json in OUT; shardable over processes/machines).
    """
    from landscape.sweep import SweepConfig, run_sweep

    ctx = click.get_current_context()
    if wants_recipes(ctx.params):
        _check_out(out)
        run_recipe_sweep(ctx.params, lambda name: ctx.get_parameter_source(name)
                         is not click.core.ParameterSource.DEFAULT)
        return

    from .common import echo_table

    if min_epochs > max_epochs:
        raise click.BadParameter("--min-epochs must not exceed --max-epochs")
    for name, value in (("--base-lr", base_lr), ("--max-lr", max_lr)):
        if not (value > 0 and math.isfinite(value)):
            raise user_error(f"{name} must be a positive number, got {value}")
    config = SweepConfig(dataset=dataset, data_root=data_root, train_subset=train_subset,
                         test_subset=test_subset,
                         model=model_name, model_options={"batchnorm": True} if batchnorm else {},
                         seed=seed, batch_sizes=_unique(batch_sizes), base_lr=base_lr,
                         base_batch=base_batch, max_lr=max_lr, target_steps=target_steps,
                         min_epochs=min_epochs, max_epochs=max_epochs, target_loss=target_loss,
                         optimizer_batch=optimizer_batch, optimizer_epochs=optimizer_epochs,
                         device=device)
    _check_out(out)
    model, bundle = _check_sweep(config, max_memory)
    if dry_run:
        from landscape.workflows.cost import sweep_dry_run

        echo_run_costs(sweep_dry_run(model, bundle, config))
        return
    log = None if quiet else (lambda msg: click.echo(msg, err=True))
    with _steps_kept(out):
        result = run_sweep(config, out, force=force, progress=not quiet, log=log)
    fmt = lambda v: "n/a" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))  # noqa: E731
    pct = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    echo_table([(r["label"], r["batch_size"], fmt(r["train_loss"]), pct(r["test_accuracy"]),
                 fmt(r.get("top_eigenvalue")), fmt(r.get("sharpness")),
                 fmt(r["epochs_to_target"])) for r in result["rows"]],
               ("run", "batch", "train loss", "test acc", "top eig", "sharpness",
                "epochs to target"))
    click.echo("")
    for line in result["observations"]:
        click.echo(f"- {line}")
    click.echo(f"report: {result['files']['sweep_report_html']}")


@click.command("compare")
@click.argument("checkpoints", nargs=-1, required=True, metavar="CKPT_OR_RUN...")
@click.option("--labels", multiple=True, metavar="A,B,...",
              help="Names in figures and the report, one per checkpoint: separated by commas, "
                   "or the option once per name (a comma inside a name: \\,). Default: the "
                   "run folder's name (or the file's).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the random directions, Lanczos starts and sharpness draws.")
@click.option("--curve-epochs", type=click.IntRange(min=0, max=MAX_EPOCHS), default=None,
              help="Epochs of a Bezier curve trained between the first two minima, against "
                   "the straight line (default 30; --quick 10; 0: no curve).")
@click.option("--plane-points", type=click.IntRange(min=3, max=MAX_PLANE_SIDE), default=None,
              help="Points per side of the 2-D grids (default 25; --quick 13).")
@click.option("--top-k", type=click.IntRange(min=1, max=MAX_COUNT), default=None,
              help="Hessian eigenvalues per model (default 5; --quick 3).")
@click.option("--dry-run", is_flag=True, help="Print the expected time (from one grid point "
              "and one Hessian-vector product measured now) and memory; compute and write "
              "nothing.")
@memory_option
@click.option("--curvature", "curvatures", multiple=True,
              type=click.Choice(["ggn", "fisher", "empirical-fisher"]),
              help="Also the top eigenvalue and trace of this curvature matrix per model (a "
                   "row each in the report); repeat for several.")
@dataset_options
@code_options
@_study_options("compare")
@wraps_threads
def compare_command(checkpoints, labels, seed, curve_epochs, plane_points, top_k, dry_run,
                    max_memory, curvatures, dataset, data_root, train_subset, test_subset,
                    data_seed, out, quick, force, no_3d, quiet, device):
    """Measure, draw and report minima you already have (checkpoints or `landscape train`
    run folders of one architecture; report in OUT).

    The study's measurements for each: interpolation between the first two, 1-D and 2-D
    filter-normalized surfaces, Hessian eigenvalues, trace and density, sharpness, the slice
    along its top eigenvector and its basin shape; with three or more, the plane through the
    first three (a V or a W); a curve trained between the first two against the straight line.
    A rerun reuses every step whose inputs did not change.
    """
    from landscape.checkpoint import checkpoint_path, read_checkpoint
    from landscape.compare import CompareConfig, compare

    from .common import bundle_from

    paths = [checkpoint_path(p) for p in checkpoints]
    if len(paths) < 2:
        raise user_error(f"compare needs at least two checkpoints, got {len(paths)}")
    names = split_names(labels, count=len(paths))
    _check_out(out)
    kwargs = {"seed": seed, "device": device, "render_3d": not no_3d,
              "curvatures": tuple(dict.fromkeys(curvatures))}
    for key, value in (("curve_epochs", curve_epochs), ("plane_points", plane_points),
                       ("top_k", top_k)):
        if value is not None:
            kwargs[key] = value
    config = CompareConfig.quick(**kwargs) if quick else CompareConfig(**kwargs)
    spec = (read_checkpoint(paths[0]).get("model") or {}).get("dataset")
    bundle = bundle_from(dataset, data_root, train_subset, test_subset, data_seed, like=spec)
    if _compare_cost(paths, config, bundle, max_memory, dry_run):
        return
    log = None if quiet else (lambda msg: click.echo(msg, err=True))
    with _steps_kept(out):
        result = compare(paths, out, config=config, labels=names, data=bundle, force=force,
                         progress=not quiet, log=log)
    _print_result(result)


def _compare_cost(paths, config, bundle, max_memory: int | None, dry_run: bool) -> bool:
    """Refuse in one line if compare's largest step would not fit; with --dry-run print the
    expected time and memory. Returns True when nothing more is to be done."""
    from landscape.checkpoint import load_checkpoint
    from landscape.util import pick_device
    from landscape.util.memory import fit_or_refuse, format_bytes, memory_limit
    from landscape.workflows.cost import compare_cost

    model, _ = load_checkpoint(paths[0])
    cost = compare_cost(model, bundle, config, len(paths), measure_time=dry_run)
    limit = memory_limit(pick_device(config.device), max_memory)
    fit_or_refuse("compare", cost["memory"], limit)
    if dry_run:
        minutes = cost["seconds"] / 60
        click.echo(f"{cost['points']:,} grid points at {cost['seconds_per_point']:.3g} s and "
                   f"about {cost['products']} Hessian-vector products"
                   + (f" and {cost['ggn_products']} GGN products" if cost["ggn_products"]
                      else "") + " at "
                   f"{cost['seconds_per_product']:.3g} s (one of each measured now; the "
                   "solvers' set-up and own work included): about "
                   f"{minutes:.1f} min, curve training and sharpness not counted; memory about "
                   f"{cost['memory'].describe()} over the model and data "
                   f"({format_bytes(sum(cost['memory'].resident.values()))}); --dry-run: "
                   "nothing computed", err=True)
    return dry_run


def register(group: click.Group) -> None:
    """Add ``demo``, ``study``, ``compare`` and ``sweep`` to the main group."""
    group.add_command(demo_command)
    group.add_command(compare_command)
    group.add_command(study_command)
    group.add_command(sweep_command)
