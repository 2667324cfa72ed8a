"""Directions: normalization, ignore rules, orthogonalization, checkpoints, PCA, files."""
from __future__ import annotations

import copy

import h5py
import numpy as np
import pytest
import torch

from landscape import build_model, save_checkpoint
from landscape.directions import (direction_cosine, directions_sha256, interpolation_direction,
                                  load_directions, plane_directions, random_directions,
                                  save_directions, trajectory_pca)
from landscape.errors import LandscapeError, StoreError
from landscape.params import named_tensors, norm_layer_names


def _cnn(batchnorm=True, seed=0):
    """A float64 cnn1d (conv, BN, linear) so that norms can be compared to 1e-12."""
    return build_model("cnn1d", input_shape=(40,), num_classes=10, channels=8,
                       batchnorm=batchnorm, seed=seed).double()


def _mlp(seed=0, width=6):
    return build_model("mlp", input_shape=(5,), num_classes=3, width=width, depth=1,
                       seed=seed).double()


def _filters(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1) if t.ndim >= 2 else t.reshape(1, -1)


def test_filter_normalization_matches_every_filter_and_zeroes_bias_bn():
    model = _cnn()
    weights = named_tensors(model)
    norm_names = norm_layer_names(model)
    d1, d2 = random_directions(model, count=2, norm="filter", ignore="biasbn", seed=3)
    checked = 0
    for d in (d1, d2):
        assert set(d) == set(weights)
        for name, t in d.items():
            w = weights[name].detach()
            assert t.shape == w.shape and t.dtype == w.dtype
            if name in norm_names or t.ndim <= 1:
                assert torch.count_nonzero(t) == 0, name
                continue
            got = _filters(t).norm(dim=1)
            want = _filters(w).norm(dim=1)
            torch.testing.assert_close(got, want, rtol=1e-12, atol=0)
            checked += len(got)
    assert checked > 20  # convolution filters and linear rows were really compared


def test_ignore_none_keeps_1d_entries_normalized_as_whole_vectors():
    model = _cnn()
    # give BN scales/shifts non-trivial values so that their norms are informative
    with torch.no_grad():
        for name, t in named_tensors(model).items():
            if t.ndim == 1:
                t.copy_(torch.linspace(-1.0, 2.0, len(t), dtype=t.dtype))
    (d,) = random_directions(model, count=1, norm="filter", ignore="none", seed=1)
    for name, w in {n: t.detach() for n, t in named_tensors(model).items()}.items():
        if w.ndim == 1:
            assert torch.count_nonzero(d[name]) == len(w)
            assert float(d[name].norm()) == pytest.approx(float(w.norm()), rel=1e-12)


def test_states_kind_covers_running_statistics_and_zeroes_them_with_biasbn():
    model = _cnn()
    (d,) = random_directions(model, count=1, kind="states", seed=0)
    assert any(n.endswith("running_mean") for n in d)
    assert not any(n.endswith("num_batches_tracked") for n in d)  # integer counter left out
    for n, t in d.items():
        if n.endswith(("running_mean", "running_var")):
            assert torch.count_nonzero(t) == 0


@pytest.mark.parametrize("norm", ["layer", "model"])
def test_layer_and_model_normalization(norm):
    model = _cnn(batchnorm=False)
    weights = {n: t.detach() for n, t in named_tensors(model).items()}
    (d,) = random_directions(model, count=1, norm=norm, ignore="biasbn", seed=2)
    kept = [n for n, t in weights.items() if t.ndim > 1]
    if norm == "layer":
        for n in kept:
            assert float(d[n].norm()) == pytest.approx(float(weights[n].norm()), rel=1e-12)
    else:
        total_d = sum(float((d[n] ** 2).sum()) for n in kept) ** 0.5
        total_w = sum(float((weights[n] ** 2).sum()) for n in kept) ** 0.5
        assert total_d == pytest.approx(total_w, rel=1e-12)
        # a single group: the ratio of layer norms is the Gaussian's, not the weights'
        ratios = [float(d[n].norm() / weights[n].norm()) for n in kept]
        assert max(ratios) / min(ratios) > 1.5


def test_no_normalization_is_the_seeded_standard_gaussian():
    model = _mlp()
    d1, d2 = random_directions(model, count=2, norm="none", ignore="none", seed=11)
    gen = torch.Generator().manual_seed(11)
    for d in (d1, d2):
        for n, w in named_tensors(model).items():
            expected = torch.randn(w.shape, generator=gen, dtype=w.dtype)
            assert torch.equal(d[n], expected)


def test_same_seed_is_bit_identical_and_other_seed_differs():
    model = _cnn()
    a = random_directions(model, seed=5, orthogonalize=True)
    b = random_directions(model, seed=5, orthogonalize=True)
    c = random_directions(model, seed=6, orthogonalize=True)
    for da, db in zip(a, b):
        assert all(torch.equal(da[n], db[n]) for n in da)
    assert directions_sha256(a) == directions_sha256(b) != directions_sha256(c)


@pytest.mark.parametrize("norm", ["filter", "layer", "model", "none"])
def test_orthogonalization_keeps_normalization(norm):
    model = _cnn()
    dirs = random_directions(model, count=3, norm=norm, seed=4, orthogonalize=True)
    plain = random_directions(model, count=3, norm=norm, seed=4)
    for i in range(3):
        for j in range(i):
            assert abs(direction_cosine(dirs[i], dirs[j])) < 1e-12
    assert abs(direction_cosine(plain[0], plain[1])) > 1e-4  # it was not orthogonal before
    weights = {n: t.detach() for n, t in named_tensors(model).items()}
    for d, p in zip(dirs, plain):
        for n, t in d.items():
            if weights[n].ndim <= 1:
                continue
            if norm == "filter":
                torch.testing.assert_close(_filters(t).norm(dim=1),
                                           _filters(weights[n].detach()).norm(dim=1),
                                           rtol=1e-12, atol=0)
            elif norm == "layer":
                assert float(t.norm()) == pytest.approx(float(weights[n].norm()), rel=1e-12)
    if norm == "model":
        kept = [n for n, w in weights.items() if w.ndim > 1]
        for d in dirs:
            assert sum(float((d[n] ** 2).sum()) for n in kept) == pytest.approx(
                sum(float((weights[n] ** 2).sum()) for n in kept), rel=1e-12)
    assert all(torch.equal(dirs[0][n], plain[0][n]) for n in dirs[0])  # the first is untouched


def test_direction_cosine_limits():
    model = _mlp()
    (d,) = random_directions(model, count=1, seed=0)
    assert direction_cosine(d, d) == pytest.approx(1.0, abs=1e-15)
    assert direction_cosine(d, {n: -t for n, t in d.items()}) == pytest.approx(-1.0, abs=1e-15)
    assert np.isnan(direction_cosine(d, {n: torch.zeros_like(t) for n, t in d.items()}))


def test_bad_choices_raise():
    model = _mlp()
    with pytest.raises(LandscapeError, match="norm"):
        random_directions(model, norm="filters")
    with pytest.raises(LandscapeError, match="kind"):
        random_directions(model, kind="buffers")
    with pytest.raises(LandscapeError, match="ignore"):
        random_directions(model, ignore="bias")


def test_interpolation_direction_reaches_b_and_rejects_other_architectures():
    a, b = _cnn(seed=0), _cnn(seed=1)
    d = interpolation_direction(a, b, kind="states")
    for n, t in named_tensors(a, "states").items():
        assert torch.allclose(t + d[n], named_tensors(b, "states")[n], rtol=0, atol=1e-15)
    with pytest.raises(LandscapeError, match="different entries|shape"):
        interpolation_direction(_mlp(width=6), _mlp(width=7))


def test_plane_directions_coordinates_reproduce_the_three_models():
    a, b, c = _mlp(seed=0), _mlp(seed=1), _mlp(seed=2)
    wa, wb, wc = (named_tensors(m) for m in (a, b, c))
    for orthogonal in (False, True):
        (d1, d2), coords = plane_directions(a, b, c, orthogonal=orthogonal)
        assert coords.shape == (3, 2)
        for (u, v), target in zip(coords, (wa, wb, wc)):
            for n in wa:
                want = target[n].detach()
                got = wa[n].detach() + u * d1[n] + v * d2[n]
                torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
        if orthogonal:
            assert abs(direction_cosine(d1, d2)) < 1e-12
            n1 = sum(float((t ** 2).sum()) for t in d1.values())
            n2 = sum(float((t ** 2).sum()) for t in d2.values())
            assert n2 == pytest.approx(n1, rel=1e-12)
        else:
            assert coords.tolist() == [[0, 0], [1, 0], [0, 1]]
    with pytest.raises(LandscapeError, match="models a and b are identical"):
        plane_directions(a, a, c)
    with pytest.raises(LandscapeError, match="models a and c are identical"):
        plane_directions(a, b, a)
    # c on the line through a and b: c = a + 2.5 (b - a)
    on_line = {n: wa[n].detach() + 2.5 * (wb[n].detach() - wa[n].detach()) for n in wa}
    for orthogonal in (False, True):
        with pytest.raises(LandscapeError, match="lie on one line"):
            plane_directions(a, b, on_line, orthogonal=orthogonal)
        with pytest.raises(LandscapeError, match="lie on one line"):
            plane_directions(a, b, b, orthogonal=orthogonal)


def test_interpolating_a_model_with_itself_is_refused():
    a = _cnn(seed=0)
    with pytest.raises(LandscapeError, match="the two models are identical"):
        interpolation_direction(a, copy.deepcopy(a))


def test_trajectory_pca_recovers_a_known_plane(tmp_path):
    final = _mlp(seed=0)
    names = list(named_tensors(final))
    sizes = [named_tensors(final)[n].numel() for n in names]
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((sum(sizes), 2)))
    u, v = q[:, 0], q[:, 1]
    # centred offsets whose coefficients are uncorrelated: variances 10 and 4
    a = np.array([2.0, 1.0, -1.0, -2.0]) + 0.5
    b = np.array([1.0, -1.0, -1.0, 1.0]) + 0.25
    paths = []
    base = torch.cat([named_tensors(final)[n].detach().reshape(-1) for n in names]).numpy()
    for k, (ak, bk) in enumerate(zip(a, b)):
        model = _mlp(seed=0)
        flat = torch.from_numpy(base + ak * u + bk * v)
        with torch.no_grad():
            start = 0
            for n, size in zip(names, sizes):
                named_tensors(model)[n].copy_(flat[start:start + size].view_as(
                    named_tensors(model)[n]))
                start += size
        paths.append(save_checkpoint(tmp_path / f"epoch_{k:04d}.pt", model))
    final_path = save_checkpoint(tmp_path / "model.pt", final)
    pca = trajectory_pca(paths + [final_path], final=final_path)
    np.testing.assert_allclose(pca.explained_variance_ratio, [10 / 14, 4 / 14], rtol=1e-10)
    # the first checkpoint gets non-negative coordinates; the final model is the origin
    np.testing.assert_allclose(pca.coords[:4], np.stack([a, b], axis=1), rtol=0, atol=1e-10)
    np.testing.assert_allclose(pca.coords[4], [0.0, 0.0], atol=1e-12)
    flat_dirs = [torch.cat([d[n].reshape(-1) for n in names]).numpy() for d in pca.directions]
    np.testing.assert_allclose(flat_dirs[0], u, atol=1e-10)
    np.testing.assert_allclose(flat_dirs[1], v, atol=1e-10)
    with pytest.raises(LandscapeError, match="at least 2"):
        trajectory_pca([paths[0], final_path], final=final_path)


def test_directions_file_roundtrip_hash_and_write_once(tmp_path):
    model = _cnn()
    dirs = random_directions(model, count=2, seed=9)
    path = tmp_path / "d.h5"
    digest = save_directions(path, dirs, {"seed": 9, "norm": "filter"})
    loaded, info = load_directions(path)
    assert info["sha256"] == digest == directions_sha256(dirs)
    assert info["provenance"] == {"seed": 9, "norm": "filter"}
    for d, e in zip(dirs, loaded):
        assert list(d) == list(e)
        assert all(torch.equal(d[n], e[n]) for n in d)
    with pytest.raises(StoreError, match="already exists"):
        save_directions(path, dirs)
    assert save_directions(path, dirs[:1], overwrite=True) == directions_sha256(dirs[:1])


def test_directions_file_damage_is_reported(tmp_path):
    model = _mlp()
    path = tmp_path / "d.h5"
    save_directions(path, random_directions(model, seed=0))
    with h5py.File(path, "r+") as fh:  # change one number: the hash no longer matches
        ds = fh["d0"][next(iter(fh["d0"]))]
        ds[(0,) * ds.ndim] = ds[(0,) * ds.ndim] + 1.0
    with pytest.raises(StoreError, match="does not match"):
        load_directions(path)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(StoreError, match="not a readable directions file"):
        load_directions(junk)
    with pytest.raises(StoreError, match="does not exist"):
        load_directions(tmp_path / "missing.h5")
