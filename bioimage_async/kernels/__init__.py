"""Per-block computations as pure numpy functions: resampling and reductions.

The lowest layer: nothing here imports from other bioimage_async layers, so sources (wrappers)
and ops both use these kernels without an upward import.
"""
