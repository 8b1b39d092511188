"""Every unrevoked agent's vector in the registry process: an inverted-file index (faiss ``IndexIVFScalarQuantizer``,
8-bit codes) that a search by meaning asks instead of reading vectors from the database.

Brute force over ``agent_vectors`` read 512 bytes an agent per query and could afford only a window of the newest
10,000 (23 ms p99 at 1M agents on SQLite, 43 ms on PostgreSQL). Here the vectors are split into ~sqrt(n) lists
around centroids learnt by k-means; a query compares itself with the centroids and scans the :data:`NPROBE`
nearest lists (~1.6 % of the agents at 1M): ~0.6 ms of CPU at 1M, over all agents. Below :data:`EXACT_BELOW`
agents there is one list and every vector is compared. Each vector is kept as 8 bits a dimension (256 bytes; a
cosine moves by < 0.005, far below the gaps that order results), so 1M agents take ~265 MB.

Chosen over HNSW (``usearch``): adding 100k vectors to an HNSW graph cost ~100 s of CPU here (1M: a quarter of an
hour at every start, or a file to persist and repair), where training and filling this index at 1M costs ~10 s,
done in the background while searches take the old windowed path.

The index follows the change feed (``changes``, :func:`.feed.catch_up`): each agent registered, updated or revoked
since the position it holds is set to its vector in the database now (none once revoked). It is not thread-safe
by itself: every call takes the index's lock, held for CPU work only (never across a database read, which on
PostgreSQL switches to other tasks of the same thread).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import threading
from collections.abc import Sequence
from typing import Any

import faiss
import numpy as np
from numpy.typing import NDArray
from sqlalchemy import TextClause, text

faiss.omp_set_num_threads(1)  # one query at a time: OpenMP's threads only wait for each other on a loaded machine

EXACT_BELOW = 20_000
"""Fewer agents than this: one list, every vector compared (~1 ms at 20k)."""
NPROBE = 16
"""Lists scanned per query: recall@100 ~0.98 against exact cosine on clustered data at 1M (bench/discovery.py)."""
TRAIN_PER_LIST = 40
"""k-means learns the centroids from this many agents a list (a sample; all of them cost minutes at 1M)."""
_CHUNK = 100_000
_CHANGED = text("SELECT c.seq, a.pk, v.embedding FROM changes c JOIN agents a ON a.id = c.agent_id "
                "LEFT JOIN agent_vectors v ON v.agent_pk = a.pk "
                "WHERE c.seq > :after AND c.seq <= :upto AND c.kind IN ('registered', 'updated', 'revoked') "
                "ORDER BY c.seq LIMIT :limit")


def build(dim: int, pages: list[tuple[NDArray[np.int64], NDArray[np.float16]]], position: int) -> VectorIndex:
    """A :class:`VectorIndex` of ``pages``, then the memory its build freed handed back to the system: glibc keeps
    what the building thread freed (the pages, their float32 copies, the lists' reallocations) in that thread's
    arena, ~175 MB at 200k agents that the process's RSS would otherwise carry for ever."""
    index = VectorIndex(dim, pages, position)
    give_back_memory()
    return index


def give_back_memory() -> None:
    """Hand back to the system what a build freed (glibc's ``malloc_trim``; nothing elsewhere)."""
    libc = ctypes.util.find_library("c")
    if libc is not None:
        trim = getattr(ctypes.CDLL(libc), "malloc_trim", None)
        if trim is not None:
            trim(0)


def lists_for(count: int) -> int:
    return 1 if count < EXACT_BELOW else min(4096, int(math.sqrt(count)))


class VectorIndex:
    """The vectors of ``pages`` (pks and float16 rows, as read from the database) as it held them at change
    ``position``. The pages are emptied as they are added: at 1M agents they hold 512 MB."""

    def __init__(self, dim: int, pages: list[tuple[NDArray[np.int64], NDArray[np.float16]]], position: int) -> None:
        self.dim = dim
        self.position = position
        total = sum(len(ids) for ids, _ in pages)
        self.lists = lists_for(total)
        self._lock = threading.Lock()
        self._quantizer = faiss.IndexFlatIP(dim)
        if self.lists == 1:
            self._quantizer.add(np.zeros((1, dim), dtype=np.float32))
        else:
            rng = np.random.default_rng(0)
            chosen = np.sort(rng.choice(total, min(total, self.lists * TRAIN_PER_LIST), replace=False))
            starts = np.cumsum([0] + [len(ids) for ids, _ in pages])
            sample = np.concatenate([matrix[chosen[(chosen >= lo) & (chosen < hi)] - lo]
                                     for (_, matrix), lo, hi in zip(pages, starts[:-1], starts[1:], strict=True)])
            kmeans = faiss.Kmeans(dim, self.lists, niter=10, spherical=True, seed=1)
            kmeans.train(sample.astype(np.float32))
            assert kmeans.centroids is not None
            self._quantizer.add(kmeans.centroids)
        index = faiss.IndexIVFScalarQuantizer(self._quantizer, dim, self.lists, faiss.ScalarQuantizer.QT_8bit_uniform,
                                              faiss.METRIC_INNER_PRODUCT, False)
        # Codes span [-1, 1], every component a unit vector can have: no sample decides the range, so no later
        # agent's vector is clipped.
        bounds = np.array([[-1.0] * dim, [1.0] * dim], dtype=np.float32)
        index.sq.train(bounds)
        index.is_trained = True
        index.nprobe = min(NPROBE, self.lists)
        index.set_direct_map_type(faiss.DirectMap.Hashtable)  # type: ignore[attr-defined]  # removal by id without scanning every list
        self._index = index
        while pages:
            ids, matrix = pages.pop(0)
            for start in range(0, len(ids), _CHUNK):
                index.add_with_ids(matrix[start:start + _CHUNK].astype(np.float32), ids[start:start + _CHUNK])

    @property
    def count(self) -> int:
        return int(self._index.ntotal)

    def outgrown(self) -> bool:
        """Grown to twice the lists it was built with: scans would grow with it, so build it again."""
        return lists_for(self.count) >= 2 * self.lists

    def search(self, query: NDArray[np.float32], count: int) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """The (up to) ``count`` agents nearest ``query``: pks and cosines, best first."""
        with self._lock:
            scores, ids = self._index.search(query.reshape(1, self.dim).astype(np.float32), count)
        found = ids[0] >= 0
        return ids[0][found].astype(np.int64), scores[0][found]

    @property
    def changed(self) -> TextClause:
        return _CHANGED

    def follow(self, start: int, end: int, rows: Sequence[Any]) -> bool:
        return self.apply(start, end, [int(r[1]) for r in rows], [None if r[2] is None else bytes(r[2]) for r in rows])

    def apply(self, start: int, end: int, pks: list[int], vectors: list[bytes | None]) -> bool:
        """Set each of ``pks`` to its vector (None: remove it) and move from change ``start`` to ``end``. False,
        and nothing done, when another catch-up moved the index meanwhile (its reads may be newer than these)."""
        width = self.dim * 2
        keep = [i for i, blob in enumerate(vectors) if blob is not None and len(blob) == width]
        removed = np.unique(np.asarray(pks, dtype=np.int64))
        added = np.asarray([pks[i] for i in keep], dtype=np.int64)
        rows = np.frombuffer(b"".join(vectors[i] or b"" for i in keep), dtype=np.float16).reshape(len(keep), self.dim)
        added, first = np.unique(added[::-1], return_index=True)  # a pk named twice: its latest read, once
        rows = rows[::-1][first]
        with self._lock:
            if self.position != start:
                return False
            if len(removed):
                self._index.remove_ids(faiss.IDSelectorArray(len(removed), faiss.swig_ptr(removed)))
            if len(added):
                self._index.add_with_ids(rows.astype(np.float32), added)
            self.position = end
        return True
