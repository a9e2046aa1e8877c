"""Block-wise ops: validate, build a BlockTask, hand it to a runner."""

from .copy import copy
from .downsample import downsample
from .iter_blocks import iter_blocks
from .map_blocks import map_blocks
from .pyramid import pyramid

__all__ = ["copy", "downsample", "iter_blocks", "map_blocks", "pyramid"]
