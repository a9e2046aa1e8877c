"""zarr v2 chunk-key layouts: a ``.zarray`` without ``dimension_separator`` over nested chunks
(zarr-python's NestedDirectoryStore before 2.8 wrote exactly that) reads what is stored, and a
folder whose chunks the metadata cannot name is refused instead of read as fill values."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

import bioimage_async as ba


def write_v2(path: Path, data: np.ndarray, chunks: tuple[int, ...], separator: str) -> None:
    """A zarr v2 array written by zarr-python with chunk keys joined by ``separator``."""
    array = zarr.create_array(
        str(path),
        shape=data.shape,
        chunks=chunks,
        dtype=data.dtype,
        zarr_format=2,
        chunk_key_encoding={"name": "v2", "separator": separator},
    )
    array[...] = data


def set_separator(path: Path, separator: str | None) -> None:
    """Rewrite the .zarray's dimension_separator (None: drop the key, as zarr < 2.8 wrote)."""
    meta = json.loads((path / ".zarray").read_text())
    meta.pop("dimension_separator", None)
    if separator is not None:
        meta["dimension_separator"] = separator
    (path / ".zarray").write_text(json.dumps(meta))


def nested_without_key(path: Path, data: np.ndarray, chunks: tuple[int, ...]) -> None:
    write_v2(path, data, chunks, "/")
    set_separator(path, None)


@pytest.mark.parametrize(
    "shape,chunks", [((30, 40), (10, 15)), ((20, 30, 40), (10, 15, 20))], ids=["2d", "3d"]
)
def test_nested_chunks_without_separator_key_read_as_written(tmp_path, shape, chunks):
    data = np.arange(1, np.prod(shape) + 1, dtype=np.uint16).reshape(shape)
    nested_without_key(tmp_path / "a.zarr", data, chunks)
    src = ba.sync.open_source(tmp_path / "a.zarr")
    np.testing.assert_array_equal(src[...], data)


async def test_nested_chunks_without_separator_key_reopen_from_spec(tmp_path, rng):
    """A worker reopens from the spec: it must find the nested chunks too."""
    data = rng.integers(1, 1000, size=(12, 34, 25), dtype=np.int32)
    nested_without_key(tmp_path / "a.zarr", data, (5, 10, 10))
    src = await ba.open_source(tmp_path / "a.zarr")
    reopened = await ba.from_spec(json.loads(json.dumps(src.to_spec().to_json())))
    np.testing.assert_array_equal(await reopened.read(np.s_[2:11, 7:30, 3:]), data[2:11, 7:30, 3:])


async def test_ome_zarr_levels_with_nested_chunks_and_no_key_read_from_the_group(tmp_path, rng):
    """The group folder holds digit-named child arrays '0' and '1': only each level's own
    folder tells its chunk layout."""
    data = rng.integers(1, 255, size=(16, 20, 24), dtype=np.uint8)
    root = tmp_path / "ome.zarr"
    zarr.open_group(str(root), mode="w", zarr_format=2)
    nested_without_key(root / "0", data, (8, 8, 8))
    nested_without_key(root / "1", data[::2, ::2, ::2], (8, 8, 8))
    datasets = [
        {"path": str(k), "coordinateTransformations": [{"type": "scale", "scale": [2.0**k] * 3}]}
        for k in (0, 1)
    ]
    axes = [{"name": n, "type": "space"} for n in "zyx"]
    multiscales = [{"version": "0.4", "axes": axes, "datasets": datasets}]
    (root / ".zattrs").write_text(json.dumps({"multiscales": multiscales}))
    full = await ba.open_source(root)
    half = await ba.open_source(root, level=1)
    np.testing.assert_array_equal(await full.read(), data)
    np.testing.assert_array_equal(await half.read(), data[::2, ::2, ::2])


async def test_exist_ok_writes_into_nested_chunks_without_key(tmp_path, rng):
    """Reopened for writing, the array keeps its nested layout (no dotted chunks beside it)."""
    data = rng.integers(1, 1000, size=(20, 30), dtype=np.uint16)
    path = tmp_path / "a.zarr"
    nested_without_key(path, data, (10, 10))
    out = await ba.create_source(
        path, shape=data.shape, dtype=data.dtype, chunks=(10, 10), exist_ok=True
    )
    np.testing.assert_array_equal(await out.read(), data)
    await out.write(np.s_[:10, :10], np.full((10, 10), 7, dtype=np.uint16))
    assert not list(path.glob("*.*[0-9]"))
    expected = data.copy()
    expected[:10, :10] = 7
    np.testing.assert_array_equal(await (await ba.open_source(path)).read(), expected)


async def test_both_layouts_without_separator_key_are_refused(tmp_path, rng):
    """Dotted chunks alone read as ever (zarr < 2.8 wrote no key over them either); dotted and
    nested chunks together cannot be told apart."""
    data = rng.integers(1, 1000, size=(20, 30, 40), dtype=np.uint16)
    path, dotted = tmp_path / "a.zarr", tmp_path / "dotted.zarr"
    write_v2(dotted, data, (10, 15, 20), ".")
    set_separator(dotted, None)
    np.testing.assert_array_equal(await (await ba.open_source(dotted)).read(), data)
    nested_without_key(path, data + 1, (10, 15, 20))
    for chunk in dotted.glob("[0-9]*"):
        shutil.copy(chunk, path / chunk.name)
    with pytest.raises(ba.SourceError) as caught:
        await ba.open_source(path)
    message = str(caught.value)
    assert str(path) in message
    assert "'0.0.0'" in message and "'0/0/0'" in message
    assert "dimension_separator" in message


@pytest.mark.parametrize(
    "written,declared",
    [(".", "/"), ("/", ".")],
    ids=["dotted-declared-slash", "nested-declared-dot"],
)
async def test_separator_contradicting_the_chunks_is_refused(tmp_path, rng, written, declared):
    data = rng.integers(1, 1000, size=(20, 30), dtype=np.uint16)
    path = tmp_path / "a.zarr"
    write_v2(path, data, (10, 15), written)
    set_separator(path, declared)
    with pytest.raises(ba.SourceError) as caught:
        await ba.open_source(path)
    message = str(caught.value)
    assert str(path) in message
    assert f"dimension_separator {declared!r}" in message
    assert f'"dimension_separator": {written!r}' in message


async def test_recording_axes_into_a_damaged_zattrs_is_refused_not_a_rewrite_that_drops_it(
    tmp_path,
):
    """An unparsable .zattrs was read as {} and rewritten with the new members alone."""
    path = tmp_path / "a.zarr"
    await ba.create_source(path, shape=(4, 4), dtype="uint8", chunks=(2, 2))
    (path / ".zattrs").write_text('{"custom": 1, "cut sh')
    with pytest.raises(ba.SourceError, match="not a JSON object"):
        await ba.create_source(
            path, shape=(4, 4), dtype="uint8", chunks=(2, 2), exist_ok=True, voxel_size=(2, 3)
        )
    assert (path / ".zattrs").read_text() == '{"custom": 1, "cut sh'


async def test_empty_or_attribute_only_digit_folders_are_no_nested_chunks(tmp_path):
    """An empty digit-named folder, or one holding only .zattrs, beside dotted chunks (or none
    yet) was taken for nested chunks and the array refused."""
    path = tmp_path / "a.zarr"
    array = await ba.create_source(path, shape=(8, 8), dtype="uint8", chunks=(4, 4))
    (path / "7").mkdir()
    assert await (await ba.open_source(path)).read() is not None  # no chunk written yet
    await array.write(..., np.full((8, 8), 5, np.uint8))
    (path / "3").mkdir()
    (path / "3" / ".zattrs").write_text("{}")
    assert (await (await ba.open_source(path)).read() == 5).all()
