"""A bounded cache of decoded segments that also makes concurrent readers share one decode.

Compressed inputs decode in whole segments (TIFF strips or tiles, HDF5 chunks), while the blocks
of a conversion are often smaller than a segment or not aligned to it: without sharing, every
block that touches a segment decodes it again (16 times for 256 x 256 blocks over 1024 x 1024
pages). The cache keeps decoded segments, least recently used first out, within a byte budget.
While one thread decodes a segment, other threads that need it wait for that result instead of
decoding it too: a reader first decodes every segment nobody else is decoding, and only then
waits for the rest, so it never waits while it holds an unfinished claim and two readers cannot
deadlock on each other.

Everything here runs in worker threads (the blocking pool), never on the event loop.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidArgumentError

#: The default byte budget of one source's cache: enough for a band of segments shared by the
#: blocks in flight (64 strips of 1 MiB pages, or 256 tiles of 256 x 256 uint8).
DEFAULT_CACHE_BYTES = 64 * 1024 * 1024

Decode = Callable[[Hashable], np.ndarray]


@dataclass(frozen=True)
class Piece:
    """Copy ``segment[src]`` of the segment ``key`` into ``dst[dst_index]``."""

    key: Hashable
    dst: np.ndarray
    dst_index: tuple[slice, ...]
    src: tuple[slice | int, ...]

    def place(self, segment: np.ndarray) -> None:
        self.dst[self.dst_index] = segment[self.src]


class _Pending:
    """A decode in progress: its result (or error) once ``done`` is set."""

    __slots__ = ("done", "value", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: np.ndarray | None = None
        self.error: BaseException | None = None


class DecodedCache:
    """Decoded segments by key, LRU within ``max_bytes``; one decode per segment at a time.

    ``decode_count`` counts the segments decoded (cache misses) and ``peak_bytes`` the most the
    cache ever held: statistics for tests and benchmarks. ``max_bytes=0`` keeps nothing but
    still shares decodes between concurrent readers.
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        if max_bytes < 0:
            raise InvalidArgumentError(
                f"the decoded-segment cache needs max_bytes >= 0, got {max_bytes}"
            )
        self.max_bytes = int(max_bytes)
        self._entries: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._pending: dict[Hashable, _Pending] = {}
        self._lock = threading.Lock()
        self.nbytes = 0
        self.peak_bytes = 0
        self.decode_count = 0
        self.hit_count = 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.nbytes = 0

    def fill(self, pieces: Iterable[Piece], decode: Decode) -> None:
        """Copy every piece from its segment, decoding each missing segment once.

        Runs in a worker thread. Segments being decoded by another thread are waited for after
        this thread has decoded all the others it needs; if that other decode fails, this
        thread tries the segment itself (and raises its own error).
        """
        wanted: dict[Hashable, list[Piece]] = {}
        for piece in pieces:
            wanted.setdefault(piece.key, []).append(piece)
        waiting: list[tuple[Hashable, _Pending]] = []
        for key, places in wanted.items():
            segment, pending, mine = self._lookup(key)
            if segment is None:
                assert pending is not None
                if not mine:
                    waiting.append((key, pending))
                    continue
                segment = self._decode_claimed(key, pending, decode)
            for piece in places:
                piece.place(segment)
        for key, pending in waiting:
            pending.done.wait()
            if pending.error is not None:  # the other reader failed: try it here
                self.fill(wanted[key], decode)
                continue
            assert pending.value is not None
            for piece in wanted[key]:
                piece.place(pending.value)

    def _lookup(self, key: Hashable) -> tuple[np.ndarray | None, _Pending | None, bool]:
        """(cached segment, None, False), (None, someone's decode, False) or (None, claim, True)."""
        with self._lock:
            segment = self._entries.get(key)
            if segment is not None:
                self._entries.move_to_end(key)
                self.hit_count += 1
                return segment, None, False
            pending = self._pending.get(key)
            if pending is not None:
                return None, pending, False
            pending = self._pending[key] = _Pending()
            return None, pending, True

    def _decode_claimed(self, key: Hashable, pending: _Pending, decode: Decode) -> np.ndarray:
        try:
            segment = decode(key)
        except BaseException as error:
            pending.error = error
            with self._lock:
                del self._pending[key]
            pending.done.set()
            raise
        pending.value = segment
        with self._lock:
            del self._pending[key]
            self.decode_count += 1
            self._store(key, segment)
        pending.done.set()
        return segment

    def _store(self, key: Hashable, segment: np.ndarray) -> None:
        size = segment.nbytes
        if size > self.max_bytes:
            return
        self._entries[key] = segment
        self.nbytes += size
        while self.nbytes > self.max_bytes:
            _, old = self._entries.popitem(last=False)
            self.nbytes -= old.nbytes
        self.peak_bytes = max(self.peak_bytes, self.nbytes)
