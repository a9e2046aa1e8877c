import pytest

from bioimage_async import BlockGrid


def test_block_ids_are_c_order_with_last_axis_fastest():
    grid = BlockGrid((10, 20, 30), (5, 10, 10))
    assert grid.grid_shape == (2, 2, 3)
    assert grid.block(0).roi == (slice(0, 5), slice(0, 10), slice(0, 10))
    assert grid.block(1).roi == (slice(0, 5), slice(0, 10), slice(10, 20))
    assert grid.block(3).roi == (slice(0, 5), slice(10, 20), slice(0, 10))
    assert grid.block(6).roi == (slice(5, 10), slice(0, 10), slice(0, 10))
    assert [grid.block_id(grid.grid_position(i)) for i in range(12)] == list(range(12))


def test_edge_blocks_are_clipped_to_the_volume():
    grid = BlockGrid((11, 7), (5, 5))
    assert grid.num_blocks == 6
    assert grid.block(5).roi == (slice(10, 11), slice(5, 7))


def test_halo_gives_clipped_outer_roi_and_local_inner_roi():
    grid = BlockGrid((20, 20), (10, 10), halo=(2, 3))
    first, last = grid.block(0), grid.block(3)
    assert first.outer_roi == (slice(0, 12), slice(0, 13))
    assert first.inner_local_roi == (slice(0, 10), slice(0, 10))
    assert last.outer_roi == (slice(8, 20), slice(7, 20))
    assert last.inner_local_roi == (slice(2, 12), slice(3, 13))


def test_out_of_range_block_ids_are_refused_up_front():
    grid = BlockGrid((10, 10), (5, 5))
    assert grid.check_ids([3, 1, 1]) == [1, 3]
    with pytest.raises(ValueError, match=r"out of range.*0\.\.3"):
        grid.check_ids([0, 4])


def test_block_shape_must_match_dimensions():
    with pytest.raises(ValueError, match="one entry per axis|entries"):
        BlockGrid((10, 10), (5, 5, 5))
