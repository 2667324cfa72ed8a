"""Distributed surfaces and Hessian products on 2 CPU processes with Gloo.

Launches, each a few seconds:

* ``gloo_run``: this file run as a script by two processes (RANK/WORLD_SIZE/MASTER_* set by
  hand, as torchrun would): a sharded Hessian-vector product, an eigensolver driven by rank 0
  over ``DistributedHessianOperator``, error propagation, ranks given different inputs, and a
  distributed surface during which rank 1 dies (it exits inside its loss after 3 points);
  the test process then finishes that file with one process (world size 2 -> 1).
* ``torchrun --nproc-per-node 2 -m landscape surface --resume`` on a file a single process
  left half done (world size 1 -> 2), compared with the single-process file.
* ``torchrun --nproc-per-node 2 -m landscape hessian`` compared with a single-process run.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

HERE = Path(__file__).resolve()
ROOT = HERE.parents[2]
GRID = np.linspace(-1.0, 1.0, 5)
KILL_AFTER = 3  # rank 1 exits while computing its 4th point


# ----------------------------------------------------------------------------- shared setup

def tiny_setup():
    """The same small problem in every process."""
    from landscape import build_model, load_dataset, random_directions

    bundle = load_dataset("mnist1d", train_subset=128, test_subset=64)
    model = build_model("mlp", bundle, width=8, depth=1, seed=0)
    return bundle, model, random_directions(model, count=2, seed=0)


def xent(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy; in the Gloo run, rank 1 dies inside it after KILL_AFTER calls."""
    if os.environ.get("KILL_RANK") == os.environ.get("RANK", "-"):
        xent.calls = getattr(xent, "calls", 0) + 1
        if xent.calls > KILL_AFTER:
            os._exit(17)
    return torch.nn.functional.cross_entropy(out, y)


def hessian_problem():
    """A float64 MLP and 127 examples (shards of 63 and 64: weights matter)."""
    bundle, model, _ = tiny_setup()
    x, y = bundle.train
    vector = torch.randn(sum(p.numel() for p in model.parameters()),
                         generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return model.double(), (x[:127].double(), y[:127]), vector


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT",
                "KILL_RANK"):
        env.pop(key, None)
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_thread():
    """Context: torch on one thread (the children's setting), restored afterwards."""
    class Scope:
        def __enter__(self):
            self.threads = torch.get_num_threads()
            torch.set_num_threads(1)

        def __exit__(self, *exc):
            torch.set_num_threads(self.threads)
    return Scope()


# ----------------------------------------------------------------------------- the Gloo worker

def worker(out_dir: Path) -> None:
    """Run by each of the two processes (``python test_distributed.py OUT``)."""
    import scipy.sparse.linalg as sla

    from landscape.distributed import (DistributedError, PeerError, init_distributed,
                                       run_on_main, shutdown)
    from landscape.hessian import (DistributedHessian, serve_hessian_products,
                                   sharded_hessian_vector_product)
    from landscape.surface import SurfaceOptions, compute_surface
    from landscape.errors import LandscapeError

    ctx = init_distributed("cpu", timeout=60)
    report: dict = {"rank": ctx.rank, "world_size": ctx.world_size, "backend": ctx.backend}
    model, data, vector = hessian_problem()
    # 1. a collective product: rank 1 passes another vector, rank 0's is used
    hv = sharded_hessian_vector_product(model, data, vector if ctx.is_main else -vector,
                                        chunk=50, context=ctx)
    np.save(out_dir / f"hv{ctx.rank}.npy", hv.numpy())
    # 2. rank 0 drives scipy's eigsh and a loss-and-gradient pass; rank 1 serves
    if ctx.is_main:
        with DistributedHessian(ctx) as make:
            op = make(model, data, chunk=50)
            loss, grad = op.loss_and_grad()
            vals = sla.eigsh(op, k=3, which="LA", tol=1e-10,
                             v0=np.random.default_rng(0).standard_normal(op.n_params),
                             return_eigenvectors=False)
            op.close()
            # a second operator (as hessian_trace after hessian_eigenvalues would make)
            second = make(model, data, chunk=None, hvp="forward")
            np.save(out_dir / "hv_second.npy", second.hvp(vector).numpy())
            second.close()
        np.save(out_dir / "grad.npy", grad.numpy())
        report.update(loss=loss, eig=sorted(vals.tolist()), products=op.n_products)
    else:
        report["served"] = serve_hessian_products(model, data, ctx)
    # 3. an error on rank 0 reaches every rank
    try:
        run_on_main(ctx, lambda: (_ for _ in ()).throw(LandscapeError("no such file")))
    except PeerError as exc:
        report["peer_error"] = str(exc)
    except LandscapeError as exc:
        report["main_error"] = str(exc)
    # 4. ranks given different directions refuse to start
    bundle, model, dirs = tiny_setup()
    if ctx.rank == 1:
        dirs = [{n: -t for n, t in d.items()} for d in dirs]
    try:
        compute_surface(model, bundle, dirs, GRID, GRID, options=SurfaceOptions(progress=False),
                        out=out_dir / "bad.h5", context=ctx)
    except DistributedError as exc:
        report["mismatch"] = str(exc)
    report["bad_file_exists"] = (out_dir / "bad.h5").exists()
    (out_dir / f"report{ctx.rank}.json").write_text(json.dumps(report))
    # 5. a surface during which rank 1 dies
    _, model, dirs = tiny_setup()
    os.environ["KILL_RANK"] = "1"
    try:
        compute_surface(model, bundle, dirs, GRID, GRID,
                        options=SurfaceOptions(metrics=("train_loss", "train_acc"), loss=xent,
                                               checkpoint_seconds=0, progress=False),
                        out=out_dir / "s.h5", context=ctx)
        report["surface"] = "finished"
    except DistributedError as exc:
        report["surface"] = str(exc)
    (out_dir / f"report{ctx.rank}.json").write_text(json.dumps(report))
    shutdown(ctx)


@pytest.fixture(scope="module")
def gloo_run(tmp_path_factory):
    """Two Gloo processes running ``worker``; their reports and files."""
    out = tmp_path_factory.mktemp("gloo")
    tiny_setup()  # generates and caches MNIST-1D once, for both children
    port = str(_free_port())
    procs = [subprocess.Popen([sys.executable, str(HERE), str(out)], cwd=ROOT,
                              env=_env(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2",
                                       MASTER_ADDR="127.0.0.1", MASTER_PORT=port),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r in range(2)]
    logs = [p.communicate(timeout=120)[0] for p in procs]
    codes = [p.returncode for p in procs]
    assert codes == [0, 17], f"exit codes {codes}\n" + "\n".join(logs)
    reports = [json.loads((out / f"report{r}.json").read_text()) for r in range(2)]
    return out, reports[0], reports[1]


# ----------------------------------------------------------------------------- Hessian

def test_sharded_product_equals_single_process_product(gloo_run):
    from landscape.hessian import hessian_vector_product

    out, report, _ = gloo_run
    assert report["world_size"] == 2 and report["backend"] == "gloo"
    model, data, vector = hessian_problem()
    ref = hessian_vector_product(model, data, vector, chunk=50).numpy()
    hv0, hv1 = np.load(out / "hv0.npy"), np.load(out / "hv1.npy")
    assert np.array_equal(hv0, hv1)  # every rank gets the same product
    # float64: the sum over shards differs from the one-process sum only by rounding
    np.testing.assert_allclose(hv0, ref, rtol=0, atol=1e-12 * np.abs(ref).max())
    # rank 0's second operator (one chunk per shard, forward-over-reverse) agrees too
    np.testing.assert_allclose(np.load(out / "hv_second.npy"), ref, rtol=0,
                               atol=1e-12 * np.abs(ref).max())
    assert gloo_run[2]["served"] == 2
    # an unweighted average of the two shards' products would be off by far more
    assert np.abs(ref).max() > 1e-3


def test_rank0_drives_eigsh_over_shards(gloo_run):
    from landscape.hessian import HessianOperator, dense_hessian

    out, report, _ = gloo_run
    model, data, _ = hessian_problem()
    exact = torch.linalg.eigvalsh(dense_hessian(model, data)).numpy()[-3:]
    np.testing.assert_allclose(report["eig"], exact, rtol=1e-8)
    loss, grad = HessianOperator(model, data, chunk=50).loss_and_grad()
    assert report["loss"] == pytest.approx(loss, rel=1e-13)
    np.testing.assert_allclose(np.load(out / "grad.npy"), grad.numpy(), rtol=0,
                               atol=1e-13 * float(grad.abs().max()))
    assert report["products"] >= 3


def test_errors_on_rank0_and_mismatched_inputs_reach_every_rank(gloo_run):
    _, report, other = gloo_run
    assert report["main_error"] == "no such file"
    assert other["peer_error"] == "rank 0 stopped: no such file"
    for r in (report, other):  # every rank refuses, naming the rank and what differs
        assert "rank 1 differs from rank 0 in directions_sha256" in r["mismatch"]
    assert report["bad_file_exists"] is False


# ----------------------------------------------------------------------------- surfaces

def _reference(**settings):
    from landscape import SurfaceOptions, compute_surface

    bundle, model, dirs = tiny_setup()
    with _one_thread():
        return compute_surface(model, bundle, dirs, GRID, GRID,
                               options=SurfaceOptions(progress=False, device="cpu", **settings))


def test_dead_rank_is_named_and_saved_points_resume_on_one_process(gloo_run, tmp_path):
    from landscape import SurfaceOptions, compute_surface
    from landscape.store import load_surface

    out, report, _ = gloo_run
    # rank 0 computed points 0, 2, 4, 6 (the 4th before the failed exchange), rank 1 sent
    # 1, 3, 5 and died computing 7
    assert report["surface"].startswith("rank 1 stopped before the exchange of results")
    assert "7 of 25 points are saved" in report["surface"]
    partial = load_surface(out / "s.h5")
    assert np.flatnonzero(partial.done).tolist() == list(range(7))
    assert partial.provenance["distributed"] == {"world_size": 2, "backend": "gloo",
                                                 "device": "cpu"}
    ref = _reference(loss=xent, metrics=("train_loss", "train_acc"))
    for name in ref.metrics:
        assert np.array_equal(partial.metrics[name][partial.done],
                              ref.metrics[name][partial.done])
    # finish with one process: only the 18 missing points are computed
    path = tmp_path / "s.h5"
    shutil.copy(out / "s.h5", path)
    bundle, model, dirs = tiny_setup()
    with _one_thread():
        done = compute_surface(model, bundle, dirs, GRID, GRID,
                               options=SurfaceOptions(loss=xent, progress=False, device="cpu"),
                               out=path, resume=True)
    assert done.complete and load_surface(path).provenance["runs"] == 2
    for name in ref.metrics:
        assert np.array_equal(done.metrics[name], ref.metrics[name]), name


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A checkpoint of a tiny MLP with BatchNorm trained for 2 epochs."""
    from landscape import TrainConfig, build_model, load_dataset, train

    bundle = load_dataset("mnist1d", train_subset=128, test_subset=64)
    model = build_model("mlp", bundle, width=8, depth=1, batchnorm=True)
    out = tmp_path_factory.mktemp("run") / "run"
    train(model, bundle, TrainConfig(epochs=2, batch_size=32, progress=False), out_dir=out)
    return out / "model.pt"


def test_torchrun_resumes_a_single_process_file_bit_identically(trained, tmp_path):
    from click.testing import CliRunner

    from landscape_cli.main import cli
    from landscape.store import load_surface, save_surface

    args = ["surface", str(trained), "--x=-1:1:5", "--y=-1:1:5", "--metrics",
            "train_loss,test_acc", "--quiet"]
    with _one_thread():
        result = CliRunner().invoke(cli, args + ["--out", str(tmp_path / "ref.h5")])
    assert result.exit_code == 0, result.output
    ref = load_surface(tmp_path / "ref.h5")
    # a file a single process left with 9 of 25 points
    part = dataclasses.replace(ref, done=ref.done.copy(),
                               metrics={k: v.copy() for k, v in ref.metrics.items()})
    part.done.reshape(-1)[9:] = False
    for values in part.metrics.values():
        values.reshape(-1)[9:] = np.nan
    save_surface(tmp_path / "d.h5", part)
    shutil.copy(tmp_path / "ref.directions.h5", tmp_path / "d.directions.h5")
    torchrun = [sys.executable, "-m", "torch.distributed.run"]  # what .venv/bin/torchrun runs
    run = subprocess.run([*torchrun, "--nproc-per-node", "2", "--master-port",
                          str(_free_port()), "-m", "landscape", *args,
                          "--out", str(tmp_path / "d.h5"), "--resume"],
                         cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("25/25 points") == 1  # rank 0 alone prints
    assert run.stderr.count("cosine between the directions") == 1
    got = load_surface(tmp_path / "d.h5")
    assert got.complete and np.array_equal(got.done, ref.done)
    for name in ref.metrics:
        assert np.array_equal(got.metrics[name], ref.metrics[name]), name
    assert got.provenance["distributed"]["world_size"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "d.directions.h5", "d.h5", "ref.directions.h5", "ref.h5"]


def test_torchrun_hessian_equals_single_process(trained, tmp_path):
    """``landscape hessian`` under torchrun: rank 0 drives the solvers over both ranks' shards
    and alone prints and writes the JSON; the numbers are the single process's."""
    from click.testing import CliRunner

    from landscape_cli.main import cli

    args = ["hessian", str(trained), "--top-k", "2", "--trace", "--trace-products", "12",
            "--quiet"]
    with _one_thread():
        result = CliRunner().invoke(cli, args + ["--out", str(tmp_path / "ref.json")])
    assert result.exit_code == 0, result.output
    ref = json.loads((tmp_path / "ref.json").read_text())
    torchrun = [sys.executable, "-m", "torch.distributed.run"]
    run = subprocess.run([*torchrun, "--nproc-per-node", "2", "--master-port",
                          str(_free_port()), "-m", "landscape", *args, "--out", "x.json"],
                         cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("eigenvalue") == 1 and run.stdout.count("trace ") == 1
    assert run.stderr.count("wrote x.json") == 1 and "2 ranks" in run.stderr
    got = json.loads((tmp_path / "x.json").read_text())
    assert got["provenance"]["distributed"] == {"world_size": 2, "backend": "gloo"}
    # float32 products: the shards' sum differs from the one-process sum by rounding only
    np.testing.assert_allclose(got["eigenvalues"]["values"], ref["eigenvalues"]["values"],
                               rtol=1e-6)
    assert got["trace"]["estimate"] == pytest.approx(ref["trace"]["estimate"], rel=1e-6)
    assert got["trace"]["n_products"] == 12 and got["eigenvalues"]["n_products"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref.json", "x.json"]


def test_torchrun_environment_parsing():
    from landscape.distributed import (DistributedError, init_distributed, is_main_process,
                                       torchrun_environment)
    from landscape.hessian import shard_range

    assert torchrun_environment({}) is None
    assert torchrun_environment({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == {
        "rank": 3, "world_size": 4, "local_rank": 1}
    assert not is_main_process({"RANK": "1", "WORLD_SIZE": "2"})
    assert is_main_process({})
    for bad in ({"RANK": "2", "WORLD_SIZE": "2"}, {"RANK": "x", "WORLD_SIZE": "2"}):
        with pytest.raises(DistributedError):
            torchrun_environment(bad)
    if "RANK" not in os.environ:
        assert init_distributed("cpu") is None  # a plain process stays single
    assert [shard_range(10, r, 3) for r in range(3)] == [(0, 3), (3, 6), (6, 10)]


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
