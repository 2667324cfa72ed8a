"""Where a Hessian run's resident memory goes beyond its tensors: the C heap.

One model, one chunk of generated inputs, three Hessian-vector products with the gradient
graph kept (as ``landscape hessian`` makes them). Printed: the products' part of
``hessian_memory``'s estimate, the traced peak of the tensors torch made (``TensorPeak``),
the resident set's growth, and the seconds. ``--mmap-threshold 1M`` pins glibc's mmap
threshold first (blocks from that size are mapped and unmapped one by one instead of being
kept in the heap): the resident set then follows the tensors, at a cost in time.

    OMP_NUM_THREADS=1 python benchmarks/allocator.py --examples 256
    OMP_NUM_THREADS=1 python benchmarks/allocator.py --examples 256 --mmap-threshold 1M

Not a test: it prints measurements (CPU only).
"""
from __future__ import annotations

import argparse
import ctypes
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def _gpu_helpers():
    spec = importlib.util.spec_from_file_location("bench_gpu", HERE / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    from landscape import build_model
    from landscape.curvature.hessian import HessianOperator
    from landscape.curvature.memory import HessianPlan, hessian_memory
    from landscape.curvature.options import HessianOptions
    from landscape.util.memory import TensorPeak, parse_bytes

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--examples", type=int, default=256)
    ap.add_argument("--products", type=int, default=3)
    ap.add_argument("--mmap-threshold", default=None,
                    help="pin glibc's mmap threshold (e.g. 1M) before anything is allocated")
    args = ap.parse_args()
    if args.mmap_threshold:
        libc = ctypes.CDLL("libc.so.6")
        if not libc.mallopt(M_MMAP_THRESHOLD, parse_bytes(args.mmap_threshold)):
            sys.exit("mallopt refused the threshold")
    gpu = _gpu_helpers()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model(args.model, input_shape=(3, 32, 32), num_classes=10).eval()
    x = torch.randn(args.examples, 3, 32, 32)
    y = torch.randint(0, 10, (args.examples,))
    o = HessianOptions(chunk=args.examples)
    est = hessian_memory(model, (x, y), HessianPlan(top_k=0, trace_products=12), o)
    op = HessianOperator(model, (x, y), o.loss, chunk=o.chunk)
    v = np.random.default_rng(0).standard_normal(op.n_params)
    with gpu.Peak(torch.device("cpu")) as peak, TensorPeak() as tensors:
        start = time.perf_counter()
        for _ in range(args.products):
            op.matvec(v)
        seconds = time.perf_counter() - start
    mib = 2 ** 20
    print(f"{args.model}, {args.examples} examples, {args.products} products in {seconds:.1f} s "
          f"(mmap threshold {args.mmap_threshold or 'glibc default'}): estimate of the "
          f"products {est.added['products'] / mib:,.0f} MiB, traced tensors "
          f"{tensors.peak / mib:,.0f} MiB, resident set +{peak.rss_gain_mb:,.0f} MiB")


if __name__ == "__main__":
    main()
