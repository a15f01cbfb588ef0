"""core.projection: projections on small random matrices, exact kNN, and the disk cache.

The first UMAP call in the test session compiles umap's numba code (~20 s); the other
UMAP calls reuse it, so they are kept to a few hundred points.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

import core.projection as projection
from core.projection import MapParams, cache_dir, embedding_map, exact_knn, map_path, matrix_digest, project

PCA_PARAMS = MapParams(method="pca")
SMALL_UMAP = MapParams(n_neighbors=10, n_epochs=100, seed=0)


@pytest.fixture(scope="module")
def blobs() -> np.ndarray:
    """200 points in 40 dimensions, in 4 well separated clusters of 50."""
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=8, size=(4, 40))
    return (np.repeat(centres, 50, axis=0) + rng.normal(size=(200, 40))).astype(np.float32)


def test_pca_projection_shapes_and_determinism(blobs):
    for k in (2, 3):
        a = project(blobs, MapParams(method="pca", n_components=k))
        assert a.shape == (200, k) and a.dtype == np.float32
        np.testing.assert_array_equal(a, project(blobs, MapParams(method="pca", n_components=k)))
    assert project(blobs[:2], MapParams(method="pca", n_components=3)).shape == (2, 3)
    assert project(blobs[:0], PCA_PARAMS).shape == (0, 2)
    with pytest.raises(ValueError, match="umap"):
        project(blobs, MapParams(method="tsne"))


def test_umap_is_deterministic_with_a_seed_and_keeps_clusters(blobs):
    seen = []
    a = project(blobs, SMALL_UMAP, progress=lambda f, s: seen.append(f))
    b = project(blobs, SMALL_UMAP)
    assert a.shape == (200, 2) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert seen == sorted(seen) and 0 < seen[0] and seen[-1] <= 1
    centroids = np.stack([a[i * 50:(i + 1) * 50].mean(0) for i in range(4)])
    spread = max(a[i * 50:(i + 1) * 50].std(0).max() for i in range(4))
    gaps = [np.linalg.norm(centroids[i] - centroids[j]) for i in range(4) for j in range(i + 1, 4)]
    assert min(gaps) > 2 * spread  # the four clusters stay apart
    three = project(blobs[:60], MapParams(n_components=3, n_neighbors=10, n_epochs=50, seed=1))
    assert three.shape == (60, 3)
    assert project(blobs[:4], SMALL_UMAP).shape == (4, 2)  # too few for UMAP: PCA instead


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_exact_knn_matches_sklearn(blobs, metric):
    idx, dist = exact_knn(blobs, 8, metric, chunk=64)  # several chunks
    ref_dist, ref_idx = NearestNeighbors(n_neighbors=8, metric=metric, algorithm="brute").fit(blobs).kneighbors(blobs)
    assert np.all(idx[:, 0] == np.arange(200)) and np.all(dist[:, 0] == 0)
    np.testing.assert_allclose(dist, ref_dist, atol=2e-3)
    assert np.mean(idx == ref_idx) > 0.99  # ties and rounding may swap a rare pair


def test_cache_dir_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("GPT2VIZ_CACHE_DIR", str(tmp_path / "maps"))
    assert cache_dir() == tmp_path / "maps"
    monkeypatch.delenv("GPT2VIZ_CACHE_DIR")
    assert cache_dir() == projection.ROOT / "cache"


def test_the_key_follows_model_matrix_and_parameters(blobs, tmp_path):
    d = matrix_digest(blobs)
    changed = blobs.copy()
    changed[5, 5] += 1e-3
    assert matrix_digest(changed) != d and matrix_digest(blobs.copy()) == d
    paths = {map_path("gpt2", "tokens", d, PCA_PARAMS, tmp_path),
             map_path("gpt2-medium", "tokens", d, PCA_PARAMS, tmp_path),
             map_path("gpt2", "positions", d, PCA_PARAMS, tmp_path),
             map_path("gpt2", "tokens", d, SMALL_UMAP, tmp_path)}
    assert len(paths) == 4
    odd = map_path("/some/dir/my model:v2/", "tokens", d, PCA_PARAMS, tmp_path)
    assert odd.parent == tmp_path and odd.name.startswith("my_model_v2-tokens-")


@pytest.fixture
def counted(monkeypatch):
    calls = []
    real = projection.project

    def counting(X, params, progress=None):
        calls.append(len(X))
        return real(X, params, progress)

    monkeypatch.setattr(projection, "project", counting)
    return calls


def test_cache_round_trip(blobs, tmp_path, counted):
    first = embedding_map(blobs, "m", "tokens", PCA_PARAMS, directory=tmp_path)
    assert not first.from_cache and first.path.exists() and counted == [200]
    again = embedding_map(blobs, "m", "tokens", PCA_PARAMS, directory=tmp_path)
    assert again.from_cache and counted == [200] and again.path == first.path
    np.testing.assert_array_equal(again.coords, first.coords)
    assert not again.coords.flags.writeable
    assert [p.name for p in tmp_path.iterdir()] == [first.path.name]  # no temporary file left behind
    assert embedding_map(blobs, "other", "tokens", PCA_PARAMS, directory=tmp_path, compute=False) is None


def test_progress_reaches_the_end(blobs, tmp_path):
    seen = []
    embedding_map(blobs[:100], "m", "tokens", SMALL_UMAP, directory=tmp_path, progress=lambda f, s: seen.append((f, s)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("neighbours" in s for _, s in seen)


def corrupt_truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def corrupt_garbage(path):
    path.write_bytes(os.urandom(300))


def corrupt_empty(path):
    path.write_bytes(b"")


def corrupt_flip_a_coordinate(path):
    with np.load(path) as z:
        coords, key, checksum = z["coords"].copy(), z["key"], z["checksum"]
    coords[0, 0] += 1
    np.savez(path, coords=coords, key=key, checksum=checksum)


def corrupt_wrong_shape(path):
    with np.load(path) as z:
        key = z["key"]
    coords = np.zeros((3, 2), np.float32)
    np.savez(path, coords=coords, key=key, checksum=np.array(projection._checksum(coords)))


def corrupt_other_key(path):
    with np.load(path) as z:
        coords, checksum = z["coords"], z["checksum"]
    np.savez(path, coords=coords, key=np.array("someone else's map"), checksum=checksum)


@pytest.mark.parametrize("corrupt", [corrupt_truncate, corrupt_garbage, corrupt_empty, corrupt_flip_a_coordinate,
                                     corrupt_wrong_shape, corrupt_other_key])
def test_a_bad_cache_file_is_detected_and_recomputed(blobs, tmp_path, counted, corrupt):
    good = embedding_map(blobs, "m", "tokens", PCA_PARAMS, directory=tmp_path)
    corrupt(good.path)
    assert embedding_map(blobs, "m", "tokens", PCA_PARAMS, directory=tmp_path, compute=False) is None
    assert not good.path.exists()  # the bad file was deleted
    fresh = embedding_map(blobs, "m", "tokens", PCA_PARAMS, directory=tmp_path)
    assert not fresh.from_cache and counted == [200, 200]
    np.testing.assert_array_equal(fresh.coords, good.coords)
    assert embedding_map(blobs, "m", "tokens", PCA_PARAMS, directory=tmp_path).from_cache


def test_a_failed_write_leaves_no_file(blobs, tmp_path, monkeypatch):
    def broken(*a, **kw):
        raise OSError("disk full")

    monkeypatch.setattr(projection.np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        embedding_map(blobs, "m", "tokens", PCA_PARAMS, directory=tmp_path)
    assert list(tmp_path.iterdir()) == []


# ---- one computation per map, however many sessions ask ------------------------------------------
def slow_projection(monkeypatch, started: threading.Event, release: threading.Event, fail_first: bool = False):
    """project stand-in that reports progress, then waits for `release`; counts its calls."""
    calls = []
    real = projection.project

    def slow(X, params, progress=None):
        calls.append(len(X))
        progress(0.5, "Laying out 200 points: epoch 50 of 100")
        started.set()
        assert release.wait(30)
        if fail_first and len(calls) == 1:
            raise RuntimeError("the first session stopped")
        return real(X, params, progress)

    monkeypatch.setattr(projection, "project", slow)
    return calls


def in_thread(fn, results: dict, name: str) -> threading.Thread:
    def run():
        try:
            results[name] = fn()
        except Exception as e:
            results[name] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_two_sessions_asking_at_once_share_one_computation(blobs, tmp_path, monkeypatch):
    started, release = threading.Event(), threading.Event()
    calls = slow_projection(monkeypatch, started, release)
    monkeypatch.setattr(projection, "WAIT_POLL_SECONDS", 0.02)
    seen_by_second, results = [], {}
    first = in_thread(lambda: embedding_map(blobs, "m", "tokens", PCA_PARAMS, directory=tmp_path), results, "first")
    assert started.wait(10)
    second = in_thread(lambda: embedding_map(blobs, "m", "tokens", PCA_PARAMS, directory=tmp_path,
                                             progress=lambda f, s: seen_by_second.append((f, s))), results, "second")
    deadline = time.time() + 10
    while not seen_by_second and time.time() < deadline:
        time.sleep(0.01)
    release.set()
    first.join(30), second.join(30)
    assert calls == [200]  # one computation
    np.testing.assert_array_equal(results["first"].coords, results["second"].coords)
    assert seen_by_second[0] == (0.5, "Laying out 200 points: epoch 50 of 100 (started by another session; "
                                      "this one waits for it)")


def test_a_waiting_session_takes_over_when_the_first_gives_up(blobs, tmp_path, monkeypatch):
    started, release = threading.Event(), threading.Event()
    calls = slow_projection(monkeypatch, started, release, fail_first=True)
    monkeypatch.setattr(projection, "WAIT_POLL_SECONDS", 0.02)
    results = {}
    first = in_thread(lambda: embedding_map(blobs, "m", "tokens", PCA_PARAMS, directory=tmp_path), results, "first")
    assert started.wait(10)
    second = in_thread(lambda: embedding_map(blobs, "m", "tokens", PCA_PARAMS, directory=tmp_path), results, "second")
    time.sleep(0.2)  # the second is waiting
    release.set()
    first.join(30), second.join(30)
    assert isinstance(results["first"], RuntimeError) and calls == [200, 200]
    np.testing.assert_array_equal(results["second"].coords, project(blobs, PCA_PARAMS))
    assert embedding_map(blobs, "m", "tokens", PCA_PARAMS, directory=tmp_path, compute=False).from_cache


def test_different_maps_are_computed_side_by_side(blobs, tmp_path, monkeypatch):
    started, release = threading.Event(), threading.Event()
    calls = slow_projection(monkeypatch, started, release)
    results = {}
    first = in_thread(lambda: embedding_map(blobs, "m", "tokens", PCA_PARAMS, directory=tmp_path), results, "first")
    assert started.wait(10)
    started.clear()
    second = in_thread(lambda: embedding_map(blobs, "other", "tokens", PCA_PARAMS, directory=tmp_path), results, "2")
    assert started.wait(10)  # the second model's map started while the first is still running
    release.set()
    first.join(30), second.join(30)
    assert calls == [200, 200]


KILLED_SAVE = """
import os, sys, time
import numpy as np
sys.path.insert(0, {root!r})
import core.projection as projection
from pathlib import Path

def stuck(f, **arrays):
    f.write(b"PK half a file")
    f.flush()
    print("writing", flush=True)
    time.sleep(60)

projection.np.savez = stuck
projection.save_map(Path({path!r}), np.zeros((5, 2), np.float32), "key")
"""


def test_a_save_killed_mid_write_leaves_a_temporary_that_is_cleaned(blobs, tmp_path):
    path = map_path("m", "tokens", matrix_digest(blobs), PCA_PARAMS, tmp_path)
    writer = subprocess.Popen([sys.executable, "-c", KILLED_SAVE.format(root=str(projection.ROOT), path=str(path))],
                              stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "writing"
    leftover = list(tmp_path.glob("*.tmp"))
    assert len(leftover) == 1 and str(writer.pid) in leftover[0].name
    embedding_map(blobs, "m", "tokens", PCA_PARAMS, directory=tmp_path, compute=False)
    assert leftover[0].exists()  # its writer is still alive: left alone
    writer.kill()
    writer.wait(10)
    embedding_map(blobs, "m", "tokens", PCA_PARAMS, directory=tmp_path, compute=False)
    assert list(tmp_path.glob("*.tmp")) == []


def test_a_day_old_temporary_is_cleaned_whoever_wrote_it(blobs, tmp_path):
    old = tmp_path / "m-tokens-abc.tmp"
    old.write_bytes(b"x")
    os.utime(old, (time.time() - 2 * 86400,) * 2)
    fresh = tmp_path / "someone-elses.tmp"
    fresh.write_bytes(b"x")
    embedding_map(blobs, "m", "tokens", PCA_PARAMS, directory=tmp_path, compute=False)
    assert not old.exists() and fresh.exists()
