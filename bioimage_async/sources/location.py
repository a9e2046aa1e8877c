"""Where a volume lives: a local path or an object-store URL, and the probes detection needs.

A ``Location`` is parsed once from what the user typed (``/data/a.zarr``, ``s3://bucket/a.zarr``,
``gs://bucket/layer``, ``https://host/layer``, ``precomputed://gs://...``, ``zarr3://s3://...``)
and answers the few questions format detection and opening ask: does a key exist, what does a
small metadata file say, which entries sit below a folder. Local probes run in the bounded
thread pool, remote ones through tensorstore's kvstore (natively async), so neither blocks the
event loop. ``kvstore()`` is the tensorstore kvstore spec: it names the bucket, the key, the
endpoint and how to find credentials (a profile name at most, never a secret: tensorstore reads
the keys in the process that opens the store, so distributed workers use their own).
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..context import run_blocking
from ..errors import InvalidArgumentError
from .storage import (
    StorageOptions,
    check_bucket,
    kvstore_list,
    kvstore_read,
    kvstore_write,
    no_such_key,
)

#: The metadata files that make a folder or URL a zarr (v2, v3), n5 or precomputed node.
METADATA_NAMES = (".zarray", ".zgroup", "zarr.json", "attributes.json", "info")

REMOTE_SCHEMES = ("s3", "gs", "http", "https")


def _strip_format_prefix(text: str) -> tuple[str | None, str]:
    """('zarr3', 's3://b/k') from 'zarr3://s3://b/k'; (None, text) without a format prefix."""
    head, sep, rest = text.partition("://")
    if sep and head.lower() not in REMOTE_SCHEMES + ("file",) and head.isidentifier():
        return head.lower(), rest if "://" in rest or rest.startswith("/") else rest
    return None, text


@dataclass(frozen=True)
class Location:
    """A parsed path or URL; ``path`` is absolute (local) or 'bucket/key' / 'host/path'."""

    scheme: str  # "file", "s3", "gs", "http" or "https"
    path: str
    prefix: str | None = None  # a format named by a neuroglancer-style prefix ("zarr3", ...)
    storage: StorageOptions = field(default_factory=StorageOptions)

    @classmethod
    def parse(cls, text: str | os.PathLike[str], storage: StorageOptions | None = None) -> Location:
        raw = os.fspath(text)
        prefix, rest = _strip_format_prefix(raw)
        storage = storage or StorageOptions()
        scheme, sep, remainder = rest.partition("://")
        if sep and scheme.lower() in REMOTE_SCHEMES:
            return cls(scheme.lower(), remainder.rstrip("/"), prefix, storage)
        if sep and scheme.lower() == "file":
            rest = remainder
        return cls("file", os.path.abspath(os.path.expanduser(rest)), prefix, storage)

    # ---- identity ---------------------------------------------------------------------------
    @property
    def is_local(self) -> bool:
        return self.scheme == "file"

    @property
    def is_remote(self) -> bool:
        return not self.is_local

    @property
    def read_only(self) -> bool:
        """http(s) serves reads only."""
        return self.scheme in ("http", "https")

    @property
    def local_path(self) -> Path:
        if not self.is_local:
            raise InvalidArgumentError(f"{self} is not a local path")
        return Path(self.path)

    @property
    def bucket(self) -> str:
        return self.path.split("/", 1)[0]

    @property
    def key(self) -> str:
        """The object key prefix inside the bucket (remote) or the path (local)."""
        if self.is_local:
            return self.path
        return self.path.split("/", 1)[1] if "/" in self.path else ""

    @property
    def name(self) -> str:
        """The last path component (what extensions are read from)."""
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    def __str__(self) -> str:
        return self.path if self.is_local else f"{self.scheme}://{self.path}"

    def bucket_root(self) -> Location:
        """The bucket itself (s3, gs) or the server root (http)."""
        return replace(self, path=self.bucket)

    def endpoint_description(self) -> str:
        """Which server requests go to, for messages."""
        if self.scheme == "s3":
            endpoint = self.storage.resolved_endpoint()
            region = self.storage.resolved_region()
            return endpoint or f"AWS S3 ({region or 'region looked up from the bucket'})"
        if self.scheme == "gs":
            return os.environ.get("TENSORSTORE_GCS_HTTP_URL") or "storage.googleapis.com"
        return f"{self.scheme}://{self.bucket}"

    def credentials_hint(self) -> str:
        """Which identity requests carry (a key id's first characters at most)."""
        if self.scheme == "s3":
            return self.storage.credentials_hint()
        if self.scheme == "gs":
            if os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
                return (
                    "GOOGLE_APPLICATION_CREDENTIALS=" + os.environ["GOOGLE_APPLICATION_CREDENTIALS"]
                )
            return "Google application-default credentials"
        return "no credentials"

    def join(self, *parts: str) -> Location:
        keys = [p.strip("/") for p in parts if p and p.strip("/")]
        if not keys:
            return self
        return replace(self, path="/".join([self.path.rstrip("/"), *keys]))

    # ---- tensorstore ------------------------------------------------------------------------
    def kvstore(self) -> dict[str, Any]:
        """The tensorstore kvstore spec of this folder (a trailing '/': keys are below it)."""
        if self.is_local:
            return {"driver": "file", "path": self.path.rstrip("/") + "/"}
        if self.scheme == "s3":
            return self.storage.s3_kvstore(self.bucket, _folder(self.key))
        if self.scheme == "gs":
            return {"driver": "gcs", "bucket": self.bucket, "path": _folder(self.key)}
        return {"driver": "http", "base_url": f"{self.scheme}://{self.path.rstrip('/')}/"}

    # ---- probes -----------------------------------------------------------------------------
    async def read(self, key: str = "") -> bytes | None:
        """The bytes of ``key`` below this location (the location itself for ''), or None."""
        if self.is_local:
            return await run_blocking(
                _read_local, os.path.join(self.path, key) if key else self.path
            )
        parent, _, name = key.rpartition("/")
        folder = self.join(parent) if parent else self
        return await kvstore_read(folder.kvstore(), name, folder)  # errors name the whole key

    async def read_json(self, key: str) -> dict[str, Any] | None:
        raw = await self.read(key)
        if raw is None:
            return None
        try:
            data = json.loads(raw)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    async def exists(self, key: str = "") -> bool:
        """Whether ``key`` exists (a local file or folder; a remote object)."""
        if self.is_local:
            return await run_blocking(
                os.path.exists, os.path.join(self.path, key) if key else self.path
            )
        return await self.read(key) is not None

    async def write(self, key: str, data: bytes) -> None:
        """Write one small object (group metadata) below this location."""
        if self.is_local:
            await run_blocking(_write_local, os.path.join(self.path, key), data)
            return
        parent, _, name = key.rpartition("/")
        folder = self.join(parent) if parent else self
        await kvstore_write(folder.kvstore(), name, data, self)

    async def is_dir(self) -> bool:
        """A local folder; remotely, a bucket and key holding zarr/n5/precomputed metadata.

        Remote 'folders' are key prefixes, so the question is asked of what detection needs:
        a missing bucket or a key with none of ``METADATA_NAMES`` below it raises StorageError
        naming it (instead of a later 'cannot tell the format').
        """
        if self.is_local:
            return await run_blocking(os.path.isdir, self.path)
        await check_bucket(self)
        found = await asyncio.gather(*(self.exists(name) for name in METADATA_NAMES))
        if not any(found):
            raise no_such_key(self)
        return True

    async def list_names(self, limit: int = 10_000) -> list[str]:
        """Names directly below a local folder (at most ``limit``); [] remotely."""
        if not self.is_local:
            return []
        return await run_blocking(_list_local, self.path, limit)

    async def list_keys(self, timeout: float | None = None) -> list[str] | None:
        """Every key below this remote folder, relative to it; None where listing is
        impossible (http) or took longer than ``timeout`` seconds."""
        if self.is_local:
            return None
        return await kvstore_list(self.kvstore(), self, timeout=timeout)

    async def check_bucket(self) -> None:
        """StorageError naming the bucket when it does not exist (s3, gs)."""
        await check_bucket(self)


def _folder(key: str) -> str:
    return key.strip("/") + "/" if key.strip("/") else ""


def _read_local(path: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
        return None


def _write_local(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)


def _list_local(path: str, limit: int) -> list[str]:
    names: list[str] = []
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                names.append(entry.name)
                if len(names) >= limit:
                    break
    except (FileNotFoundError, NotADirectoryError):
        return []
    return names
