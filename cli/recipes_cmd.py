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
    log = None if params["quiet"] else (lambda msg: click.echo(msg, err=True))
    summary = run_recipes(grid, params["out"], shard=shard, progress=False, log=log)
    if summary is None:
        click.echo(f"shard {shard[0]}/{shard[1]} done; runs still missing elsewhere")
        return
    _print(summary, params["out"])


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
