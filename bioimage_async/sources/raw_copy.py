"""Copies that move encoded chunks: kvstore to kvstore, without decoding or re-encoding.

When input and output store the same chunk grid, dtype, fill value and codecs in the same key
naming (a dataset copied to a bucket, back, or between folders), the bytes of each chunk file
(each shard file for sharded zarr v3 and precomputed) are valid in the output as they are, so a
copy is a read and a write per key at the speed of the storage, with no CPU spent on codecs.
Chunks missing in the input stay missing in the output (and read as the fill value there);
chunk keys the output had but the input lacks are deleted, so the result equals an ordinary
copy's.

Bytes are never written unread: each key's bytes are first checked to be an encoding of a chunk
of the array (``chunk_check``: the codec's framing, sizes and checksums; a decode only where the
framing says nothing, zlib, bzip2 and xz). A server's HTML error page or a body cut short thus
fails its block with a SourceError naming the key, as decoding would, instead of becoming the
output's chunk. Arrays whose codecs have no such check take the ordinary path.

``raw_chunks(source)`` is the capability: from a source's tensorstore handle it derives the
array's kvstore, its chunk key naming and a fingerprint of everything that decides the bytes.
``raw_copy_plan(input, output)`` says whether a raw copy applies: both fingerprints and both
presentations equal, each handle covering its whole array (a view whose offsets cut chunks has
a smaller domain and takes the ordinary path). Anything else returns None.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import product
from typing import Any

import tensorstore as ts

from ..context import run_blocking
from ..errors import SourceError, StorageError
from .base import Source
from .chunk_check import ChunkCheck, chunk_check
from .storage import short_error

#: How many bytes of chunk data may be in flight at once (decoded size as the estimate).
RAW_COPY_BYTES = 128 * 1024 * 1024
#: At most this many keys are copied at once (object stores like many parallel requests).
RAW_COPY_CONCURRENCY = 32

#: Metadata members that do not change a chunk's bytes or key (attributes, names, scales).
_IGNORED = {
    "zarr3": {"attributes", "dimension_names"},
    "n5": {"axes", "units", "resolution", "downsamplingFactors"},
    "neuroglancer_precomputed": {"key", "resolution", "type"},
}


@dataclass(frozen=True)
class ChunkNaming:
    """How one array names its chunk keys (in the stored axis order)."""

    kind: str  # "grid": one key per grid position; "shards": hashed shard files (listing only)
    grid: tuple[int, ...]
    key_of: Callable[[tuple[int, ...]], str]
    index_of: Callable[[str], tuple[int, ...] | None]

    def keys(self) -> Iterator[str]:
        """Every possible chunk key (for stores that cannot list: http)."""
        for index in product(*(range(n) for n in self.grid)):
            yield self.key_of(tuple(index))

    def is_chunk(self, key: str) -> bool:
        """Whether ``key`` names a chunk inside the grid (not metadata, not a stale chunk)."""
        index = self.index_of(key)
        if index is None:
            return False
        if self.kind == "shards":
            return True
        return len(index) == len(self.grid) and all(0 <= i < n for i, n in zip(index, self.grid))


@dataclass(frozen=True)
class RawChunks:
    """What a raw copy needs of one array: where its chunk keys live and what they mean.

    ``axes[i]`` is the presented axis that stored grid axis ``i`` follows (None for a stored
    axis that is not presented, such as the single channel of a precomputed layer), and
    ``unit[i]`` the chunk (shard) size along it: from them a presented region's keys follow.
    ``check`` tells bytes that are no chunk of this array (an error page, a cut body).
    """

    kvstore: ts.KvStore
    naming: ChunkNaming
    fingerprint: str
    presentation: str
    chunk_nbytes: int
    describe: str
    check: ChunkCheck
    axes: tuple[int | None, ...] = ()
    unit: tuple[int, ...] = ()
    shape: tuple[int, ...] = ()

    def region_keys(self, roi: tuple[slice, ...]) -> list[str] | None:
        """The keys holding exactly the presented region ``roi``, or None when the region cuts
        a chunk (or the naming cannot be enumerated): then only decoding copies it right."""
        if self.naming.kind != "grid" or not self.axes:
            return None
        ranges = []
        for axis, unit in zip(self.axes, self.unit):
            if axis is None:
                ranges.append(range(1))
                continue
            part, extent = roi[axis], self.shape[axis]
            if part.start % unit or (part.stop % unit and part.stop != extent):
                return None
            ranges.append(range(part.start // unit, -(-part.stop // unit)))
        covered = {axis for axis in self.axes if axis is not None}
        if any(
            (s.start, s.stop) != (0, n)
            for a, (s, n) in enumerate(zip(roi, self.shape))
            if a not in covered
        ):
            return None  # a region of part of a stored chunk's other axes (channels)
        return [self.naming.key_of(tuple(index)) for index in product(*ranges)]


def _ceil_grid(shape: list[int], chunks: list[int]) -> tuple[int, ...]:
    return tuple(math.ceil(n / c) if c else 0 for n, c in zip(shape, chunks))


def _indices(parts: list[str]) -> tuple[int, ...] | None:
    if not parts or not all(p.isdigit() for p in parts):
        return None
    return tuple(int(p) for p in parts)


def _separated_naming(grid: tuple[int, ...], sep: str, lead: str | None) -> ChunkNaming:
    """'0.1.2', '0/1/2', 'c/0/1/2', 'c.0.1.2' namings (zarr v2, v3, n5)."""

    def key_of(index: tuple[int, ...]) -> str:
        parts = [str(i) for i in index]
        if lead is not None:
            parts = [lead, *parts]
        return sep.join(parts) if parts else "0"

    def index_of(key: str) -> tuple[int, ...] | None:
        parts = key.split(sep)
        if lead is not None:
            if parts[0] != lead:
                return None
            parts = parts[1:]
        return _indices(parts)

    return ChunkNaming("grid", grid, key_of, index_of)


def _precomputed_naming(scale: dict[str, Any]) -> ChunkNaming:
    size = [int(v) for v in scale["size"]]
    chunk = [int(v) for v in scale["chunk_size"]]
    offset = [int(v) for v in scale.get("voxel_offset") or [0, 0, 0]]
    grid = _ceil_grid(size, chunk)
    if scale.get("sharding"):
        pattern = re.compile(r"[0-9a-f]+\.shard")

        def shard_index(key: str) -> tuple[int, ...] | None:
            return () if pattern.fullmatch(key) else None

        return ChunkNaming("shards", grid, lambda index: "", shard_index)

    def key_of(index: tuple[int, ...]) -> str:
        bounds = []
        for i, c, o, n in zip(index, chunk, offset, size):
            start = o + i * c
            bounds.append(f"{start}-{min(start + c, o + n)}")
        return "_".join(bounds)

    def index_of(key: str) -> tuple[int, ...] | None:
        parts = key.split("_")
        if len(parts) != 3:
            return None
        index = []
        for part, c, o in zip(parts, chunk, offset):
            match = re.fullmatch(r"(-?\d+)-(-?\d+)", part)
            if match is None or (int(match.group(1)) - o) % c:
                return None
            index.append((int(match.group(1)) - o) // c)
        found = tuple(index)
        return found if key_of(found) == key else None

    return ChunkNaming("grid", grid, key_of, index_of)


def _naming(driver: str, spec: dict[str, Any]) -> tuple[ChunkNaming, int] | None:
    """The chunk naming and one chunk's (shard's) decoded size in elements, per driver."""
    metadata = spec.get("metadata") or {}
    if driver == "zarr":
        shape, chunks = metadata["shape"], metadata["chunks"]
        sep = metadata.get("dimension_separator") or "."
        return _separated_naming(_ceil_grid(shape, chunks), sep, None), math.prod(chunks)
    if driver == "zarr3":
        grid_spec = metadata.get("chunk_grid") or {}
        if grid_spec.get("name") != "regular":
            return None
        chunks = grid_spec["configuration"]["chunk_shape"]
        encoding = metadata.get("chunk_key_encoding") or {"name": "default"}
        config = encoding.get("configuration") or {}
        if encoding.get("name") == "default":
            naming = _separated_naming(
                _ceil_grid(metadata["shape"], chunks), config.get("separator", "/"), "c"
            )
        elif encoding.get("name") == "v2":
            naming = _separated_naming(
                _ceil_grid(metadata["shape"], chunks), config.get("separator", "."), None
            )
        else:
            return None
        return naming, math.prod(chunks)
    if driver == "n5":
        chunks = metadata["blockSize"]
        return _separated_naming(_ceil_grid(metadata["dimensions"], chunks), "/", None), (
            math.prod(chunks)
        )
    if driver == "neuroglancer_precomputed":
        scale = spec.get("scale_metadata") or {}
        channels = int((spec.get("multiscale_metadata") or {}).get("num_channels", 1))
        naming = _precomputed_naming(scale)
        elements = math.prod(int(c) for c in scale["chunk_size"]) * channels
        if scale.get("sharding"):
            sharding = scale["sharding"]
            per_shard = 2 ** (
                int(sharding.get("preshift_bits", 0)) + int(sharding.get("minishard_bits", 0))
            )
            elements *= per_shard
        return naming, elements
    return None


def _fingerprint(driver: str, spec: dict[str, Any]) -> str:
    ignored = _IGNORED.get(driver, set())
    kept: dict[str, Any] = {"driver": driver, "dtype": spec.get("dtype")}
    for member in ("metadata", "multiscale_metadata", "scale_metadata"):
        value = spec.get(member)
        if isinstance(value, dict):
            kept[member] = {k: v for k, v in value.items() if k not in ignored}
    return json.dumps(kept, sort_keys=True)


def _presentation(store: ts.TensorStore) -> str:
    """How the handle maps its (zero-origin) domain onto the stored array."""
    transform = store.spec(minimal_spec=True).to_json().get("transform") or {}
    return json.dumps(
        {
            "shape": [int(n) for n in store.shape],
            "labels": transform.get("input_labels"),
            "output": transform.get("output"),
        },
        sort_keys=True,
    )


def _stored_elements(driver: str, spec: dict[str, Any]) -> int:
    metadata = spec.get("metadata") or {}
    if driver in ("zarr", "zarr3"):
        return math.prod(int(n) for n in metadata["shape"])
    if driver == "n5":
        return math.prod(int(n) for n in metadata["dimensions"])
    scale = spec.get("scale_metadata") or {}
    channels = int((spec.get("multiscale_metadata") or {}).get("num_channels", 1))
    return math.prod(int(n) for n in scale["size"]) * channels


def raw_chunks(source: Source) -> RawChunks | None:
    """The raw chunk access of a source backed by a whole tensorstore array, else None."""
    store = source.tensorstore()
    if store is None or store.ndim == 0:
        return None
    try:
        spec = store.spec().to_json()
    except ValueError:
        return None
    driver = str(spec.get("driver", ""))
    if spec.get("field") is not None or spec.get("open_as_void"):
        return None  # one field of a structured dtype: a chunk file holds every field
    found = _naming(driver, spec)
    if found is None:
        return None
    naming, elements = found
    itemsize = store.dtype.numpy_dtype.itemsize
    check = chunk_check(driver, spec, itemsize)
    if check is None:
        return None  # codecs whose files cannot be checked here: decoding checks them
    if math.prod(int(n) for n in store.shape) != _stored_elements(driver, spec):
        return None  # a view of part of the array: its chunks hold data outside it
    kvstore = store.kvstore
    if kvstore is None:
        return None
    if driver == "neuroglancer_precomputed":
        kvstore = kvstore / (str(spec["scale_metadata"]["key"]).strip("/") + "/")
    axes, unit = _grid_axes(store, naming, spec, driver)
    return RawChunks(
        kvstore=kvstore,
        naming=naming,
        fingerprint=_fingerprint(driver, spec),
        presentation=_presentation(store),
        chunk_nbytes=elements * itemsize,
        describe=source.describe(),
        check=check,
        axes=axes,
        unit=unit,
        shape=tuple(int(n) for n in store.shape),
    )


def _grid_axes(
    store: ts.TensorStore, naming: ChunkNaming, spec: dict[str, Any], driver: str
) -> tuple[tuple[int | None, ...], tuple[int, ...]]:
    """For each stored grid axis: the presented axis it follows, and its chunk (shard) size."""
    if naming.kind != "grid":
        return (), ()
    transform = store.spec().transform
    if transform is None:
        return (), ()
    outputs = list(transform.output)
    metadata = spec.get("metadata") or {}
    if driver == "zarr":
        unit = metadata["chunks"]
    elif driver == "zarr3":
        unit = metadata["chunk_grid"]["configuration"]["chunk_shape"]
    elif driver == "n5":
        unit = metadata["blockSize"]
    else:
        unit = (spec.get("scale_metadata") or {})["chunk_size"]
    axes: list[int | None] = []
    for output in outputs[: len(naming.grid)]:
        dimension = output.input_dimension
        if output.method == ts.OutputIndexMethod.single_input_dimension and output.stride == 1:
            assert dimension is not None
            axes.append(int(dimension))
        elif output.method == ts.OutputIndexMethod.constant:
            axes.append(None)
        else:
            return (), ()
    return tuple(axes), tuple(int(u) for u in unit)


@dataclass(frozen=True)
class RawCopyPlan:
    """Input and output whose chunk files are interchangeable."""

    input: RawChunks
    output: RawChunks

    @property
    def concurrency(self) -> int:
        by_memory = RAW_COPY_BYTES // max(1, self.input.chunk_nbytes)
        return int(max(1, min(RAW_COPY_CONCURRENCY, by_memory)))


def raw_copy_plan(input: Source, output: Source) -> RawCopyPlan | None:
    """A plan when the output can take the input's chunk files as they are, else None."""
    if not output.writable or input.shape != output.shape or input.dtype != output.dtype:
        return None
    source, target = raw_chunks(input), raw_chunks(output)
    if source is None or target is None:
        return None
    if source.fingerprint != target.fingerprint or source.presentation != target.presentation:
        return None
    return RawCopyPlan(source, target)


async def _list_chunks(raw: RawChunks) -> list[str] | None:
    """The chunk keys present, or None where the store cannot list (http)."""
    try:
        keys = await raw.kvstore.list()
    except NotImplementedError:
        return None
    except ValueError as err:
        raise StorageError(f"cannot list the chunks of {raw.describe}: {short_error(err)}") from err
    names = (k.decode("utf-8", "replace") for k in keys)
    return [k for k in names if raw.naming.is_chunk(k)]


async def copy_raw_chunks(
    plan: RawCopyPlan,
    *,
    on_total: Callable[[int], Any] | None = None,
    on_chunk: Callable[[int], Any] | None = None,
) -> int:
    """Copy every chunk key of the input to the output; returns the number of keys copied.

    Keys come from a listing of the input (or, where it cannot list, from the grid: missing
    ones are skipped). At most ``plan.concurrency`` keys are in flight, so memory stays within
    ``RAW_COPY_BYTES``. ``on_total(n)`` is told the number of keys to visit, ``on_chunk(nbytes)``
    each key done. A failure stops the copy (tasks in flight are cancelled; keys already
    written stay) and raises SourceError/StorageError naming the key. Cancelling the caller
    cancels the tasks too.
    """
    listed = await _list_chunks(plan.input)
    if listed is None and plan.input.naming.kind == "shards":
        raise SourceError(
            f"cannot list the shard files of {plan.input.describe} and cannot name them "
            "without listing"
        )
    keys: list[str] = listed if listed is not None else list(plan.input.naming.keys())
    stale: list[str] = []
    existing = await _list_chunks(plan.output)
    if existing:
        wanted = set(keys) if listed is not None else None
        stale = [k for k in existing if wanted is not None and k not in wanted]
        if wanted is None:  # the input could not list: keys missing there are deleted below
            keys = sorted(set(keys) | set(existing))
    if on_total is not None:
        on_total(len(keys) + len(stale))
    pending = iter([(k, True) for k in keys] + [(k, False) for k in stale])
    copied = 0

    async def worker() -> None:
        nonlocal copied
        for key, copy in pending:
            nbytes = await _copy_key(plan, key) if copy else await _delete_key(plan, key)
            copied += 1 if copy and nbytes >= 0 else 0
            if on_chunk is not None:
                on_chunk(max(nbytes, 0))

    workers = min(plan.concurrency, max(1, len(keys) + len(stale)))
    tasks = [asyncio.ensure_future(worker()) for _ in range(workers)]
    try:
        await asyncio.gather(*tasks)
    except BaseException:  # the first failure (or a cancel) stops the others; raise it as is
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return copied


async def copy_region_keys(plan: RawCopyPlan, keys: list[str]) -> int:
    """Copy the keys of one block (bounded concurrency); returns the bytes copied.

    The first failure cancels the keys still in flight (keys already written stay) and is
    raised as is, so a failed block leaves nothing running; cancelling the caller does the same.
    """
    limit = asyncio.Semaphore(plan.concurrency)

    async def one(key: str) -> int:
        async with limit:
            return max(await _copy_key(plan, key), 0)

    tasks = [asyncio.ensure_future(one(key)) for key in keys]
    try:
        return sum(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _copy_key(plan: RawCopyPlan, key: str) -> int:
    """Copy one key; a key missing in the input is deleted in the output (-1).

    The bytes read are checked to be a chunk of the array before they are written (a
    SourceError names the key otherwise, and nothing is written for it). A check that decodes
    runs in the blocking thread pool; cancelling the copy then abandons it to finish there.
    """
    try:
        result = await plan.input.kvstore.read(key)
    except ValueError as err:
        raise StorageError(
            f"cannot read chunk {key!r} of {plan.input.describe}: {short_error(err)}"
        ) from err
    if result.state != "value":
        await _delete_key(plan, key)
        return -1
    await _check_chunk(plan.input, key, result.value)
    try:
        await plan.output.kvstore.write(key, result.value)
    except (ValueError, NotImplementedError) as err:
        raise StorageError(
            f"cannot write chunk {key!r} of {plan.output.describe}: {short_error(err)}"
        ) from err
    return len(result.value)


async def _check_chunk(raw: RawChunks, key: str, value: bytes) -> None:
    """Refuse bytes that are no chunk of the array: writing them would corrupt the output."""
    check = raw.check
    data = memoryview(value)
    problem = (
        await run_blocking(check.problem, key, data) if check.decodes else check.problem(key, data)
    )
    if problem is None:
        return
    raise SourceError(
        f"chunk {key!r} of {raw.describe} holds {problem}, starting {bytes(data[:16])!r}; the "
        "server may have returned an error page or cut the body short (or the stored file is "
        "damaged). Nothing was written for this key: copy again once the server answers with "
        "the chunk"
    )


async def _delete_key(plan: RawCopyPlan, key: str) -> int:
    try:
        await plan.output.kvstore.delete_range(ts.KvStore.KeyRange(key, key + "\x00"))
    except (ValueError, NotImplementedError) as err:
        raise StorageError(
            f"cannot delete chunk {key!r} of {plan.output.describe}: {short_error(err)}"
        ) from err
    return 0
