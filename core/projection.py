"""2-D and 3-D maps of embedding vectors (UMAP, PCA) and a disk cache for the big ones.

Small sets (a word list, the prompt's tokens) are projected on the spot with `project`.
A map of a whole table (50,257 token embeddings, 1,024 position embeddings) takes a
minute on a CPU, so `embedding_map` computes it once per (model, table, parameters)
and keeps it in `cache/` (`GPT2VIZ_CACHE_DIR` overrides): one `.npz` per map, written
to a temporary file and moved into place with `os.replace`, so a crash mid-write never
leaves half a file under the real name. Loading checks the stored key, shape and a
checksum of the coordinates; a truncated or corrupted file is deleted and recomputed.
Temporary files carry the writer's process id; one whose process is gone (a save killed
mid-write) is deleted the next time the folder is used.

One computation per map: when two sessions of the app ask for the same map at once, the
second waits for the first (seeing its progress) instead of running the same minute of
UMAP again; if the first gives up (its session stopped), a waiting one takes over.

Speed: the table is first reduced to `pca_dims` (50) dimensions with randomized PCA,
which keeps most of the neighbourhood structure and makes the nearest-neighbour search
~15x cheaper; then UMAP runs with `low_memory` and a fixed number of epochs. The first
UMAP call in a process also compiles umap's numba kernels (several seconds; numba caches
some of them on disk for the next process).
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from i18n import N_, _

from .embeddings import pca

ENV_CACHE_DIR = "GPT2VIZ_CACHE_DIR"
FORMAT_VERSION = 1
ROOT = Path(__file__).resolve().parent.parent

ProgressFn = Callable[[float, str], None]


class _Said(str):
    """A progress text in the current language that keeps its English template (marked N_) and
    fields, so a session waiting on another session's map reads it again in its own language."""

    def __new__(cls, template: str, **fields):
        self = super().__new__(cls, _(template).format(**fields))
        self.template, self.fields = template, fields
        return self

    def again(self) -> str:
        """The text in the current language (nested progress texts too)."""
        return _(self.template).format(**{k: reread(v) for k, v in self.fields.items()})


def reread(text: str) -> str:
    """A progress text in the current language, when it can be read again (plain text as it is)."""
    return text.again() if isinstance(text, _Said) else text


def cache_dir() -> Path:
    """Where maps are kept: `GPT2VIZ_CACHE_DIR`, else <repo>/cache."""
    return Path(os.environ.get(ENV_CACHE_DIR, "").strip() or ROOT / "cache").expanduser()


@dataclass(frozen=True)
class MapParams:
    """How a map is computed; every field is part of the cache key."""

    method: str = "umap"  # "umap" or "pca"
    n_components: int = 2
    n_neighbors: int = 15
    min_dist: float = 0.1
    metric: str = "cosine"
    pca_dims: int = 50  # reduce to this many dimensions before UMAP (0: no reduction)
    n_epochs: int = 200
    seed: int | None = 0  # None lets UMAP use every core (faster, not bit-reproducible)

    def tag(self) -> str:
        return "-".join(f"{k}{v}" for k, v in asdict(self).items())


def word_map_params(method: str = "umap", dims: int = 2) -> MapParams:
    """Settings for a map of a short word list: few neighbours, spread-out points, no PCA step."""
    return MapParams(method=method, n_components=dims, n_neighbors=8, min_dist=0.3, pca_dims=0, seed=0)


# The whole-table maps (all tokens, all positions) the app draws and caches, and the benchmark times.
VOCAB_MAP_PARAMS = MapParams(method="umap", n_neighbors=15, min_dist=0.1, metric="cosine", pca_dims=50, n_epochs=200,
                             seed=0)


# ---- projections --------------------------------------------------------------------------------
def project(X: np.ndarray, params: MapParams = MapParams(), progress: ProgressFn | None = None) -> np.ndarray:
    """Rows of X [n, d] as points [n, n_components] float32, by PCA or UMAP.

    UMAP needs a few points: with fewer than n_components + 3 rows it falls back to PCA.
    The same input and a fixed seed give the same output.
    """
    X = np.asarray(X, dtype=np.float32)
    n, k = X.shape[0], params.n_components
    if n == 0:
        return np.zeros((0, k), np.float32)
    if params.method == "pca" or n < k + 3:
        return _pad(pca(X, k).coords, k)
    if params.method != "umap":
        raise ValueError(f"Unknown projection method {params.method!r}; use 'umap' or 'pca'.")
    return _umap(X, params, progress or (lambda f, s: None))


def _pad(coords: np.ndarray, k: int) -> np.ndarray:
    """PCA of fewer than k points gives fewer than k columns; pad with zeros."""
    if coords.shape[1] < k:
        coords = np.hstack([coords, np.zeros((coords.shape[0], k - coords.shape[1]), np.float32)])
    return coords.astype(np.float32)


class _TqdmToProgress:
    """A file for tqdm: umap reports its epochs through tqdm; we turn `n/total` into a fraction."""

    def __init__(self, progress: ProgressFn, start: float, stop: float, text: str):
        self.progress, self.start, self.stop, self.text = progress, start, stop, text

    def write(self, s: str) -> None:
        found = re.findall(r"(\d+)/(\d+)", s)
        if found:
            n, total = map(int, found[-1])
            if total:
                self.progress(self.start + (self.stop - self.start) * n / total,
                              _Said(N_("{text}: epoch {n} of {total}"), text=self.text, n=n, total=total))

    def flush(self) -> None:
        pass


def _umap(X: np.ndarray, p: MapParams, progress: ProgressFn) -> np.ndarray:
    import umap

    n, d = X.shape
    if p.pca_dims and d > p.pca_dims and n > p.pca_dims:
        progress(0.02, _Said(N_("Reducing {d:,} dimensions to {k} with PCA"), d=d, k=p.pca_dims))
        X = _pca_reduce(X, p.pca_dims, p.seed)
    n_neighbors = max(2, min(p.n_neighbors, n - 1))
    progress(0.1, _Said(N_("Finding each point's {k} nearest neighbours among {n:,}"), k=n_neighbors, n=n))
    knn_idx, knn_dist = exact_knn(X, n_neighbors, p.metric)
    n_jobs = 1 if p.seed is not None else -1
    progress(0.3, _Said(N_("Building the neighbour graph of {n:,} points (the first map in a process also "
                           "compiles umap's numba code, 20 s or so)"), n=n))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # umap warns about n_jobs with a seed, and about tiny inputs
        text = _Said(N_("Laying out {n:,} points"), n=n)
        tqdm_kwds = dict(disable=False, file=_TqdmToProgress(progress, 0.45, 0.98, text),
                         bar_format="{n}/{total}", mininterval=0.25,
                         miniters=1)  # fixed miniters: tqdm's monitor thread then never writes
        reducer = umap.UMAP(n_neighbors=n_neighbors, n_components=p.n_components, min_dist=p.min_dist,
                            metric=p.metric, n_epochs=p.n_epochs, random_state=p.seed, low_memory=True,
                            n_jobs=n_jobs, precomputed_knn=(knn_idx, knn_dist), tqdm_kwds=tqdm_kwds,
                            init="spectral" if n > 2 * (p.n_components + 2) else "random")
        progress(0.45, text)
        coords = reducer.fit_transform(X)
    return np.asarray(coords, dtype=np.float32)


def exact_knn(X: np.ndarray, k: int, metric: str = "cosine", chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k nearest rows of X [n, d] (itself first), exactly: ([n, k] int64, [n, k] float32).

    A chunked matrix product and top-k in torch. For 50,257 x 50 this is a few seconds, and
    unlike umap's default (pynndescent) it needs no minute of numba compilation first.
    """
    import torch

    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"exact_knn supports cosine and euclidean, not {metric!r}")
    A = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    if metric == "cosine":
        A = torch.nn.functional.normalize(A, dim=1)
    sq = (A * A).sum(1)
    n = A.shape[0]
    idx = np.empty((n, k), np.int64)
    dist = np.empty((n, k), np.float32)
    with torch.inference_mode():
        for s in range(0, n, chunk):
            e = min(s + chunk, n)
            score = A[s:e] @ A.T  # [chunk, n]: cosine, or for euclidean 2 a.b - |b|^2 (= |a|^2 - d^2)
            if metric == "euclidean":
                score.mul_(2).sub_(sq[None, :])
            score[torch.arange(e - s), torch.arange(s, e)] = float("inf")  # self first, whatever the rounding
            top, top_i = torch.topk(score, k, dim=1)  # sorted, nearest first
            top[:, 0] = 1.0 if metric == "cosine" else sq[s:e]
            d = (1.0 - top) if metric == "cosine" else (sq[s:e, None] - top).clamp_(min=0).sqrt_()
            idx[s:e] = top_i.numpy()
            dist[s:e] = d.clamp_(min=0).numpy()
    return idx, dist


def _pca_reduce(X: np.ndarray, dims: int, seed: int | None) -> np.ndarray:
    from sklearn.decomposition import PCA

    return PCA(n_components=dims, svd_solver="randomized", random_state=seed or 0).fit_transform(X).astype(np.float32)


# ---- the disk cache --------------------------------------------------------------------------------
def matrix_digest(X: np.ndarray) -> str:
    """A short hash of a matrix's shape, dtype and bytes: a fine-tuned model gets its own maps."""
    X = np.ascontiguousarray(X)
    h = hashlib.blake2b(digest_size=10)
    h.update(f"{X.shape}{X.dtype}".encode())
    h.update(memoryview(X).cast("B"))
    return h.hexdigest()


def map_key(model_name: str, table: str, digest: str, params: MapParams) -> str:
    return f"v{FORMAT_VERSION}|{model_name}|{table}|{digest}|{params.tag()}"


def map_path(model_name: str, table: str, digest: str, params: MapParams, directory: Path | None = None) -> Path:
    """cache/<model>-<table>-<digest>-<hash of params>.npz, the model name made filename-safe."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(model_name.rstrip("/\\")).name or model_name)[:60] or "model"
    ptag = hashlib.blake2b(params.tag().encode(), digest_size=6).hexdigest()
    return (directory or cache_dir()) / f"{safe}-{table}-{digest}-{ptag}.npz"


def _checksum(coords: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(coords).tobytes(), digest_size=16).hexdigest()


def save_map(path: Path, coords: np.ndarray, key: str) -> None:
    """Write atomically: a temporary file in the same folder, then os.replace onto `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    coords = np.ascontiguousarray(coords, dtype=np.float32)
    fd, tmp = tempfile.mkstemp(prefix=f"{path.stem}.{os.getpid()}.", suffix=_TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, coords=coords, key=np.array(key), checksum=np.array(_checksum(coords)))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_TMP_SUFFIX = ".npz.tmp"
_TMP_NAME = re.compile(r".+\.(\d+)\.[^.]+" + re.escape(_TMP_SUFFIX) + "$")
STALE_TMP_SECONDS = 24 * 3600  # a temporary file this old is left over, whoever wrote it


def _process_alive(pid: int) -> bool:
    if pid == os.getpid() or os.name != "posix":  # on Windows os.kill(pid, 0) would end the process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # another user's process, or no way to tell: assume alive
        return True
    return True


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Delete temporary map files whose writer is gone (killed mid-save) or that are a day old."""
    removed = []
    if not directory.is_dir():
        return removed
    now = time.time()
    for tmp in directory.glob("*.tmp"):
        m = _TMP_NAME.fullmatch(tmp.name)
        try:
            orphan = m is not None and not _process_alive(int(m.group(1)))
            if orphan or now - tmp.stat().st_mtime > STALE_TMP_SECONDS:
                tmp.unlink()
                removed.append(tmp)
        except OSError:  # gone already, or not ours to delete
            pass
    return removed


def load_map(path: Path, key: str, n_rows: int, n_components: int) -> np.ndarray | None:
    """The stored coordinates, or None if there is no file. A file that fails any check
    (unreadable, truncated, another key, wrong shape, checksum mismatch) is deleted."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            coords, stored_key, checksum = z["coords"], str(z["key"]), str(z["checksum"])
        ok = (stored_key == key and coords.dtype == np.float32 and coords.shape == (n_rows, n_components)
              and checksum == _checksum(coords) and np.isfinite(coords).all())
    except Exception:  # BadZipFile, EOFError, ValueError, OSError, KeyError: all mean "recompute"
        ok = False
    if not ok:
        path.unlink(missing_ok=True)
        return None
    coords.flags.writeable = False
    return coords


@dataclass(frozen=True)
class EmbeddingMap:
    coords: np.ndarray  # [n, n_components] float32
    path: Path
    from_cache: bool
    seconds: float


class _Job:
    """A map being computed: its latest progress, and its result for the sessions waiting on it."""

    def __init__(self):
        self.done = threading.Event()
        self.fraction, self.text = 0.0, _Said(N_("Starting"))
        self.coords: np.ndarray | None = None


_jobs: dict[str, _Job] = {}
_jobs_lock = threading.Lock()
WAIT_POLL_SECONDS = 0.25


def embedding_map(X: np.ndarray, model_name: str, table: str, params: MapParams = MapParams(),
                  progress: ProgressFn | None = None, directory: Path | None = None,
                  compute: bool = True, digest: str | None = None) -> EmbeddingMap | None:
    """The map of every row of X [n, d] (a whole embedding table), from the cache or computed.

    With compute=False, returns None instead of computing when nothing valid is cached.
    `digest` (matrix_digest(X)) may be passed in to skip hashing X again. Computed once per
    key in the process: a second caller waits for the first and reports its progress.
    """
    t0 = time.perf_counter()
    progress = progress or (lambda f, s: None)
    digest = digest or matrix_digest(X)
    key = map_key(model_name, table, digest, params)
    path = map_path(model_name, table, digest, params, directory)
    remove_stale_temporaries(path.parent)
    while True:
        coords = load_map(path, key, X.shape[0], params.n_components)
        if coords is not None:
            return EmbeddingMap(coords, path, True, time.perf_counter() - t0)
        if not compute:
            return None
        with _jobs_lock:
            job = _jobs.get(key)
            mine = job is None
            if mine:
                job = _jobs[key] = _Job()
        if mine:
            return EmbeddingMap(_compute(X, params, path, key, job, progress), path, False, time.perf_counter() - t0)
        while not job.done.wait(WAIT_POLL_SECONDS):
            progress(job.fraction, _("{text} (started by another session; this one waits for it)").format(
                text=reread(job.text)))
        if job.coords is not None:
            return EmbeddingMap(job.coords, path, False, time.perf_counter() - t0)
        # the other computation gave up: look at the disk again, then compute it here


def _compute(X: np.ndarray, params: MapParams, path: Path, key: str, job: _Job, progress: ProgressFn) -> np.ndarray:
    def report(fraction: float, text: str) -> None:
        job.fraction, job.text = fraction, text
        progress(fraction, text)

    try:
        coords = project(X, params, report)
        coords.flags.writeable = False
        job.coords = coords  # waiting sessions get it even if the disk is full
        report(0.99, _Said(N_("Saving the map")))
        save_map(path, coords, key)
        report(1.0, _Said(N_("Done")))
        return coords
    finally:
        with _jobs_lock:
            _jobs.pop(key, None)
        job.done.set()
