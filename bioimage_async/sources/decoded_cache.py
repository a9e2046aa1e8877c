"""A bounded cache of decoded segments that also makes concurrent readers share one decode.

Compressed inputs decode in whole segments (TIFF strips or tiles, HDF5 chunks), while the blocks
of a conversion are often smaller than a segment or not aligned to it: without sharing, every
block that touches a segment decodes it again (16 times for 256 x 256 blocks over 1024 x 1024
pages). The cache keeps decoded segments, least recently used first out, within a byte budget.
While one thread decodes a segment, other threads that need it wait for that result instead of
decoding it too: a reader first decodes every segment nobody else is decoding, and only then
waits for the rest, so it never waits while it holds an unfinished claim and two readers cannot
deadlock on each other.

A segment leaves the cache as soon as reads have taken as many of its values as it holds: with
blocks that do not overlap, nobody needs it again. So blocks aligned to HDF5 chunks or TIFF tiles
never keep a segment, and 256-column blocks over 1024-wide strips keep each strip until the
fourth block has taken its part. Keeping them longer only grows memory: a 64 MiB cache that
fills costs as many page faults as the conversion's own arrays. Should a segment that left this
way be read again (reads that overlap, as blocks with a halo do), the cache stops counting and
keeps segments by recency alone from then on.

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
#: decode segment ``key`` into a contiguous array of its stored size; returns that array shaped
#: as the segment, or None where it cannot (the segment is then decoded as usual)
DecodeInto = Callable[[Hashable, np.ndarray], "np.ndarray | None"]


class _DecodedInPlace(Exception):
    """Told to a reader that waited on a segment another read decoded straight into its own
    block: that copy is not shared, so the waiter decodes the segment itself."""


#: how many keys of used-up segments are remembered, to notice one read again (a few MiB at most)
_USED_UP_KEYS = 65536


@dataclass(frozen=True)
class Piece:
    """Copy ``segment[src]`` of the segment ``key`` into ``dst[dst_index]``."""

    key: Hashable
    dst: np.ndarray
    dst_index: tuple[slice, ...]
    src: tuple[slice | int | None, ...]
    #: how many of the segment's values lie inside the array (an edge tile or chunk is decoded
    #: whole but partly outside); 0: all of them
    segment_values: int = 0
    #: how many values the segment holds as stored (0: unknown); a piece that takes all of
    #: them into a contiguous destination can be decoded straight into it
    stored_values: int = 0

    def place(self, segment: np.ndarray) -> int:
        """Copy the piece; returns how many values it took from the segment."""
        target = self.dst[self.dst_index]
        target[...] = segment[self.src]
        return int(target.size)

    @property
    def size(self) -> int:
        """How many values the piece takes (the size of its destination)."""
        return int(self.dst[self.dst_index].size)

    def takes_all(self) -> bool:
        """Whether this piece takes every value of its segment that lies in the array (so no
        other read without overlap needs the segment), its stored size being known."""
        return bool(self.stored_values) and self.size >= (self.segment_values or self.stored_values)

    def whole_target(self) -> np.ndarray | None:
        """The destination, where it is the whole stored segment and contiguous."""
        target = self.dst[self.dst_index]
        if target.size != self.stored_values or not target.flags.c_contiguous:
            return None
        return target


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
    still shares decodes between concurrent readers. ``overlapping`` turns True once a segment
    that had been taken whole is read again (see the module doc).
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        if max_bytes < 0:
            raise InvalidArgumentError(
                f"the decoded-segment cache needs max_bytes >= 0, got {max_bytes}"
            )
        self.max_bytes = int(max_bytes)
        self._entries: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        #: values of a kept segment that reads have not taken yet (while not overlapping)
        self._untaken: dict[Hashable, int] = {}
        #: keys of segments that left because reads took them whole (to notice a re-read)
        self._used_up: OrderedDict[Hashable, None] = OrderedDict()
        self._pending: dict[Hashable, _Pending] = {}
        self._lock = threading.Lock()
        self._local = threading.local()  # per thread: a scratch buffer for one segment
        self.overlapping = False
        self.nbytes = 0
        self.peak_bytes = 0
        self.decode_count = 0
        self.hit_count = 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._untaken.clear()
            self.nbytes = 0

    def fill(
        self, pieces: Iterable[Piece], decode: Decode, decode_into: DecodeInto | None = None
    ) -> None:
        """Copy every piece from its segment, decoding each missing segment once.

        Runs in a worker thread. Segments being decoded by another thread are waited for after
        this thread has decoded all the others it needs; if that other decode fails, this
        thread tries the segment itself (and raises its own error).

        With ``decode_into``, a segment that this read alone needs is decoded without a new
        array: straight into the read's array where it fills a contiguous part of it (a
        full-width strip), else into this thread's scratch buffer and copied from there (a
        tile). A new segment-sized array per segment is fresh memory the kernel has to fault
        in; these are reused.
        """
        wanted: dict[Hashable, list[Piece]] = {}
        for piece in pieces:
            wanted.setdefault(piece.key, []).append(piece)
        hits, waiting, shared, alone = self._claim(wanted)
        for key, segment in hits:
            self._place(key, wanted[key], segment)
        for key in shared:  # claimed one at a time: readers sharing them split the decoding
            cached, pending, mine = self._lookup(key)
            if cached is None:
                assert pending is not None
                if not mine:
                    waiting.append((key, pending))
                    continue
                cached = self._decode_claimed(key, pending, decode, wanted[key])
            self._place(key, wanted[key], cached)
        if alone[0]:
            self._decode_alone(alone, wanted, decode, decode_into)
        for key, pending in waiting:
            pending.done.wait()
            if pending.error is not None:  # the other reader failed: try it here
                self.fill(wanted[key], decode, decode_into)
                continue
            assert pending.value is not None
            self._place(key, wanted[key], pending.value)

    def _claim(
        self, wanted: dict[Hashable, list[Piece]]
    ) -> tuple[
        list[tuple[Hashable, np.ndarray]],
        list[tuple[Hashable, _Pending]],
        list[Hashable],
        tuple[list[Hashable], _Pending],
    ]:
        """Under one lock: the cached segments, those others are decoding, those others may
        share (claimed later, one at a time), and one claim for all this read needs alone.

        A read's own segments dominate (every segment of a block aligned to them): one lock and
        one event for all of them instead of one each. Others wait on that claim only when
        reads overlap (the segment is not needed here alone otherwise). Segments that several
        reads share are claimed as each is reached, so that the readers of one band of strips
        decode different strips at the same time instead of one decoding all.
        """
        hits: list[tuple[Hashable, np.ndarray]] = []
        waiting: list[tuple[Hashable, _Pending]] = []
        shared: list[Hashable] = []
        alone: list[Hashable] = []
        batch = _Pending()
        with self._lock:
            for key, places in wanted.items():
                segment, pending = self._find_locked(key)
                if segment is not None:
                    hits.append((key, segment))
                elif pending is not None:
                    waiting.append((key, pending))
                elif not self._needed_here_only(places):
                    shared.append(key)
                elif self._notice_reread(key):
                    shared.append(key)
                else:
                    self._pending[key] = batch
                    alone.append(key)
        return hits, waiting, shared, (alone, batch)

    def _lookup(self, key: Hashable) -> tuple[np.ndarray | None, _Pending | None, bool]:
        """(cached segment, None, False), (None, someone's decode, False) or (None, claim, True)."""
        with self._lock:
            segment, pending = self._find_locked(key)
            if segment is not None or pending is not None:
                return segment, pending, False
            self._notice_reread(key)
            pending = self._pending[key] = _Pending()
            return None, pending, True

    def _find_locked(self, key: Hashable) -> tuple[np.ndarray | None, _Pending | None]:
        """(the cached segment, counted as a hit, None), (None, someone's decode) or (None,
        None). Call with the lock held."""
        segment = self._entries.get(key)
        if segment is not None:
            self._entries.move_to_end(key)
            self.hit_count += 1
            return segment, None
        return None, self._pending.get(key)

    def _notice_reread(self, key: Hashable) -> bool:
        """Whether reads overlap, noticing it now if ``key`` is read again after reads took it
        whole: segments are then kept by recency (see the module doc). Call with the lock held."""
        if not self.overlapping and key in self._used_up:
            self.overlapping = True
            self._used_up.clear()
            self._untaken.clear()
        return self.overlapping

    def _decode_alone(
        self,
        claim: tuple[list[Hashable], _Pending],
        wanted: dict[Hashable, list[Piece]],
        decode: Decode,
        decode_into: DecodeInto | None,
    ) -> None:
        """Decode the segments this read alone takes whole, without keeping them: with
        ``decode_into``, straight into the read's array where a segment fills a contiguous part
        of it, else through this thread's scratch buffer; otherwise (or for a segment
        ``decode_into`` cannot do) into a new array, copied. The claim ends once all are
        placed; a failure ends it for every segment left, whose waiters then decode them
        themselves."""
        keys, batch = claim
        done = 0
        try:
            for key in keys:
                piece = wanted[key][0]
                if decode_into is None:
                    piece.place(decode(key))
                    done += 1
                    continue
                target = piece.whole_target()
                if target is not None:
                    if decode_into(key, target) is None:
                        piece.place(decode(key))
                else:
                    segment = decode_into(key, self._scratch(piece))
                    piece.place(segment if segment is not None else decode(key))
                done += 1
        except BaseException as error:
            batch.error = error
            raise
        finally:
            with self._lock:
                for key in keys:
                    del self._pending[key]
                for key in keys[:done]:
                    self._remember_used_up(key)  # taken whole: a read of it again means overlap
                self.decode_count += done
            if batch.error is None:
                batch.error = _DecodedInPlace()  # not shared: waiters decode it themselves
            batch.done.set()

    def _place(self, key: Hashable, places: list[Piece], segment: np.ndarray) -> None:
        taken = sum(piece.place(segment) for piece in places)
        with self._lock:
            untaken = self._untaken.get(key)
            if untaken is None:
                return
            if untaken > taken:
                self._untaken[key] = untaken - taken
                return
            del self._untaken[key]  # every value taken: no read without overlap needs it again
            self.nbytes -= self._entries.pop(key).nbytes
            self._remember_used_up(key)

    def _decode_claimed(
        self, key: Hashable, pending: _Pending, decode: Decode, places: list[Piece]
    ) -> np.ndarray:
        try:
            segment = decode(key)
        except BaseException as error:
            self._abandon(key, pending, error)
            raise
        pending.value = segment
        with self._lock:
            del self._pending[key]
            self.decode_count += 1
            takeable = places[0].segment_values or segment.size
            if self.overlapping:
                self._store(key, segment)
            elif sum(piece.size for piece in places) < takeable:
                self._store(key, segment)
                if key in self._entries:
                    self._untaken[key] = takeable  # this read's pieces count in _place
            else:
                self._remember_used_up(key)  # this read takes it whole: not kept
        pending.done.set()
        return segment

    def _abandon(self, key: Hashable, pending: _Pending, error: BaseException) -> None:
        """Release a claim whose decode failed: readers waiting on it try it themselves."""
        pending.error = error
        with self._lock:
            del self._pending[key]
        pending.done.set()

    def _needed_here_only(self, places: list[Piece]) -> bool:
        # overlapping reads share segments through the cache
        return len(places) == 1 and not self.overlapping and places[0].takes_all()

    def _scratch(self, piece: Piece) -> np.ndarray:
        """This thread's reusable buffer, as ``stored_values`` values of the piece's dtype."""
        dtype = piece.dst.dtype
        nbytes = piece.stored_values * dtype.itemsize
        buffer = getattr(self._local, "scratch", None)
        if buffer is None or buffer.nbytes < nbytes:
            buffer = self._local.scratch = np.empty(nbytes, np.uint8)
        return buffer[:nbytes].view(dtype)

    def _remember_used_up(self, key: Hashable) -> None:
        self._used_up[key] = None
        if len(self._used_up) > _USED_UP_KEYS:
            self._used_up.popitem(last=False)

    def _store(self, key: Hashable, segment: np.ndarray) -> None:
        size = segment.nbytes
        if size > self.max_bytes:
            return
        self._entries[key] = segment
        self.nbytes += size
        while self.nbytes > self.max_bytes:
            old_key, old = self._entries.popitem(last=False)
            self._untaken.pop(old_key, None)
            self.nbytes -= old.nbytes
        self.peak_bytes = max(self.peak_bytes, self.nbytes)
