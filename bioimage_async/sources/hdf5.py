"""HDF5 datasets through h5py, in the blocking thread pool.

h5py is not safe for concurrent calls on one file handle, so every call on a source is
serialised (ThreadedSource's per-source lock, taken inside the worker thread; h5py also holds a
process-wide lock of its own). The ``h5py.File`` stays open for the source's lifetime: reopening
it per block would re-read the file's metadata every time.

A read-only chunked dataset with standard filters (gzip, shuffle, blosc, zstd, lz4) is read as
raw chunks under that lock and decoded outside it, in parallel, through a bounded cache of
decoded chunks (``hdf5_chunks``); the lock then guards only the raw reads.

Data kept outside the file is checked at open (``check_outside_storage``): HDF5 reads the part
of a virtual dataset whose source file or dataset is missing as the fill value, and a short
external raw file as zeros, both without an error, so such datasets are refused; a missing
external link target is named instead of reported as a missing key.

HDF5 is a local, single-writer format: distributed runs accept it as an input, not as an output.
Opening with any writable mode ('r+', 'a', 'w') opens an *existing* file read-write; it never
truncates or creates one (that is ``create_source(format='hdf5')``'s job).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import numpy as np

from ..context import run_blocking
from ..errors import (
    FormatNotSupportedError,
    InternalPathNotFoundError,
    InvalidArgumentError,
    NotSerializableError,
    SourceError,
    SourceExistsError,
    SourceNotFoundError,
)
from ..kernels.casting import exact_fill_value
from .axis_names import axes_from_names
from .base import Source, SourceSpec
from .decoded_cache import DEFAULT_CACHE_BYTES, DecodedCache
from .formats import CreateRequest, FormatBackend, LocalFileFormat, check_kept_fill
from .hdf5_chunks import ChunkCodec, ChunkReader
from .indexing import Roi, roi_shape
from .location import Location
from .optional import import_optional
from .parallel_read import fill_in_parts, read_in_parts
from .physical import check_unit, microns, on_spatial_axes, positive_sizes, spatial_axes
from .threaded import ThreadedSource

logger = logging.getLogger("bioimage_async")

#: create_source(compression=...) -> h5py create_dataset keywords. 'default' is gzip level 1:
#: readable by every HDF5 tool (lzf is h5py-only) and the fastest gzip level to write.
_COMPRESSIONS: dict[str, dict[str, Any]] = {
    "default": {"compression": "gzip", "compression_opts": 1},
    "gzip": {"compression": "gzip", "compression_opts": 4},
    "lzf": {"compression": "lzf"},
    "none": {},
}

#: Stop walking a file for the "arrays found" list of an error message after this many.
_LISTING_LIMIT = 1000


def _h5py() -> Any:
    return import_optional("h5py", "h5py", "hdf5", "the hdf5 format")


class Hdf5Source(ThreadedSource):
    """An HDF5 dataset; readable always, writable when opened with a mode other than 'r'.

    ``decode_count`` counts the chunks decoded outside h5py, unwritten ones (read as the fill
    value) included; it stays 0 where h5py reads everything.
    """

    kind = "hdf5"

    def __init__(
        self,
        dataset: Any,
        *,
        writable: bool,
        owns_file: bool = True,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        super().__init__()
        dtype = np.dtype(dataset.dtype)
        if dtype.kind not in "biufc":
            raise FormatNotSupportedError(
                f"HDF5 dataset {dataset.name!r} in {dataset.file.filename} has dtype {dtype}, "
                "which is not a numeric volume; pass the internal_path of a numeric dataset"
            )
        check_outside_storage(dataset)
        self.dataset = dataset
        self.path = os.path.abspath(dataset.file.filename)
        self.key = dataset.name.lstrip("/")
        self._writable = writable
        self._owns_file = owns_file
        self._shape = tuple(int(n) for n in dataset.shape)
        self._file_dtype = dtype
        self._dtype = dtype.newbyteorder("=")
        self._chunks = None if dataset.chunks is None else tuple(int(c) for c in dataset.chunks)
        self._axes = _recorded_axes(dataset, len(self._shape))
        self._voxel_size = _element_size(dataset, self._shape, self._axes)
        self.chunk_cache = DecodedCache(cache_bytes)
        codec = None if writable or dataset.file.mode != "r" else ChunkCodec.of(dataset)
        self._chunk_reader = (
            None if codec is None else ChunkReader(dataset, codec, self._lock, self.chunk_cache)
        )

    @property
    def voxel_size(self) -> tuple[float, ...] | None:
        return self._voxel_size

    @property
    def unit(self) -> str | None:
        return "micrometer" if self._voxel_size is not None else None

    @property
    def axes(self) -> str | None:
        """From vigra's ``axistags`` (ilastik), else the HDF5 dimension labels."""
        return self._axes

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def chunks(self) -> tuple[int, ...] | None:
        return self._chunks

    def writer_lock_path(self) -> str | None:
        # beside the file itself: runs through a symlink to it take the same lock
        folder, name = os.path.split(os.path.realpath(self.path))
        return os.path.join(folder, f".{name}.bioimage_async-writer.json")

    @property
    def writable(self) -> bool:
        return self._writable

    @property
    def read_only_reason(self) -> str:
        return f"{self.describe()} was opened read-only (mode='r'); reopen it with mode='r+'"

    @property
    def decodes_chunks(self) -> bool:
        """Whether reads decode raw chunks in parallel (else h5py reads them, one at a time)."""
        return self._chunk_reader is not None

    @property
    def decode_count(self) -> int:
        return self.chunk_cache.decode_count

    def describe(self) -> str:
        return f"HDF5 dataset {self.key!r} in {self.path}"

    async def _read(self, roi: Roi) -> np.ndarray:
        """Chunk-decoding reads split large regions over the blocking pool's threads.

        On cancel, parts already decoding in threads finish (their chunks stay cached).
        """
        if self._chunk_reader is None:
            return await super()._read(roi)
        return await read_in_parts(self._chunk_reader.fill, roi, self._dtype, self._chunks)

    async def read_roi_into(self, roi: Roi, out: np.ndarray) -> None:
        """Chunks decoded straight into ``out`` (a pooled block buffer)."""
        if self._chunk_reader is None or any(s.stop <= s.start for s in roi):
            await super().read_roi_into(roi, out)
            return
        await fill_in_parts(self._chunk_reader.fill, roi, out, self._chunks)

    def read_blocking(self, roi: Roi) -> np.ndarray:
        if self._chunk_reader is not None:
            out = np.empty(roi_shape(roi), dtype=self._dtype)
            self._chunk_reader.fill(out, roi)
            return out
        if not roi:  # a scalar dataset
            return np.asarray(self.dataset[()], dtype=self._dtype)
        data = self.dataset[roi]
        return data if self._file_dtype.isnative else data.astype(self._dtype)

    def write_blocking(self, roi: Roi, value: np.ndarray) -> None:
        """Written through to the file (``flush``) before returning: a run journals a block as
        done once its write returned, and HDF5 keeps written chunks in its own cache until a
        flush, so a process killed after the mark lost blocks the journal called done (a
        resume then reported success with them missing)."""
        self.dataset[roi if roi else ()] = value
        self.dataset.file.flush()

    def close(self) -> None:
        """Flush and close the file (if this source opened it). Reads and writes then fail."""
        with self._lock:
            self.chunk_cache.clear()
            file = self.dataset.file
            if self._owns_file and file.id.valid:
                file.close()

    def to_spec(self) -> SourceSpec:
        if not os.path.isfile(self.path):
            raise NotSerializableError(
                f"{self.describe()} has no file on disk (an in-memory h5py file?), so another "
                "process cannot reopen it; write it to a file first"
            )
        return SourceSpec(
            self.kind,
            {"path": self.path, "key": self.key, "mode": "r+" if self._writable else "r"},
        )

    @classmethod
    async def from_params(cls, params: dict[str, Any]) -> Hdf5Source:
        return await open_hdf5(params["path"], params["key"], mode=params.get("mode", "r"))


# ---------------------------------------------------------------------------------------------
# open, create, wrap
# ---------------------------------------------------------------------------------------------
def list_datasets(file: Any, limit: int = _LISTING_LIMIT) -> list[str]:
    """Paths of the datasets in an open h5py File (or Group), for error messages."""
    h5py = _h5py()
    found: list[str] = []

    def visit(name: str, obj: Any) -> bool | None:
        if isinstance(obj, h5py.Dataset):
            found.append(name)
        return True if len(found) >= limit else None  # a non-None return stops the walk

    file.visititems(visit)
    return found


#: vigra's AxisInfo type flags (ilastik reads them): channel, space, time
_TYPE_FLAGS = {"c": 1, "t": 8}


def _recorded_axes(dataset: Any, ndim: int) -> str | None:
    """The dataset's axis letters from vigra's ``axistags`` JSON (ilastik's files), else from
    its HDF5 dimension labels (``dataset.dims[i].label``); None where neither names them."""
    tags = dataset.attrs.get("axistags")
    if isinstance(tags, bytes):
        tags = tags.decode("utf-8", "replace")
    if isinstance(tags, str):
        try:
            axes = json.loads(tags).get("axes")
            keys = [a.get("key") for a in axes] if isinstance(axes, list) else None
        except (ValueError, AttributeError):
            keys = None
        found = axes_from_names(keys, ndim)
        if found is not None:
            return found
    try:
        labels = [dim.label for dim in dataset.dims]
    except (AttributeError, TypeError, ValueError):  # an h5py without dimension scales
        return None
    return axes_from_names(labels, ndim)


def axistags_json(names: tuple[str, ...]) -> str:
    """vigra's ``axistags`` for axis names in the dataset's order (as ilastik writes them)."""
    axes = [
        {"key": name, "typeFlags": _TYPE_FLAGS.get(name, 2), "resolution": 0, "description": ""}
        for name in names
    ]
    return json.dumps({"axes": axes})


# ---------------------------------------------------------------------------------------------
# data stored outside the file: virtual datasets, external raw files, external links
# ---------------------------------------------------------------------------------------------
#: Virtual datasets over virtual datasets are checked this many levels deep (a guard on cycles).
_VIRTUAL_DEPTH = 8


def check_outside_storage(dataset: Any, depth: int = 0) -> None:
    """Refuse a dataset whose voxels live partly in files that are missing.

    HDF5 reads the part of a virtual dataset whose source file or dataset is missing as the fill
    value, without an error, and a short external raw file as zeros: silently wrong voxels.
    So both are checked once, when the source is opened (nothing is pinned: a file deleted
    after the check goes unnoticed until the next open).
    """
    h5py = _h5py()
    dcpl = dataset.id.get_create_plist()
    if dcpl.get_layout() == getattr(h5py.h5d, "VIRTUAL", None):
        if depth < _VIRTUAL_DEPTH:
            _check_virtual(dataset, dcpl, depth)
    elif dcpl.get_external_count() > 0:
        _check_external_raw(dataset, dcpl)


def _describe_node(node: Any) -> str:
    return f"HDF5 dataset {node.name.lstrip('/')!r} in {os.path.abspath(node.file.filename)}"


def _literal_name(name: str) -> str | None:
    """A VDS mapping's file or dataset name with HDF5's '%%' unescaped; None for a '%b'
    pattern (an unlimited mapping over a numbered series, which cannot be listed up front)."""
    out, chars = [], iter(name)
    for char in chars:
        if char == "%":
            char = next(chars, "")
            if char == "b":
                return None
        out.append(char)
    return "".join(out)


def _with_origin(prefix: str, folder: str) -> str | None:
    """An access-property prefix as HDF5 expands it: '${ORIGIN}' is the file's folder."""
    if prefix in ("", "."):
        return None
    if prefix.startswith("${ORIGIN}"):
        return folder + prefix[len("${ORIGIN}") :]
    return prefix


def _search_paths(name: str, origin: str, env_var: str, prefix: str) -> list[str]:
    """Where HDF5 looks for the file ``name`` that the file ``origin`` refers to, in its order
    (``H5F_prefix_open_file``): an absolute name as it is; then its last component (a relative
    name whole) under each folder of ``env_var``, under the access ``prefix``, beside
    ``origin``, in the working directory, and beside ``origin``'s resolved path."""
    folder = os.path.dirname(os.path.abspath(origin))
    paths = []
    if os.path.isabs(name):
        paths.append(name)
        name = os.path.basename(name)
    folders = [p for p in os.environ.get(env_var, "").split(":") if p]
    folders.append(_with_origin(prefix, folder) or "")
    folders.append(folder)
    paths += [os.path.join(f, name) for f in folders if f]
    paths.append(os.path.abspath(name))
    paths.append(os.path.join(os.path.dirname(os.path.realpath(origin)), name))
    return list(dict.fromkeys(os.path.abspath(p) for p in paths))


def _open_first(paths: list[str], writable: bool) -> tuple[Any, list[str]]:
    """The first of ``paths`` that HDF5 would open (an HDF5 file, writable if ``writable``),
    open read-only, or None; and why each one before it was passed over."""
    h5py = _h5py()
    passed: list[str] = []
    for path in paths:
        if not os.path.isfile(path):
            passed.append(f"{path} (missing)")
        elif writable and not os.access(path, os.W_OK):
            passed.append(f"{path} (not writable, and the file referring to it is open read-write)")
        else:
            try:
                return h5py.File(path, "r"), passed
            except OSError as err:
                passed.append(f"{path} (not readable as HDF5: {err})")
    return None, passed


def _virtual_prefix(dataset: Any) -> str:
    """HDF5_VDS_PREFIX if set, else the dataset access property (h5py's ``virtual_prefix``)."""
    env = os.environ.get("HDF5_VDS_PREFIX", "")
    return env or os.fsdecode(dataset.id.get_access_plist().get_virtual_prefix())


def _check_virtual(dataset: Any, dcpl: Any, depth: int) -> None:
    """Each mapping's source file must open and hold its dataset (each file opened once)."""
    by_file: dict[str, set[str]] = {}
    for i in range(dcpl.get_virtual_count()):
        by_file.setdefault(dcpl.get_virtual_filename(i), set()).add(dcpl.get_virtual_dsetname(i))
    for file_name, dset_names in sorted(by_file.items()):
        literal_file = _literal_name(file_name)
        literal_dsets = [n for n in map(_literal_name, sorted(dset_names)) if n is not None]
        if literal_file is None or not literal_dsets:
            continue
        if literal_file == ".":  # HDF5's name for the virtual dataset's own file
            _check_virtual_sources(dataset, dataset.file, literal_file, literal_dsets, depth)
        else:
            _check_virtual_file(dataset, literal_file, literal_dsets, depth)


def _check_virtual_file(dataset: Any, file_name: str, dset_names: list[str], depth: int) -> None:
    origin = dataset.file.filename
    paths = _search_paths(file_name, origin, "HDF5_VDS_PREFIX", _virtual_prefix(dataset))
    source, passed = _open_first(paths, writable=dataset.file.mode == "r+")
    if source is None:
        raise SourceNotFoundError(
            f"{_describe_node(dataset)} is a virtual dataset that maps part of its voxels to "
            f"dataset {dset_names[0]!r} in the file {file_name!r}, and HDF5 finds no such file "
            f"(looked for: {'; '.join(passed)}). HDF5 would read that part as the fill value "
            "without an error, so it is refused. Restore the file, or copy the virtual "
            "dataset together with its source files (relative names resolve beside it)"
        )
    with source:
        _check_virtual_sources(dataset, source, file_name, dset_names, depth)


def _check_virtual_sources(
    dataset: Any, source: Any, file_name: str, dset_names: list[str], depth: int
) -> None:
    h5py = _h5py()
    for dset_name in dset_names:
        node = source.get(dset_name)
        if not isinstance(node, h5py.Dataset):
            where = "its own file" if file_name == "." else f"the file {source.filename}"
            raise SourceNotFoundError(
                f"{_describe_node(dataset)} is a virtual dataset that maps part of its voxels "
                f"to dataset {dset_name!r} in {where}, which holds no such dataset. HDF5 would "
                "read that part as the fill value without an error, so it is refused. Restore "
                "that dataset, or copy the virtual dataset together with its source files"
            )
        check_outside_storage(node, depth + 1)


def _check_external_raw(dataset: Any, dcpl: Any) -> None:
    """Each raw file must hold every byte the dataset reads from it (HDF5 reads a short file's
    missing tail as zeros). Relative names resolve against HDF5_EXTFILE_PREFIX or the access
    property (h5py's ``efile_prefix``), else against the working directory, as HDF5 does."""
    env = os.environ.get("HDF5_EXTFILE_PREFIX", "")
    prefix = env or os.fsdecode(dataset.id.get_access_plist().get_efile_prefix())
    folder = os.path.dirname(os.path.abspath(dataset.file.filename))
    base = _with_origin(prefix, folder) or ""
    remaining = int(np.prod(dataset.shape, dtype=np.int64)) * dataset.id.get_type().get_size()
    for i in range(dcpl.get_external_count()):
        if remaining <= 0:
            return
        name, offset, size = dcpl.get_external(i)
        path = os.path.abspath(os.path.join(base, os.fsdecode(name)))
        needed = min(remaining, size)  # an unlimited slot's size is 2**64 - 1
        _check_raw_file(dataset, path, offset + needed)
        remaining -= needed


def _check_raw_file(dataset: Any, path: str, end: int) -> None:
    if not os.path.isfile(path):
        raise SourceNotFoundError(
            f"{_describe_node(dataset)} keeps its voxels in the external raw file {path}, "
            "which does not exist. Restore the file; relative names resolve against the "
            "working directory unless HDF5_EXTFILE_PREFIX (or h5py's efile_prefix) is set"
        )
    found = os.path.getsize(path)
    if found < end:
        raise SourceError(
            f"{_describe_node(dataset)} keeps its voxels in the external raw file {path}, "
            f"which holds {found} bytes where the dataset reads up to byte {end}; HDF5 would "
            "read the rest as zeros, so it is refused. Restore the complete file"
        )


def _refuse_broken_link(file: Any, path: str, key: str) -> None:
    """Name an external link on the way to ``key`` whose target cannot be reached (h5py only
    says the key is not there)."""
    h5py = _h5py()
    parts = key.split("/")
    for depth in range(1, len(parts) + 1):
        name = "/".join(parts[:depth])
        link = file.get(name, getlink=True)
        if link is None:
            return
        if isinstance(link, h5py.ExternalLink) and file.get(name) is None:
            parent = file.get("/".join(parts[: depth - 1]) or "/")
            _refuse_external_link(parent.file, path, name, link)


def _refuse_external_link(origin: Any, path: str, name: str, link: Any) -> None:
    """HDF5 opens the target with the linking file's intent, so read-write needs it writable."""
    paths = _search_paths(link.filename, origin.filename, "HDF5_EXT_PREFIX", "")
    target, passed = _open_first(paths, writable=origin.mode == "r+")
    said = f"{path}: {name!r} is an external link to {link.path!r} in the file {link.filename!r}"
    if target is None:
        raise SourceNotFoundError(
            f"{said}, which does not exist (looked for: {'; '.join(passed)}). Restore that "
            "file, or open the dataset in it directly"
        )
    with target:
        if link.path in target:
            return  # reachable by name, yet HDF5 did not follow the link: say nothing more
        raise SourceNotFoundError(
            f"{said} ({target.filename}), which holds nothing at {link.path!r}; open one of its "
            f"datasets directly: {', '.join(repr(k) for k in list_datasets(target, 20)) or 'none'}"
        )


def _open_file(path: str, h5_mode: str) -> Any:
    h5py = _h5py()
    if not os.path.exists(path):
        raise SourceNotFoundError(f"no such HDF5 file: {path!r}")
    if os.path.isdir(path):
        raise SourceError(f"{path!r} is a folder, not an HDF5 file")
    try:
        return h5py.File(path, h5_mode)
    except OSError as err:
        if "already open for read-only" in str(err):
            raise SourceError(
                f"cannot open {path!r} for writing: this process already has it open read-only "
                "(a source opened with mode='r', or an h5py.File), and HDF5 cannot reopen it "
                "read-write. Close that first (source.close()), or open it with mode='r+' "
                "from the start"
            ) from err
        raise SourceError(
            f"cannot open {path!r} as HDF5 (mode {h5_mode!r}): {err}. Is it an HDF5 file, and "
            "is it not open for writing by another process (HDF5 file locking)?"
            + _DAMAGED_HINT
            * _looks_damaged(err)
        ) from err


#: HDF5 files are not crash-safe: what to say when one reads as damaged.
_DAMAGED_HINT = (
    " If a process writing it was killed (kill -9, an out-of-memory kill, a power loss), the "
    "file may be damaged beyond repair: HDF5 updates its metadata in place. Remove it and run "
    "again, or write zarr (crash-safe, resumable) and convert to HDF5 at the end"
)


def _looks_damaged(err: BaseException) -> bool:
    """Whether h5py's error reads like a file left damaged (rather than locked or foreign)."""
    text = str(err).lower()
    return any(
        s in text
        for s in ("bad object header", "bad symbol table", "truncated file", "bad heap", "checksum")
    )


def _open_blocking(path: str, key: str | None, writable: bool, cache_bytes: int) -> Hdf5Source:
    h5py = _h5py()
    file = _open_file(path, "r+" if writable else "r")
    try:
        if key is None:
            datasets = list_datasets(file, limit=2)
            if len(datasets) != 1:
                raise InternalPathNotFoundError(path, None, list_datasets(file))
            key = datasets[0]
        node = file.get(key)
        if not isinstance(node, h5py.Dataset):
            _refuse_broken_link(file, path, key)
            raise InternalPathNotFoundError(path, key, list_datasets(file))
        return Hdf5Source(node, writable=writable, cache_bytes=cache_bytes)
    except BaseException:
        file.close()
        raise


async def open_hdf5(
    path: str | os.PathLike[str],
    internal_path: str | None = None,
    *,
    mode: str = "r",
    cache_bytes: int = DEFAULT_CACHE_BYTES,
) -> Hdf5Source:
    """Open the dataset ``internal_path`` of an existing HDF5 file.

    Without ``internal_path`` a file holding exactly one dataset opens that one; otherwise the
    error lists the datasets found. ``mode='r'`` is read-only; 'r+', 'a' and 'w' open the existing
    file read-write (never truncating it). ``cache_bytes`` bounds the decoded chunks kept for
    reuse by later reads (read-only chunked datasets only).
    """
    path = os.path.abspath(os.fspath(path))
    key = None if internal_path in (None, "", "/") else str(internal_path).strip("/")
    _h5py()
    return await run_blocking(_open_blocking, path, key, mode != "r", cache_bytes)


def _compression_options(compression: str | None) -> dict[str, Any]:
    name = "none" if compression is None else compression
    try:
        return dict(_COMPRESSIONS[name])
    except KeyError:
        raise FormatNotSupportedError(
            f"unknown compression {compression!r} for hdf5; choose one of "
            f"{', '.join(_COMPRESSIONS)} (or None)"
        ) from None


def _refuse_dataset_on_the_way(file: Any, path: str, key: str) -> None:
    """A nested key cannot pass through a dataset (h5py fails with a bare TypeError)."""
    parts = key.split("/")
    for depth in range(1, len(parts)):
        parent = "/".join(parts[:depth])
        node = file.get(parent)
        if node is None:
            return
        if not hasattr(node, "keys"):  # a dataset, not a group
            raise SourceExistsError(
                f"cannot create {key!r} in {path}: {parent!r} is a dataset, not a group, so "
                f"nothing can be created inside it; pick a key outside it (e.g. "
                f"{parts[-1]!r}) or another file"
            )


def _create_blocking(
    path: str,
    key: str,
    shape: tuple[int, ...],
    dtype: np.dtype,
    chunks: tuple[int, ...],
    options: dict[str, Any],
    fill_value: Any,
    exist_ok: bool,
    attributes: dict[str, Any],
) -> Hdf5Source:
    h5py = _h5py()
    if os.path.isdir(path):
        raise SourceError(f"cannot create an HDF5 file at {path!r}: it is a folder")
    try:
        file = h5py.File(path, "a")
    except OSError as err:
        raise SourceError(
            f"cannot open or create the HDF5 file {path!r} for writing: {err}. Is it an HDF5 "
            "file, and not open in another process?" + _DAMAGED_HINT * _looks_damaged(err)
        ) from err
    try:
        _refuse_dataset_on_the_way(file, path, key)
        node = file.get(key)
        if node is not None:
            _check_existing(node, path, key, shape, dtype, exist_ok)
            check_kept_fill(f"{path} (key {key!r})", node.fillvalue, fill_value)
            node.attrs.update(attributes)
            return Hdf5Source(node, writable=True)
        if 0 in shape:  # HDF5 cannot chunk an empty axis; an empty volume needs no filter
            chunks_arg, options = None, {}
        else:
            chunks_arg = chunks
        dataset = file.create_dataset(
            key,
            shape=shape,
            dtype=dtype,
            chunks=chunks_arg,
            fillvalue=fill_value,
            **options,
        )  # intermediate groups of a nested key are created on the way
        dataset.attrs.update(attributes)
        return Hdf5Source(dataset, writable=True)
    except BaseException:
        file.close()
        raise


def _check_existing(
    node: Any,
    path: str,
    key: str,
    shape: tuple[int, ...],
    dtype: np.dtype,
    exist_ok: bool,
) -> None:
    """exist_ok reopens a dataset of the same shape and dtype; anything else is refused."""
    h5py = _h5py()
    if not isinstance(node, h5py.Dataset):
        raise SourceExistsError(
            f"{path} already holds a group at {key!r}; choose another internal_path "
            "for the new dataset"
        )
    if not exist_ok:
        raise SourceExistsError(
            f"an array already exists at {path} (key {key!r}); pass exist_ok=True to open it "
            "for writing, or remove it first"
        )
    if tuple(node.shape) != shape or np.dtype(node.dtype) != dtype:
        raise SourceExistsError(
            f"the existing dataset {key!r} in {path} has shape {tuple(node.shape)} and dtype "
            f"{node.dtype}, not the requested {shape} / {dtype}; remove it or choose another "
            "internal_path"
        )


async def create_hdf5(
    path: str | os.PathLike[str],
    *,
    shape: tuple[int, ...],
    dtype: Any,
    chunks: tuple[int, ...],
    internal_path: str | None = None,
    compression: str | None = "default",
    fill_value: Any = 0,
    exist_ok: bool = False,
    voxel_size: tuple[float, ...] | None = None,
    unit: str | None = None,
    dimension_names: tuple[str, ...] | None = None,
) -> Hdf5Source:
    """Create a chunked dataset (default key 'data') in a new or existing HDF5 file.

    compression: 'default' (gzip level 1: fast and readable by every HDF5 tool), 'gzip'
    (level 4), 'lzf' (faster, but only h5py reads it), 'none' or None. A nested internal_path
    ('a/b/raw') creates the groups on the way. An existing dataset at the key raises
    SourceExistsError unless ``exist_ok`` (then shape and dtype must match).

    ``voxel_size`` (one size per axis, in ``unit``, which it needs) is recorded as vigra's and
    ilastik's ``element_size_um``: converted to micrometres on the spatial axes.
    ``dimension_names`` ("z", "y", "x", "c", "t") are recorded as vigra's ``axistags``.
    """
    path = os.path.abspath(os.fspath(path))
    key = (internal_path or "data").strip("/")
    if not key:
        raise InvalidArgumentError(
            f"internal_path {internal_path!r} names no dataset; pass e.g. 'data'"
        )
    shape = tuple(int(n) for n in shape)
    chunks = tuple(int(c) for c in chunks)
    options = _compression_options(compression)
    fill_value = exact_fill_value(fill_value, np.dtype(dtype))  # h5py clamps 300 to 255
    attributes = _recorded_attributes(shape, voxel_size, check_unit(unit), dimension_names)
    _h5py()
    return await run_blocking(
        _create_blocking,
        path,
        key,
        shape,
        np.dtype(dtype),
        chunks,
        options,
        fill_value,
        exist_ok,
        attributes,
    )


def _recorded_attributes(
    shape: tuple[int, ...],
    voxel_size: tuple[float, ...] | None,
    unit: str | None,
    names: tuple[str, ...] | None,
) -> dict[str, Any]:
    """``element_size_um`` and ``axistags`` for a new dataset (checked before any file is
    touched)."""
    attributes: dict[str, Any] = {}
    axes = axes_from_names(names, len(shape))
    if names is not None:
        if axes is None:
            raise InvalidArgumentError(
                f"dimension_names {tuple(names)!r}: HDF5 records axis names as vigra's "
                "axistags, whose keys are t, c, z, y, x (each once)"
            )
        attributes["axistags"] = axistags_json(tuple(axes))
    if voxel_size is not None:
        sizes = positive_sizes(voxel_size, len(shape))
        if sizes is None:
            raise InvalidArgumentError(
                f"voxel_size {voxel_size!r} must hold one positive size per axis of {shape}"
            )
        if unit is None:
            raise InvalidArgumentError(
                f"the hdf5 format records the voxel size as element_size_um, in micrometres, "
                f"and voxel_size={tuple(sizes)!r} has no unit: pass unit= the unit of these "
                "sizes (e.g. unit='nm' or unit='um')"
            )
        spatial = spatial_axes(len(shape), axes)
        attributes["element_size_um"] = list(microns(sizes, unit, spatial))
    return attributes


def _element_size(
    dataset: Any, shape: tuple[int, ...], axes: str | None
) -> tuple[float, ...] | None:
    """vigra/ilastik's ``element_size_um``, in the dataset's (C) axis order: one size per axis,
    or three for z, y, x of a dataset with more axes (placed on its spatial axes); any other
    length is said to be dropped, not guessed."""
    sizes = positive_sizes(dataset.attrs.get("element_size_um"))
    if sizes is None or len(sizes) == len(shape):
        return sizes
    if len(sizes) == 3 and len(shape) > 3:
        return on_spatial_axes(sizes, len(shape), axes)
    logger.warning(
        "%s: element_size_um %s has %d sizes for %d axes; the voxel size is dropped",
        dataset.name,
        list(sizes),
        len(sizes),
        len(shape),
    )
    return None


def wrap_h5py_dataset(dataset: Any) -> Hdf5Source:
    """as_source() of a user's h5py Dataset: shares the user's file handle (never closes it).

    Writable when the user's file is open read-write; its spec reopens the file by path.
    """
    return Hdf5Source(dataset, writable=dataset.file.mode == "r+", owns_file=False)


class Hdf5Format(LocalFileFormat):
    name = "hdf5"
    open_options = ("cache_bytes",)
    description = "HDF5, .h5/.hdf5/.hdf (local files; single writer)"
    extensions = (".h5", ".hdf5", ".hdf")
    writable = True
    creatable = True
    records_voxel_size = True  # element_size_um
    records_axis_names = True  # vigra's axistags
    requires = "h5py"
    extra = "hdf5"

    async def open_local(
        self, path: str, internal_path: str | None, *, mode: str, **options: Any
    ) -> Source:
        return await open_hdf5(path, internal_path, mode=mode, **options)

    async def create(self, location: Location, request: CreateRequest) -> Source:
        if request.shards is not None:
            raise FormatNotSupportedError("shards= needs format='zarr3'; HDF5 has no sharding")
        return await create_hdf5(
            str(location.local_path),
            shape=request.shape,
            dtype=request.dtype,
            chunks=request.chunks,
            internal_path=request.internal_path,
            compression=request.compression,
            fill_value=request.fill_value,
            exist_ok=request.exist_ok,
            voxel_size=request.voxel_size,
            unit=request.unit,
            dimension_names=request.dimension_names,
        )


FORMAT_BACKENDS: tuple[FormatBackend, ...] = (Hdf5Format(),)
