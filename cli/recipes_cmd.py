"""The recipe grid of ``landscape sweep`` (``--lrs``, ``--optimizers``, ``--weight-decays``,
``--seeds``, ``--quick``, ``--shard``): its options and the run that prints its findings."""
from __future__ import annotations

from typing import Any, Callable

import click

from .common import echo_table

RECIPE_OPTIONS = ("lrs", "optimizers", "weight_decays", "seeds", "quick", "shard", "sam_rho",
                  "epochs", "max_train_error")
"""Options that switch ``landscape sweep`` from the batch-size sweep to the recipe grid."""

def _list(kind: Callable[[str], Any]) -> Callable:
    """A click callback turning ``"a,b,c"`` into a tuple of ``kind`` (None stays None)."""
    def parse(ctx: click.Context, param: click.Parameter, text: str | None):
        if text is None:
            return None
        try:
            values = tuple(kind(part.strip()) for part in text.split(",") if part.strip())
        except ValueError:
            raise click.BadParameter(f"{text!r} is not a comma-separated list") from None
        if not values:
            raise click.BadParameter("give at least one value")
        return values
    return parse


def recipe_options(func: Callable) -> Callable:
    """The options of the recipe grid."""
    options = [
        click.option("--lrs", callback=_list(float), default=None,
                     help="Recipe grid: comma-separated learning rates."),
        click.option("--optimizers", callback=_list(str), default=None,
                     help="Recipe grid: comma-separated optimizers (sgd, sam, asam, adam, ...)."),
        click.option("--weight-decays", callback=_list(float), default=None,
                     help="Recipe grid: comma-separated weight decays."),
        click.option("--seeds", callback=_list(int), default=None,
                     help="Recipe grid: comma-separated seeds."),
        click.option("--epochs", type=click.IntRange(min=1), default=None,
                     help="Recipe grid: epochs of every run (default 15)."),
        click.option("--sam-rho", type=float, default=None,
                     help="Recipe grid: SAM/ASAM radius (default 0.05 / 0.5)."),
        click.option("--max-train-error", type=float, default=None, metavar="E",
                     help="Recipe grid: leave runs ending at train error >= E (0-1; not "
                          "minima) out of every tau (kept and marked in the summary)."),
        click.option("--quick", is_flag=True,
                     help="Recipe grid: batch 32/256 x lr 0.02/0.1 x SGD/SAM x 2 seeds, 800 "
                          "examples, 10 epochs, coarser measures (marked in the report)."),
        click.option("--shard", default=None, metavar="I/N|auto",
                     help="Recipe grid: run only recipes i with i % N == I (auto: from "
                          "RANK/WORLD_SIZE or SLURM_ARRAY_TASK_ID/COUNT); the process that "
                          "finds every run done writes the summary."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def wants_recipes(params: dict[str, Any]) -> bool:
    """Whether the sweep's options ask for the recipe grid."""
    return any(params.get(name) not in (None, False) for name in RECIPE_OPTIONS)


def run_recipe_sweep(params: dict[str, Any], given: Callable[[str], bool]) -> None:
    """Build the grid from the sweep's options, run this shard of it, print the findings.

    Args:
        params: the sweep command's parameters.
        given: whether an option was given on the command line (not its default).
    """
    from landscape.workflows.recipes import RecipeGrid, parse_shard, run_recipes

    shard = parse_shard(params["shard"])
    fields: dict[str, Any] = {}
    preset = RecipeGrid.QUICK if params["quick"] else {}
    for name in ("dataset", "data_root", "train_subset", "test_subset", "device", "sam_rho"):
        if params.get(name) is not None and (given(name) or name not in preset):
            fields[name] = params[name]
    fields["model"] = params["model_name"]
    if params["batchnorm"]:
        fields["model_options"] = {"batchnorm": True}
    if given("batch_sizes"):
        fields["batch_sizes"] = params["batch_sizes"]
    for name in ("lrs", "optimizers", "weight_decays", "seeds", "epochs", "max_train_error"):
        if params[name] is not None:
            fields[name] = params[name]
    grid = RecipeGrid.quick(**fields) if params["quick"] else RecipeGrid(**fields)
    grid.validate()  # one line naming the recipe, before anything is trained
    if _check_grid(grid, params["max_memory"], params["dry_run"]):
        return
    log = None if params["quiet"] else (lambda msg: click.echo(msg, err=True))
    summary = run_recipes(grid, params["out"], shard=shard, progress=False, log=log)
    if summary is None:
        click.echo(f"shard {shard[0]}/{shard[1]} done; runs still missing elsewhere")
        return
    _print(summary, params["out"])


def _check_grid(grid, max_memory: int | None, dry_run: bool) -> bool:
    """Refuse in one line if the grid's largest run would not fit in memory (naming the
    training subset that does); with ``dry_run`` print each run's cost. Returns True when
    nothing more is to be done."""
    from landscape.models import build_model
    from landscape.util import pick_device
    from landscape.util.memory import fit_or_refuse, memory_limit
    from landscape.workflows.cost import fitting_subset, recipe_dry_run, recipe_memory

    bundle = grid.data()
    model = build_model(grid.model, bundle, seed=grid.seeds[0], **grid.model_options)
    estimate = lambda m, d, profile=None: recipe_memory(m, d, grid, profile=profile)  # noqa: E731
    fit_or_refuse("the sweep", estimate(model, bundle),
                  memory_limit(pick_device(grid.device), max_memory),
                  lambda limit: fitting_subset(model, bundle, estimate, limit))
    if dry_run:
        echo_run_costs(recipe_dry_run(model, bundle, grid))
    return dry_run


def echo_run_costs(costs) -> None:
    """A dry run's table (run, optimizer steps, expected seconds, peak memory) and its
    total; the runs run one after another, so the peak is the largest run's."""
    from landscape.util.memory import format_bytes

    echo_table([(c.label, f"{c.steps:,}", f"{c.seconds:.1f}", format_bytes(c.memory.peak))
                for c in costs], ("run", "steps", "expected s", "peak memory"))
    total = sum(c.seconds for c in costs)
    peak = max(costs, key=lambda c: c.memory.peak).memory
    click.echo(f"total: {len(costs)} runs, {sum(c.steps for c in costs):,} steps, about "
               f"{total:.0f} s ({total / 60:.1f} min), peak memory about "
               f"{format_bytes(peak.peak)} (the model and data "
               f"{format_bytes(sum(peak.resident.values()))}, and {peak.describe()}); "
               "times from one step per batch size, one forward and one Hessian-vector "
               "product measured now (noisy where the machine is shared); reports and "
               "figures not counted; --dry-run: nothing trained or written")


def _print(summary: dict[str, Any], out: str) -> None:
    """The rank-correlation table, the findings, the coarse measures and the command that
    compares the flattest and sharpest runs."""
    from landscape.workflows import flat_sharp_command

    fmt = lambda v: "n/a" if v is None or v != v else f"{v:+.2f}"  # noqa: E731
    echo_table([(name, fmt(c["kendall_tau"]),
                 f"{fmt(c['interval'][0])} .. {fmt(c['interval'][1])}",
                 fmt(c["granulated_tau"]), fmt(c["tau_vs_lr"]))
                for name, c in summary["correlations"].items()],
               ("measure", "tau(gap)", "95% interval", "granulated", "tau(lr)"))
    click.echo("")
    for line in summary["findings"]:
        click.echo(f"- {line}")
    for line in summary.get("warnings", []):
        click.echo(f"warning: {line}", err=True)
    command = flat_sharp_command(summary, out)
    if command:
        click.echo(f"\nflattest vs sharpest run: {command}")
    click.echo(f"report: {summary['files']['report']}")
