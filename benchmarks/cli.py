"""Start-up time of the command line: wall time of ``landscape --help``, ``--version`` and a
command's ``--help`` (each a fresh process), against a bare ``python -c pass`` and an
``import torch`` for scale.

    python benchmarks/cli.py [--repeats N] [--out results.json]

Target: ``landscape --help`` well under 0.5 s on a 2-core machine, which needs the command line
to import torch (and numpy, matplotlib, h5py, scipy, pyvista) only inside the commands that use
them. Not a test: nothing here asserts, it prints measurements (median and best of N runs).
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _landscape() -> list[str]:
    """The installed console script, or the module when it is not on PATH."""
    beside = Path(sys.executable).with_name("landscape")
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("landscape")
    return [found] if found else [sys.executable, "-m", "landscape_cli.main"]


def wall_times(argv: list[str], repeats: int) -> list[float]:
    """Seconds of ``repeats`` fresh runs of ``argv`` (its output discarded)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    """Print one line per command: median and best wall time."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", default=None, help="also write the numbers as JSON")
    args = parser.parse_args()
    cli = _landscape()
    cases = {
        "landscape --help": [*cli, "--help"],
        "landscape --version": [*cli, "--version"],
        "landscape train --help": [*cli, "train", "--help"],
        "landscape surface --help": [*cli, "surface", "--help"],
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import torch'": [sys.executable, "-c", "import torch"],
    }
    results = {}
    print(f"{'command':28s} {'median s':>9s} {'best s':>8s}   ({args.repeats} runs each)")
    for name, argv in cases.items():
        times = wall_times(argv, args.repeats)
        results[name] = {"median_s": statistics.median(times), "best_s": min(times)}
        print(f"{name:28s} {results[name]['median_s']:9.3f} {results[name]['best_s']:8.3f}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
