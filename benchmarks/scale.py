"""Scale: time and memory of surfaces and Hessian solvers from 10^3 to 10^8 parameters.

For each size (generated inputs of the model's shape: MNIST-1D's 40 features, CIFAR's
3x32x32), measured in the same process, interleaved where two things are compared:

* surface point (set the weights, forward, loss and accuracy) against a bare forward + loss;
* one Hessian-vector product against a bare forward + backward;
* top-1 and top-5 eigenvalues (eigsh) and a Hutch++ trace: seconds, products, the products'
  share of the time, and the resident-memory peak beside ``hessian_memory``'s estimate;
* where the estimate passes ``--max-memory``, the one-line refusal instead of the run.

Then the cost of a point and a product against the number of examples for one model, and a
log-log figure with the fitted slopes.

    python benchmarks/scale.py --out scale.json --figure docs/figures/scale.png

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
SIZES = [  # name, model, options, input shape, examples (fewer where a forward is costly)
    ("mlp", "mlp", {}, (40,), 2000),
    ("cnn1d", "cnn1d", {}, (40,), 2000),
    ("resnet20", "resnet20", {}, (3, 32, 32), 64),
    ("resnet56", "resnet56", {}, (3, 32, 32), 32),
    ("wide mlp 1024", "mlp", {"width": 1024}, (3, 32, 32), 256),
    ("wide mlp 3000", "mlp", {"width": 3000}, (3, 32, 32), 64),
    ("wide mlp 10000", "mlp", {"width": 10000}, (3, 32, 32), 16),
]


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


def point_vs_forward(model, x, y, rounds: int) -> tuple[float, float]:
    """Median seconds of a bare forward + cross-entropy and of one surface point, alternated."""
    from landscape.directions import random_directions
    from landscape.evaluate import Evaluator

    model.eval()
    dirs = random_directions(model, count=2, seed=0)
    bare, point = [], []
    with Evaluator(model, (x, y), dirs, device=x.device) as ev, torch.inference_mode():
        ev.evaluate((0.1, 0.2))
        for k in range(rounds):
            t = time.perf_counter()
            float(torch.nn.functional.cross_entropy(model(x), y))
            bare.append(time.perf_counter() - t)
            t = time.perf_counter()
            ev.evaluate((0.1 * k, -0.1 * k))
            point.append(time.perf_counter() - t)
    return statistics.median(bare), statistics.median(point)


def product_vs_backward(model, x, y, rounds: int, chunk: int) -> tuple[float, float]:
    """Median seconds of a bare forward + backward and of one Hessian-vector product."""
    from landscape.curvature import HessianOperator

    op = HessianOperator(model, (x, y), chunk=chunk)
    v = np.random.default_rng(0).standard_normal(op.n_params)
    op.matvec(v)  # builds what the operator keeps
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
    return statistics.median(bare), statistics.median(prod)


class ProductClock:
    """Seconds spent inside Hessian-vector products during a block (``HessianOperator.hvp``
    wrapped), so the products' share of a solver's time is measured in the same run; the
    first product's building of the kept gradient graphs counts as product time."""

    def __enter__(self) -> "ProductClock":
        from landscape.curvature.hessian import HessianOperator

        self.seconds, self._hvp = 0.0, HessianOperator.hvp
        clock = self

        def timed(op, v):
            start = time.perf_counter()
            try:
                return clock._hvp(op, v)
            finally:
                clock.seconds += time.perf_counter() - start

        HessianOperator.hvp = timed
        return self

    def __exit__(self, *exc) -> None:
        from landscape.curvature.hessian import HessianOperator

        HessianOperator.hvp = self._hvp


def solver_row(name, model, data, plan, run, options, limit, device) -> dict:
    """Estimate, then run (or refuse) under a memory peak."""
    from landscape.curvature.memory import fitting_plan, hessian_memory
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
    from landscape.curvature import HessianOptions, hessian_eigenvalues, hessian_trace
    from landscape.curvature.memory import HessianPlan, hessian_memory
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
    print(f"{label}: {n:,} parameters, {examples} examples", flush=True)
    mem = surface_memory(model, (x, y), 2, options=SurfaceOptions(metrics=("train_loss",),
                                                                   device=device))
    try:
        fit_or_refuse("surface", mem, limit)
        row["fwd_loss_s"], row["point_s"] = point_vs_forward(model, x, y, args.rounds)
        row["point_over_fwd"] = row["point_s"] / row["fwd_loss_s"]
    except LandscapeError as exc:
        row["surface_refused"] = str(exc)
    options = HessianOptions(chunk=args.chunk, device=device, check=False)
    product = hessian_memory(model, (x, y), HessianPlan(top_k=0, trace_products=3), options)
    try:
        fit_or_refuse("one product", product, limit)
        row["fwd_bwd_s"], row["product_s"] = product_vs_backward(model, x, y, args.rounds,
                                                                 args.chunk)
        row["product_over_bwd"] = row["product_s"] / row["fwd_bwd_s"]
    except LandscapeError as exc:
        row["product_refused"] = str(exc)
        return row
    solvers = []
    if n <= args.max_solver_params:
        for k in (1, 5):
            solvers.append(solver_row(f"top-{k}", model, (x, y), HessianPlan(top_k=k),
                                      lambda k=k: hessian_eigenvalues(model, (x, y), k=k,
                                                                      options=options),
                                      options, limit, device))
        solvers.append(solver_row(f"trace ({args.trace_products})", model, (x, y),
                                  HessianPlan(top_k=0, trace_products=args.trace_products),
                                  lambda: hessian_trace(model, (x, y),
                                                        n_products=args.trace_products,
                                                        options=options),
                                  options, limit, device))
    else:  # the estimates alone: the run would take too long here
        for k in (1, 5):
            solvers.append(solver_row(f"top-{k}", model, (x, y), HessianPlan(top_k=k),
                                      None, options, limit, device))
    for s in solvers:
        print("   ", _fmt(s), flush=True)
    row["solvers"] = solvers
    print("   ", _fmt({k: v for k, v in row.items() if k != "solvers"}), flush=True)
    return row


def examples_sweep(args, device) -> list[dict]:
    from landscape import build_model

    torch.manual_seed(0)
    model = build_model("cnn1d", input_shape=(40,), num_classes=10).to(device).eval()
    rows = []
    for m in (250, 500, 1000, 2000, 4000):
        x = torch.randn(m, 40, device=device)
        y = torch.randint(0, 10, (m,), device=device)
        fwd, point = point_vs_forward(model, x, y, args.rounds)
        bwd, prod = product_vs_backward(model, x, y, args.rounds, args.chunk)
        rows.append({"examples": m, "point_s": point, "fwd_loss_s": fwd, "product_s": prod,
                     "fwd_bwd_s": bwd})
        print("   examples", _fmt(rows[-1]), flush=True)
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
    for ax in (a, b):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def markdown(rows) -> list[str]:
    """The table of benchmarks/README.md: one row per size and task."""
    def f(v, spec):
        return "" if v is None else format(v, spec)

    out = ["| size | parameters | examples | point / (fwd+loss) | product / (fwd+bwd) | task | "
           "seconds | products | products' share | estimate MiB | measured MiB | "
           "estimate / measured |", "|" + "---|" * 12]
    for r in rows:
        head = (f"| {r['size']} | {r['params']:,} | {r['examples']} | "
                f"{f(r.get('point_over_fwd'), '.2f') or 'refused'} | "
                f"{f(r.get('product_over_bwd'), '.2f') or 'refused'} |")
        tasks = r.get("solvers") or [{}]
        for s in tasks:
            cells = ([s.get("task", "")] + [f(s.get("seconds"), ".3g"), str(s.get("products", "")),
                     f(s.get("product_share"), ".0%"), f(s.get("estimate_mb"), ".1f"),
                     f(s.get("measured_mb"), ".1f"), f(s.get("estimate_over_measured"), ".2f")])
            if "refused" in s:
                cells[1] = "refused: " + s["refused"].split(": ", 1)[-1]
            elif s and "seconds" not in s:
                cells[1] = "estimated only"
            out.append(head + " " + " | ".join(cells) + " |")
    return out


def main() -> None:
    from landscape.util.memory import parse_bytes

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", default=",".join(s[0] for s in SIZES),
                        help="comma-separated labels of SIZES")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--trace-products", type=int, default=12)
    parser.add_argument("--max-memory", default="8G", help="what a run may add")
    parser.add_argument("--max-solver-params", type=float, default=2e7,
                        help="above this, solvers are estimated, not run")
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
    rows = [measure_size(*s, args, device) for s in SIZES if s[0] in wanted]
    sweep = [] if args.no_sweep else examples_sweep(args, device)
    if args.out:
        Path(args.out).write_text(json.dumps({"sizes": rows, "examples": sweep}, indent=1))
    if args.figure:
        figure(rows, sweep, args.figure)
    print("\n".join(markdown(rows)))


if __name__ == "__main__":
    main()
