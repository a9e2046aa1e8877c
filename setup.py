"""The compiled kernels: the anti-aliased downsample (bioimage_async/kernels/_smooth.c) and the
label mode (_mode.c).

Optional: where no C compiler is available the build goes on without them and their numpy
twins (same results, ~2x slower) are used. Everything else is configured in pyproject.toml.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "bioimage_async.kernels._smooth",
            ["bioimage_async/kernels/_smooth.c"],
            # no fused multiply-adds: they round once instead of twice and change the bits
            extra_compile_args=["-O3", "-ffp-contract=off", "-fno-fast-math"],
            optional=True,
        ),
        Extension(
            "bioimage_async.kernels._mode",
            ["bioimage_async/kernels/_mode.c"],
            extra_compile_args=["-O3"],
            optional=True,
        ),
    ]
)
