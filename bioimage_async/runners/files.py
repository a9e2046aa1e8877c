"""File access for a run folder: local (thread pool) or remote (one SFTP session).

The orchestrator only needs a handful of operations, all async and all per folder rather than
per block: write/read a file, make folders, list a folder with sizes (one listing per poll),
and remove the folder.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Protocol

from ..context import run_blocking
from ..errors import RunFolderNotFoundError


class RunFiles(Protocol):
    """What the orchestrator does with a run folder, wherever it lives."""

    async def makedirs(self, path: str) -> None: ...

    async def mkdir(self, path: str) -> None: ...

    async def write_bytes(self, path: str, data: bytes) -> None: ...

    async def read_bytes(self, path: str) -> bytes: ...

    async def exists(self, path: str) -> bool: ...

    async def list_sizes(self, path: str) -> dict[str, int]: ...

    async def rmtree(self, path: str) -> None: ...

    async def create_exclusive(self, path: str, data: bytes) -> bool:
        """Create ``path`` with ``data`` unless it exists (atomically); False if it existed."""
        ...

    async def remove(self, path: str) -> None: ...

    async def mtime(self, path: str) -> float | None: ...

    async def touch(self, path: str) -> None: ...

    async def free_bytes(self, path: str) -> int | None:
        """Free space on the filesystem holding ``path``, or None when unknown."""
        ...


def _write_atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def _create_exclusive(path: str, data: bytes) -> bool:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    return True


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _mtime(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime
    except FileNotFoundError:
        return None


def _list_sizes(path: str) -> dict[str, int]:
    try:
        with os.scandir(path) as entries:
            return {e.name: e.stat().st_size for e in entries if e.is_file()}
    except FileNotFoundError:
        return {}


class LocalFiles:
    """A run folder on this machine's filesystem (shared with the nodes for local sbatch)."""

    async def makedirs(self, path: str) -> None:
        await run_blocking(os.makedirs, path, exist_ok=True)

    async def mkdir(self, path: str) -> None:
        await run_blocking(os.mkdir, path)

    async def write_bytes(self, path: str, data: bytes) -> None:
        await run_blocking(_write_atomic, path, data)

    async def read_bytes(self, path: str) -> bytes:
        return await run_blocking(Path(path).read_bytes)

    async def exists(self, path: str) -> bool:
        return await run_blocking(os.path.exists, path)

    async def list_sizes(self, path: str) -> dict[str, int]:
        return await run_blocking(_list_sizes, path)

    async def rmtree(self, path: str) -> None:
        await run_blocking(shutil.rmtree, path, True)

    async def create_exclusive(self, path: str, data: bytes) -> bool:
        return await run_blocking(_create_exclusive, path, data)

    async def remove(self, path: str) -> None:
        await run_blocking(_remove, path)

    async def mtime(self, path: str) -> float | None:
        return await run_blocking(_mtime, path)

    async def touch(self, path: str) -> None:
        await run_blocking(os.utime, path)

    async def free_bytes(self, path: str) -> int | None:
        try:
            return (await run_blocking(shutil.disk_usage, path)).free
        except OSError:
            return None


class SftpFiles:
    """A run folder on the cluster, reached through one asyncssh SFTP client."""

    def __init__(self, sftp: Any) -> None:
        self.sftp = sftp

    async def makedirs(self, path: str) -> None:
        await self.sftp.makedirs(path, exist_ok=True)

    async def mkdir(self, path: str) -> None:
        await self.sftp.mkdir(path)

    async def write_bytes(self, path: str, data: bytes) -> None:
        tmp = f"{path}.tmp-{os.getpid()}"
        async with self.sftp.open(tmp, "wb") as handle:
            await handle.write(data)
        await self.sftp.posix_rename(tmp, path)

    async def read_bytes(self, path: str) -> bytes:
        """As LocalFiles: a missing file is FileNotFoundError (asyncssh's own error is no
        OSError, so callers that treat a vanished lease or status file as absent missed it)."""
        import asyncssh

        try:
            async with self.sftp.open(path, "rb") as handle:
                return await handle.read()
        except asyncssh.SFTPNoSuchFile as err:
            raise RunFolderNotFoundError(f"no such file on the cluster: {path}") from err

    async def exists(self, path: str) -> bool:
        return await self.sftp.exists(path)

    async def list_sizes(self, path: str) -> dict[str, int]:
        import asyncssh

        try:
            entries = await self.sftp.readdir(path)
        except asyncssh.SFTPNoSuchFile:
            return {}
        return {
            e.filename: int(e.attrs.size or 0) for e in entries if e.filename not in (".", "..")
        }

    async def rmtree(self, path: str) -> None:
        try:
            await self.sftp.rmtree(path)
        except Exception:  # noqa: BLE001 - clean-up of a finished run must not fail it
            pass

    async def create_exclusive(self, path: str, data: bytes) -> bool:
        import asyncssh

        try:
            async with self.sftp.open(path, "xb") as handle:
                await handle.write(data)
        except (asyncssh.SFTPFailure, asyncssh.SFTPFileAlreadyExists):
            return False
        return True

    async def remove(self, path: str) -> None:
        import asyncssh

        try:
            await self.sftp.remove(path)
        except asyncssh.SFTPNoSuchFile:
            pass

    async def mtime(self, path: str) -> float | None:
        import asyncssh

        try:
            return float((await self.sftp.stat(path)).mtime or 0.0)
        except asyncssh.SFTPNoSuchFile:
            return None

    async def touch(self, path: str) -> None:
        import time

        now = time.time()
        await self.sftp.utime(path, (now, now))

    async def free_bytes(self, path: str) -> int | None:
        try:
            stats = await self.sftp.statvfs(path)
        except Exception:  # noqa: BLE001 - servers without the statvfs extension
            return None
        return int(stats.f_bavail * stats.f_frsize)
