"""Throughput on one device: surfaces, Hessian-vector products and training.

    python benchmarks/gpu.py [--smoke] [--device cuda] [--compile] [--images N] [--out F]

For the MNIST-1D ``cnn1d`` (the real training set, generated locally) and a CIFAR-shaped
ResNet-20 on random data (10,000 images of 3x32x32, 10 classes) it measures, in one run:

* surfaces (``compute_surface``, train loss and accuracy, a small 2-D grid): points/s, the
  time per point over one bare forward pass over the same data (inference mode, the same
  8192-example chunks), and the variants batched vmap points (``batch_points``), bf16
  autocast, channels-last (images only) and TF32 (CUDA only), each with its points/s and
  the largest difference of its values from the plain fp32 surface;
* Hessian-vector products/s (``landscape.hessian.HessianOperator``, double backward and
  forward-over-reverse), over the whole split in chunks of 1024 examples;
* training samples/s (``landscape.train``, data resident on the device) at a small and a
  large batch, optionally with the model compiled by ``torch.compile`` (``--compile``).

Each row also gives the peak memory of its step: ``torch.cuda.max_memory_allocated`` on a GPU;
on the CPU the peak resident set size (Linux: the high-water mark is reset before the step;
elsewhere ``resource.getrusage``, the process's peak so far). ``--smoke`` uses tiny sizes so
the script runs in seconds on a CPU (it is how the script is known to work without a GPU).
Prints a table and writes JSON with the device name. Not a test: nothing here asserts.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import json
import platform
import resource
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

# ----------------------------------------------------------------------------- measuring


def sync(device: torch.device) -> None:
    """Wait for queued device work, so that wall time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} " \
           "torch threads)"


def _rss_mb() -> tuple[float, float] | None:
    """(current, peak) resident set size in MiB from /proc (Linux), else None."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text()
                      .splitlines() if ":" in line)
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024
    except (OSError, KeyError, ValueError):
        return None


def _release_free_memory() -> None:
    """Collect garbage and hand freed heap back to the OS (glibc), so that the resident set
    before a step is not inflated by memory an earlier step freed but the allocator kept."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_rss_peak() -> bool:
    """Reset the kernel's resident-set high-water mark (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class Peak:
    """Peak memory of a block: CUDA allocations, resident set size, optionally Python's
    own allocations (tracemalloc: numpy arrays and Python objects, not torch CPU tensors;
    it slows Python-heavy code, so it is off unless asked for).

    After the block: ``cuda_mb`` (peak allocated minus allocated before), ``rss_mb`` (peak
    resident set), ``rss_gain_mb`` (peak minus resident set before), ``py_mb``
    (tracemalloc peak) and ``rss_how`` (how the resident peak was measured).
    """

    def __init__(self, device: torch.device, python: bool = False):
        self.device, self.python = device, python
        self.cuda_mb = self.rss_mb = self.rss_gain_mb = self.py_mb = None
        self.rss_how = ""

    def __enter__(self) -> "Peak":
        if self.device.type == "cuda":
            sync(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._cuda0 = torch.cuda.memory_allocated(self.device)
        _release_free_memory()
        self._reset = _reset_rss_peak()
        now = _rss_mb()
        self._rss0 = now[0] if now else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if self.python:
            tracemalloc.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.python:
            self.py_mb = tracemalloc.get_traced_memory()[1] / 2 ** 20
            tracemalloc.stop()
        if self.device.type == "cuda":
            sync(self.device)
            self.cuda_mb = (torch.cuda.max_memory_allocated(self.device) - self._cuda0) / 2 ** 20
        now = _rss_mb()
        if self._reset and now:
            self.rss_mb, self.rss_how = now[1], "VmHWM reset before the step"
        else:  # ru_maxrss: KiB on Linux, the process's peak since it started
            self.rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            self.rss_how = "getrusage ru_maxrss (process peak so far)"
        self.rss_gain_mb = self.rss_mb - self._rss0

    def as_dict(self) -> dict[str, Any]:
        return {"cuda_peak_mb": self.cuda_mb, "rss_peak_mb": self.rss_mb,
                "rss_gain_mb": self.rss_gain_mb, "python_peak_mb": self.py_mb}

    def text(self) -> str:
        if self.cuda_mb is not None:
            return f"{self.cuda_mb:.0f} MiB GPU"
        return f"{self.rss_mb:.0f} MiB RSS (+{self.rss_gain_mb:.1f})"


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


# ----------------------------------------------------------------------------- problems


def problems(smoke: bool, device: torch.device, images: int | None = None
             ) -> list[dict[str, Any]]:
    """The two benchmark problems: (name, model, DataBundle on the device, description)."""
    from landscape import build_model, load_dataset
    from landscape.data import DataBundle

    out = []
    mnist = load_dataset("mnist1d", train_subset=256 if smoke else None,
                         test_subset=64 if smoke else None)
    out.append({"name": "cnn1d", "model": build_model("cnn1d", mnist, seed=0),
                "data": mnist.to(device), "what": f"MNIST-1D {len(mnist.train[1])} x 40"})
    n = images or (16 if smoke else 10_000)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, 32, 32, generator=gen)
    y = torch.randint(0, 10, (n,), generator=gen)
    cifar = DataBundle(train=(x, y), test=(x[: n // 10], y[: n // 10]), num_classes=10,
                       name="random-cifar-shaped", spec={"name": "random", "n": n})
    out.append({"name": "resnet20", "model": build_model("resnet20", cifar, seed=0),
                "data": cifar.to(device), "what": f"random {n} x 3x32x32"})
    return out


# ----------------------------------------------------------------------------- surfaces


def bare_forward(model, x: torch.Tensor, device, chunk: int = 8192, reps: int = 5) -> float:
    """Median seconds of one inference-mode forward over ``x`` in ``chunk``-sized pieces."""
    model = model.to(device).eval()
    times = []
    with torch.inference_mode():
        for _ in range(reps + 1):
            t, _ = timed(lambda: [model(x[i:i + chunk]) for i in range(0, len(x), chunk)],
                         device)
            times.append(t)
    return statistics.median(times[1:])  # the first pass pays for lazy initialization


def surface_rows(prob: dict[str, Any], device, grid: int, batch: int) -> list[dict[str, Any]]:
    """The point loop of a surface (an ``Evaluator``, as ``compute_surface`` runs it) in
    plain fp32 and each variant, with speed, error and memory; plus one whole
    ``compute_surface`` call (setup, hashing and the file-less bookkeeping included)."""
    from landscape.directions import random_directions
    from landscape.surface import SurfaceOptions, compute_surface

    model, data = prob["model"], prob["data"]
    x = data.train[0]
    forward = bare_forward(model, x, device)
    dirs = random_directions(model.cpu(), count=2, seed=0)
    axis = np.linspace(-1.0, 1.0, grid)
    coords = [(float(a), float(b)) for a in axis for b in axis]
    variants = [("fp32, one point per forward", 1, {}),
                (f"vmap, {batch} points per forward", batch, {}),
                ("bf16 autocast", 1, {"precision": "bf16"})]
    if x.ndim == 4:
        variants.append(("channels-last", 1, {"channels_last": True}))
    if device.type == "cuda":
        variants.append(("TF32 matmul/conv", 1, {"precision": "tf32"}))
    rows, ref = [], None
    for label, per_forward, kw in variants:
        try:
            seconds, values, peak = _point_loop(model, data, dirs, coords, per_forward, device,
                                                **kw)
        except Exception as exc:  # one variant failing must not stop the benchmark
            rows.append({"model": prob["name"], "variant": label,
                         "error": f"{type(exc).__name__}: {exc}"[:200]})
            continue
        ref = values if ref is None else ref
        err = {k: float(np.nanmax(np.abs(values[k] - ref[k]))) for k in values}
        rows.append({"model": prob["name"], "variant": label, "points": len(coords),
                     "seconds": seconds, "points_per_s": len(coords) / seconds,
                     "point_over_forward": seconds / len(coords) / forward,
                     "forward_ms": forward * 1e3, "max_abs_err": err,
                     "memory": peak.as_dict(), "memory_text": peak.text()})
    with Peak(device) as peak:
        options = SurfaceOptions(progress=False, device=device, batch_points=1)
        seconds, surf = timed(lambda: compute_surface(model, data, dirs, axis, axis,
                                                      options=options), device)
    err = {k: float(np.nanmax(np.abs(surf.metrics[k].reshape(-1) - ref[k]))) for k in ref} \
        if ref is not None else {}
    rows.append({"model": prob["name"], "variant": "compute_surface end to end (fp32)",
                 "points": len(coords), "seconds": seconds,
                 "points_per_s": len(coords) / seconds,
                 "point_over_forward": seconds / len(coords) / forward,
                 "forward_ms": forward * 1e3, "max_abs_err": err, "memory": peak.as_dict(),
                 "memory_text": peak.text()})
    return rows


def _point_loop(model, data, dirs, coords, per_forward: int, device, **options):
    """Seconds for all points (after one warm-up point), their values, and peak memory.
    ``options`` go to the Evaluator (``precision``, ``channels_last``)."""
    from landscape.evaluate import Evaluator

    with Evaluator(model, data, dirs, metrics=("train_loss", "train_acc"), device=device,
                   **options) as ev:
        ev.evaluate_batch(coords[:per_forward])  # warm-up (kernels, cuDNN plans, allocator)

        def loop() -> list[dict[str, float]]:
            out = []
            for k in range(0, len(coords), per_forward):
                block = coords[k:k + per_forward]
                out += ev.evaluate_batch(block) if len(block) > 1 else [ev.evaluate(block[0])]
            return out
        with Peak(device) as peak:
            seconds, results = timed(loop, device)
    values = {m: np.array([r[m] for r in results]) for m in results[0]}
    return seconds, values, peak


# ----------------------------------------------------------------------------- Hessian


def hessian_rows(prob: dict[str, Any], device, products: int) -> list[dict[str, Any]]:
    """Hessian-vector products per second, both ways of computing them."""
    from landscape.curvature import HessianOperator

    rows = []
    model = prob["model"].to(device).eval()
    for method in ("double", "forward"):
        try:
            op = HessianOperator(model, prob["data"].train, hvp=method, device=device)
            v = torch.randn(op.n_params, generator=torch.Generator().manual_seed(0))
            op.hvp(v)  # warm-up (and the kept graph, when it fits)
            with Peak(device) as peak:
                seconds, _ = timed(lambda: [op.hvp(v) for _ in range(products)], device)
            rows.append({"model": prob["name"], "hvp": op.hvp_description,
                         "products": products, "seconds": seconds,
                         "products_per_s": products / seconds, "params": op.n_params,
                         "examples": len(prob["data"].train[1]), "memory": peak.as_dict(),
                         "memory_text": peak.text()})
        except Exception as exc:
            rows.append({"model": prob["name"], "hvp": method,
                         "error": f"{type(exc).__name__}: {exc}"[:200]})
    return rows


# ----------------------------------------------------------------------------- training


def training_rows(prob: dict[str, Any], device, batches: list[int], epochs: int,
                  compile_model: bool) -> list[dict[str, Any]]:
    """Samples/s of landscape.train (last epoch; the first pays for warm-up)."""
    import copy

    from landscape.train import TrainConfig, train

    rows = []
    for compiled in ([False, True] if compile_model else [False]):
        for batch in batches:
            model = copy.deepcopy(prob["model"]).cpu()
            config = TrainConfig(epochs=epochs, batch_size=batch, lr=0.01, device=str(device),
                                 progress=False, eval_every=epochs, checkpoint_every=0,
                                 compile=compiled)
            try:
                with Peak(device) as peak:
                    result = train(model, prob["data"], config)
                # eval_every=epochs: the history has the last epoch only, timed without eval
                rate = result.history[-1]["samples_per_s"]
            except Exception as exc:
                rows.append({"model": prob["name"], "batch": batch, "compiled": compiled,
                             "error": f"{type(exc).__name__}: {exc}"[:200]})
                continue
            rows.append({"model": prob["name"], "batch": batch, "compiled": compiled,
                         "epochs": epochs, "samples_per_s": rate, "seconds": result.seconds,
                         "memory": peak.as_dict(), "memory_text": peak.text()})
    return rows


# ----------------------------------------------------------------------------- report


def print_tables(report: dict[str, Any]) -> None:
    print(f"\ndevice: {report['device_name']} ({report['device']}), torch {report['torch']}"
          f"{', SMOKE sizes' if report['smoke'] else ''}")
    print(f"\n{'surface':44s} {'points/s':>9s} {'pt/fwd':>7s} {'fwd ms':>8s} "
          f"{'max |err| loss':>14s} {'acc':>8s}  memory")
    for r in report["surfaces"]:
        name = f"{r['model']}: {r['variant']}"
        if "error" in r:
            print(f"{name:44s} failed: {r['error']}")
            continue
        e = r["max_abs_err"]
        print(f"{name:44s} {r['points_per_s']:9.2f} {r['point_over_forward']:7.2f} "
              f"{r['forward_ms']:8.2f} {e.get('train_loss', float('nan')):14.2e} "
              f"{e.get('train_acc', float('nan')):8.1e}  {r['memory_text']}")
    print(f"\n{'Hessian-vector products':44s} {'params':>9s} {'examples':>8s} {'Hv/s':>8s}  "
          "memory")
    for r in report["hessian"]:
        name = f"{r['model']}: {r['hvp']}"
        if "error" in r:
            print(f"{name:44s} failed: {r['error']}")
            continue
        print(f"{name:44s} {r['params']:9d} {r['examples']:8d} {r['products_per_s']:8.2f}  "
              f"{r['memory_text']}")
    print(f"\n{'training':44s} {'batch':>9s} {'samples/s':>12s}  memory")
    for r in report["training"]:
        name = f"{r['model']}{' (torch.compile)' if r['compiled'] else ''}"
        if "error" in r:
            print(f"{name:44s} {r['batch']:9d} failed: {r['error']}")
            continue
        print(f"{name:44s} {r['batch']:9d} {r['samples_per_s']:12.0f}  {r['memory_text']}")
    print("\npt/fwd: seconds per grid point / seconds of one bare forward over the same data; "
          "max |err|: largest difference from the fp32 one-point-per-forward surface; memory: "
          "peak during the step (GPU: allocated by torch; CPU: resident set, + gain).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (seconds on a CPU)")
    parser.add_argument("--device", default=None, help="cuda | cpu (default: best)")
    parser.add_argument("--grid", type=int, default=None, help="points per axis (default 6;"
                        " smoke 2)")
    parser.add_argument("--batch-points", type=int, default=16)
    parser.add_argument("--images", type=int, default=None,
                        help="random CIFAR-shaped images for ResNet-20 (default 10000; smoke 16)")
    parser.add_argument("--products", type=int, default=None, help="timed Hessian products")
    parser.add_argument("--compile", action="store_true", help="also train with torch.compile")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's; smoke: 1)")
    parser.add_argument("--out", default="gpu_benchmark.json", help="JSON results file")
    args = parser.parse_args()
    if args.threads or args.smoke:
        torch.set_num_threads(args.threads or 1)

    from landscape._util import pick_device, versions

    device = pick_device(args.device)
    smoke = args.smoke
    grid = args.grid or (2 if smoke else 6)
    products = args.products or (1 if smoke else 10)
    start = time.perf_counter()
    report: dict[str, Any] = {"device": str(device), "device_name": device_name(device),
                              "torch": torch.__version__, "versions": versions(),
                              "smoke": smoke, "grid": grid, "surfaces": [], "hessian": [],
                              "training": []}
    for prob in problems(smoke, device, args.images):
        print(f"== {prob['name']} on {prob['what']} ({device})", file=sys.stderr)
        report["surfaces"] += surface_rows(prob, device, grid,
                                           4 if smoke else args.batch_points)
        report["hessian"] += hessian_rows(prob, device, products)
        batches = [8, 64] if smoke else ([128, 4000] if prob["name"] == "cnn1d"
                                           else [128, 2048])
        report["training"] += training_rows(prob, device, batches, 2, args.compile)
    report["seconds"] = time.perf_counter() - start
    print_tables(report)
    Path(args.out).write_text(json.dumps(report, indent=2, default=str))
    print(f"\n{report['seconds']:.0f} s; wrote {args.out}")


if __name__ == "__main__":
    main()
