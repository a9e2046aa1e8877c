"""Commands and files on the cluster: here (asyncio subprocesses) or over one asyncssh connection.

Every remote command is built from a list of arguments joined with ``shlex.join`` (never from
raw strings). Host keys are verified against ``known_hosts`` unless the user passed
``known_hosts=None`` explicitly. If the connection drops, calls reconnect with exponential
backoff (bounded by ``reconnect_attempts``); only when that gives up does the error surface.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import (
    CommandError,
    ConfigError,
    MissingDependencyError,
    RunFolderNotFoundError,
    SshError,
)
from .config import SlurmConfig

logger = logging.getLogger("bioimage_async")
T = TypeVar("T")


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str


class LocalShell:
    """Runs scheduler commands on this machine."""

    description = "this machine"

    async def run(self, argv: Sequence[str], *, check: bool = False) -> CommandResult:
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                stdin=asyncio.subprocess.DEVNULL,
            )
        except FileNotFoundError as err:
            raise ConfigError(
                f"{argv[0]!r} is not installed on this machine; set SlurmConfig(host=...) to "
                "submit to a cluster over SSH"
            ) from err
        stdout, stderr = await process.communicate()
        result = CommandResult(process.returncode or 0, stdout.decode(), stderr.decode())
        if check and result.returncode:
            raise CommandError(
                f"{shlex.join(argv)} failed ({result.returncode}): {result.stderr.strip()}"
            )
        return result

    async def close(self) -> None:
        pass


class SshSession:
    """One asyncssh connection (and one SFTP client) to the cluster, reconnecting on drops."""

    def __init__(self, config: SlurmConfig) -> None:
        self.config = config
        self._connection: Any = None
        self._sftp: Any = None
        self._lock = asyncio.Lock()
        self.reconnects = 0
        self.last_reconnect_seconds: float | None = None

    @property
    def description(self) -> str:
        user = f"{self.config.username}@" if self.config.username else ""
        return f"{user}{self.config.host}:{self.config.port}"

    def _connect_options(self) -> dict[str, Any]:
        known_hosts = self.config.known_hosts
        if known_hosts is not None and not os.path.exists(os.path.expanduser(known_hosts)):
            raise ConfigError(
                f"the known_hosts file {known_hosts!r} does not exist, so the host key of "
                f"{self.config.host} cannot be verified. Add it (ssh-keyscan -p {self.config.port} "
                f"{self.config.host} >> {known_hosts}, after checking the fingerprint) or pass "
                "known_hosts=None explicitly to skip verification (unsafe)."
            )
        options: dict[str, Any] = {
            "port": self.config.port,
            "known_hosts": os.path.expanduser(known_hosts) if known_hosts else None,
            "connect_timeout": self.config.connect_timeout,
            "keepalive_interval": 15,
        }
        if self.config.username:
            options["username"] = self.config.username
        if self.config.client_keys:
            options["client_keys"] = [os.path.expanduser(k) for k in self.config.client_keys]
        return options

    async def _open(self) -> None:
        try:
            import asyncssh
        except ImportError:
            raise MissingDependencyError("asyncssh", "slurm", "Submitting over SSH") from None
        try:
            self._connection = await asyncssh.connect(self.config.host, **self._connect_options())
        except asyncssh.HostKeyNotVerifiable as err:
            raise SshError(
                f"the host key of {self.description} is not trusted by "
                f"{self.config.known_hosts!r}: {err}. Nothing was submitted. Check the key with "
                "the cluster admins and add it to known_hosts."
            ) from err
        except asyncssh.PermissionDenied as err:
            raise SshError(
                f"{self.description} refused the login: {err}. Set username= and client_keys= "
                "(or load the key into your SSH agent)."
            ) from err
        self._sftp = await self._connection.start_sftp_client()

    async def _ensure(self) -> None:
        async with self._lock:
            if self._connection is None:
                try:
                    await self._open()
                except (OSError, TimeoutError) as err:
                    raise SshError(
                        f"cannot reach {self.description}: {err}. Check host=, port= and that "
                        "the cluster's login node accepts SSH from here."
                    ) from err

    async def _reconnect(self, error: BaseException) -> None:
        started = time.monotonic()
        delay = self.config.reconnect_backoff
        async with self._lock:
            self._drop()
            for attempt in range(1, self.config.reconnect_attempts + 1):
                logger.warning(
                    "connection to %s lost (%s); reconnecting (attempt %d/%d)",
                    self.description,
                    error,
                    attempt,
                    self.config.reconnect_attempts,
                )
                try:
                    await self._open()
                except SshError:
                    raise  # host key or login refused: retrying cannot help
                except Exception as err:  # noqa: BLE001 - refused, reset, timed out: retry
                    error = err
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.config.reconnect_max_delay)
                    continue
                self.reconnects += 1
                self.last_reconnect_seconds = time.monotonic() - started
                return
        raise SshError(
            f"lost the connection to {self.description} and could not reconnect after "
            f"{self.config.reconnect_attempts} attempts: {error}"
        ) from error

    def _drop(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            except Exception:  # noqa: BLE001
                pass
        self._connection = None
        self._sftp = None

    async def call(self, action: Callable[[Any, Any], Awaitable[T]]) -> T:
        """``action(connection, sftp)``, retried once per successful reconnect."""
        import asyncssh

        await self._ensure()
        for _ in range(self.config.reconnect_attempts + 1):
            try:
                return await action(self._connection, self._sftp)
            except (
                asyncssh.ConnectionLost,
                asyncssh.DisconnectError,
                BrokenPipeError,
                ConnectionResetError,
                asyncssh.ChannelOpenError,
            ) as err:
                await self._reconnect(err)
        raise SshError(f"the connection to {self.description} keeps dropping")

    async def run(self, argv: Sequence[str], *, check: bool = False) -> CommandResult:
        command = shlex.join(argv)

        async def action(connection: Any, _: Any) -> CommandResult:
            result = await connection.run(command, check=False)
            return CommandResult(
                int(result.exit_status if result.exit_status is not None else 255),
                str(result.stdout or ""),
                str(result.stderr or ""),
            )

        result = await self.call(action)
        if check and result.returncode:
            raise CommandError(
                f"{command} failed on {self.description} ({result.returncode}): "
                f"{result.stderr.strip()}"
            )
        return result

    async def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            try:
                await self._connection.wait_closed()
            except Exception:  # noqa: BLE001
                pass
        self._connection = None
        self._sftp = None


class ResilientSftpFiles:
    """RunFiles over the session's SFTP client, surviving reconnects."""

    def __init__(self, session: SshSession) -> None:
        self.session = session

    async def _with(self, method: str, *args: Any) -> Any:
        from .files import SftpFiles

        async def action(_: Any, sftp: Any) -> Any:
            return await getattr(SftpFiles(sftp), method)(*args)

        return await self.session.call(action)

    async def makedirs(self, path: str) -> None:
        await self._with("makedirs", path)

    async def mkdir(self, path: str) -> None:
        await self._with("mkdir", path)

    async def write_bytes(self, path: str, data: bytes) -> None:
        await self._with("write_bytes", path, data)

    async def read_bytes(self, path: str) -> bytes:
        import asyncssh

        try:
            return await self._with("read_bytes", path)
        except asyncssh.SFTPNoSuchFile as err:
            raise RunFolderNotFoundError(path) from err

    async def exists(self, path: str) -> bool:
        return await self._with("exists", path)

    async def list_sizes(self, path: str) -> dict[str, int]:
        return await self._with("list_sizes", path)

    async def create_exclusive(self, path: str, data: bytes) -> bool:
        return await self._with("create_exclusive", path, data)

    async def remove(self, path: str) -> None:
        await self._with("remove", path)

    async def mtime(self, path: str) -> float | None:
        return await self._with("mtime", path)

    async def touch(self, path: str) -> None:
        await self._with("touch", path)

    async def free_bytes(self, path: str) -> int | None:
        result: int | None = await self._with("free_bytes", path)
        return result

    async def rmtree(self, path: str) -> None:
        """One ``rm -rf`` on the cluster instead of one SFTP request per file."""
        await self.session.run(["rm", "-rf", "--", path])
