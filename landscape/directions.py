"""Directions in parameter space: random (normalized), Hessian eigenvectors, interpolation,
plane, trajectory PCA.

A direction is a dict ``name -> tensor`` (``Direction``) keyed by the model's parameter names
(``kind="weights"``) or floating-point state-dict names (``kind="states"``, which adds the
BatchNorm running statistics). Directions are saved once to their own HDF5 file
(``save_directions``, in ``landscape.direction_files`` and re-exported here), with provenance
and a content hash, so that checkpointing a surface stays cheap and a surface file can name
exactly the directions it was computed along.

Normalization (``norm``) rescales a random Gaussian direction group by group, each group of
the direction getting the Euclidean norm of the same group of the weights:

- ``filter``: a group is one output filter / neuron, i.e. row ``i`` of dim 0 of an entry
  with two or more dimensions (a Linear weight's row, a Conv weight's output channel).
  A 1-D or 0-D entry that is not ignored (a bias, a BatchNorm scale or shift, or a running
  statistic with ``kind="states"``) forms a single group: the whole vector is rescaled to the
  norm of the matching weight vector. Rescaling each element to ``|theta_i|`` instead would
  make the direction a copy of the weights up to signs and vanish wherever a bias is zero.
- ``layer``: a group is one whole entry (tensor).
- ``model``: a single group, all non-ignored entries together.
- ``none``: the raw standard Gaussian.

``ignore="biasbn"`` zeroes every bias, normalization-layer and other 1-D entry (see
``landscape.params.is_bias_or_norm``); ``ignore="none"`` keeps them (normalized as above).

With ``orthogonalize=True`` the second (and any later) direction is made orthogonal to the
earlier ones *within every normalization group* (Gram-Schmidt per group) before that group is
rescaled. Orthogonality within each group implies orthogonality of the whole directions, and
the rescaling does not change it, so both properties hold: the cosine between the directions
is zero up to rounding, and every group still has exactly its weights' norm. (A group with
fewer elements than there are directions cannot be both; such groups keep orthogonality and
may end up zero.)
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import nn

# direction files: defined in their own module, re-exported here
from .direction_files import (DIRECTIONS_FORMAT, DIRECTIONS_FORMAT_VERSION,  # noqa: F401
                              directions_sha256, load_directions, save_directions,
                              write_or_check_directions)
from .errors import LandscapeError
from .curvature import HessianOptions, hessian_eigenvalues
from .params import is_bias_or_norm, named_tensors, norm_layer_names
from .util import check_choice

Direction = dict[str, torch.Tensor]

NORMS = ("filter", "layer", "model", "none")
IGNORES = ("biasbn", "none")
KINDS = ("weights", "states")


# ----------------------------------------------------------------------------------------
# random, normalized directions


def random_directions(model: nn.Module, count: int = 2, norm: str | None = "filter",
                      ignore: str | None = "biasbn", kind: str = "weights", seed: int = 0,
                      orthogonalize: bool = False) -> list[Direction]:
    """Gaussian random directions, normalized like the model's weights.

    The numbers are drawn on the CPU from a ``torch.Generator`` seeded with ``seed``, in the
    entries' own dtype and in the model's entry order, then moved to each entry's device: the
    same seed gives bit-identical directions on every call and device.

    Args:
        model: the network whose entries set names, shapes and (for normalization) norms.
        count: number of directions (2 for a plane, 1 for a line).
        norm: ``filter`` (per output filter/neuron), ``layer``, ``model`` or ``none``.
        ignore: ``biasbn`` zeroes bias and normalization-layer entries; ``none`` keeps them.
        kind: ``weights`` (trainable parameters) or ``states`` (also BN running statistics).
        seed: seed of the generator.
        orthogonalize: make each direction orthogonal to the earlier ones within every
            normalization group (so normalization and orthogonality both hold exactly).

    Returns:
        ``count`` dicts name -> tensor (same shapes, dtypes and devices as the entries).
    """
    check_choice(norm or "none", NORMS, "norm")
    check_choice(ignore or "none", IGNORES, "ignore")
    check_choice(kind, KINDS, "kind")
    if count < 1:
        raise LandscapeError(f"count must be at least 1, got {count}")
    entries = {n: t.detach() for n, t in named_tensors(model, kind).items()}
    if not entries:
        raise LandscapeError(f"model has no {kind} entries to perturb")
    skip = _ignored(model, entries, ignore or "none")
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    dirs: list[Direction] = []
    for _ in range(count):
        raw = {n: torch.randn(t.shape, generator=gen, dtype=_float_dtype(t)) for n, t in
               entries.items()}
        for n in skip:
            raw[n].zero_()
        if orthogonalize:
            _orthogonalize_groups(raw, dirs, entries, norm or "none", skip)
        _normalize(raw, entries, norm or "none", skip)
        dirs.append({n: raw[n].to(entries[n].device) for n in entries})
    return dirs


def _float_dtype(t: torch.Tensor) -> torch.dtype:
    return t.dtype if torch.is_floating_point(t) else torch.float32


def _ignored(model: nn.Module, entries: dict[str, torch.Tensor], ignore: str) -> set[str]:
    if ignore != "biasbn":
        return set()
    norm_names = norm_layer_names(model)
    return {n for n, t in entries.items() if is_bias_or_norm(n, t, norm_names)}


def _groups(t: torch.Tensor, norm: str) -> torch.Tensor:
    """A (groups, size) view of ``t`` whose rows are the normalization groups."""
    if norm == "filter" and t.ndim >= 2:
        return t.reshape(t.shape[0], -1)
    return t.reshape(1, -1)


def _normalize(raw: Direction, entries: dict[str, torch.Tensor], norm: str,
               skip: set[str]) -> None:
    """Rescale ``raw`` in place so that each group has its weights' norm."""
    if norm == "none":
        return
    names = [n for n in raw if n not in skip]
    if norm == "model":
        target = _total_norm(entries[n].to("cpu", raw[n].dtype) for n in names)
        current = _total_norm(raw[n] for n in names)
        for n in names:
            raw[n].mul_(target / current if current > 0 else 0.0)
        return
    for n in names:
        d = _groups(raw[n], norm)
        w = _groups(entries[n].to("cpu", raw[n].dtype), norm)
        dn = d.norm(dim=1, keepdim=True)
        scale = torch.where(dn > 0, w.norm(dim=1, keepdim=True) / dn, torch.zeros_like(dn))
        d.mul_(scale)


def _total_norm(tensors: Iterable[torch.Tensor]) -> float:
    return float(torch.sqrt(sum((t.double() ** 2).sum() for t in tensors)))


def _orthogonalize_groups(raw: Direction, previous: list[Direction],
                          entries: dict[str, torch.Tensor], norm: str, skip: set[str]) -> None:
    """Gram-Schmidt ``raw`` against ``previous`` within every normalization group, in place."""
    if not previous:
        return
    names = [n for n in raw if n not in skip]
    if norm in ("model", "none"):
        # one group: the whole direction
        for p in previous:
            dot = sum(float((raw[n].double() * p[n].cpu().double()).sum()) for n in names)
            pp = sum(float((p[n].cpu().double() ** 2).sum()) for n in names)
            if pp > 0:
                for n in names:
                    raw[n].sub_(p[n].cpu().to(raw[n].dtype), alpha=dot / pp)
        return
    for n in names:
        d = _groups(raw[n], norm)
        for p in previous:
            q = _groups(p[n].cpu().to(raw[n].dtype), norm)
            qq = (q * q).sum(dim=1, keepdim=True)
            coef = torch.where(qq > 0, (d * q).sum(dim=1, keepdim=True) / qq,
                               torch.zeros_like(qq))
            d.sub_(coef * q)


def direction_cosine(d1: Direction, d2: Direction) -> float:
    """Cosine of the angle between two directions (over the names they share), in float64.

    Returns:
        The cosine, or NaN when either direction is zero on the shared names.
    """
    names = sorted(set(d1) & set(d2))
    dot = sum(float((d1[n].double() * d2[n].double()).sum()) for n in names)
    n1 = _total_norm(d1[n] for n in names)
    n2 = _total_norm(d2[n] for n in names)
    return dot / (n1 * n2) if n1 > 0 and n2 > 0 else float("nan")


# ----------------------------------------------------------------------------------------
# curvature-aligned directions


@dataclasses.dataclass(frozen=True)
class HessianDirections:
    """Directions along the top Hessian eigenvectors of a model's mean loss.

    Attributes:
        directions: one direction per eigenvector, largest eigenvalue first.
        eigenvalues: the eigenvalues, descending.
        residuals: ``||H v - lambda v||`` of each unit eigenvector.
        norm: ``none`` (unit Euclidean norm over all weights: the slice's second derivative
            at 0 is the eigenvalue) or ``filter`` (each filter rescaled to its weights' norm,
            like the random directions; the eigenvector's shape is then bent).
        n_products: Hessian-vector products used.
    """

    directions: list[Direction]
    eigenvalues: np.ndarray
    residuals: np.ndarray
    norm: str
    n_products: int

    def recipe(self) -> dict[str, Any]:
        """What the directions file and a surface record about them."""
        unit = ("unit parameter-space norm" if self.norm == "none"
                else f"{self.norm}-normalized")
        return {"type": "hessian", "norm": self.norm, "unit": unit,
                "eigenvalues": [float(v) for v in self.eigenvalues],
                "residuals": [float(r) for r in self.residuals],
                "n_products": self.n_products}


def hessian_directions(model: nn.Module, data: Any, count: int = 1, *, norm: str = "none",
                       ignore: str = "biasbn", loss: Any = "cross_entropy", seed: int = 0,
                       tol: float = 1e-6, device: str | torch.device | None = None,
                       mode: str = "eval") -> HessianDirections:
    """Directions along the ``count`` top Hessian eigenvectors (Lanczos, ``hessian_eigenvalues``).

    Random filter-normalized directions see the average curvature; the curvature that
    eigenvalue and Keskar sharpness numbers measure lives in a few directions that random
    ones almost never hit. A slice along a unit eigenvector shows it: its second derivative
    at 0 is the eigenvalue. Unlike filter-normalized random slices, such slices change under
    a function-preserving rescaling of ReLU layers (Dinh et al. 2017), as the eigenvalues do.
    Each eigenvector's sign puts its largest entry positive, so a seed gives one answer.

    Args:
        model: the network (not modified).
        data: ``(inputs, targets)`` or a DataBundle (its train split).
        count: how many eigenvectors (1 for a line, 2 for a plane).
        norm: ``none`` (unit norm) or ``filter`` (per-filter weights' norms; ``ignore`` then
            zeroes bias and normalization entries as for random directions).
        ignore: ``biasbn`` or ``none`` (used with ``norm="filter"`` only).
        loss: ``cross_entropy``, ``mse`` or a mean-reduced callable.
        seed: seed of the Lanczos start vector.
        tol: Lanczos tolerance (residual relative to the eigenvalue).
        device: where products run.
        mode: ``eval`` or ``train`` layers.

    Returns:
        HessianDirections, keyed like the model's trainable weights.
    """
    check_choice(norm, ("none", "filter"), "norm")
    check_choice(ignore, IGNORES, "ignore")
    if count < 1:
        raise LandscapeError(f"count must be at least 1, got {count}")
    res = hessian_eigenvalues(model, data, k=count, which="largest", tol=tol,
                              return_vectors=True, seed=seed,
                              options=HessianOptions(loss=loss, device=device, mode=mode,
                                                     check=False))
    order = np.argsort(res.values)[::-1]
    entries = {n: t.detach() for n, t in named_tensors(model, "weights").items()}
    skip = _ignored(model, entries, ignore) if norm == "filter" else set()
    dirs = []
    for i in order:
        vec = np.asarray(res.vectors[:, i], dtype=np.float64)
        vec = vec * (1.0 if vec[np.argmax(np.abs(vec))] >= 0 else -1.0)
        raw = {n: t.to("cpu", _float_dtype(t)).clone()
               for n, t in _unflatten_np(vec, entries, entries).items()}
        for n in skip:
            raw[n].zero_()
        _normalize(raw, entries, "filter" if norm == "filter" else "none", skip)
        dirs.append({n: raw[n].to(entries[n].device) for n in entries})
    return HessianDirections(directions=dirs, eigenvalues=np.asarray(res.values)[order],
                             residuals=np.asarray(res.residuals)[order], norm=norm,
                             n_products=res.n_products)


def hessian_surface_directions(model: nn.Module, data: Any, count: int, *, norm: str = "none",
                               ignore: str = "biasbn", kind: str = "weights",
                               loss: Any = "cross_entropy", seed: int = 0,
                               device: str | torch.device | None = None
                               ) -> tuple[list[Direction], dict[str, Any]]:
    """``hessian_directions`` for a surface: the directions and what to record about them
    (``HessianDirections.recipe()``, for the directions file and the surface's provenance).

    Args:
        model, data, count, norm, ignore, loss, seed, device: as for ``hessian_directions``
            (``norm`` ``none`` or ``filter``; a DataBundle gives its train split).
        kind: must be ``weights``: the Hessian is over the trainable weights only.

    Returns:
        ``(directions, recipe)``.
    """
    if kind != "weights":
        raise LandscapeError("Hessian directions perturb the weights only (kind 'weights'); "
                             f"got {kind!r}")
    if norm not in ("none", "filter"):
        raise LandscapeError(f"Hessian directions are unit-norm ('none') or filter-normalized "
                             f"('filter'), not {norm!r}")
    found = hessian_directions(model, data, count, norm=norm, ignore=ignore, loss=loss,
                               seed=seed, device=device)
    return found.directions, found.recipe()


# ----------------------------------------------------------------------------------------
# directions between checkpoints


def _entries_of(source: nn.Module | dict[str, torch.Tensor], kind: str) -> dict[str, torch.Tensor]:
    if isinstance(source, nn.Module):
        return {n: t.detach() for n, t in named_tensors(source, kind).items()}
    return {n: t.detach() for n, t in source.items() if torch.is_floating_point(t)}


def _difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], what: str) -> Direction:
    if set(a) != set(b):
        diff = sorted(set(a) ^ set(b))
        raise LandscapeError(f"{what}: the models have different entries (e.g. {diff[0]!r}); "
                             "they must share one architecture")
    out = {}
    for n, ta in a.items():
        if ta.shape != b[n].shape:
            raise LandscapeError(f"{what}: entry {n!r} has shape {tuple(ta.shape)} in one model "
                                 f"and {tuple(b[n].shape)} in the other")
        out[n] = (b[n].to(ta.device, ta.dtype) - ta).clone()
    return out


def interpolation_direction(model_a: nn.Module | dict[str, torch.Tensor],
                            model_b: nn.Module | dict[str, torch.Tensor],
                            kind: str = "weights") -> Direction:
    """The direction ``theta_b - theta_a``: offset ``alpha`` from ``a`` gives
    ``(1 - alpha) theta_a + alpha theta_b``.

    Args:
        model_a, model_b: models of one architecture (or name -> tensor dicts).
        kind: ``weights``, or ``states`` to interpolate BatchNorm running statistics too (then
            alpha = 1 reproduces model b exactly).

    Returns:
        The direction, keyed like ``model_a``'s entries.
    """
    check_choice(kind, KINDS, "kind")
    direction = _difference(_entries_of(model_a, kind), _entries_of(model_b, kind),
                            "interpolation")
    if _total_norm(direction.values()) == 0:
        raise LandscapeError(f"interpolation: the two models are identical (in their {kind}), "
                             "so there is no path between them")
    return direction


def plane_directions(model_a: nn.Module | dict[str, torch.Tensor],
                     model_b: nn.Module | dict[str, torch.Tensor],
                     model_c: nn.Module | dict[str, torch.Tensor], kind: str = "weights",
                     orthogonal: bool = False) -> tuple[list[Direction], np.ndarray]:
    """The plane through three models, with origin ``a``.

    Args:
        model_a, model_b, model_c: three models of one architecture.
        kind: ``weights`` or ``states``.
        orthogonal: False: directions ``b - a`` and ``c - a`` (the models sit at (0, 0),
            (1, 0), (0, 1)). True: ``b - a`` and the part of ``c - a`` orthogonal to it,
            rescaled to the same length as ``b - a``, so that distances in a plot with square
            axes are true parameter-space distances (c then sits at its projected coordinates).

    Returns:
        ``(directions, coords)``: two directions and a (3, 2) array of the coordinates of
        a, b and c in the plane.
    """
    check_choice(kind, KINDS, "kind")
    a = _entries_of(model_a, kind)
    d1 = _difference(a, _entries_of(model_b, kind), "plane (a, b)")
    d2 = _difference(a, _entries_of(model_c, kind), "plane (a, c)")
    names = list(d1)
    n11 = sum(float((d1[n].double() ** 2).sum()) for n in names)
    if n11 == 0:
        raise LandscapeError("plane: models a and b are identical, so they span no direction")
    n22 = sum(float((d2[n].double() ** 2).sum()) for n in names)
    if n22 == 0:
        raise LandscapeError("plane: models a and c are identical, so they span no plane")
    proj = sum(float((d1[n].double() * d2[n].double()).sum()) for n in names) / n11
    perp = {n: d2[n] - proj * d1[n] for n in names}
    nperp = _total_norm(perp.values())
    if nperp <= 1e-6 * np.sqrt(n22):  # |sin| of the angle between b - a and c - a
        raise LandscapeError("plane: the three models lie on one line (b - a and c - a are "
                             "parallel), so they span no plane")
    if not orthogonal:
        return [d1, d2], np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    scale = float(np.sqrt(n11)) / nperp
    e2 = {n: perp[n] * scale for n in names}
    return [d1, e2], np.array([[0.0, 0.0], [1.0, 0.0], [proj, 1.0 / scale]])


@dataclasses.dataclass(frozen=True)
class TrajectoryPCA:
    """Principal directions of a training trajectory around its final model.

    Attributes:
        directions: the top-2 principal directions (unit Euclidean norm, name -> tensor).
        explained_variance_ratio: share of the trajectory's variance along each, shape (2,).
        coords: (n, 2) coordinates of each checkpoint, ``<theta_i - theta_final, d_k>``; the
            final model is at (0, 0), the origin of a surface computed along ``directions``.
        paths: the checkpoint files, in the order of ``coords``.
        final: the final model's checkpoint file.
    """

    directions: list[Direction]
    explained_variance_ratio: np.ndarray
    coords: np.ndarray
    paths: list[str]
    final: str


def trajectory_pca(checkpoint_paths: Sequence[str | os.PathLike],
                   final: str | os.PathLike | None = None, kind: str = "weights"
                   ) -> TrajectoryPCA:
    """Top-2 principal directions of ``theta_i - theta_final`` over a run's checkpoints.

    The principal directions are those of the centred matrix of ``theta_i - theta_final``
    (rows: checkpoints other than the final one), from numpy's SVD in float64; each is given
    the sign that puts the first checkpoint at a non-negative coordinate. The path
    coordinates are projections of the *uncentred* offsets, so the final model sits at the
    origin.

    Args:
        checkpoint_paths: checkpoints of one run, in training order.
        final: the final model's checkpoint (default: the last of ``checkpoint_paths``).
        kind: ``weights`` or ``states``.

    Returns:
        A TrajectoryPCA.
    """
    from .checkpoint import load_checkpoint, read_checkpoint

    check_choice(kind, KINDS, "kind")
    paths = [str(p) for p in checkpoint_paths]
    if not paths:
        raise LandscapeError("trajectory PCA needs checkpoints, got none")
    final = str(final) if final is not None else paths[-1]
    model, _ = load_checkpoint(final)
    final_state = read_checkpoint(final)["state_dict"]  # exact stored values, any dtype
    ref = {n: final_state[n].double() for n in named_tensors(model, kind)}
    others = [p for p in paths if os.path.abspath(p) != os.path.abspath(final)]
    if len(others) < 2:
        raise LandscapeError(f"trajectory PCA needs at least 2 checkpoints besides the final "
                             f"model, got {len(others)}")
    rows_all = np.stack([_offset_row(read_checkpoint(p)["state_dict"], ref, p) for p in paths])
    rows = rows_all[[i for i, p in enumerate(paths) if p in others]]
    centred = rows - rows.mean(axis=0, keepdims=True)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    var = s ** 2
    total = var.sum()
    basis = vt[:2].copy()
    if basis.shape[0] < 2:
        raise LandscapeError("trajectory PCA: the checkpoints span less than two dimensions")
    coords_all = rows_all @ basis.T
    signs = np.where(coords_all[0] < 0, -1.0, 1.0)
    basis *= signs[:, None]
    coords_all *= signs[None, :]
    ratio = var[:2] / total if total > 0 else np.zeros(2)
    dirs = [_unflatten_np(b, ref, named_tensors(model, kind)) for b in basis]
    return TrajectoryPCA(directions=dirs, explained_variance_ratio=ratio, coords=coords_all,
                         paths=paths, final=final)


def _offset_row(state: dict[str, torch.Tensor], ref: dict[str, torch.Tensor], path: str
                ) -> np.ndarray:
    parts = []
    for n, r in ref.items():
        if n not in state or state[n].shape != r.shape:
            raise LandscapeError(f"checkpoint {path!r} does not match the final model "
                                 f"(entry {n!r})")
        parts.append((state[n].double() - r).reshape(-1).numpy())
    return np.concatenate(parts)


def _unflatten_np(vec: np.ndarray, ref: dict[str, torch.Tensor],
                  like: dict[str, torch.Tensor]) -> Direction:
    out, start = {}, 0
    for n, r in ref.items():
        k = r.numel()
        out[n] = torch.from_numpy(vec[start:start + k].copy()).view(r.shape).to(like[n].dtype)
        start += k
    return out
