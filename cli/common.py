"""Shared pieces of the command line: error handling, common options, range parsing."""
from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import click

# Nothing of `landscape` (torch) is imported here: `--help` and `--version` answer at once, and
# each command imports what it uses in its body.


MAX_POINTS = 10_000_000
"""Most points of a grid or path (``landscape.grid.MAX_POINTS``, not imported here)."""
MAX_PLANE_SIDE = 3_162
"""Most points a side of a square plane (``MAX_POINTS`` in all)."""
MAX_EPOCHS = 1_000_000
"""Most epochs (or steps of training) an option may ask for."""
MAX_STEPS = 1_000_000_000
"""Most optimizer steps an option may ask for."""
MAX_COUNT = 100_000
"""Most of any other count of work (products, probes, samples, levels, iterations)."""


def user_error(message: str) -> Exception:
    """A ``LandscapeError`` (one line on stderr, non-zero exit), imported only when raised."""
    from landscape.errors import LandscapeError

    return LandscapeError(message)


def _is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a ``LandscapeError``, without importing ``landscape`` to ask: if
    ``landscape.errors`` was never imported, nothing can have raised one."""
    errors = sys.modules.get("landscape.errors")
    return errors is not None and isinstance(exc, errors.LandscapeError)


class LandscapeGroup(click.Group):
    """A click group that turns user errors into one line on stderr and a non-zero exit."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["landscape.argv"] = list(args)
        return super().parse_args(ctx, args)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        name, cmd, rest = super().resolve_command(ctx, args)
        if cmd is not None and cmd.callback is not None \
                and not getattr(cmd.callback, "records_command_line", False):
            cmd.callback = _recording_command_line(cmd.callback)
        return name, cmd, rest

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with sigterm_as_interrupt():
                return super().invoke(ctx)
        except OSError as exc:
            text = f"{exc.strerror}: {exc.filename}" if exc.filename and exc.strerror else str(exc)
            raise click.ClickException(text) from None
        except MemoryError:
            raise click.ClickException("not enough memory for this request (a smaller grid, "
                                       "figure size or subset?)") from None
        except KeyboardInterrupt as exc:
            click.echo("interrupted: work saved so far is kept (surface commands continue with "
                       "--resume)", err=True)
            sys.exit(interrupt_status(exc))
        except Exception as exc:
            if not _is_user_error(exc):
                raise
            raise click.ClickException(str(exc)) from None


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is as Ctrl-C's KeyboardInterrupt is: every command
    cleans up, saves and releases its locks alike, and says how to continue."""


def _terminate(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the saving short
    raise Terminated()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises ``Terminated`` (a KeyboardInterrupt) in the main
    thread; the previous handler comes back after it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def interrupt_status(exc: BaseException) -> int:
    """The exit status of an interrupted command: 143 after SIGTERM, 130 after Ctrl-C."""
    return 128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)


def _recording_command_line(callback: Callable) -> Callable:
    """``callback`` run with the command line recorded for provenance. Set when the command
    runs, not when the group dispatches: `landscape CMD --help` must not import `landscape`."""
    @functools.wraps(callback)
    def wrapper(*args, **kwargs):
        import shlex

        from landscape.util import COMMAND_LINE

        argv = click.get_current_context().meta.get("landscape.argv", [])
        token = COMMAND_LINE.set(" ".join(["landscape", *map(shlex.quote, argv)]))
        try:
            return callback(*args, **kwargs)
        finally:
            COMMAND_LINE.reset(token)
    wrapper.records_command_line = True
    return wrapper


def dataset_options(func: Callable) -> Callable:
    """--dataset, --data-root, --train-subset, --test-subset, --data-seed."""
    options = [
        click.option("--dataset", default=None, show_default="mnist1d, or the checkpoint's",
                     help="mnist1d | mnist | fashion-mnist | cifar10 | cifar100 | "
                          "modular-<op>-<p>[-<fraction>] | module:function"),
        click.option("--data-root", type=click.Path(file_okay=False), default=None,
                     help="Folder holding torchvision datasets (never downloaded)."),
        click.option("--train-subset", type=click.IntRange(min=1), default=None,
                     help="Use this many training examples (fixed by --data-seed)."),
        click.option("--test-subset", type=click.IntRange(min=1), default=None,
                     help="Use this many test examples (fixed by --data-seed)."),
        click.option("--data-seed", type=int, default=None,
                     help="Seed of dataset generation and subsets.  [default: 0]"),
    ]
    for opt in reversed(options):
        func = opt(func)
    return func


def device_option(func: Callable) -> Callable:
    """--device."""
    return click.option("--device", default=None,
                        help="cuda | mps | cpu (default: best available).")(func)


def code_options(func: Callable) -> Callable:
    """--model and --trust-code: what code a loaded checkpoint may run (``load_checkpoint``
    inside the command follows them)."""
    @click.option("--model", "model_override", default=None, metavar="NAME|module:function",
                  help="Build the checkpoint's model with this registered name or "
                       "module:function / file.py:function instead of the one it names "
                       "(runs that code; the checkpoint's options and seed are kept).")
    @click.option("--trust-code", is_flag=True,
                  help="Let the checkpoint import and run the module:function or file it "
                       "names for its model or dataset (off: such a checkpoint is refused).")
    @functools.wraps(func)
    def wrapper(*args, model_override=None, trust_code=False, **kwargs):
        from landscape.checkpoint import trusted_code

        with trusted_code(trust_code, model_override):
            return func(*args, **kwargs)
    return wrapper


def main_output_lock(path: str | os.PathLike | None):
    """``landscape.util.output_lock(path)`` in the process that writes (rank 0 under
    torchrun, the only process otherwise); a no-op context elsewhere or without a path."""
    import contextlib

    from landscape.util import output_lock
    from landscape.distributed import is_main_process

    if path is None or not is_main_process():
        return contextlib.nullcontext()
    return output_lock(path)


def guard_output(out: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = (),
                 force: bool = False, option: str = "--out") -> None:
    """Refuse an output that is one of the command's inputs (always), that is a folder, or
    that exists when ``force`` is off; before any work is done.

    Raises:
        LandscapeError: one line naming the file and what to do.
    """
    path = Path(out)
    for src in inputs:
        if src is None:
            continue
        same = (path.exists() and Path(src).exists() and os.path.samefile(path, src)) or \
            path.resolve() == Path(src).resolve()
        if same:
            raise user_error(f"{option} {str(out)!r} is an input of this command; write the "
                                 "result to another file")
    if path.is_dir():
        raise user_error(f"{option} {str(out)!r} is a folder, not a file")
    if path.exists() and not force:
        raise user_error(f"{str(out)!r} already exists: overwrite it with --force or write "
                             "to another file")


def bundle_from(dataset: str | None, data_root: str | None, train_subset: int | None,
                test_subset: int | None, data_seed: int | None, like: dict | None = None):
    """Load the dataset named by the options, defaulting to the spec stored in a checkpoint."""
    from landscape.checkpoint import check_dataset_code
    from landscape.data import load_dataset

    spec = dict(like or {"name": "mnist1d"})
    if dataset is not None and dataset != spec.get("name"):
        spec = {"name": dataset}
    elif dataset is None and like is not None:
        check_dataset_code(spec, "If you trust it, pass --trust-code, or name the dataset "
                                 "with --dataset")
    for key, value in (("root", data_root), ("train_subset", train_subset),
                       ("test_subset", test_subset), ("seed", data_seed)):
        if value is not None:
            spec[key] = value
    return load_dataset(**spec)


SURFACE_SUFFIXES = (".h5", ".hdf5")
"""Names a surface file may have: it is HDF5 whatever it is called."""


def surface_out_callback(ctx: click.Context, param: click.Parameter, value: str | None
                         ) -> str | None:
    """Click callback of a surface ``--out``: refuse a name that is not ``.h5``/``.hdf5``
    (``--out s.png`` wrote HDF5 under an image's name)."""
    if value is not None and Path(value).suffix.lower() not in SURFACE_SUFFIXES:
        raise click.BadParameter(f"{value!r}: a surface file is HDF5; name it .h5 or .hdf5 "
                                 "(figures come from `landscape plot`)")
    return value


def split_names(values: tuple[str, ...] | str | None, count: int | None = None,
                option: str = "--labels") -> list[str] | None:
    """Names from a repeatable option: given once, split at commas (``\\,`` is a comma inside
    a name); given several times, one name each, commas and all.

    Raises:
        click.BadParameter: ``count`` names were needed and another number was given.
    """
    if isinstance(values, str):
        values = (values,)
    if not values:
        return None
    if len(values) == 1:
        parts = values[0].replace("\\,", "\0").split(",")
        names = [part.replace("\0", ",").strip() for part in parts]
    else:
        names = [value.strip() for value in values]
    if count is not None and len(names) != count:
        raise click.BadParameter(f"{len(names)} labels for {count} inputs (give one each: "
                                 f"separated by commas, or {option} once per label; a comma "
                                 "inside a label is written \\,)", param_hint=option)
    return names


def parse_batch(value: str) -> int | str:
    """A batch size option: a positive integer or ``full``."""
    if value == "full":
        return value
    try:
        n = int(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: use a positive integer or 'full'") from None
    if n < 1:
        raise click.BadParameter(f"{value!r}: use a positive integer or 'full'")
    return n


def batch_callback(ctx: click.Context, param: click.Parameter, value: str) -> int | str:
    """Click callback of a batch-size option (``parse_batch``; errors name the option)."""
    return parse_batch(value)


def parse_range(text: str, what: str = "range") -> "Any":
    """``min:max:num`` -> numpy array of ``num`` evenly spaced points (both ends included)."""
    import numpy as np

    parts = text.split(":")
    if len(parts) != 3:
        raise click.BadParameter(f"{text!r} is not min:max:num (e.g. -1:1:51)", param_hint=what)
    try:
        lo, hi = float(parts[0]), float(parts[1])
        num = int(parts[2])
    except ValueError:
        raise click.BadParameter(f"{text!r}: min and max must be numbers and num an integer",
                                 param_hint=what) from None
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise click.BadParameter(f"{text!r}: min and max must be finite", param_hint=what)
    if lo >= hi:
        raise click.BadParameter(f"{text!r}: min must be smaller than max", param_hint=what)
    if num < 2:
        raise click.BadParameter(f"{text!r}: num must be at least 2", param_hint=what)
    if num > MAX_POINTS:
        raise click.BadParameter(f"{text!r}: num must be at most {MAX_POINTS}", param_hint=what)
    check_float32(text, lo, hi, what)
    return np.linspace(lo, hi, num)


FLOAT32_MAX = 3.4028234663852886e38
"""Largest float32 (``numpy.finfo(numpy.float32).max``): coordinates meet the weights there."""


def check_float32(text: str, lo: float, hi: float, what: str) -> None:
    """Refuse a range whose ends are not finite float32 numbers (before any file is made).

    Raises:
        click.BadParameter: one line naming the option.
    """
    if max(abs(lo), abs(hi)) > FLOAT32_MAX:
        raise click.BadParameter(f"{text!r}: min and max must lie within +-{FLOAT32_MAX:.4g} "
                                 "(coordinates are float32 numbers, as the weights are)",
                                 param_hint=what)


def echo_table(rows: list[tuple], header: tuple) -> None:
    """Print an aligned plain-text table."""
    cells = [tuple(str(c) for c in header)] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for k, row in enumerate(cells):
        click.echo("  ".join(c.rjust(w) if k else c.ljust(w) for c, w in zip(row, widths)))
        if k == 0:
            click.echo("  ".join("-" * w for w in widths))


def wraps_threads(func: Callable) -> Callable:
    """--threads: torch intra-op threads for this command."""
    @click.option("--threads", type=click.IntRange(min=1), default=None,
                  help="CPU threads for torch (default: torch's choice).")
    @functools.wraps(func)
    def wrapper(*args, threads=None, **kwargs):
        if threads:
            import torch
            torch.set_num_threads(threads)
        return func(*args, **kwargs)
    return wrapper
