import numpy as np
import pytest

import bioimage_async as ba
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


def test_ids_in_roi_takes_a_region_as_a_source_index_does():
    """The region was not normalised: negative starts gave id -1, a region in row 1 gave a
    block of row 0, and an empty region gave block 0."""
    grid = BlockGrid((40, 100), (10, 25))  # 4 x 4 blocks
    assert grid.ids_in_roi(np.s_[0:10, -50:]) == [2, 3]
    assert grid.ids_in_roi(np.s_[10:20, :]) == [4, 5, 6, 7]
    assert grid.ids_in_roi(np.s_[..., 30:31]) == [1, 5, 9, 13]
    assert grid.ids_in_roi(np.s_[-1, 0:30]) == [12, 13]
    assert grid.ids_in_roi(np.s_[5:5, :]) == []
    with pytest.raises(ba.InvalidIndexError, match="out of bounds"):
        grid.ids_in_roi(np.s_[0:50, :])
