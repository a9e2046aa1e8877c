"""Progress records of block ids from 10**12 (huge grids): written, read back, torn by crashes."""

from __future__ import annotations

import numpy as np
import pytest

import bioimage_async as ba
from bioimage_async.runners.protocol import parse_progress, progress_line

from .blockfns import fail_while_marker_exists

#: the last block of a 10**6-cubed volume in 64^3 blocks (15625**3 blocks)
LAST_OF_MILLION_CUBED = 3_814_697_265_624
IDS = [0, 10**12 - 1, 10**12, LAST_OF_MILLION_CUBED]


def test_progress_records_round_trip_on_both_sides_of_ten_to_the_twelve():
    raw = b"".join(progress_line(i) for i in IDS)
    assert parse_progress(raw).tolist() == IDS


def test_narrow_records_keep_the_format_of_older_run_folders():
    assert progress_line(10**12 - 1) == b"999999999999\n"
    assert parse_progress(b"000000000005\n999999999999\n").tolist() == [5, 10**12 - 1]


@pytest.mark.parametrize("block_id", [10**12, LAST_OF_MILLION_CUBED])
def test_a_torn_wide_record_is_skipped_never_read_as_another_block(block_id):
    """A crash cuts a record anywhere; the next attempt starts on a line of its own. Only the
    cut that loses the newline alone keeps the record: all its digits were written."""
    record = progress_line(block_id)
    for cut in range(len(record) - 1):
        raw = progress_line(4) + record[:cut] + b"\n" + progress_line(7)
        assert parse_progress(raw).tolist() == [4, 7], (cut, record[:cut])
    raw = progress_line(4) + record[:-1] + b"\n" + progress_line(7)
    assert parse_progress(raw).tolist() == [4, block_id, 7]


def test_wide_lines_of_other_lengths_or_beyond_int64_are_not_records():
    assert parse_progress(b"w%018d\nw%020d\n" % (10**12, 10**12)).tolist() == []
    assert parse_progress(b"w9999999999999999999\n").tolist() == []
    assert parse_progress(b"1000000000000\n").tolist() == []  # 13 digits: never written


@pytest.mark.parametrize("job_type", ["local", "subprocess"])
async def test_a_finished_block_above_ten_to_the_twelve_is_not_reported_missing(tmp_path, job_type):
    shape, chunks = (10**6,) * 3, (64, 64, 64)
    grid = ba.BlockGrid(shape, chunks)
    assert grid.num_blocks == LAST_OF_MILLION_CUBED + 1
    src = await ba.create_source(  # virtual: all fill value but the block written below
        tmp_path / "in.zarr", shape=shape, dtype="uint8", chunks=chunks, fill_value=7
    )
    await src.write(grid.block(0).roi, np.full(chunks, 250, np.uint8))  # bright: it fails
    out = await ba.create_source(tmp_path / "out.zarr", shape=shape, dtype="uint8", chunks=chunks)
    marker = tmp_path / "marker"
    marker.touch()
    fn = fail_while_marker_exists(str(marker))
    config = ba.RunnerConfig(tmp_root=str(tmp_path / "tmp"), poll_interval=0.05)
    ids = [0, 5, 10**12, LAST_OF_MILLION_CUBED]
    with pytest.raises(ba.RunnerError) as caught:
        await ba.map_blocks(
            fn,
            src,
            out,
            block_shape=chunks,
            block_ids=ids,
            job_type=job_type,
            num_workers=1,
            job_config=config,
        )
    assert caught.value.failed_block_ids == [0]
    folder = caught.value.tmp_folder
    assert await ba.missing_blocks(folder) == [0]
    for block_id in ids[1:]:
        assert (await out.read(grid.block(block_id).roi) == 248).all()
    marker.unlink()
    await ba.map_blocks(
        fn, src, out, block_shape=chunks, job_type=job_type, job_config=config, resume_from=folder
    )
    assert (await out.read(grid.block(0).roi) == 5).all()


@pytest.mark.parametrize(
    ("block_ids", "expected"),
    [([10**12, LAST_OF_MILLION_CUBED], 2), ([3, 4], 2), ([3, 10**12], 1)],
)
async def test_blocks_done_count_from_log_sizes_never_exceeds_the_records(
    tmp_path, block_ids, expected
):
    """Exact when the ids have one record width; an undercount when they straddle 10**12."""
    from bioimage_async.runners.files import LocalFiles
    from bioimage_async.runners.protocol import Manifest, RunFolder

    manifest = Manifest(
        {"layout": {"num_blocks": LAST_OF_MILLION_CUBED + 1}, "block_ids": block_ids}
    )
    (tmp_path / "progress").mkdir()
    (tmp_path / "progress" / "0.log").write_bytes(b"".join(map(progress_line, block_ids)))
    folder = RunFolder(LocalFiles(), str(tmp_path), manifest)
    assert await folder.blocks_done_count() == expected
    assert (await folder.done_blocks()).tolist() == block_ids


@pytest.mark.parametrize(
    ("block_ids", "expected"),
    [
        (None, [1, 3, 5, 6, 7, 8, 9]),  # the whole grid of 10 blocks
        ([9, 2, 4, 4, 10**12], [9, 10**12]),  # a request: unordered, repeated, beyond 2**32
        ([], []),
    ],
)
async def test_missing_blocks_are_the_requested_ids_without_a_record(tmp_path, block_ids, expected):
    """Records of other blocks (a run's earlier request, ids past the grid) change nothing."""
    from bioimage_async.runners.files import LocalFiles
    from bioimage_async.runners.protocol import Manifest, RunFolder

    num_blocks = 10 if block_ids is None else LAST_OF_MILLION_CUBED + 1
    manifest = Manifest({"layout": {"num_blocks": num_blocks}, "block_ids": block_ids})
    (tmp_path / "progress").mkdir()
    (tmp_path / "progress" / "0.log").write_bytes(b"".join(map(progress_line, [0, 2, 4, 11])))
    (tmp_path / "progress" / "1.log").write_bytes(
        b"".join(map(progress_line, [4, 10**12 + 1, 3 * 10**12 + 5]))
    )
    (tmp_path / "progress" / "notes.txt").write_bytes(progress_line(9))
    folder = RunFolder(LocalFiles(), str(tmp_path), manifest)
    assert await folder.missing_blocks() == expected
