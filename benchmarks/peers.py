"""landscape against its peers, side by side in one run, with peak memory.

    python benchmarks/peers.py [--models mlp,cnn1d] [--grid 21] [--threads 1] [--out peers.json]

Installs nothing: the peers are the ``bench`` extra (``pip install -e '.[bench]'``:
loss-landscapes, pyhessian, hessian-eigenthings); a missing one is reported as "not installed"
and the other rows still run. For each MNIST-1D model (the full 4,000-example training set,
the model trained briefly as in ``benchmarks/hessian.py``) the rows are:

* surface: one bare forward pass over the training data; landscape's grid point (train loss
  and accuracy) and its whole ``compute_surface`` on a grid x grid plane (train loss); the same
  plane with loss-landscapes' ``random_plane`` (``benchmarks/surface.py``'s functions);
* top-5 Hessian eigenvalues: landscape (scipy eigsh), PyHessian (power iteration, its default
  tol 1e-3), hessian-eigenthings (Lanczos, defaults) (``benchmarks/hessian.py``'s functions),
  with Hessian-vector products used and the largest relative error against a reference
  spectrum (dense float64 Hessian when affordable, else a tight float64 eigsh);
* memory: the same surface on a 5 x 5 and a 41 x 41 grid (its memory must not grow with the
  number of points), and one Hessian product with the data in 1,024-example chunks (graph
  kept, the default, or recomputed) against the whole set in one chunk.

Every row reports its peak memory: the resident set size (Linux: the kernel's high-water mark
is reset before the row, so it is the row's own peak; elsewhere ``resource.getrusage``), its
gain over the resident set before the row, torch's CUDA peak on a GPU, and (in a second,
untimed pass, because tracing slows Python) tracemalloc's peak of Python allocations.
Not a test: nothing here asserts, it prints measurements.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

HERE = Path(__file__).resolve().parent


def _sibling(name: str):
    """Import ``benchmarks/<name>.py`` (not a package) under a private module name."""
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


gpu = _sibling("gpu")          # Peak (memory), timed, device helpers
surface_bench = _sibling("surface")
hessian_bench = _sibling("hessian")


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


class Recorder:
    """Runs measurements, times them with their memory peak, and keeps the rows."""

    def __init__(self, device: torch.device, trace_python: bool):
        self.device, self.trace_python = device, trace_python
        self.rows: list[dict[str, Any]] = []

    def measure(self, model: str, task: str, tool: str, fn: Callable[[], dict[str, Any]],
                missing: str | None = None) -> dict[str, Any]:
        """Run ``fn`` (returns the row's numbers) under a memory peak; then, if asked, once
        more under tracemalloc for Python's peak."""
        row: dict[str, Any] = {"model": model, "task": task, "tool": tool}
        if missing is not None:
            row["missing"] = missing
            self.rows.append(row)
            return row
        with gpu.Peak(self.device) as peak:
            t0 = time.perf_counter()
            out = fn()
            row["seconds"] = time.perf_counter() - t0
        if "missing" in out:
            row["missing"] = out["missing"]
            self.rows.append(row)
            return row
        row.update(out)
        row["memory"] = peak.as_dict()
        row["rss_how"] = peak.rss_how
        if self.trace_python:
            with gpu.Peak(self.device, python=True) as traced:
                fn()
            row["memory"]["python_peak_mb"] = traced.py_mb
        self.rows.append(row)
        return row


# ----------------------------------------------------------------------------- surfaces

def surface_rows(rec: Recorder, name: str, model, x, y, grid: int, rounds: int) -> None:
    forward, point = surface_bench.per_point_vs_forward(model, x, y, grid, rounds)
    rec.rows.append({"model": name, "task": "forward", "tool": "bare forward (torch)",
                     "seconds": forward, "per_point_s": forward, "vs_forward": 1.0})
    rec.rows.append({"model": name, "task": "surface point", "tool": "landscape Evaluator",
                     "seconds": point, "per_point_s": point, "vs_forward": point / forward,
                     "detail": "median of alternating runs; loss + accuracy"})
    points = grid * grid

    def ours() -> dict[str, Any]:
        s = surface_bench.ours(model, (x, y), grid, ("train_loss",), x.device)
        return {"per_point_s": s / points, "vs_forward": s / points / forward,
                "detail": f"compute_surface {grid}x{grid}, train loss, setup included"}

    def theirs() -> dict[str, Any]:
        s = surface_bench.theirs(model, x, y, grid)
        return {"per_point_s": s / points, "vs_forward": s / points / forward,
                "detail": f"random_plane {grid}x{grid}, filter normalization"}

    ours_row = rec.measure(name, "surface", "landscape", ours)
    peer = rec.measure(name, "surface", "loss-landscapes", theirs,
                       None if installed("loss_landscapes") else "not installed")
    if "missing" not in peer:
        peer["relative"] = peer["per_point_s"] / ours_row["per_point_s"]


# ----------------------------------------------------------------------------- eigenvalues

def eigen_rows(rec: Recorder, name: str, model, data, budget: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    ref, _, how = hessian_bench.reference_top(model, data, budget)
    reference = {"top5": np.asarray(ref).tolist(), "how": how,
                 "seconds": time.perf_counter() - t0}
    print(f"   reference spectrum: {how}", file=sys.stderr)
    tools = [("landscape eigsh (tol 1e-6)", lambda: hessian_bench.run_ours(model, data), None),
             ("PyHessian power (tol 1e-3)", lambda: hessian_bench.run_pyhessian(model, data,
                                                                                1e-3),
              None if installed("pyhessian") else "not installed"),
             ("hessian-eigenthings lanczos (defaults)",
              lambda: hessian_bench.run_eigenthings(model, data, None),
              None if installed("hessian_eigenthings") else "not installed")]
    ours = None
    for label, fn, missing in tools:
        def numbers(fn=fn) -> dict[str, Any]:
            r = fn()
            if "missing" in r:
                return r
            return {"products": int(r["products"]), "values": np.asarray(r["values"]).tolist(),
                    "rel_err": hessian_bench.err(r["values"], ref),
                    "residual": r.get("residual")}
        row = rec.measure(name, "top-5 eigenvalues", label, numbers, missing)
        if ours is None and "missing" not in row:
            ours = row
        elif "missing" not in row and ours is not None:
            row["relative"] = row["seconds"] / ours["seconds"]
    return reference


# ----------------------------------------------------------------------------- memory

def memory_rows(rec: Recorder, name: str, model, x, y) -> None:
    """Surface memory against the number of grid points; Hessian products in chunks."""
    from landscape.curvature import HessianOperator

    for grid in (5, 41):
        rec.measure(name, "memory: surface", f"landscape {grid}x{grid} = {grid * grid} points",
                    lambda grid=grid: {"per_point_s": surface_bench.ours(
                        model, (x, y), grid, ("train_loss", "train_acc"), x.device)
                        / grid ** 2})
    v = torch.randn(sum(p.numel() for p in model.parameters()),
                    generator=torch.Generator().manual_seed(0))
    for label, kw in (("1024-example chunks, graph kept (default)", {}),
                      ("1024-example chunks, graph recomputed", {"graph_cache": 0}),
                      ("one chunk of all examples, graph recomputed",
                       {"chunk": None, "graph_cache": 0})):
        def product(kw=kw) -> dict[str, Any]:
            op = HessianOperator(model, (x, y), **kw)
            op.hvp(v)
            t0 = time.perf_counter()
            op.hvp(v)
            return {"per_product_s": time.perf_counter() - t0,
                    "detail": f"hvp {op.hvp_description}"}
        rec.measure(name, "memory: Hessian product", label, product)


# ----------------------------------------------------------------------------- report

def _mem(row: dict[str, Any]) -> str:
    m = row.get("memory") or {}
    parts = []
    if m.get("cuda_peak_mb") is not None:
        parts.append(f"GPU {m['cuda_peak_mb']:.0f}")
    if m.get("rss_gain_mb") is not None:
        parts.append(f"+{m['rss_gain_mb']:.1f} (RSS {m['rss_peak_mb']:.0f})")
    if m.get("python_peak_mb") is not None:
        parts.append(f"py {m['python_peak_mb']:.1f}")
    return ", ".join(parts)


def table(rows: list[dict[str, Any]]) -> list[str]:
    head = ("| model | task | tool | time | vs bare forward | vs landscape | products | "
            "max rel. error | peak memory, MiB |")
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        if "missing" in r:
            lines.append(f"| {r['model']} | {r['task']} | {r['tool']} | {r['missing']} "
                         "| | | | | |")
            continue
        if "per_point_s" in r:
            time_s = f"{r['per_point_s'] * 1e3:.2f} ms/point"
        elif "per_product_s" in r:
            time_s = f"{r['per_product_s'] * 1e3:.1f} ms/product"
        else:
            time_s = f"{r['seconds']:.2f} s"
        fwd = f"{r['vs_forward']:.2f}x" if "vs_forward" in r else ""
        rel = f"{r['relative']:.2f}x" if "relative" in r else ""
        prods = str(r.get("products", ""))
        err = f"{r['rel_err']:.1e}" if r.get("rel_err") is not None else ""
        lines.append(f"| {r['model']} | {r['task']} | {r['tool']} | {time_s} | {fwd} | {rel} "
                     f"| {prods} | {err} | {_mem(r)} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="mlp,cnn1d")
    parser.add_argument("--grid", type=int, default=21, help="points per axis of the plane")
    parser.add_argument("--rounds", type=int, default=40,
                        help="alternating forward / point measurements")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--dense-budget", type=float, default=120.0,
                        help="seconds allowed for a dense reference Hessian")
    parser.add_argument("--no-tracemalloc", action="store_true",
                        help="skip the second, traced pass of each row")
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", FutureWarning)
    warnings.filterwarnings("ignore", message="Using backward.. with create_graph=True")

    from landscape import count_parameters, load_dataset

    device = torch.device("cpu")  # the peers' CPU paths; benchmarks/gpu.py covers GPUs
    bundle = load_dataset("mnist1d")
    x, y = bundle.train
    machine = gpu.device_name(device)
    print(f"MNIST-1D train set {tuple(x.shape)}, {machine}; peers installed: "
          + ", ".join(f"{m} {'yes' if installed(m) else 'NO'}"
                      for m in ("loss_landscapes", "pyhessian", "hessian_eigenthings")),
          file=sys.stderr)
    rec = Recorder(device, trace_python=not args.no_tracemalloc)
    references, models = {}, {}
    start = time.perf_counter()
    for name in args.models.split(","):
        model, how = hessian_bench.get_model(name, bundle, None)
        models[name] = {"parameters": count_parameters(model), "how": how}
        print(f"== {name}: {count_parameters(model)} parameters; {how}", file=sys.stderr)
        surface_rows(rec, name, model, x, y, args.grid, args.rounds)
        references[name] = eigen_rows(rec, name, model, (x, y), args.dense_budget)
        memory_rows(rec, name, model, x, y)
    lines = table(rec.rows)
    print(f"\nMachine: {machine}; torch {torch.__version__}; grid {args.grid}x{args.grid}; "
          f"{time.perf_counter() - start:.0f} s in all\n")
    print("\n".join(lines))
    if args.out:
        Path(args.out).write_text(json.dumps({"machine": machine, "torch": torch.__version__,
                                              "grid": args.grid, "models": models,
                                              "references": references, "rows": rec.rows},
                                             indent=2, default=_json))


def _json(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return obj.item()
    return str(obj)


if __name__ == "__main__":
    main()
