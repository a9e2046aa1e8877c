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


class RunFiles(Protocol):
    """What the orchestrator does with a run folder, wherever it lives."""

    async def makedirs(self, path: str) -> None: ...

    async def mkdir(self, path: str) -> None: ...

    async def write_bytes(self, path: str, data: bytes) -> None: ...

    async def read_bytes(self, path: str) -> bytes: ...

    async def exists(self, path: str) -> bool: ...

    async def list_sizes(self, path: str) -> dict[str, int]: ...

    async def rmtree(self, path: str) -> None: ...


def _write_atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


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
        async with self.sftp.open(path, "rb") as handle:
            return await handle.read()

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
