"""Top-5 Hessian eigenvalues on MNIST-1D: landscape (scipy eigsh) against PyHessian and
hessian-eigenthings, side by side in one run (same model, data, device and threads).

    python benchmarks/hessian.py [--mlp-checkpoint PATH] [--cnn-checkpoint PATH]
                                 [--models mlp,cnn1d] [--threads N] [--out results.json]

For each model (the 2,698-parameter MLP and the 8,010-parameter cnn1d, trained briefly unless a
checkpoint is given) it reports Hessian-vector products used, wall time and the largest
relative error of the top five eigenvalues against a reference spectrum: the dense float64
Hessian (torch.func) and eigh when that fits the --dense-budget in seconds (estimated from a
timed slice first), else a tight float64 eigsh (tol 1e-12), which the table says. It also
times the two ways of computing one product (double backward, torch.func forward-over-reverse),
the smallest eigenvalue with and without the spectral shift, and extreme_eigenvalues against
eigsh. A peer package that is not installed is reported as missing; the rest still runs.
Not a test: nothing here asserts, it prints measurements.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from landscape import curvature as hs
from landscape.curvature.lanczos import extreme_lanczos
from landscape.checkpoint import load_checkpoint
from landscape.data import load_dataset
from landscape.models import build_model, count_parameters
from landscape.train import TrainConfig, train

TRAIN = {"mlp": TrainConfig(epochs=60, batch_size=32, lr=0.01, progress=False),
         "cnn1d": TrainConfig(epochs=20, batch_size=32, lr=0.01, progress=False)}


def get_model(name: str, bundle, checkpoint: str | None) -> tuple[nn.Module, str]:
    if checkpoint:
        model, _ = load_checkpoint(checkpoint)
        return model.eval(), f"checkpoint {checkpoint}"
    model = build_model(name, bundle, seed=0)
    result = train(model, bundle, TRAIN[name])
    f = result.final
    return model.eval(), (f"trained {TRAIN[name].epochs} epochs batch 32 in {result.seconds:.1f} s"
                          f" (train acc {f['train_acc']:.3f}, test acc {f['test_acc']:.3f})")


# ----------------------------------------------------------------------------- reference

def reference_top(model: nn.Module, data, budget: float) -> tuple[np.ndarray, np.ndarray, str]:
    """Exact spectrum (dense float64 Hessian) if affordable, else a tight float64 eigsh."""
    model64 = copy.deepcopy(model).double()
    op = hs.HessianOperator(model64, data)
    n = op.n_params
    cols = 64
    t = time.perf_counter()
    _dense_columns(model64, data, cols)
    estimate = (time.perf_counter() - t) * n / cols
    if estimate <= budget:
        t = time.perf_counter()
        h = hs.dense_hessian(model64, data, columns=128)
        values = torch.linalg.eigvalsh(h).numpy()
        how = (f"dense float64 Hessian + eigh ({n}x{n}, {time.perf_counter() - t:.0f} s)")
        return values[-5:], values, how
    t = time.perf_counter()
    res = hs.hessian_eigenvalues(model64, data, k=5, tol=1e-12,
                                 options=hs.HessianOptions(check=False))
    how = (f"tight float64 eigsh, tol 1e-12 ({res.n_products} products, "
           f"{time.perf_counter() - t:.0f} s; residuals <= {res.residuals.max():.1e}); "
           f"dense Hessian skipped: estimated {estimate:.0f} s > budget {budget:.0f} s")
    return res.values, None, how


def _dense_columns(model64: nn.Module, data, cols: int) -> None:
    """Time ``cols`` columns of the dense Hessian the way dense_hessian computes them."""
    op = hs.HessianOperator(model64, data)
    names = list(op.params)
    flat0 = torch.cat([op.params[n].reshape(-1) for n in names])
    sizes = [op.params[n].numel() for n in names]
    shapes = [op.params[n].shape for n in names]
    unflat = lambda f: {n: t.view(s) for n, t, s in zip(names, f.split(sizes), shapes)}  # noqa
    eye = torch.eye(op.n_params, dtype=torch.float64)[:cols]
    for x, y, w in op._chunks:
        grad = torch.func.grad(lambda f: op._chunk_loss(unflat(f), x, y, w))
        torch.func.vmap(lambda v: torch.func.jvp(grad, (flat0,), (v,))[1])(eye)


# ----------------------------------------------------------------------------- tools

def run_ours(model, data, **kw) -> dict:
    t = time.perf_counter()
    res = hs.hessian_eigenvalues(model, data, k=5, **kw, options=hs.HessianOptions(check=False))
    return {"values": res.values, "products": res.n_products,
            "seconds": time.perf_counter() - t, "residual": float(res.residuals.max())}


def run_pyhessian(model, data, tol: float) -> dict:
    try:
        import pyhessian
    except ImportError:
        return {"missing": "pyhessian is not installed (pip install pyhessian)"}
    ph = sys.modules["pyhessian.hessian"]  # the package re-exports a class of the same name
    model = copy.deepcopy(model)
    count = [0]
    original = ph.hessian_vector_product

    def counted(*args, **kwargs):
        count[0] += 1
        return original(*args, **kwargs)

    ph.hessian_vector_product = counted
    torch.manual_seed(0)  # PyHessian draws its start vectors from torch's global generator
    try:
        t = time.perf_counter()
        # single-batch mode (the whole split as one batch): it keeps and reuses the graph
        h = pyhessian.hessian(model, nn.functional.cross_entropy, data=data, cuda=False)
        values, _ = h.eigenvalues(maxIter=100, tol=tol, top_n=5)
        seconds = time.perf_counter() - t
    finally:
        ph.hessian_vector_product = original
    return {"values": np.sort(np.array(values)), "products": count[0], "seconds": seconds}


def run_eigenthings(model, data, max_iter: int | None) -> dict:
    try:
        import hessian_eigenthings as he
    except ImportError:
        return {"missing": "hessian-eigenthings is not installed (pip install "
                           "hessian-eigenthings)"}
    model = copy.deepcopy(model)
    t = time.perf_counter()
    op = he.HessianOperator(model, [data], he.supervised_loss(nn.functional.cross_entropy))
    count = [0]
    original = op.matvec

    def counted(v):
        count[0] += 1
        return original(v)

    op.matvec = counted
    res = he.lanczos(op, k=5, which="LA", seed=0, max_iter=max_iter)
    seconds = time.perf_counter() - t
    return {"values": np.sort(res.eigenvalues.detach().double().numpy()), "products": count[0],
            "seconds": seconds}


# ----------------------------------------------------------------------------- extras

def product_timing(model, data, reps: int) -> dict:
    """Median seconds per product: double backward (graph kept between products, or rebuilt
    each time) and torch.func forward-over-reverse."""
    ops = {"double (graph kept)": hs.HessianOperator(model, data, hvp="double"),
           "double": hs.HessianOperator(model, data, hvp="double", graph_cache=0),
           "forward": hs.HessianOperator(model, data, hvp="forward")}
    v = torch.randn(next(iter(ops.values())).n_params, generator=torch.Generator().manual_seed(0))
    times = {m: [] for m in ops}
    for op in ops.values():
        op.hvp(v)  # warm-up
    for _ in range(reps):
        for m, op in ops.items():
            t = time.perf_counter()
            op.hvp(v)
            times[m].append(time.perf_counter() - t)
    return {m: float(np.median(ts)) for m, ts in times.items()}


def smallest_study(model, data, exact_min: float | None) -> list[dict]:
    """Smallest eigenvalue: plain eigsh SA on H against SA on the shifted H - top I."""
    from scipy.sparse.linalg import eigsh

    model64 = copy.deepcopy(model).double()
    op = hs.HessianOperator(model64, data)
    top = float(hs.hessian_eigenvalues(model64, data, k=1, tol=1e-8,
                                       options=hs.HessianOptions(check=False)).values[-1])
    v0 = np.random.default_rng(0).standard_normal(op.n_params)
    rows = []
    for tol in (1e-3, 1e-6):
        for ncv in (20, 40):
            for label, a, shift in (("SA on H", op, 0.0),
                                    ("SA on H - top*I", hs.ShiftedOperator(op, top), top)):
                op.n_products = 0
                t = time.perf_counter()
                val = float(eigsh(a, k=1, which="SA", tol=tol, ncv=ncv, v0=v0,
                                  return_eigenvectors=False)[0]) + shift
                rows.append({"variant": label, "tol": tol, "ncv": ncv,
                             "products": op.n_products, "value": val,
                             "seconds": time.perf_counter() - t,
                             "rel_err": (abs(val - exact_min) / abs(exact_min)
                                         if exact_min is not None else None)})
    return rows


def extreme_study(model, data) -> list[dict]:
    """extreme_eigenvalues (one Lanczos run for both ends) against eigsh BE and LA+SA."""
    from scipy.sparse.linalg import eigsh

    rows = []
    t = time.perf_counter()
    op = hs.HessianOperator(model, data)
    vals, _, _ = extreme_lanczos(op, np.random.default_rng(0), 1e-3)
    rows.append({"variant": "extreme_eigenvalues (tol 1e-3)", "products": op.n_products,
                 "max": float(vals[-1]), "min": float(vals[0]),
                 "seconds": time.perf_counter() - t})
    v0 = np.random.default_rng(0).standard_normal(op.n_params)
    op = hs.HessianOperator(model, data)
    t = time.perf_counter()
    be = eigsh(op, k=2, which="BE", tol=1e-3, v0=v0, return_eigenvectors=False)
    rows.append({"variant": "eigsh BE k=2 (tol 1e-3)", "products": op.n_products,
                 "max": float(be.max()), "min": float(be.min()),
                 "seconds": time.perf_counter() - t})
    op = hs.HessianOperator(model, data)
    t = time.perf_counter()
    la = eigsh(op, k=1, which="LA", tol=1e-3, v0=v0, return_eigenvectors=False)
    sa = eigsh(op, k=1, which="SA", tol=1e-3, v0=v0, return_eigenvectors=False)
    rows.append({"variant": "eigsh LA then SA (tol 1e-3)", "products": op.n_products,
                 "max": float(la[0]), "min": float(sa[0]), "seconds": time.perf_counter() - t})
    return rows


# ----------------------------------------------------------------------------- report

def err(values, ref) -> float:
    return float(np.max(np.abs(np.sort(values) - ref) / np.abs(ref)))


def interleaved(tools: dict, repeats: int) -> dict:
    """Run every tool ``repeats`` times, one round of all tools after another (so that a
    change in the machine's load falls on all of them); the median wall time of each, and its
    first run's (a fresh process pays one-time costs there)."""
    runs: dict[str, list[dict]] = {label: [] for label in tools}
    for _ in range(repeats):
        for label, fn in tools.items():
            if not runs[label] or "missing" not in runs[label][0]:
                runs[label].append(fn())
    rows = {}
    for label, done in runs.items():
        out = dict(done[-1])
        if "missing" not in out:
            out["seconds"] = float(np.median([r["seconds"] for r in done]))
            out["seconds_all"] = [r["seconds"] for r in done]
        rows[label] = out
    return rows


def bench_model(name: str, bundle, checkpoint: str | None, budget: float, repeats: int,
                extras: bool = True) -> dict:
    data = bundle.train
    model, how = get_model(name, bundle, checkpoint)
    print(f"\n== {name}: {count_parameters(model):,} parameters, {len(data[1])} examples; "
          f"{how}")
    t = time.perf_counter()
    ref, spectrum, ref_how = reference_top(model, data, budget)
    print(f"reference: {ref_how}")
    print(f"  top 5: {np.array2string(ref, precision=6)}")
    timing = product_timing(model, data, reps=10 if name == "mlp" else 4)
    print("one product (median): " + ", ".join(f"{m} {s * 1e3:.1f} ms"
                                               for m, s in timing.items()))
    tools = {
        "landscape eigsh (default tol 1e-6)": lambda: run_ours(model, data),
        "landscape eigsh (tol 1e-3)": lambda: run_ours(model, data, tol=1e-3),
        "landscape power (tol 1e-5, baseline)": lambda: run_ours(model, data, method="power",
                                                                  tol=1e-5),
        "PyHessian power (tol 1e-5)": lambda: run_pyhessian(model, data, 1e-5),
        "PyHessian power (tol 1e-3)": lambda: run_pyhessian(model, data, 1e-3),
        "hessian-eigenthings lanczos (default)": lambda: run_eigenthings(model, data, None),
        "hessian-eigenthings lanczos (40 steps)": lambda: run_eigenthings(model, data, 40),
    }
    rows = interleaved(tools, repeats)
    print(f"\n{'tool':42s} {'products':>8s} {'seconds':>8s} {'max rel err':>12s}   "
          f"(seconds: median of {repeats} interleaved runs; first run in brackets)")
    for label, r in rows.items():
        if "missing" in r:
            print(f"{label:42s} missing: {r['missing']}")
            continue
        r["rel_err"] = err(r["values"], ref)
        print(f"{label:42s} {r['products']:8d} {r['seconds']:8.2f} {r['rel_err']:12.2e}   "
              f"[{r['seconds_all'][0]:.2f}]")
    ours, peer = rows["landscape eigsh (default tol 1e-6)"], rows["PyHessian power (tol 1e-5)"]
    verdict = {}
    if "missing" not in peer:
        verdict = {"products_ratio": peer["products"] / ours["products"],
                   "time_ratio": peer["seconds"] / ours["seconds"],
                   "more_accurate": ours["rel_err"] < peer["rel_err"]}
        print(f"\nPyHessian (tol 1e-5) / landscape (default): "
              f"{verdict['products_ratio']:.1f}x products (target >= 5), "
              f"{verdict['time_ratio']:.1f}x wall time (target >= 3); landscape more accurate: "
              f"{verdict['more_accurate']} ({ours['rel_err']:.1e} vs {peer['rel_err']:.1e})")
    exact_min = float(spectrum[0]) if spectrum is not None else None
    if not extras:
        return {"model": name, "parameters": count_parameters(model), "how": how,
                "reference": {"how": ref_how, "top5": ref}, "product_seconds": timing,
                "rows": rows, "verdict": verdict}
    small = smallest_study(model, data, exact_min)
    print("\nsmallest eigenvalue, float64" + (f" (exact {exact_min:.8f})" if exact_min else ""))
    for r in small:
        e = f"{r['rel_err']:.1e}" if r["rel_err"] is not None else "-"
        print(f"  {r['variant']:17s} tol {r['tol']:.0e} ncv {r['ncv']:2d}: {r['products']:4d} "
              f"products, {r['value']:.8f}, rel err {e}")
    extreme = extreme_study(model, data)
    print("\nlargest and smallest together (float32 model)")
    for r in extreme:
        print(f"  {r['variant']:32s} {r['products']:4d} products {r['seconds']:6.2f} s  "
              f"max {r['max']:.6f}  min {r['min']:.6f}")
    print(f"({time.perf_counter() - t:.0f} s for {name})")
    return {"model": name, "parameters": count_parameters(model), "how": how,
            "reference": {"how": ref_how, "top5": ref, "min": exact_min},
            "product_seconds": timing, "rows": rows, "verdict": verdict,
            "smallest": small, "extreme": extreme}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="mlp,cnn1d")
    parser.add_argument("--mlp-checkpoint", default=None)
    parser.add_argument("--cnn-checkpoint", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--dense-budget", type=float, default=600.0,
                        help="seconds allowed for a dense reference Hessian")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of each tool; the median wall time is reported")
    parser.add_argument("--peers-only", action="store_true",
                        help="only the top-5 comparison (no smallest/extreme studies)")
    parser.add_argument("--out", default=None, help="write the numbers as JSON here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", FutureWarning)
    bundle = load_dataset("mnist1d")
    print(f"MNIST-1D train split ({len(bundle.train[1])} examples), CPU, "
          f"{torch.get_num_threads()} torch threads, float32 models")
    results = []
    for name in args.models.split(","):
        ckpt = args.mlp_checkpoint if name == "mlp" else args.cnn_checkpoint
        results.append(bench_model(name, bundle, ckpt, args.dense_budget, args.repeats,
                                   extras=not args.peers_only))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2, default=_json))


def _json(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return obj.item()
    raise TypeError(type(obj).__name__)


if __name__ == "__main__":
    main()
