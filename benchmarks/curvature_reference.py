"""The GGN, Fisher and empirical Fisher of landscape against an independent implementation.

    PYTHONPATH=/path/to/curvlinops python benchmarks/curvature_reference.py CKPT \
        [--top-k 5] [--trace-products 60] [--threads 1] [--out reference.json]
    python benchmarks/curvature_reference.py CKPT --demo-cost [--quick]

The reference is curvlinops (``curvlinops-for-pytorch``), which the package does not depend
on: installed anywhere on ``PYTHONPATH`` it is used, else the script says so in one line and
exits. For a cross-entropy checkpoint (e.g. the demo's small-batch minimum) it compares on the
whole training split, eval mode:

* the top-k eigenvalues of landscape's ``ggn``, ``fisher`` (exact) and ``empirical-fisher``
  operators (scipy eigsh at tol 1e-6, as ``landscape hessian`` runs it) with eigsh at the same
  tolerance on curvlinops' ``GGNLinearOperator`` (for cross-entropy the exact Fisher *is* the
  GGN, so both of ours are checked against it) and ``EFLinearOperator``;
* the traces: landscape's Hutch++ (with its standard error) and curvlinops' ``hutchpp_trace``
  with the same number of products, both against the exact trace computed here from the
  per-example Jacobians (``torch.func``, neither library's code): ``tr(J^T Q J) = sum_n
  <Q_n, J_n J_n^T> / N`` with ``Q_n = diag(p_n) - p_n p_n^T`` (GGN and Fisher) or
  ``g_n g_n^T`` (empirical Fisher, ``g_n = p_n - onehot(y_n)``).

``--demo-cost`` (no curvlinops needed) times instead, in CPU seconds and products, the
demo's curvature step on the checkpoint (``compare``'s default settings, or ``--quick``'s:
top and bottom eigenvalues, trace, density) against the GGN top eigenvalue the demo's report
adds beside it.

Not a test: it prints a table and the largest relative differences.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from typing import Any

import numpy as np
import torch


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def exact_traces(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                 chunk: int = 100) -> dict[str, float]:
    """Exact traces of the GGN (= Fisher for cross-entropy) and of the empirical Fisher of
    the mean cross-entropy, from per-example Jacobians of the logits (float64 sums)."""
    from torch.func import functional_call, jacrev, vmap

    params = {k: v.detach() for k, v in model.named_parameters()}

    def logits_of(p: dict[str, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
        return functional_call(model, p, (xi[None],))[0]

    ggn = ef = 0.0
    for start in range(0, len(y), chunk):
        xc, yc = x[start:start + chunk], y[start:start + chunk]
        jac = vmap(jacrev(logits_of), in_dims=(None, 0))(params, xc)
        flat = torch.cat([j.reshape(len(yc), j.shape[1], -1) for j in jac.values()], dim=-1)
        gram = (flat @ flat.transpose(1, 2)).double()  # (n, C, C): J_n J_n^T
        with torch.no_grad():
            p = torch.softmax(model(xc), dim=-1).double()
        q = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
        g = p - torch.nn.functional.one_hot(yc, p.shape[1]).double()
        ggn += float((q * gram).sum())
        ef += float(torch.einsum("nc,ncd,nd->", g, gram, g))
    return {"ggn": ggn / len(y), "empirical-fisher": ef / len(y)}


def ours(model, data, kind: str, top_k: int, trace_products: int) -> dict[str, Any]:
    """landscape's top eigenvalues and Hutch++ trace of one matrix, with products and CPU."""
    from landscape.curvature import HessianOptions, hessian_eigenvalues, hessian_trace

    options = HessianOptions(curvature=kind, progress=False)
    t0 = _cpu()
    eig = hessian_eigenvalues(model, data, k=top_k, options=options)
    t1 = _cpu()
    trace = hessian_trace(model, data, n_products=trace_products, options=options)
    return {"top": sorted(eig.values.tolist(), reverse=True), "eig_products": eig.n_products,
            "eig_cpu": t1 - t0, "trace": trace.estimate, "trace_stderr": trace.stderr,
            "trace_cpu": _cpu() - t1}


def reference(model, x, y, kind: str, top_k: int, trace_products: int,
              chunk: int = 1024) -> dict[str, Any]:
    """curvlinops' top eigenvalues (scipy eigsh on its operator, tol 1e-6) and Hutch++ trace."""
    from curvlinops import EFLinearOperator, GGNLinearOperator, hutchpp_trace
    from scipy.sparse.linalg import eigsh

    cls = EFLinearOperator if kind == "empirical-fisher" else GGNLinearOperator
    batches = [(x[i:i + chunk], y[i:i + chunk]) for i in range(0, len(y), chunk)]
    params = [p for p in model.parameters() if p.requires_grad]
    op = cls(model, torch.nn.CrossEntropyLoss(), params, batches)
    t0 = _cpu()
    vals = eigsh(op.to_scipy(dtype=np.float64), k=top_k, which="LA", tol=1e-6,
                 v0=np.random.default_rng(0).standard_normal(op.shape[0]),
                 return_eigenvectors=False)
    t1 = _cpu()
    torch.manual_seed(0)
    trace = float(hutchpp_trace(op, trace_products))
    return {"top": sorted(vals.tolist(), reverse=True), "eig_cpu": t1 - t0, "trace": trace,
            "trace_cpu": _cpu() - t1}


def demo_cost(model, data, quick: bool) -> None:
    """Print the CPU seconds and products of compare's curvature step and of its GGN top
    eigenvalue (``landscape.workflows.measurements``' settings) on one model."""
    from landscape.curvature import (HessianOptions, hessian_density, hessian_eigenvalues,
                                     hessian_trace)
    from landscape.workflows.config import CompareConfig

    c = CompareConfig.quick() if quick else CompareConfig()
    opts = dict(seed=c.seed, options=HessianOptions(progress=False))
    t0 = _cpu()
    eig = hessian_eigenvalues(model, data, k=c.top_k, which="both", k_smallest=1, **opts)
    trace = hessian_trace(model, data, n_products=c.trace_products, **opts)
    hessian_density(model, data, n_probes=c.density_probes, n_steps=c.density_steps, **opts)
    t1 = _cpu()
    ggn = hessian_eigenvalues(model, data, k=1, seed=c.seed,
                              options=HessianOptions(progress=False, curvature="ggn"))
    t2 = _cpu()
    products = eig.n_products + trace.n_products + c.density_probes * c.density_steps
    print(f"{'quick' if quick else 'default'} settings: curvature step (top {c.top_k} and "
          f"bottom 1, trace {c.trace_products}, density {c.density_probes} x "
          f"{c.density_steps}): about {products} products, {t1 - t0:.1f} CPU s; Hessian top "
          f"{eig.values[-1]:.6g}")
    print(f"GGN top {ggn.values[-1]:.6g} (residual {ggn.residuals[-1]:.1e}): "
          f"{ggn.n_products} products, {t2 - t1:.1f} CPU s ({(t2 - t1) / (t1 - t0):.1%} of "
          "the curvature step)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--trace-products", type=int, default=60)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None)
    parser.add_argument("--demo-cost", action="store_true",
                        help="time the demo's curvature step and its GGN top eigenvalue")
    parser.add_argument("--quick", action="store_true", help="with --demo-cost: quick settings")
    args = parser.parse_args()
    if args.demo_cost:
        from landscape.checkpoint import load_checkpoint
        from landscape.data import load_dataset

        if args.threads:
            torch.set_num_threads(args.threads)
        model, info = load_checkpoint(args.checkpoint)
        demo_cost(model, load_dataset(**info["dataset"]).train, args.quick)
        return
    if importlib.util.find_spec("curvlinops") is None:
        print("curvlinops is not installed (pip install --target DIR curvlinops-for-pytorch, "
              "then PYTHONPATH=DIR): nothing compared")
        sys.exit(1)
    if args.threads:
        torch.set_num_threads(args.threads)
    from landscape.checkpoint import load_checkpoint
    from landscape.data import load_dataset

    model, info = load_checkpoint(args.checkpoint)
    model.eval()
    x, y = load_dataset(**info["dataset"]).train
    t0 = _cpu()
    exact = exact_traces(model, x, y)
    rows = {"exact_traces": exact, "exact_traces_cpu": _cpu() - t0}
    for kind in ("ggn", "fisher", "empirical-fisher"):
        ref_kind = "empirical-fisher" if kind == "empirical-fisher" else "ggn"
        a = ours(model, (x, y), kind, args.top_k, args.trace_products)
        b = rows.get(f"curvlinops {ref_kind}") or reference(model, x, y, ref_kind, args.top_k,
                                                            args.trace_products)
        rows[f"landscape {kind}"], rows[f"curvlinops {ref_kind}"] = a, b
        top_diff = max(abs(u - v) / abs(v) for u, v in zip(a["top"], b["top"]))
        print(f"{kind:>16}: top {', '.join(f'{v:.6g}' for v in a['top'])}")
        print(f"{'curvlinops':>16}: top {', '.join(f'{v:.6g}' for v in b['top'])}  "
              f"(largest relative difference {top_diff:.1e})")
        print(f"{'':>16}  trace: landscape {a['trace']:.5g} +- {a['trace_stderr']:.2g}, "
              f"curvlinops {b['trace']:.5g}, exact {exact[ref_kind]:.5g}  (relative to exact: "
              f"{abs(a['trace'] / exact[ref_kind] - 1):.1e} and "
              f"{abs(b['trace'] / exact[ref_kind] - 1):.1e})")
        print(f"{'':>16}  CPU s: eigenvalues {a['eig_cpu']:.1f} ({a['eig_products']} products)"
              f" vs {b['eig_cpu']:.1f}; trace {a['trace_cpu']:.1f} vs {b['trace_cpu']:.1f}")
        rows[f"{kind} top relative difference"] = top_diff
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(rows, fh, indent=1)
    print(f"exact traces from per-example Jacobians: {rows['exact_traces_cpu']:.1f} CPU s; "
          f"total {time.process_time():.0f} CPU s in this process")


if __name__ == "__main__":
    main()
