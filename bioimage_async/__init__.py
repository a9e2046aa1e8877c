"""bioimage_async: asyncio-native, tensorstore-based block-wise processing of huge volumes.

Every I/O path is a coroutine; ``bioimage_async.sync`` holds blocking twins of the main calls.
"""

from . import sync
from ._version import __version__
from .blocking.grid import Block, BlockGrid
from .context import configure
from .errors import (
    BioimageAsyncError,
    BlockCancelledError,
    BlockComputeError,
    BlockTimeoutError,
    CastingError,
    CommandError,
    ConfigError,
    FormatNotSupportedError,
    InternalPathNotFoundError,
    InvalidArgumentError,
    InvalidIndexError,
    MissingDependencyError,
    NotSerializableError,
    PayloadMismatchError,
    ReadOnlySourceError,
    RunFolderNotFoundError,
    RunLockedError,
    RunnerError,
    RunTimeoutError,
    SourceError,
    SourceExistsError,
    SourceNotFoundError,
    SshError,
    StorageError,
    SyncCallError,
    UnsafeBlockShapeError,
    WorkerCrashedError,
)
from .ops import copy, downsample, iter_blocks, map_blocks, pyramid
from .pipeline.stats import RunStats
from .runners.attach import attach, missing_blocks
from .runners.config import RunnerConfig, SlurmConfig, config_file_path, write_slurm_config
from .runners.options import ExecKwargs, ExecOptions
from .runners.registry import RunnerBackend, job_types, register_runner
from .runners.run import Run, RunStatus
from .sources import (
    CreateRequest,
    FormatBackend,
    Source,
    SourceSpec,
    StorageOptions,
    as_source,
    create_source,
    formats,
    from_spec,
    open_source,
    register_format,
)
from .sources.cloudvolume import open_cloudvolume
from .sources.webknossos import open_webknossos
from .sources.wrappers import ResizedSource, ThresholdSource

__all__ = [
    "BlockCancelledError",
    "BlockComputeError",
    "BlockTimeoutError",
    "CastingError",
    "CommandError",
    "RunFolderNotFoundError",
    "RunLockedError",
    "RunLockedError",
    "RunTimeoutError",
    "SourceNotFoundError",
    "SshError",
    "SyncCallError",
    "WorkerCrashedError",
    "ExecKwargs",
    "ExecOptions",
    "RunnerBackend",
    "job_types",
    "register_runner",
    "CreateRequest",
    "FormatBackend",
    "InvalidArgumentError",
    "StorageError",
    "StorageOptions",
    "formats",
    "register_format",
    "Block",
    "BlockGrid",
    "ResizedSource",
    "RunStats",
    "RunnerConfig",
    "Run",
    "RunStatus",
    "SlurmConfig",
    "attach",
    "missing_blocks",
    "config_file_path",
    "write_slurm_config",
    "ThresholdSource",
    "copy",
    "downsample",
    "iter_blocks",
    "map_blocks",
    "pyramid",
    "BioimageAsyncError",
    "ConfigError",
    "FormatNotSupportedError",
    "InternalPathNotFoundError",
    "InvalidIndexError",
    "MissingDependencyError",
    "NotSerializableError",
    "PayloadMismatchError",
    "ReadOnlySourceError",
    "RunnerError",
    "Source",
    "SourceError",
    "SourceExistsError",
    "SourceSpec",
    "UnsafeBlockShapeError",
    "__version__",
    "as_source",
    "configure",
    "create_source",
    "from_spec",
    "open_cloudvolume",
    "open_source",
    "open_webknossos",
    "sync",
]
