"""Blocks: the grid (ids in C order, halos), write-safety plans and default block shapes."""
