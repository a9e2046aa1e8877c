"""The one compiled kernel (the anti-aliased downsample, bioimage_async/kernels/_smooth.c).

Optional: where no C compiler is available the build goes on without it and the numpy kernel
(bit-identical, ~2x slower) is used. Everything else is configured in pyproject.toml.
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
        )
    ]
)
