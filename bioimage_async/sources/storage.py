"""Object storage: endpoints, regions, credentials, bounded probes and errors in storage terms.

Credentials are found the way the AWS tools find them, in the process that opens the store (so
distributed workers use their own environment): ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``
/ ``AWS_SESSION_TOKEN``, else the profile ``AWS_PROFILE`` (default ``default``) of
``AWS_SHARED_CREDENTIALS_FILE`` (default ``~/.aws/credentials``), else the container or instance
metadata. ``StorageOptions(profile=...)`` names a profile for one call (that profile alone, as
boto3's ``Session(profile_name=...)``), ``StorageOptions(anonymous=True)`` sends unsigned
requests (public buckets). tensorstore reads none of the ``AWS_ENDPOINT_URL`` / ``AWS_REGION`` /
``AWS_PROFILE`` variables itself, so they are read here and written into the kvstore spec.

The endpoint of an S3-compatible store (MinIO, Ceph, a local moto server) comes from
``StorageOptions(endpoint_url=...)``, ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``; the region
from ``StorageOptions(region=...)``, ``AWS_REGION`` or ``AWS_DEFAULT_REGION``. gs:// uses
Google's default credentials (``GOOGLE_APPLICATION_CREDENTIALS``, gcloud's login, the metadata
server) and ``TENSORSTORE_GCS_HTTP_URL`` for an emulator. A spec records the endpoint, the
region and a profile named in ``storage=``, never a secret.

Every request is retried by tensorstore a bounded number of times (``ba.configure(
storage_retries=...)``, the Context's ``*_request_retries``), and every probe and open waits at
most ``storage_timeout`` seconds, so a wrong endpoint fails in seconds, not tensorstore's
default quarter of an hour.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import tensorstore as ts

from ..context import resource_options, tensorstore_context
from ..errors import InvalidArgumentError, StorageError

if TYPE_CHECKING:
    from .location import Location

T = TypeVar("T")


@dataclass(frozen=True)
class StorageOptions:
    """Per-call object-storage settings; None takes the standard environment variables.

    ``endpoint_url`` and ``region`` apply to s3:// (S3-compatible stores); ``profile`` names a
    profile of the AWS credentials file (used alone, the environment's keys are not consulted);
    ``anonymous`` sends unsigned requests (public buckets, no credentials looked up).
    """

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    anonymous: bool = False

    def resolved_endpoint(self) -> str | None:
        return (
            self.endpoint_url
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
            or None
        )

    def resolved_region(self) -> str | None:
        return (
            self.region
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or None
        )

    def aws_credentials(self) -> dict[str, Any]:
        """tensorstore's ``aws_credentials`` for this process: names and paths, never a secret.

        tensorstore's default chain reads a credentials file only when a profile is named, and
        ignores ``AWS_PROFILE``; the environment type keeps stderr quiet when keys are set.
        """
        if self.anonymous:
            return {"type": "anonymous"}
        if self.profile:
            return _profile_credentials(self.profile)
        if os.environ.get("AWS_ACCESS_KEY_ID"):
            return {"type": "environment"}
        profile = os.environ.get("AWS_PROFILE")
        if profile or os.path.exists(_credentials_file()) or os.path.exists(_config_file()):
            return _profile_credentials(profile or "default")
        return {"type": "default"}  # container and instance credentials, else unsigned

    def s3_kvstore(self, bucket: str, path: str) -> dict[str, Any]:
        """The s3 kvstore spec: bucket, key, endpoint, region and how to find credentials."""
        spec: dict[str, Any] = {"driver": "s3", "bucket": bucket, "path": path}
        endpoint = self.resolved_endpoint()
        if endpoint:
            spec["endpoint"] = endpoint.rstrip("/")
        region = self.resolved_region()
        if region:
            spec["aws_region"] = region
        elif endpoint:
            spec["aws_region"] = "us-east-1"  # S3-compatible stores ignore it; signing needs one
        spec["aws_credentials"] = self.aws_credentials()
        return spec

    def recorded(self) -> dict[str, Any]:
        """What a source's spec carries so another process reaches the same store: the
        resolved endpoint and region and a profile named here; credentials stay local."""
        recorded: dict[str, Any] = {}
        if self.resolved_endpoint():
            recorded["endpoint_url"] = self.resolved_endpoint()
        if self.resolved_region():
            recorded["region"] = self.resolved_region()
        if self.profile:
            recorded["profile"] = self.profile
        if self.anonymous:
            recorded["anonymous"] = True
        return recorded

    def credentials_hint(self) -> str:
        """Which identity was used, for 'access denied': the start of the key id at most."""
        if self.anonymous:
            return "anonymous (unsigned) requests"
        if self.profile:
            return f"profile {self.profile!r} of {_credentials_file()}"
        key_id = os.environ.get("AWS_ACCESS_KEY_ID")
        if key_id:
            return f"access key id {key_id[:6]}... from AWS_ACCESS_KEY_ID"
        profile = os.environ.get("AWS_PROFILE")
        if profile:
            return f"profile {profile!r} (AWS_PROFILE) of {_credentials_file()}"
        if os.path.exists(_credentials_file()):
            return f"profile 'default' of {_credentials_file()}"
        return "no credentials found (no AWS_ACCESS_KEY_ID, AWS_PROFILE or credentials file)"

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
                "storage= takes ba.StorageOptions or a dict with endpoint_url, region, profile "
                f"and anonymous, got {value!r}"
            ) from None


def _profile_credentials(profile: str) -> dict[str, Any]:
    """One profile of the shared files (static keys, role_arn, credential_process)."""
    config = _config_file()
    return {
        "type": "profile",
        "profile": profile,
        "credentials_file": _credentials_file(),
        # tensorstore needs a config file; /dev/null where there is none keeps stderr quiet
        "config_file": config if os.path.exists(config) else os.devnull,
    }


def _credentials_file() -> str:
    return os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or os.path.expanduser("~/.aws/credentials")


def _config_file() -> str:
    return os.environ.get("AWS_CONFIG_FILE") or os.path.expanduser("~/.aws/config")


def with_credentials(kvstore: dict[str, Any], storage: StorageOptions) -> dict[str, Any]:
    """An s3 kvstore spec (from another process's ``to_spec``) with this process's way of
    finding credentials; other kvstores unchanged."""
    if kvstore.get("driver") != "s3":
        return kvstore
    return {**kvstore, "aws_credentials": storage.aws_credentials()}


# ---------------------------------------------------------------------------------------------
# bounded kvstore calls
# ---------------------------------------------------------------------------------------------
async def bounded(awaitable: Awaitable[T], where: Location, key: str = "") -> T:
    """Await a tensorstore future within the storage timeout, errors said in storage terms.

    On timeout the future is cancelled (tensorstore stops its retries) and StorageError says
    the endpoint did not answer.
    """
    timeout = resource_options().storage_timeout
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except TimeoutError:
        raise unreachable(where, f"did not answer within {timeout:g} s") from None
    except (ValueError, NotImplementedError) as err:
        raise storage_error(err, where, key) from err


async def open_kvstore(spec: dict[str, Any], where: Location) -> ts.KvStore:
    try:
        future = ts.KvStore.open(spec, context=tensorstore_context())
    except ValueError as err:  # refused before any request: the URL itself is wrong
        raise invalid_url(err, where) from err
    return await bounded(future, where)


def invalid_url(err: BaseException, where: Location) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"{where} is not a usable {where.scheme}:// URL: {first_line(str(err))}"
    )


async def kvstore_read(spec: dict[str, Any], key: str, where: Location) -> bytes | None:
    """One object's bytes (None when absent), failing within the storage timeout."""
    store = await open_kvstore(spec, where)
    result = await bounded(store.read(key), where, key)
    if result.state != "value":
        return None
    return bytes(result.value)


async def kvstore_write(spec: dict[str, Any], key: str, data: bytes, where: Location) -> None:
    """Write one small object, failing within the storage timeout."""
    store = await open_kvstore(spec, where)
    await bounded(store.write(key, data), where, key)


async def kvstore_list(
    spec: dict[str, Any], where: Location, *, timeout: float | None = None
) -> list[str] | None:
    """Every key below ``spec`` (relative to it); None where the store cannot list (http) or
    the listing took longer than ``timeout`` (it is used for messages only, so it is cut)."""
    store = await open_kvstore(spec, where)
    try:
        future = store.list()
    except NotImplementedError:
        return None
    try:
        if timeout is not None:
            keys = await asyncio.wait_for(future, timeout)
        else:
            keys = await bounded(future, where)
    except (NotImplementedError, TimeoutError):
        return None
    except ValueError as err:
        raise storage_error(err, where) from err
    return [k.decode("utf-8", "replace") for k in keys]


async def check_bucket(where: Location) -> None:
    """Raise StorageError naming the bucket if it does not exist (s3, gs; no-op elsewhere).

    A one-key listing: reads of a missing bucket look like missing keys, and creating an array
    in one makes tensorstore retry forever (a conditional PUT answered 404 is taken for a
    changed generation), so every create checks first.
    """
    if where.scheme not in ("s3", "gs"):
        return
    root = where.bucket_root()
    store = await open_kvstore(root.kvstore(), where)
    key = where.key.strip("/") + "/.bioimage-async-probe"
    await bounded(store.list(ts.KvStore.KeyRange(key, key + "\x00")), where)


# ---------------------------------------------------------------------------------------------
# errors in storage terms
# ---------------------------------------------------------------------------------------------
def unreachable(where: Location, why: str) -> StorageError:
    target = where.endpoint_description()
    return StorageError(
        f"the storage endpoint {target} is unreachable ({why}) while accessing {where}. Check "
        "the URL, AWS_ENDPOINT_URL or storage=ba.StorageOptions(endpoint_url=...) and the "
        "network; ba.configure(storage_timeout=..., storage_retries=...) sets how long to try"
    )


_NOT_FOUND = re.compile(r"Metadata at (.+?) does not exist")
#: the key a tensorstore read or write error names ('Error reading "v.zarr/1.1.1"')
_KEY_IN_ERROR = re.compile(r'Error (?:reading|writing) "([^"]+)"')
_ACCESS = (
    "accessdenied",
    "access denied",
    "invalidaccesskeyid",
    "signaturedoesnotmatch",
    "invalidtoken",
    "expiredtoken",
    "permission_denied",
    "forbidden",
    "http_response_code='401'",
    "http_response_code='403'",
)
_CONNECT = (
    "could not connect",
    "couldn't connect",
    "failed to connect",
    "connection refused",
    "could not resolve",
    "couldn't resolve",
    "timeout was reached",
    "operation too slow",
    "ssl peer",
    "ssl connect",
    "curl error",
)


def storage_error(err: BaseException, where: Location, key: str = "") -> StorageError:
    """A tensorstore error on object storage, said in storage terms and without a spec dump."""
    text = str(err)
    lowered = text.lower()
    named = _KEY_IN_ERROR.search(text)
    if not key and named is not None and where.scheme in ("s3", "gs"):
        # tensorstore names the key below the bucket: say that one, not the array; a key of
        # another array (the input of a copy whose output is ``where``) from the bucket's root
        full, prefix = named.group(1), where.key.strip("/")
        if prefix and full.startswith(prefix + "/"):
            key = full[len(prefix) + 1 :]
        elif full != prefix:
            where, key = where.bucket_root(), full
    what = f"{where}/{key}" if key else str(where)
    read_only = isinstance(err, NotImplementedError) and where.scheme in ("http", "https")
    if read_only or "does not support writing" in lowered:
        return StorageError(
            f"{where.scheme}:// is read-only: cannot write {what}; write to a local path, "
            "s3:// or gs://"
        )
    if "nosuchbucket" in lowered or "bucket does not exist" in lowered:
        return StorageError(
            f"no such bucket {where.bucket!r} ({where.scheme}://{where.bucket}, opening {what}); "
            "create it first or check the name"
        )
    if "failed to get credentials" in lowered or "credentials provider" in lowered:
        return StorageError(
            f"no usable credentials for {what} ({where.credentials_hint()}): "
            f"{first_line(text)}. Set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE"
        )
    if any(s in lowered for s in _ACCESS) and where.scheme in ("http", "https"):
        return StorageError(  # no AWS identity is involved: say what the server did
            f"access denied to {what}: the server refused the request ({first_line(text)}). "
            "The URL is not public: check it in a browser, or have it served without "
            "authentication (bioimage_async sends no credentials over http(s))"
        )
    if any(s in lowered for s in _ACCESS):
        code = next(
            (
                c
                for c in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied")
                if c in text
            ),
            "access denied",
        )
        unlisted = (
            ". S3 also answers AccessDenied for a key that does not exist when the caller may "
            "not list the bucket (s3:GetObject without s3:ListBucket, the usual public-read "
            "policy): if the bucket is readable, the key may just be missing (a chunk never "
            "written, a metadata file of another format): ask the bucket's owner for "
            "s3:ListBucket"
            if code == "AccessDenied" and where.scheme == "s3"
            else ""
        )
        return StorageError(
            f"access denied to {what} ({code}; {where.credentials_hint()}). Check "
            "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE, and the bucket's policy"
            + unlisted
        )
    redirect = _REDIRECT.search(text)
    if redirect is not None:
        return StorageError(
            f"{what} answered HTTP {redirect.group(1)}, a redirect, which tensorstore does not "
            "follow: open the URL it points to instead (curl -sIL <url> prints it)"
        )
    if "was ignored by server" in lowered and "byte range" in lowered:
        return StorageError(
            f"cannot read part of {what}: its server ignores HTTP Range requests, which "
            "reading part of a shard (or of a chunk file) needs. Serve the files with a server "
            "that honours Range (nginx, a bucket's web endpoint), or copy them to local disk "
            f"first ({first_line(text)})"
        )
    missing = _NOT_FOUND.search(text)
    if missing is not None or lowered.startswith("not_found"):
        return no_such_key(where, key)
    if any(s in lowered for s in _CONNECT):
        return unreachable(where, first_line(text))
    if "retry attempts failed" in lowered:
        return StorageError(
            f"the storage endpoint {where.endpoint_description()} kept failing for {what}: "
            f"{first_line(text)}"
        )
    return StorageError(f"cannot access {what}: {first_line(text)}")


#: tensorstore's words for a redirect it did not follow ("Unknown [HTTP code 302]")
_REDIRECT = re.compile(r"HTTP code (30[12378])\b")


def no_such_key(where: Location, key: str = "") -> StorageError:
    what = f"{where}/{key}" if key else str(where)
    stored = f"{where.key}/{key}".strip("/") if key else where.key
    place = f"bucket {where.bucket!r}" if where.scheme in ("s3", "gs") else where.scheme
    return StorageError(f"no such key {stored!r} in {place} ({what})")


def short_error(err: BaseException) -> str:
    """An exception's message as ``first_line`` gives it (its type name when it has none)."""
    return first_line(str(err)) or type(err).__name__


def first_line(text: str, limit: int = 240) -> str:
    """The message's first line without tensorstore's bracketed payloads and spec dumps."""
    line = text.strip().splitlines()[0] if text.strip() else text
    line = re.sub(r"\s*\[[a-z_]+='.*", "", line)  # [tensorstore_spec='...'], [http_...='...']
    if ' {"' in line:  # a JSON spec dump; a shard's {1, 2, 3} coordinates stay
        line = line.split(' {"', 1)[0].rstrip(" :[")
    line = re.sub(r"^[A-Z_]+: ", "", line)  # the absl status code
    return line.replace("\\x00", "/")[:limit]  # tensorstore escapes a key's path separator
