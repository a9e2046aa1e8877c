"""Object storage: endpoints, regions, bounded probes and errors in storage terms.

Credentials are found the way every S3 tool finds them (tensorstore reads them itself, in the
process that opens the store): ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` /
``AWS_SESSION_TOKEN``, else the profile ``AWS_PROFILE`` of ``~/.aws/credentials``, else the
instance metadata. The endpoint of an S3-compatible store (MinIO, Ceph, a local moto server)
comes from ``StorageOptions(endpoint_url=...)`` or ``AWS_ENDPOINT_URL``; the region from
``StorageOptions(region=...)``, ``AWS_REGION`` or ``AWS_DEFAULT_REGION``. gs:// uses Google's
default credentials (``GOOGLE_APPLICATION_CREDENTIALS``, gcloud's login, or the metadata
server). A spec records the endpoint and region (so workers reach the same store) and never a
secret.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import tensorstore as ts

from ..context import resource_options, tensorstore_context
from ..errors import InvalidArgumentError, StorageError

if TYPE_CHECKING:
    from .location import Location


@dataclass(frozen=True)
class StorageOptions:
    """Per-call object-storage settings; None takes the standard environment variables."""

    endpoint_url: str | None = None
    region: str | None = None

    def resolved_endpoint(self) -> str | None:
        return (
            self.endpoint_url
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
            or None
        )

    def resolved_region(self) -> str | None:
        return self.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")

    def s3_kvstore(self, bucket: str, path: str) -> dict[str, Any]:
        spec: dict[str, Any] = {"driver": "s3", "bucket": bucket, "path": path}
        endpoint = self.resolved_endpoint()
        if endpoint:
            spec["endpoint"] = endpoint
        region = self.resolved_region()
        if region:
            spec["aws_region"] = region
        elif endpoint:
            spec["aws_region"] = "us-east-1"  # S3-compatible stores ignore it; signing needs one
        return spec

    @classmethod
    def coerce(cls, value: StorageOptions | dict[str, Any] | None) -> StorageOptions:
        if value is None:
            return cls()
        if isinstance(value, StorageOptions):
            return value
        try:
            return cls(**value)
        except TypeError:
            raise InvalidArgumentError(
                f"storage= takes ba.StorageOptions or a dict with endpoint_url and region, "
                f"got {value!r}"
            ) from None


async def kvstore_read(spec: dict[str, Any], key: str, where: Location) -> bytes | None:
    """One object's bytes (None when absent), failing within the storage timeout."""
    timeout = resource_options().storage_timeout
    try:
        store = await asyncio.wait_for(
            ts.KvStore.open(spec, context=tensorstore_context()), timeout
        )
        result = await asyncio.wait_for(store.read(key), timeout)
    except TimeoutError:
        raise unreachable(where, timeout) from None
    except ValueError as err:
        raise storage_error(err, where, key) from err
    if result.state != "value":
        return None
    return bytes(result.value)


async def kvstore_write(spec: dict[str, Any], key: str, data: bytes, where: Location) -> None:
    """Write one small object, failing within the storage timeout."""
    timeout = resource_options().storage_timeout
    try:
        store = await asyncio.wait_for(
            ts.KvStore.open(spec, context=tensorstore_context()), timeout
        )
        await asyncio.wait_for(store.write(key, data), timeout)
    except TimeoutError:
        raise unreachable(where, timeout) from None
    except ValueError as err:
        raise storage_error(err, where, key) from err


def unreachable(where: Location, timeout: float) -> StorageError:
    endpoint = where.storage.resolved_endpoint() if where.scheme == "s3" else None
    target = endpoint or f"{where.scheme}://{where.bucket}"
    return StorageError(
        f"the storage endpoint {target} did not answer within {timeout:g} s (reading {where}). "
        "Check the URL, the network and AWS_ENDPOINT_URL, or raise the limit with "
        "ba.configure(storage_timeout=...)"
    )


def _key_id_hint() -> str:
    key_id = os.environ.get("AWS_ACCESS_KEY_ID")
    if key_id:
        return f" (access key id {key_id[:4]}...)"
    profile = os.environ.get("AWS_PROFILE")
    return f" (profile {profile!r})" if profile else " (no AWS_ACCESS_KEY_ID set)"


def storage_error(err: Exception, where: Location, key: str = "") -> StorageError:
    """A tensorstore error on object storage, said in storage terms and without a spec dump."""
    text = str(err)
    lowered = text.lower()
    what = f"{where}/{key}" if key else str(where)
    if "nosuchbucket" in lowered or "bucket does not exist" in lowered:
        return StorageError(f"no such bucket {where.bucket!r} (opening {what})")
    if any(
        s in lowered
        for s in (
            "accessdenied",
            "access denied",
            "invalidaccesskeyid",
            "signaturedoesnotmatch",
            "forbidden",
            "403",
        )
    ):
        return StorageError(
            f"access denied to {what}{_key_id_hint()}. Check AWS_ACCESS_KEY_ID / "
            "AWS_SECRET_ACCESS_KEY or AWS_PROFILE"
        )
    if any(
        s in lowered
        for s in (
            "couldn't connect",
            "could not connect",
            "connection refused",
            "failed to connect",
            "couldn't resolve",
            "timed out",
            "curl error",
        )
    ):
        return StorageError(
            f"the storage endpoint for {what} is unreachable: {_first_line(text)}. Check the "
            "URL and AWS_ENDPOINT_URL"
        )
    return StorageError(f"cannot access {what}: {_first_line(text)}")


def _first_line(text: str, limit: int = 300) -> str:
    line = text.strip().splitlines()[0] if text.strip() else text
    if "{" in line:  # cut tensorstore's JSON spec dumps
        line = line.split("{", 1)[0].rstrip(" :[")
    return line[:limit]
