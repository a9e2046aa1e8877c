"""The exceptions of bioimage_async.

Each error says what was wrong, with the offending value, and what to do instead.
Several also derive from the builtin a caller would naturally catch (``KeyError``,
``IndexError``, ``ValueError``, ...), so plain ``except`` clauses keep working. The tree:

    BioimageAsyncError
    ├── InvalidArgumentError (ValueError, TypeError)
    ├── CastingError (ValueError)
    ├── SyncCallError (RuntimeError)
    ├── SourceError
    │   ├── SourceNotFoundError (FileNotFoundError)
    │   ├── StorageError (OSError)
    │   ├── FormatNotSupportedError (ValueError)
    │   ├── MissingDependencyError (ImportError)
    │   ├── InternalPathNotFoundError (KeyError)
    │   ├── ReadOnlySourceError (PermissionError)
    │   ├── SourceExistsError (FileExistsError)
    │   └── NotSerializableError (TypeError)
    ├── InvalidIndexError (IndexError)
    ├── UnsafeBlockShapeError (ValueError)
    ├── ConfigError (ValueError)
    ├── SshError (ConnectionError)
    ├── CommandError (RuntimeError)
    ├── BlockComputeError (RuntimeError)
    ├── WorkerCrashedError (RuntimeError)
    ├── BlockTimeoutError (TimeoutError)
    ├── BlockCancelledError (RuntimeError)
    ├── RunLockedError (RuntimeError)
    ├── RunFolderNotFoundError (FileNotFoundError)
    ├── RunTimeoutError (TimeoutError)
    ├── PayloadMismatchError (ValueError)
    └── RunnerError (RuntimeError)
"""

from __future__ import annotations

from collections.abc import Iterable


class BioimageAsyncError(Exception):
    """Root of every error raised by bioimage_async on purpose."""


class InvalidArgumentError(BioimageAsyncError, ValueError, TypeError):
    """An argument has a value or type the call cannot use; the message names it and what
    would work. (Both a ValueError and a TypeError, so either ``except`` clause catches it.)"""


class CastingError(BioimageAsyncError, ValueError):
    """Values do not fit the output dtype (out of range, NaN/inf into integers); the message
    names the block or region, the offending range and the ``casting=`` opt-ins."""


class SourceError(BioimageAsyncError):
    """A volume cannot be opened, created, read or written as asked."""


class SyncCallError(BioimageAsyncError, RuntimeError):
    """A blocking (ba.sync / src[...]) call was made where it would deadlock."""


class SourceNotFoundError(SourceError, FileNotFoundError):
    """No file, folder, layer or object at the given path or URL."""


class StorageError(SourceError, OSError):
    """Object storage refused or did not answer: no such bucket or key, access denied,
    endpoint unreachable. Said in storage terms, never with a secret."""


class FormatNotSupportedError(SourceError, ValueError):
    """The path's format is unknown, or the format cannot do what was asked."""


class MissingDependencyError(SourceError, ImportError):
    """An optional backend library is not installed."""

    def __init__(self, package: str, extra: str, what: str) -> None:
        super().__init__(
            f"{what} needs the optional package {package!r}, which is not installed. "
            f"Install it with: pip install 'bioimage-async[{extra}]'"
        )
        self.package = package
        self.extra = extra


class InternalPathNotFoundError(SourceError, KeyError):
    """The key inside a container (HDF5 dataset, zarr group member, ...) does not exist."""

    def __init__(self, path: str, key: str | None, available: Iterable[str]) -> None:
        keys = sorted(available)
        shown = ", ".join(repr(k) for k in keys[:20]) or "none"
        more = f" (and {len(keys) - 20} more)" if len(keys) > 20 else ""
        if key is None:
            message = (
                f"{path} holds no array at its root; pass internal_path=, one of: {shown}{more}"
            )
        else:
            message = f"{path} has no array at {key!r}; arrays found: {shown}{more}"
        super().__init__(message)
        self.available = keys

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0])


class ReadOnlySourceError(SourceError, PermissionError):
    """A write was attempted on a source opened read-only or of a read-only format."""


class SourceExistsError(SourceError, FileExistsError):
    """create_source found an existing array and exist_ok was not set."""


class NotSerializableError(SourceError, TypeError):
    """A source without a reopenable spec (an in-memory array) was asked for its spec."""


class InvalidIndexError(BioimageAsyncError, IndexError):
    """An index is out of bounds or is not numpy basic indexing with unit steps."""


class UnsafeBlockShapeError(BioimageAsyncError, ValueError):
    """Concurrent writers would share an output chunk; the message proposes a safe block shape."""


class ConfigError(BioimageAsyncError, ValueError):
    """A runner or slurm configuration value or file is invalid."""


class RunnerError(BioimageAsyncError, RuntimeError):
    """Some blocks of a run failed or never ran; every finished block stays written.

    ``failed_block_ids`` is the sorted list of exactly the blocks that are missing.
    ``tmp_folder`` is the preserved run folder for ``resume_from=`` (every backend keeps one;
    None only for a local run over an in-memory input or output, which cannot be resumed).
    """

    def __init__(
        self,
        message: str,
        failed_block_ids: Iterable[int] = (),
        tmp_folder: str | None = None,
    ) -> None:
        super().__init__(message)
        self.failed_block_ids: list[int] = sorted(int(i) for i in failed_block_ids)
        self.tmp_folder = tmp_folder

    @classmethod
    def for_blocks(
        cls,
        name: str,
        failed_block_ids: Iterable[int],
        first_error: str | None,
        tmp_folder: str | None = None,
        details: str = "",
    ) -> RunnerError:
        """Build the standard message: count, the first ten ids, the first error, how to resume."""
        ids = sorted(int(i) for i in failed_block_ids)
        head = ", ".join(str(i) for i in ids[:10]) + (", ..." if len(ids) > 10 else "")
        message = f"{len(ids)} block(s) failed in {name!r}: [{head}]."
        if first_error:
            lines = [line for line in first_error.strip().splitlines() if line.strip()]
            message += f" First error: {lines[-1].strip() if lines else first_error.strip()}"
        if details:
            message += f"\n{details.rstrip()}"
        if first_error and "\n" in first_error.strip():
            message += f"\nFirst traceback:\n{first_error.rstrip()}"
        if tmp_folder is not None:
            message += (
                f"\nFinished blocks are kept. Resume with resume_from={tmp_folder!r}, "
                "or re-run the missing blocks with block_ids=error.failed_block_ids."
            )
        else:
            message += (
                "\nFinished blocks are kept. Re-run the missing blocks with "
                "block_ids=error.failed_block_ids."
            )
        return cls(message, ids, tmp_folder)


class SshError(BioimageAsyncError, ConnectionError):
    """The cluster cannot be reached, or its host key is not trusted."""


class CommandError(BioimageAsyncError, RuntimeError):
    """A scheduler command (sbatch, squeue, ...) failed, here or on the cluster."""


class WorkerCrashedError(BioimageAsyncError, RuntimeError):
    """A compute worker process died while computing a block (it is replaced)."""


class BlockTimeoutError(BioimageAsyncError, TimeoutError):
    """A block ran longer than ``block_timeout`` seconds and was stopped (it counts as failed)."""


class BlockCancelledError(BioimageAsyncError, RuntimeError):
    """Something inside a block (a source's request, a function's future) was cancelled while
    the run was not: the block counts as failed, never as done."""


class RunLockedError(BioimageAsyncError, RuntimeError):
    """A run folder, or an output, is being driven by another live process (named in the
    message); a second driver would do the work twice or mix the outputs."""


class RunFolderNotFoundError(BioimageAsyncError, FileNotFoundError):
    """A path given as a run folder (resume_from=, attach) holds no run."""


class RunTimeoutError(BioimageAsyncError, TimeoutError):
    """A run's tasks did not stop within the time allowed after a cancel."""


class BlockComputeError(BioimageAsyncError, RuntimeError):
    """A block's compute raised in a worker process; carries the worker's traceback."""

    def __init__(self, remote_traceback: str) -> None:
        last = remote_traceback.strip().splitlines()[-1] if remote_traceback.strip() else ""
        super().__init__(last)
        self.remote_traceback = remote_traceback


class PayloadMismatchError(BioimageAsyncError, ValueError):
    """``resume_from`` names a run of another block layout or other sources, or a worker found
    a payload written by another version: nothing ran; ``tmp_folder`` is the run folder."""

    def __init__(self, message: str, tmp_folder: str | None = None) -> None:
        super().__init__(message)
        self.tmp_folder = tmp_folder
