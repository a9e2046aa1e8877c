"""The decoded-segment cache: a byte-bounded LRU that makes concurrent readers share one decode."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from bioimage_async.sources.decoded_cache import DecodedCache, Piece


def segment(value: int, nbytes: int = 100) -> np.ndarray:
    return np.full(nbytes, value, dtype=np.uint8)


def pieces_for(keys: list[int], out: np.ndarray) -> list[Piece]:
    """One piece per key: the first byte of segment ``key`` into ``out[i]``."""
    return [Piece(key, out, (slice(i, i + 1),), (slice(0, 1),)) for i, key in enumerate(keys)]


def test_each_missing_segment_is_decoded_once_and_reused() -> None:
    cache = DecodedCache(max_bytes=1000)
    decoded: list[int] = []

    def decode(key):
        decoded.append(key)
        return segment(key)

    out = np.zeros(3, np.uint8)
    cache.fill(pieces_for([1, 2, 1], out), decode)
    np.testing.assert_array_equal(out, [1, 2, 1])
    cache.fill(pieces_for([2, 1, 2], out), decode)
    np.testing.assert_array_equal(out, [2, 1, 2])
    assert decoded == [1, 2]
    assert cache.decode_count == 2 and cache.hit_count == 2


def test_least_recently_used_segments_leave_first_within_the_byte_budget() -> None:
    cache = DecodedCache(max_bytes=250)  # room for two 100-byte segments
    decoded: list[int] = []

    def decode(key):
        decoded.append(key)
        return segment(key)

    out = np.zeros(1, np.uint8)
    for key in (1, 2, 1, 3, 1, 2):  # 3 evicts 2 (1 was used more recently), then 2 evicts 3
        cache.fill(pieces_for([key], out), decode)
    assert decoded == [1, 2, 3, 2]
    assert cache.nbytes <= 250 and cache.peak_bytes <= 250 and len(cache) == 2


def test_a_segment_larger_than_the_budget_is_used_but_not_kept() -> None:
    cache = DecodedCache(max_bytes=50)
    out = np.zeros(1, np.uint8)
    cache.fill(pieces_for([7], out), lambda key: segment(key, 100))
    assert out[0] == 7 and len(cache) == 0 and cache.nbytes == 0


def test_a_zero_budget_keeps_nothing() -> None:
    cache = DecodedCache(max_bytes=0)
    calls: list[int] = []
    out = np.zeros(1, np.uint8)
    for _ in range(2):
        cache.fill(pieces_for([4], out), lambda key: calls.append(key) or segment(key))
    assert calls == [4, 4] and cache.peak_bytes == 0


def test_a_negative_budget_is_refused() -> None:
    with pytest.raises(ValueError, match="max_bytes >= 0"):
        DecodedCache(max_bytes=-1)


def test_concurrent_readers_of_one_segment_wait_for_a_single_decode() -> None:
    cache = DecodedCache()
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def slow_decode(key):
        calls.append(key)
        started.set()
        assert release.wait(10)
        return segment(key)

    outs = [np.zeros(1, np.uint8) for _ in range(2)]
    first = threading.Thread(target=cache.fill, args=(pieces_for([5], outs[0]), slow_decode))
    first.start()
    assert started.wait(10)  # the first reader is decoding segment 5
    second = threading.Thread(target=cache.fill, args=(pieces_for([5], outs[1]), slow_decode))
    second.start()
    second.join(0.2)
    assert second.is_alive()  # waiting for the first reader's decode, not decoding itself
    release.set()
    first.join(10)
    second.join(10)
    assert calls == [5] and [o[0] for o in outs] == [5, 5]


def test_a_reader_decodes_the_free_segments_before_waiting_for_a_busy_one() -> None:
    cache = DecodedCache()
    busy, release = threading.Event(), threading.Event()
    order: list[tuple[str, int]] = []

    def decode(key):
        order.append((threading.current_thread().name, key))
        if key == 1:
            busy.set()
            assert release.wait(10)
        elif threading.current_thread().name == "second" and key == 3:
            release.set()  # the busy segment finishes only after the second reader's own work
        return segment(key)

    out_a, out_b = np.zeros(1, np.uint8), np.zeros(3, np.uint8)
    first = threading.Thread(target=cache.fill, args=(pieces_for([1], out_a), decode), name="first")
    first.start()
    assert busy.wait(10)
    second = threading.Thread(
        target=cache.fill, args=(pieces_for([1, 2, 3], out_b), decode), name="second"
    )
    second.start()
    second.join(10)
    first.join(10)
    assert not second.is_alive() and not first.is_alive()
    assert order == [("first", 1), ("second", 2), ("second", 3)]
    np.testing.assert_array_equal(out_b, [1, 2, 3])


def test_when_the_decoding_reader_fails_a_waiting_reader_decodes_itself() -> None:
    cache = DecodedCache()
    started, release = threading.Event(), threading.Event()
    calls: list[str] = []

    def decode(key):
        name = threading.current_thread().name
        calls.append(name)
        if name == "first":
            started.set()
            assert release.wait(10)
            raise OSError("disk went away")
        return segment(key)

    errors: list[BaseException] = []

    def first_reader() -> None:
        try:
            cache.fill(pieces_for([9], np.zeros(1, np.uint8)), decode)
        except OSError as error:
            errors.append(error)

    out = np.zeros(1, np.uint8)
    first = threading.Thread(target=first_reader, name="first")
    first.start()
    assert started.wait(10)
    second = threading.Thread(target=cache.fill, args=(pieces_for([9], out), decode), name="second")
    second.start()
    second.join(0.2)
    release.set()
    first.join(10)
    second.join(10)
    assert [str(e) for e in errors] == ["disk went away"]
    assert calls == ["first", "second"] and out[0] == 9


def quarter(key: int, part: int, out: np.ndarray) -> Piece:
    """Part ``part`` (0-3) of a 100-byte segment: 25 bytes into ``out``."""
    return Piece(key, out, (slice(0, 25),), (slice(25 * part, 25 * part + 25),))


def test_a_segment_one_read_takes_whole_is_not_kept() -> None:
    cache = DecodedCache()
    decoded: list[int] = []
    out = np.zeros(100, np.uint8)
    for key in range(5):  # blocks aligned to segments: nobody needs a segment twice
        whole = Piece(key, out, (slice(0, 100),), (slice(0, 100),))
        cache.fill([whole], lambda k: decoded.append(k) or segment(k))
        assert out[0] == key
    assert decoded == [0, 1, 2, 3, 4] and cache.peak_bytes == 0 and len(cache) == 0


def test_a_segment_leaves_once_reads_have_taken_all_its_values() -> None:
    cache = DecodedCache()
    decoded: list[int] = []
    out = np.zeros(25, np.uint8)
    for part in range(4):  # four blocks share the segment, a quarter each
        cache.fill([quarter(7, part, out)], lambda k: decoded.append(k) or segment(k))
        assert len(cache) == (1 if part < 3 else 0)
    assert decoded == [7] and cache.peak_bytes == 100 and not cache.overlapping


def test_a_used_up_segment_read_again_makes_the_cache_keep_by_recency() -> None:
    cache = DecodedCache()
    decoded: list[int] = []
    out = np.zeros(100, np.uint8)

    def decode(key):
        decoded.append(key)
        return segment(key)

    whole = Piece(3, out, (slice(0, 100),), (slice(0, 100),))
    cache.fill([whole], decode)
    cache.fill([whole], decode)  # reads overlap (a halo, a viewer): one more decode ...
    assert cache.overlapping
    for _ in range(3):
        cache.fill([whole], decode)  # ... and from then on the cache keeps it
    assert decoded == [3, 3] and len(cache) == 1


def test_values_taken_by_concurrent_readers_of_one_decode_all_count() -> None:
    cache = DecodedCache()
    started, release = threading.Event(), threading.Event()

    def slow_decode(key):
        started.set()
        assert release.wait(10)
        return segment(key)

    outs = [np.zeros(25, np.uint8) for _ in range(4)]
    first = threading.Thread(target=cache.fill, args=([quarter(1, 0, outs[0])], slow_decode))
    first.start()
    assert started.wait(10)
    waiters = [
        threading.Thread(target=cache.fill, args=([quarter(1, part, outs[part])], slow_decode))
        for part in (1, 2)
    ]
    for waiter in waiters:
        waiter.start()
    release.set()
    for thread in (first, *waiters):
        thread.join(10)
    assert len(cache) == 1  # three quarters taken: the segment stays for the fourth
    cache.fill([quarter(1, 3, outs[3])], slow_decode)
    assert len(cache) == 0 and cache.decode_count == 1
    assert all((o == 1).all() for o in outs)


def test_an_edge_segment_is_used_up_by_the_values_inside_the_array() -> None:
    """An edge tile or chunk decodes whole but lies partly outside the array: reads can take
    only its inside values, and taking those is taking it all."""
    cache = DecodedCache()
    out = np.zeros(25, np.uint8)
    for part in range(2):  # the segment's first half lies inside the array
        piece = Piece(5, out, (slice(0, 25),), (slice(25 * part, 25 * part + 25),), 50)
        cache.fill([piece], segment)
        assert len(cache) == (1 if part == 0 else 0)
    whole = Piece(6, np.zeros(50, np.uint8), (slice(0, 50),), (slice(0, 50),), 50)
    cache.fill([whole], segment)  # one read takes all its inside values: never kept
    assert len(cache) == 0 and cache.decode_count == 2 and not cache.overlapping


def whole(key: int, out: np.ndarray) -> Piece:
    """All 100 bytes of segment ``key`` into the contiguous ``out``."""
    return Piece(key, out, (slice(0, 100),), (slice(0, 100),), 100, 100)


def test_a_segment_a_read_takes_whole_is_decoded_straight_into_its_array() -> None:
    cache = DecodedCache()
    targets: list[np.ndarray] = []

    def decode_into(key, target):
        targets.append(target)
        target[...] = key
        return target

    out = np.zeros(100, np.uint8)
    cache.fill([whole(4, out)], segment, decode_into)
    assert len(targets) == 1 and np.shares_memory(targets[0], out) and (out == 4).all()
    assert cache.decode_count == 1 and len(cache) == 0 and cache.nbytes == 0


def test_a_segment_needed_by_one_strided_piece_is_decoded_into_scratch_and_copied() -> None:
    """A tile in a wider block: its rows are not contiguous there, so it is decoded into the
    thread's reused scratch buffer and copied; a piece that leaves values for other reads
    (a quarter) goes through the cache."""
    cache = DecodedCache()
    targets: list[np.ndarray] = []

    def decode_into(key, target):
        targets.append(target)
        target[...] = key
        return target.reshape(2, 1)

    wide = np.zeros((2, 100), np.uint8)
    strided = Piece(5, wide, (slice(None), slice(0, 1)), (slice(None), slice(None)), 0, 2)
    quarter_out = np.zeros(25, np.uint8)
    cache.fill([quarter(3, 0, quarter_out), strided], segment, decode_into)
    assert len(targets) == 1 and not np.shares_memory(targets[0], wide)
    assert (wide[:, 0] == 5).all() and (wide[:, 1:] == 0).all() and (quarter_out == 3).all()
    assert len(cache) == 1  # the quarter's segment is kept for the other quarters
    cache.fill(
        [Piece(6, wide, (slice(None), slice(1, 2)), (slice(None), slice(None)), 0, 2)],
        segment,
        decode_into,
    )
    assert np.shares_memory(targets[0], targets[1])  # the same scratch buffer, reused
    assert (wide[:, 1] == 6).all() and (wide[:, 0] == 5).all()


def test_a_failed_direct_decode_falls_back_to_decode_and_copy() -> None:
    cache = DecodedCache()
    out = np.zeros(100, np.uint8)
    cache.fill([whole(6, out)], segment, lambda key, target: None)
    assert (out == 6).all() and cache.decode_count == 1


def test_a_reader_waiting_on_a_segment_decoded_into_another_read_decodes_it_itself() -> None:
    """The first read decodes straight into its own array: nothing is shared, so the reader
    that waited on that decode must decode the segment for itself (and reads now overlap)."""
    cache = DecodedCache()
    started, release = threading.Event(), threading.Event()

    def decode_into(key, target):
        started.set()
        assert release.wait(10)
        target[...] = key
        return target

    decoded: list[int] = []

    def decode(key):
        decoded.append(key)
        return segment(key)

    first_out, second_out = np.zeros(100, np.uint8), np.zeros(100, np.uint8)
    first = threading.Thread(target=cache.fill, args=([whole(8, first_out)], decode, decode_into))
    first.start()
    assert started.wait(10)
    second = threading.Thread(target=cache.fill, args=([whole(8, second_out)], decode, decode_into))
    second.start()
    second.join(0.2)
    release.set()
    first.join(10)
    second.join(10)
    assert (first_out == 8).all() and (second_out == 8).all()
    assert decoded == [8] and cache.overlapping


def test_a_direct_decode_failing_mid_read_releases_every_claim_of_that_read() -> None:
    """A read claims all the segments it takes whole at once; when one of them fails, the
    segments decoded before it count, and the rest are free again: a reader that waited on one
    of them decodes it itself, and a later read of the failed one decodes it anew."""
    cache = DecodedCache()
    started, release = threading.Event(), threading.Event()

    def decode_into(key, target):
        if key == 2 and threading.current_thread().name == "first":
            started.set()
            assert release.wait(10)
            raise OSError("disk went away")
        target[...] = key
        return target

    errors: list[BaseException] = []
    first_out = [np.zeros(100, np.uint8) for _ in range(3)]

    def first_reader() -> None:
        try:
            cache.fill(
                [whole(k, out) for k, out in zip([1, 2, 3], first_out)], segment, decode_into
            )
        except OSError as error:
            errors.append(error)

    first = threading.Thread(target=first_reader, name="first")
    first.start()
    assert started.wait(10)
    waiter_out = np.zeros(100, np.uint8)
    waiter = threading.Thread(
        target=cache.fill, args=([whole(3, waiter_out)], segment, decode_into), name="second"
    )
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive()  # segment 3 is claimed by the first read: it waits
    release.set()
    first.join(10)
    waiter.join(10)
    assert [str(e) for e in errors] == ["disk went away"]
    assert (first_out[0] == 1).all() and (first_out[2] == 0).all()  # stopped at segment 2
    assert (waiter_out == 3).all()
    again = np.zeros(100, np.uint8)
    cache.fill([whole(2, again)], segment, decode_into)
    assert (again == 2).all()
    assert cache.decode_count == 3  # 1 by the first read, 3 by the waiter, 2 by the last read


def test_readers_sharing_segments_decode_different_ones_at_the_same_time() -> None:
    """Blocks of 256 columns over 1024-wide strips share every strip: while one reader decodes
    a strip, the other takes the next one, instead of waiting for the first to decode all."""
    cache = DecodedCache()
    a_started, b_decoded = threading.Event(), threading.Event()
    calls: list[tuple[str, int]] = []

    def decode(key):
        name = threading.current_thread().name
        calls.append((name, key))
        if name == "a" and key == 1:
            a_started.set()
            b_decoded.wait(5)  # held until the other reader decoded something (or 5 s)
        if name == "b":
            b_decoded.set()
        return segment(key)

    outs = {name: np.zeros((4, 25), np.uint8) for name in "ab"}

    def read(name: str, part: int) -> None:
        cache.fill([quarter(k, part, outs[name][k - 1]) for k in (1, 2, 3, 4)], decode)

    a = threading.Thread(target=read, args=("a", 0), name="a")
    a.start()
    assert a_started.wait(10)
    b = threading.Thread(target=read, args=("b", 1), name="b")
    b.start()
    a.join(10)
    b.join(10)
    assert ("b", 2) in calls  # b decoded strip 2 while a was busy with strip 1
    assert sorted(key for _, key in calls) == [1, 2, 3, 4]  # each once
    for name in "ab":
        np.testing.assert_array_equal(outs[name], np.repeat([[1], [2], [3], [4]], 25, axis=1))
