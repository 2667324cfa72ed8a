"""``landscape hessian``: extreme eigenvalues, trace and spectral density of a checkpoint.

Under torchrun (``torchrun --nproc-per-node N -m landscape hessian model.pt ...``) the examples
are shared by the ranks (``landscape.hessian.DistributedHessian``): every product sums the ranks' shards, rank 0
runs the solvers and alone prints and writes the JSON.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click

from .common import (MAX_COUNT, bundle_from, check_suffix, checkpoint_callback, code_options,
                     dataset_options, device_option, echo_table, guard_output,
                     main_output_lock, memory_option, wraps_threads)

MIN_TRACE_PRODUCTS = 4
"""Hutch++ spends a third of the products (rounded down) on its sketch and twice that on the
sketch's exact trace; from 4 products on at least 2 are left for the stochastic part, the
fewest that give a standard error."""
MIN_DENSITY_STEPS = 10
"""Fewer Lanczos steps give a handful of Ritz values per probe: no density to speak of."""
STOPPING_RULE = {
    "lanczos": "Ritz residual <= tol * |eigenvalue| (bottom end: <= bottom_tol * spectrum "
               "width)",
    "power": "relative change of the eigenvalue between two iterations <= tol (bottom end: "
             "bottom_tol); the residual is not bounded by it",
}
"""What ``converged`` means for each solver (written to the JSON as ``stopping_rule``)."""


def _batch_sizes(ctx, param, value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        sizes = tuple(int(part) for part in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of integers",
                                 param_hint="--batch-size") from None
    if not sizes or min(sizes) < 1:
        raise click.BadParameter(f"{value!r}: batch sizes must be positive",
                                 param_hint="--batch-size")
    return sizes


@click.command("hessian")
@click.argument("checkpoint", type=click.Path(), callback=checkpoint_callback)
@dataset_options
@click.option("--top-k", type=click.IntRange(min=0, max=MAX_COUNT), default=5, show_default=True,
              help="Largest eigenvalues to compute.")
@click.option("--bottom-k", type=click.IntRange(min=0, max=MAX_COUNT), default=0, show_default=True,
              help="Smallest (most negative) eigenvalues to compute.")
@click.option("--trace", "want_trace", is_flag=True, help="Estimate the trace (Hutch++).")
@click.option("--trace-products", type=click.IntRange(min=MIN_TRACE_PRODUCTS, max=MAX_COUNT), default=60,
              show_default=True, help="Hessian-vector products for the trace (Hutch++: a third "
              "sketch the top of the spectrum, the rest give the standard error; at least "
              f"{MIN_TRACE_PRODUCTS}).")
@click.option("--density", "want_density", is_flag=True,
              help="Spectral density by stochastic Lanczos quadrature.")
@click.option("--density-probes", type=click.IntRange(min=1, max=MAX_COUNT), default=4, show_default=True,
              help="Random probes of the spectral density (each costs --density-steps "
              "products; more probes, less noise).")
@click.option("--density-steps", type=click.IntRange(min=MIN_DENSITY_STEPS, max=MAX_COUNT), default=90,
              show_default=True, help="Lanczos steps per density probe (80-100 is usual; at "
              f"least {MIN_DENSITY_STEPS}; capped by the number of parameters).")
@click.option("--per-batch", type=click.IntRange(min=2), default=None, metavar="N",
              help="Also the top eigenvalue of N mini-batches of --batch-size examples each "
              "(mean, spread, and the full-data value beside them).")
@click.option("--batch-size", "batch_sizes", default=None, callback=_batch_sizes,
              help="Examples per --per-batch batch; several comma-separated sizes compare "
              "them (e.g. 128,512,2048).")
@click.option("--figure", type=click.Path(dir_okay=False), default=None,
              help="Histogram of the --per-batch eigenvalues, or with --by-layer/--params "
                   "(and no --per-batch) each block's top eigenvalue and trace as bars "
                   "(.png, .pdf or .svg).")
@click.option("--split", type=click.Choice(["train", "test"]), default="train",
              show_default=True, help="Data split whose mean loss is differentiated.")
@click.option("--mode", type=click.Choice(["eval", "train"]), default="eval", show_default=True,
              help="Layer mode: eval uses BatchNorm running statistics and no dropout.")
@click.option("--tol", type=click.FloatRange(min=0), default=1e-6, show_default=True,
              help="Tolerance of the top eigenvalues. Lanczos: the Ritz residual relative to "
              "the eigenvalue. Power: the relative change of the eigenvalue between two "
              "iterations, which leaves the residual (and the eigenvector) much less accurate.")
@click.option("--bottom-tol", type=click.FloatRange(min=0), default=1e-5, show_default=True,
              help="Tolerance of the bottom eigenvalues, relative to the spectrum's width W: "
              "each smallest eigenvalue is bracketed by [value - bottom-tol * W, value] "
              "(on the MNIST-1D CNN trained full batch, W = 20: 1e-5 took 135 products and "
              "was 7e-6 off, 1e-6 took 220; restarted Lanczos at --tol 1e-6 took 1,200).")
@click.option("--method", type=click.Choice(["lanczos", "power"]), default="lanczos",
              show_default=True, help="Eigenvalue solver (power iteration is a baseline, "
              "at most 100 iterations per eigenvalue; see --tol).")
@click.option("--ncv", type=click.IntRange(min=2, max=MAX_COUNT), default=None,
              help="Lanczos vectors eigsh keeps for the top eigenvalues (default max(2 "
              "top-k + 1, 20)); fewer take less memory (8 bytes a parameter each) and more "
              "restarts. Must exceed --top-k.")
@click.option("--hvp", type=click.Choice(["double", "forward"]), default="double",
              show_default=True, help="Hessian-vector products by double backward or by "
              "torch.func forward-over-reverse.")
@click.option("--chunk-size", type=click.IntRange(min=1), default=None,
              help="Examples per forward pass (bounds memory; default 1024).")
@click.option("--loss", type=click.Choice(["cross_entropy", "mse"]), default=None,
              help="Loss (default: the one the checkpoint was trained with, else "
              "cross_entropy).")
@click.option("--curvature", type=click.Choice(["hessian", "ggn", "fisher", "empirical-fisher"]),
              default="hessian", show_default=True,
              help="Which matrix: the Hessian; the generalized Gauss-Newton J^T H_out J; the "
                   "Fisher of the model's predictive distribution (the GGN for "
                   "cross-entropy and mse); the empirical Fisher (mean outer product of the "
                   "per-example gradients at the observed labels).")
@click.option("--fisher-samples", type=click.IntRange(min=0), default=0, show_default=True,
              help="With --curvature fisher: labels drawn from the model per example (0: "
                   "the exact expectation).")
@click.option("--by-layer", is_flag=True,
              help="Also the top eigenvalue and trace of each layer's diagonal block (the "
                   "traces sum to the full trace).")
@click.option("--params", "params_pattern", default=None, metavar="PATTERN",
              help="Also the top eigenvalue and trace of the block of the parameters whose "
                   "names match this shell pattern, e.g. 'conv*' or '*.bias'.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of random probes (and of the Fisher's drawn labels).")
@device_option
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write the spectrum as JSON here (written atomically).")
@click.option("--force", is_flag=True, help="Overwrite an existing --out file.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--dry-run", is_flag=True, help="Print the expected time (from one product "
              "measured now) and memory, compute nothing, write nothing.")
@memory_option
@click.option("--dist-timeout", type=click.FloatRange(min=0, min_open=True), default=1800.0,
              show_default=True, help="Under torchrun: seconds a rank waits for the others "
              "before the run stops and names the ranks that did not answer.")
@code_options
@wraps_threads
def hessian_command(checkpoint, dataset, data_root, train_subset, test_subset, data_seed, top_k,
                    bottom_k, want_trace, trace_products, want_density, density_probes,
                    density_steps, per_batch, batch_sizes, figure, split, mode, tol,
                    bottom_tol, method, ncv, hvp, chunk_size, loss, curvature, fisher_samples,
                    by_layer, params_pattern, seed, device, out, force, quiet, dry_run,
                    max_memory, dist_timeout):
    """Hessian eigenvalues (with residuals), trace and density of CHECKPOINT's loss (or of
    its Gauss-Newton or Fisher matrix: --curvature).

    Under torchrun the examples are shared by the ranks; rank 0 prints and writes --out.
    """
    from landscape import curvature as hs
    from landscape.util import pick_device, provenance, sha256_file, write_json
    from landscape.checkpoint import load_checkpoint
    from landscape.curvature.memory import HessianPlan
    from landscape.distributed import init_distributed, shutdown
    from landscape.curvature import DistributedHessian, serve_hessian_products
    from landscape.errors import LandscapeError

    if top_k + bottom_k == 0 and not (want_trace or want_density or per_batch or by_layer
                                      or params_pattern):
        raise LandscapeError("nothing to compute: give --top-k/--bottom-k, --trace, --density "
                             "or --per-batch")
    _check_curvature(curvature, fisher_samples, per_batch)
    _check_per_batch(per_batch, batch_sizes, figure, by_layer or bool(params_pattern))
    if ncv is not None and ncv <= top_k:
        raise LandscapeError(f"--ncv {ncv} must exceed --top-k {top_k}")
    for path, option in ((out, "--out"), (figure, "--figure")):
        if path:
            guard_output(path, inputs=(checkpoint,), force=force, option=option)
    check_suffix(out, (".json",), "JSON")
    if out and not dry_run:
        # held until the command ends: one writer per file, writability known before the work
        click.get_current_context().with_resource(main_output_lock(out))
    model, info = load_checkpoint(checkpoint)
    bundle = bundle_from(dataset, data_root, train_subset, test_subset, data_seed,
                         like=info["dataset"])
    data = bundle.split(split)
    loss = loss or info["extra"].get("config", {}).get("loss") or "cross_entropy"
    ctx = init_distributed(device, dist_timeout)
    dev = ctx.device if ctx else pick_device(device)
    try:
        if ctx and curvature != "hessian":
            raise LandscapeError(f"--curvature {curvature} runs in one process: under "
                                 "torchrun only the Hessian is sharded")
        if ctx and not ctx.is_main:  # serve rank 0's products over this rank's shard
            serve_hessian_products(model, data, ctx)
            return
        factory = DistributedHessian(ctx) if ctx else None
        common = hs.HessianOptions(loss=loss, chunk=chunk_size or hs.DEFAULT_CHUNK,
                                   mode=mode, device=dev, hvp=hvp, progress=not quiet,
                                   factory=factory, curvature=curvature,
                                   fisher_samples=fisher_samples, fisher_seed=seed)
        ranks = f", {ctx.world_size} ranks" if ctx else ""
        drawn = f", {fisher_samples} drawn labels" if fisher_samples else ""
        click.echo(f"{curvature}{drawn} of {info['model']['name']} "
                   f"({sum(p.numel() for p in model.parameters()):,} parameters) on "
                   f"{bundle.name} {split} ({len(data[1])} examples), {mode} mode, "
                   f"{dev}{ranks}", err=True)
        plan = HessianPlan(top_k=top_k, bottom_k=bottom_k, ncv=ncv,
                           trace_products=trace_products if want_trace else 0,
                           density_probes=density_probes if want_density else 0,
                           density_steps=density_steps)
        if _fits(model, data, plan, common, max_memory, dry_run):
            return
        results: dict[str, Any] = {}
        extra_fields: dict[str, Any] = {}
        try:
            if top_k + bottom_k:
                results["eigen"] = _eigenvalues(model, data, top_k, bottom_k, tol, bottom_tol,
                                                method, seed, common, ncv)
                results["n_bottom"] = bottom_k if top_k else results["eigen"].values.size
            if want_trace:
                results["trace"] = _trace(model, data, trace_products, seed, common)
            if want_density:
                results["density"] = _density(model, data, density_probes, density_steps,
                                              seed, common)
            if by_layer or params_pattern:
                extra_fields["blocks"] = _blocks(model, data, by_layer, params_pattern, tol,
                                                 trace_products, seed, common)
                if figure and not per_batch:
                    from landscape.figures import plot_layer_curvature

                    plot_layer_curvature(extra_fields["blocks"], out=figure,
                                         title=f"{CURVATURE_NAMES[curvature]} by block: "
                                               f"{info['model']['name']} on {bundle.name}")
                    click.echo(f"wrote {figure}", err=True)
            if per_batch:
                extra_fields["per_batch"] = _per_batch(model, data, per_batch, batch_sizes,
                                                       seed, common, figure)
        finally:
            if factory:
                factory.finish()
    finally:
        shutdown(ctx)
    if out:
        extra = {"distributed": {"world_size": ctx.world_size, "backend": ctx.backend}} \
            if ctx else {}
        report = hs.spectrum_record(
            **results, **extra_fields, checkpoint=str(checkpoint), dataset=bundle.spec, split=split, mode=mode,
            loss=loss, provenance=provenance(checkpoint=str(checkpoint),
                                             checkpoint_sha256=sha256_file(checkpoint),
                                             device=str(dev), seed=seed, **extra))
        report["curvature"] = {"matrix": curvature, "fisher_samples": fisher_samples}
        if "eigen" in results:
            report["eigenvalues"].update(tol=tol, bottom_tol=bottom_tol if bottom_k else None,
                                         stopping_rule=STOPPING_RULE.get(method, ""))
        write_json(Path(out), report)
        click.echo(f"wrote {out}", err=True)


def _fits(model, data, plan, common, max_memory: int | None, dry_run: bool) -> bool:
    """Estimate the run's memory and refuse in one line if it does not fit; with --dry-run
    print the expected time and memory. Returns True when nothing more is to be done."""
    import dataclasses

    from landscape.curvature.memory import fitting_plan, hessian_dry_run, hessian_memory
    from landscape.util.memory import fit_or_refuse, format_bytes, memory_limit

    quiet = dataclasses.replace(common, progress=False)
    limit = memory_limit(common.device, max_memory)
    estimate = hessian_memory(model, data, plan, quiet)
    fit_or_refuse("this run", estimate, limit,
                  lambda lim: fitting_plan(model, data, plan, quiet, lim))
    if not dry_run:
        return False
    cost = hessian_dry_run(model, data, plan, quiet, memory=estimate)
    click.echo(f"about {cost['products']} Hessian-vector products at "
               f"{cost['seconds_per_product']:.3g} s each (measured now), "
               f"{_duration(cost['setup_seconds'])} of set-up and "
               f"{_duration(cost['solver_seconds'])} of the solvers' own work: about "
               f"{_duration(cost['seconds'])}; memory about {estimate.describe()} over the "
               f"model and data ({format_bytes(sum(estimate.resident.values()))})"
               + (f", {format_bytes(limit)} available" if limit is not None else "")
               + "; --dry-run: nothing computed", err=True)
    return True


def _duration(seconds: float) -> str:
    hours, rest = divmod(seconds, 3600)
    return f"{hours:.0f} h {rest / 60:.0f} min" if hours else (
        f"{rest / 60:.1f} min" if rest >= 60 else f"{rest:.1f} s")


CURVATURE_NAMES = {"hessian": "Hessian", "ggn": "GGN", "fisher": "Fisher",
                   "empirical-fisher": "Empirical Fisher"}


def _blocks(model, data, by_layer: bool, pattern: str | None, tol: float, products: int,
            seed: int, common) -> list[dict]:
    """Per-layer and pattern blocks: a table on stdout, rows for the spectrum file."""
    import dataclasses

    from landscape.curvature.blocks import block_curvature

    blocks = []
    for pat in ([None] if by_layer else []) + ([pattern] if pattern else []):
        blocks += block_curvature(model, data, pattern=pat, options=common, tol=tol,
                                  trace_products=products, seed=seed)
    echo_table([(b.name, f"{b.n_params:,}", f"{b.top:.6g}",
                 f"{b.trace:.6g} +- {b.trace_stderr:.2g}", b.n_products) for b in blocks],
               ("block", "parameters", "top eigenvalue", "trace", "products"))
    return [dataclasses.asdict(b) for b in blocks]


def _check_curvature(curvature: str, fisher_samples: int, per_batch: int | None) -> None:
    if fisher_samples and curvature != "fisher":
        raise click.BadParameter(f"{fisher_samples}: drawn labels go with --curvature fisher",
                                 param_hint="--fisher-samples")
    if per_batch and curvature != "hessian":
        raise click.BadParameter(f"--per-batch measures the Hessian only, not {curvature}",
                                 param_hint="--curvature")


def _eigenvalues(model, data, top_k: int, bottom_k: int, tol: float, bottom_tol: float,
                 method: str, seed: int, common, ncv: int | None = None):
    from landscape import curvature as hs

    which = "both" if top_k and bottom_k else ("largest" if top_k else "smallest")
    res = hs.hessian_eigenvalues(model, data, k=top_k or bottom_k, which=which, tol=tol,
                                 bottom_tol=bottom_tol, seed=seed, method=method,
                                 k_smallest=bottom_k or None, ncv=ncv, options=common)
    n_bottom = bottom_k if which != "largest" else 0
    # largest first, as eigenvalues are named (lambda_1 the top one); the file keeps the
    # solver's ascending order
    rows = [("bottom" if i < n_bottom else "top", f"{res.values[i]:.8g}",
             f"{res.residuals[i]:.2e}") for i in reversed(range(len(res.values)))]
    echo_table(rows, ("end", "eigenvalue", "residual"))
    unit = "Hessian" if common.curvature == "hessian" else "matrix"
    click.echo(f"{res.n_products} {unit}-vector products, {res.seconds:.2f} s, {res.mode} mode, "
               f"{res.method}, products by {res.hvp}"
               + ("" if res.converged else "  (NOT converged: raise --tol or --bottom-tol)"))
    if res.method == "power":
        click.echo("power iteration: converged means the eigenvalue changed by less than "
                   "--tol (relative) between two iterations; residuals, not bounded by it, "
                   f"reach {_relative(res.values, res.residuals)} of |eigenvalue|")
    return res


def _check_per_batch(per_batch, batch_sizes, figure, blocks: bool) -> None:
    import os

    from landscape.errors import LandscapeError
    from landscape.figures import figure_format

    if per_batch and not batch_sizes:
        raise LandscapeError("--per-batch needs --batch-size (examples per batch)")
    if batch_sizes and not per_batch:
        raise LandscapeError("--batch-size is for --per-batch N")
    if figure and not (per_batch or blocks):
        raise LandscapeError("--figure draws the --per-batch eigenvalues or the --by-layer "
                             "blocks: give --per-batch, --by-layer or --params")
    if figure and per_batch and blocks:
        raise LandscapeError("--figure draws one of --per-batch and --by-layer/--params: "
                             "give them in two runs")
    if per_batch and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise LandscapeError("--per-batch runs in one process, not under torchrun")
    if figure:
        figure_format(figure)


def _per_batch(model, data, n_batches: int, sizes: tuple[int, ...], seed: int, common: dict,
               figure: str | None) -> list[dict]:
    from landscape import curvature as hs
    from landscape.errors import LandscapeError

    n = len(data[1])
    if max(sizes) > n:
        raise LandscapeError(f"--batch-size {max(sizes)} is larger than the {n} examples")
    options = {k: getattr(common, k) for k in ("loss", "chunk", "mode", "device")}
    rows, spreads, full = [], [], None
    for size in sizes:
        res = hs.per_batch_top_eigenvalue(model, data, n_batches, size, seed=seed,
                                          full=full is None, **options)
        full = res.full if full is None else full
        spreads.append(dict(res.to_dict(), full=full))
        rows.append((size, f"{res.mean:.6g}", f"{res.std:.3g}", f"{res.values.min():.6g}",
                     f"{res.values.max():.6g}", f"{res.std / res.mean:.1%}"))
    echo_table(rows, ("batch", "mean", "std", "min", "max", "std/mean"))
    click.echo(f"full data ({n} examples): top eigenvalue {full:.6g}; {n_batches} batches "
               "each" + ("" if all(s["disjoint"] for s in spreads) else
                         " (drawn independently: too few examples for disjoint batches)"))
    if figure:
        from landscape.figures import plot_batch_spread

        plot_batch_spread(spreads, out=figure)
        click.echo(f"wrote {figure}", err=True)
    return spreads


def _relative(values, residuals) -> str:
    """Largest residual relative to its eigenvalue, as text."""
    ratios = [r / abs(v) if v else math.inf for v, r in zip(values, residuals)]
    return f"{max(ratios):.2g}" if ratios else "-"


def _trace(model, data, n_products: int, seed: int, common):
    from landscape import curvature as hs

    res = hs.hessian_trace(model, data, n_products=n_products, seed=seed, options=common)
    error = (f"+- {res.stderr:.2g} (standard error; " if math.isfinite(res.stderr)
             else f"(s.e. not available with {res.n_products} products; ")
    click.echo(f"trace {res.estimate:.6g} {error}{res.method}, {res.n_products} products, "
               f"{res.seconds:.2f} s)")
    return res


def _density(model, data, probes: int, steps: int, seed: int, common):
    from landscape import curvature as hs

    res = hs.hessian_density(model, data, n_probes=probes, n_steps=steps, seed=seed,
                             options=common)
    click.echo(f"density: {res.n_probes} probes x {res.n_steps} Lanczos steps, Ritz values "
               f"{res.nodes.min():.6g} .. {res.nodes.max():.6g}, sigma {res.sigma:.3g} "
               f"({res.n_products} products, {res.seconds:.2f} s)")
    return res


def register(group: click.Group) -> None:
    """Add ``hessian`` to the main group."""
    group.add_command(hessian_command)
