"""Scale: time and memory of surfaces and Hessian solvers from 10^3 to 10^8 parameters.

For each size (generated inputs of the model's shape: MNIST-1D's 40 features, CIFAR's
3x32x32), measured in the same process, interleaved where two things are compared:

* surface point (set the weights, forward, loss and accuracy) against a bare forward + loss;
* one Hessian-vector product against a bare forward + backward;
* top-1 and top-5 eigenvalues (eigsh) and a Hutch++ trace: seconds, products, the products'
  share of the time, and the resident-memory peak beside ``hessian_memory``'s estimate;
  the time ``landscape hessian --dry-run`` expects beside it (``hessian_dry_run``, called
  before the run); past ``--max-solver-params`` or ``--max-solver-seconds`` (the expected
  time from the product measured against the bare pass: ``expected_seconds``) the
  estimates alone;
* where the estimate passes ``--max-memory``, the one-line refusal instead of the run.

At least 1,000 examples at every size. Each comparison alternates its two calls for at most
``--rounds`` rounds, fewer where they would pass ``--seconds-per-comparison`` (two at the
largest sizes, never fewer); the rounds are in the table. Progress lines carry the seconds
since the start.

Then the cost of a point and a product against the number of examples for one model, and a
log-log figure with the fitted slopes.

    OMP_NUM_THREADS=1 python benchmarks/scale.py --threads 1 --rounds 31 \
        --sizes "mlp,cnn1d,resnet20,wide mlp 1024,wide mlp 3000,wide mlp 10000" \
        --max-solver-params 5e6 --out scale.json --figure docs/figures/scale.png

(resnet56 is in SIZES but not in that run: with 1,000 examples its row would take about
three times the ResNet-20's, which took 3 minutes on the shared 2-core CPU, past the run's
15-minute budget.)

Not a test: it prints measurements. ``--device cuda`` runs the same on a GPU.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
SIZES = [  # name, model, options, input shape, examples (at least 1,000 everywhere)
    ("mlp", "mlp", {}, (40,), 10000),
    ("cnn1d", "cnn1d", {}, (40,), 2000),
    ("resnet20", "resnet20", {}, (3, 32, 32), 1000),
    ("resnet56", "resnet56", {}, (3, 32, 32), 1000),
    ("wide mlp 1024", "mlp", {"width": 1024}, (3, 32, 32), 1000),
    ("wide mlp 3000", "mlp", {"width": 3000}, (3, 32, 32), 1000),
    ("wide mlp 10000", "mlp", {"width": 10000}, (3, 32, 32), 1000),
]
START = time.perf_counter()


def _sibling(name: str):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


gpu = _sibling("gpu")  # Peak


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def say(text: str) -> None:
    """A progress line with the seconds since the start."""
    print(f"[{time.perf_counter() - START:7.1f} s] {text}", flush=True)


def rounds_for(warm_up: float, rounds: int, budget: float, least: int = 2) -> int:
    """Rounds of an alternated pair that fit ``budget`` seconds (a pair costs about twice
    the warm-up call), at least ``least`` (one round alone is at the mercy of the load)
    and at most ``rounds``."""
    fit = budget / max(2 * warm_up, 1e-9)
    return max(min(least, rounds), rounds if fit >= rounds else int(fit))


def point_vs_forward(model, x, y, rounds: int, budget: float = float("inf")
                     ) -> tuple[float, float, int]:
    """Median seconds of a bare forward + cross-entropy and of one surface point, alternated,
    and the rounds measured (as many as fit ``budget`` seconds, at most ``rounds``)."""
    from landscape.directions import random_directions
    from landscape.evaluate import Evaluator

    model.eval()
    dirs = random_directions(model, count=2, seed=0)
    bare, point = [], []
    with Evaluator(model, (x, y), dirs, device=x.device) as ev, torch.inference_mode():
        t = time.perf_counter()
        ev.evaluate((0.1, 0.2))
        rounds = rounds_for(time.perf_counter() - t, rounds, budget)
        for k in range(rounds):
            t = time.perf_counter()
            float(torch.nn.functional.cross_entropy(model(x), y))
            bare.append(time.perf_counter() - t)
            t = time.perf_counter()
            ev.evaluate((0.1 * k, -0.1 * k))
            point.append(time.perf_counter() - t)
    return statistics.median(bare), statistics.median(point), rounds


def product_vs_backward(model, x, y, rounds: int, chunk: int, budget: float = float("inf")
                        ) -> tuple[float, float, int, float]:
    """Median seconds of a bare forward + backward and of one Hessian-vector product, the
    rounds measured (as many as fit ``budget`` seconds, at most ``rounds``), and the
    operator's set-up (making it, and its first product's extra over the median)."""
    from landscape.curvature import HessianOperator

    t = time.perf_counter()
    op = HessianOperator(model, (x, y), chunk=chunk)
    made = time.perf_counter() - t
    v = np.random.default_rng(0).standard_normal(op.n_params)
    t = time.perf_counter()
    op.matvec(v)  # builds what the operator keeps
    first = time.perf_counter() - t
    rounds = rounds_for(first, rounds, budget)
    params = [p for p in model.parameters() if p.requires_grad]
    bare, prod = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        for i in range(0, len(y), chunk):
            loss = torch.nn.functional.cross_entropy(model(x[i:i + chunk]), y[i:i + chunk])
            torch.autograd.grad(loss, params)
        sync(x.device)
        bare.append(time.perf_counter() - t)
        t = time.perf_counter()
        op.matvec(v)
        prod.append(time.perf_counter() - t)
    per = statistics.median(prod)
    return statistics.median(bare), per, rounds, made + max(first - per, 0.0)


class ProductClock:
    """Seconds spent inside Hessian-vector products during a block (``HessianOperator``'s
    ``hvp`` and scipy's ``_product`` wrapped, a product counted once where one calls the
    other), so the products' share of a solver's time is measured in the same run; the
    first product's building of the kept gradient graphs counts as product time."""

    METHODS = ("hvp", "_product")

    def __enter__(self) -> "ProductClock":
        from landscape.curvature.hessian import HessianOperator

        self.seconds, self._depth = 0.0, 0
        self._saved = {name: getattr(HessianOperator, name) for name in self.METHODS}
        for name, method in self._saved.items():
            setattr(HessianOperator, name, self._timed(method))
        return self

    def _timed(self, method):
        def timed(op, v):
            self._depth += 1
            start = time.perf_counter()
            try:
                return method(op, v)
            finally:
                self._depth -= 1
                if not self._depth:
                    self.seconds += time.perf_counter() - start
        return timed

    def __exit__(self, *exc) -> None:
        from landscape.curvature.hessian import HessianOperator

        for name, method in self._saved.items():
            setattr(HessianOperator, name, method)


def solver_row(name, model, data, plan, run, options, limit, device) -> dict:
    """Estimate, then run (or refuse) under a memory peak."""
    from landscape.curvature.memory import fitting_plan, hessian_dry_run, hessian_memory
    from landscape.errors import LandscapeError
    from landscape.util.memory import fit_or_refuse

    t = time.perf_counter()
    est = hessian_memory(model, data, plan, options)
    row = {"task": name, "estimate_mb": est.total_added / 2 ** 20,
           "estimate_seconds": time.perf_counter() - t}
    try:
        fit_or_refuse(name, est, limit,
                      lambda lim: fitting_plan(model, data, plan, options, lim))
    except LandscapeError as exc:
        row["refused"] = str(exc)
        return row
    if run is None:  # it would fit, but takes too long here
        return row
    # what ``landscape hessian --dry-run`` would say, measured now beside the run
    row["dry_run_seconds"] = hessian_dry_run(model, data, plan, options, memory=est)["seconds"]
    with gpu.Peak(device) as peak, ProductClock() as clock:
        t = time.perf_counter()
        res = run()
        row["seconds"] = time.perf_counter() - t
    row["products"] = res.n_products
    row["product_share"] = clock.seconds / row["seconds"]
    row["measured_mb"] = (peak.cuda_mb if device.type == "cuda" else peak.rss_gain_mb)
    row["estimate_over_measured"] = row["estimate_mb"] / max(row["measured_mb"], 1e-9)
    return row


def measure_size(label, model_name, opts, shape, examples, args, device) -> dict:
    from landscape import build_model, count_parameters
    from landscape.errors import LandscapeError
    from landscape.surface import SurfaceOptions, surface_memory
    from landscape.util.memory import fit_or_refuse, memory_limit

    limit = memory_limit(device, args.max_memory)
    torch.manual_seed(0)
    model = build_model(model_name, input_shape=shape, num_classes=10, **opts).to(device).eval()
    n = count_parameters(model)
    x = torch.randn(examples, *shape, device=device)
    y = torch.randint(0, 10, (examples,), device=device)
    row = {"size": label, "params": n, "examples": examples}
    say(f"{label}: {n:,} parameters, {examples} examples")
    mem = surface_memory(model, (x, y), 2, options=SurfaceOptions(metrics=("train_loss",),
                                                                   device=device))
    try:
        fit_or_refuse("surface", mem, limit)
        row["fwd_loss_s"], row["point_s"], row["point_rounds"] = point_vs_forward(
            model, x, y, args.rounds, args.seconds_per_comparison)
        row["point_over_fwd"] = row["point_s"] / row["fwd_loss_s"]
        say(f"  point {row['point_over_fwd']:.2f}x a bare forward + loss "
            f"({row['point_rounds']} rounds)")
    except LandscapeError as exc:
        row["surface_refused"] = str(exc)
        say(f"  surface: {exc}")
    if not product_row(row, model, x, y, args, limit):
        return row
    row["solvers"] = solver_rows(row, model, (x, y), args, limit, device)
    say("  " + _fmt({k: v for k, v in row.items() if k != "solvers"}))
    return row


def product_row(row, model, x, y, args, limit) -> bool:
    """One product against a bare forward + backward, if one product's memory fits (the plan
    with no solver counts the product alone: its chunk's graph, the vectors, work space)."""
    from landscape.curvature import HessianOptions
    from landscape.curvature.memory import HessianPlan, hessian_memory
    from landscape.errors import LandscapeError
    from landscape.util.memory import fit_or_refuse

    options = HessianOptions(chunk=args.chunk, device=x.device, check=False)
    product = hessian_memory(model, (x, y), HessianPlan(top_k=0), options)
    row["product_estimate_mb"] = product.total_added / 2 ** 20
    try:
        fit_or_refuse("one product", product, limit)
    except LandscapeError as exc:
        row["product_refused"] = str(exc)
        say(f"  product: {exc}")
        return False
    (row["fwd_bwd_s"], row["product_s"], row["product_rounds"],
     row["setup_s"]) = product_vs_backward(model, x, y, args.rounds, args.chunk,
                                           args.seconds_per_comparison)
    row["product_over_bwd"] = row["product_s"] / row["fwd_bwd_s"]
    say(f"  product {row['product_over_bwd']:.2f}x a bare forward + backward "
        f"({row['product_rounds']} rounds, {row['product_s']:.3g} s each)")
    return True


def solver_rows(row, model, data, args, limit, device) -> list[dict]:
    """Top-1, top-5 and a trace, run where the model has at most ``--max-solver-params``
    parameters and the expected products fit ``--max-solver-seconds``; else estimated
    (memory, the one-line refusal or fitting plan, expected seconds)."""
    from landscape.curvature import HessianOptions, hessian_eigenvalues, hessian_trace
    from landscape.curvature.memory import HessianPlan, expected_seconds

    options = HessianOptions(chunk=args.chunk, device=device, check=False)
    tasks = [(f"top-{k}", HessianPlan(top_k=k),
              lambda k=k: hessian_eigenvalues(model, data, k=k, options=options))
             for k in (1, 5)]
    tasks.append((f"trace ({args.trace_products})",
                  HessianPlan(top_k=0, trace_products=args.trace_products),
                  lambda: hessian_trace(model, data, n_products=args.trace_products,
                                        options=options)))
    out = []
    for name, plan, run in tasks:
        # as ``hessian --dry-run`` expects it: products, set-up, the solvers' own work
        expected = expected_seconds(plan, row["params"], row["product_s"],
                                    row["setup_s"])["seconds"]
        small = (row["params"] <= args.max_solver_params
                 and expected <= args.max_solver_seconds)
        if not small and name.startswith("trace"):
            continue  # the eigenvalues' estimates say what the sizes past the limits need
        s = solver_row(name, model, data, plan, run if small else None, options, limit,
                       device)
        s["expected_seconds"] = expected
        say("    " + _fmt(s))
        out.append(s)
    return out


def examples_sweep(args, device) -> list[dict]:
    from landscape import build_model

    torch.manual_seed(0)
    model = build_model("cnn1d", input_shape=(40,), num_classes=10).to(device).eval()
    rows = []
    for m in (250, 500, 1000, 2000, 4000):
        x = torch.randn(m, 40, device=device)
        y = torch.randint(0, 10, (m,), device=device)
        fwd, point, _ = point_vs_forward(model, x, y, args.rounds, args.seconds_per_comparison)
        bwd, prod, _, _ = product_vs_backward(model, x, y, args.rounds, args.chunk,
                                           args.seconds_per_comparison)
        rows.append({"examples": m, "point_s": point, "fwd_loss_s": fwd, "product_s": prod,
                     "fwd_bwd_s": bwd})
        say("  examples " + _fmt(rows[-1]))
    return rows


def _fmt(d: dict) -> str:
    return ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in d.items())


def slope(xs, ys) -> float:
    return float(np.polyfit(np.log10(xs), np.log10(ys), 1)[0])


def figure(rows, sweep, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label, mark in (("point_s", "surface point", "o"),
                             ("fwd_loss_s", "bare forward + loss", "."),
                             ("product_s", "Hessian-vector product", "s"),
                             ("fwd_bwd_s", "bare forward + backward", "x")):
        pts = [(r["params"], r[key] / r["examples"]) for r in rows if key in r]
        if len(pts) > 1:
            p, t = zip(*pts)
            a.loglog(p, t, mark + "-", label=f"{label} (slope {slope(p, t):.2f})")
        if sweep:
            m = [r["examples"] for r in sweep]
            t = [r[key] for r in sweep]
            b.loglog(m, t, mark + "-", label=f"{label} (slope {slope(m, t):.2f})")
    a.set(xlabel="parameters", ylabel="seconds per example",
          title="cost per example against model size")
    b.set(xlabel="examples", ylabel="seconds", title="cnn1d (8,010 parameters): cost against "
          "examples")
    if sweep:  # the measured counts as plain numbers (log-scale minor labels collide)
        b.set_xticks([r["examples"] for r in sweep], [f"{r['examples']:,}" for r in sweep])
        b.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    for ax in (a, b):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def markdown(rows) -> list[str]:
    """The table of benchmarks/README.md: one row per size and task."""
    def f(v, spec):
        return "" if v is None else format(v, spec)

    out = ["| size | parameters | examples | rounds | point / (fwd+loss) | product / (fwd+bwd) | "
           "task | seconds | dry run / seconds | products | products' share | "
           "estimate MiB | measured MiB | estimate / measured |", "|" + "---|" * 14]
    for r in rows:
        rounds = f"{r.get('point_rounds', '-')} / {r.get('product_rounds', '-')}"
        head = (f"| {r['size']} | {r['params']:,} | {r['examples']} | {rounds} | "
                f"{f(r.get('point_over_fwd'), '.2f') or 'refused'} | "
                f"{f(r.get('product_over_bwd'), '.2f') or 'refused'} |")
        tasks = r.get("solvers") or [{}]
        for s in tasks:
            ratio = (s["dry_run_seconds"] / s["seconds"]) if s.get("seconds") else None
            cells = ([s.get("task", "")] + [f(s.get("seconds"), ".3g"), f(ratio, ".2f"),
                                            str(s.get("products", "")),
                     f(s.get("product_share"), ".0%"), f(s.get("estimate_mb"), ".1f"),
                     f(s.get("measured_mb"), ".1f"), f(s.get("estimate_over_measured"), ".2f")])
            if "refused" in s:
                cells[1] = "refused: " + s["refused"].split(" ", 1)[-1]
            elif s and "seconds" not in s:
                cells[1] = f"estimated only (about {s['expected_seconds']:.3g} s)"
            out.append(head + " " + " | ".join(cells) + " |")
    return out


def main() -> None:
    from landscape.util.memory import parse_bytes

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", default=",".join(s[0] for s in SIZES),
                        help="comma-separated labels of SIZES")
    parser.add_argument("--rounds", type=int, default=5,
                        help="most rounds of each alternated comparison")
    parser.add_argument("--seconds-per-comparison", type=float, default=30.0,
                        help="fewer rounds where a comparison would take longer (at least two)")
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--trace-products", type=int, default=12)
    parser.add_argument("--max-memory", default="8G", help="what a run may add")
    parser.add_argument("--max-solver-params", type=float, default=2e7,
                        help="above this, solvers are estimated, not run")
    parser.add_argument("--max-solver-seconds", type=float, default=300.0,
                        help="solvers whose expected products take longer are estimated, "
                        "not run")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-sweep", action="store_true")
    parser.add_argument("--out", default=None)
    parser.add_argument("--figure", default=None)
    args = parser.parse_args()
    args.max_memory = parse_bytes(args.max_memory)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    wanted = args.sizes.split(",")
    unknown = sorted(set(wanted) - {s[0] for s in SIZES})
    if unknown:
        parser.error(f"unknown sizes {unknown}: use any of {[s[0] for s in SIZES]}")
    rows = [measure_size(*s, args, device) for s in SIZES if s[0] in wanted]
    sweep = [] if args.no_sweep else examples_sweep(args, device)
    if args.out:
        Path(args.out).write_text(json.dumps({"sizes": rows, "examples": sweep}, indent=1))
    if args.figure:
        figure(rows, sweep, args.figure)
    print("\n".join(markdown(rows)))


if __name__ == "__main__":
    main()
