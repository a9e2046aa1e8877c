import pytest

from bioimage_async import BlockGrid, UnsafeBlockShapeError
from bioimage_async.blocking.defaults import default_block_shape
from bioimage_async.blocking.safety import plan_writes


def test_chunk_multiple_block_shape_needs_no_grouping():
    plan = plan_writes(BlockGrid((100, 100), (64, 64)), (32, 32), None, None, concurrent=True)
    assert not plan.grouped
    assert list(plan.groups()) == [[0], [1], [2], [3]]


def test_unaligned_block_shape_is_refused_with_a_working_proposal():
    with pytest.raises(UnsafeBlockShapeError, match=r"block_shape=\(64, 32\)"):
        plan_writes(BlockGrid((100, 100), (50, 40)), (32, 32), None, None, concurrent=True)


def test_unaligned_block_shape_is_fine_with_a_single_writer():
    plan = plan_writes(BlockGrid((100, 100), (50, 40)), (32, 32), None, None, concurrent=False)
    assert not plan.grouped


def test_blocks_sharing_a_shard_are_grouped_onto_one_writer():
    grid = BlockGrid((8, 8), (2, 2))
    plan = plan_writes(grid, (2, 2), (4, 4), None, concurrent=True)
    groups = list(plan.groups())
    assert len(groups) == 4
    assert groups[0] == [0, 1, 4, 5]
    assert sorted(i for g in groups for i in g) == list(range(16))
    assert list(plan.groups([0, 5, 15])) == [[0, 5], [15]]


def test_region_starting_off_the_chunk_grid_is_refused():
    with pytest.raises(UnsafeBlockShapeError, match="does not start on a chunk boundary"):
        plan_writes(BlockGrid((64, 64), (32, 32)), (32, 32), None, (5, 0), concurrent=True)


@pytest.mark.parametrize(
    "shape,granularity,chunks",
    [
        ((512, 1024, 1024), (64, 64, 64), None),
        ((45, 70, 83), (16, 32, 32), (20, 20, 20)),
        ((3, 5000, 7000), (1, 512, 512), None),
        ((100, 100), None, (30, 30)),
    ],
)
def test_default_block_shape_is_always_write_safe(shape, granularity, chunks):
    block = default_block_shape(shape, 1, granularity, chunks)
    assert len(block) == len(shape)
    if granularity is not None:
        grid = BlockGrid(shape, block)
        plan_writes(grid, granularity, None, None, concurrent=True)  # must not raise
