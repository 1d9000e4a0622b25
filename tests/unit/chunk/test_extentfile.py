"""Extent files: in-place block writes with per-block CRCs, holes, zeroing, crash rebuild."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store.chunk import extentfile
from store.chunk.extentfile import DATA, HOLE, ZERO, ExtentFile, ExtentGeometry
from store.errors import Corrupt, InvalidArgument, NotFound

G = ExtentGeometry(64 * 4096, 4096)


def make(tmp_path: Path, name: str = "e.ext") -> ExtentFile:
    extentfile.create(tmp_path / name, G)
    return ExtentFile(tmp_path / name, G)


def test_new_extent_reads_zeros_and_is_sparse(tmp_path: Path) -> None:
    ext = make(tmp_path)
    assert ext.read(0, G.extent_bytes) == bytes(G.extent_bytes)
    assert set(ext.states(0, G.extent_bytes)) == {HOLE}
    assert os.stat(ext.path).st_blocks * 512 < G.extent_bytes // 4  # holes cost nothing
    assert os.stat(ext.path).st_size == G.file_bytes


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 63), st.integers(1, 8), st.binary(min_size=1)), max_size=8)
)
def test_writes_read_back_like_a_model(tmp_path_factory: pytest.TempPathFactory, ops: list) -> None:
    ext = make(tmp_path_factory.mktemp("ext"))
    model = bytearray(G.extent_bytes)
    for first, count, seed in ops:
        count = min(count, 64 - first)
        data = (seed * (count * 4096 // len(seed) + 1))[: count * 4096]
        ext.write(first * 4096, data)
        model[first * 4096 : (first + count) * 4096] = data
    assert ext.read(0, G.extent_bytes) == bytes(model)
    ext.close()


def test_zero_punches_or_writes_zeros(tmp_path: Path) -> None:
    ext = make(tmp_path)
    ext.write(0, os.urandom(8 * 4096))
    ext.zero(4096, 2 * 4096, punch=True)
    ext.zero(4 * 4096, 4096, punch=False)
    assert list(ext.states(0, 8 * 4096)) == [DATA, HOLE, HOLE, DATA, ZERO, DATA, DATA, DATA]
    assert ext.read(4096, 2 * 4096) == bytes(2 * 4096)
    assert ext.read(4 * 4096, 4096) == bytes(4096)


def test_flipped_bits_are_never_returned(tmp_path: Path) -> None:
    ext = make(tmp_path)
    ext.write(0, b"x" * 8192)
    with open(ext.path, "r+b") as f:
        f.seek(5000)
        f.write(b"y")
    assert ext.read(0, 4096) == b"x" * 4096
    with pytest.raises(Corrupt, match="block 1"):
        ext.read(0, 8192)


def test_verify_checks_the_tables_on_disk(tmp_path: Path) -> None:
    """Reads check against the tables held in memory; ``verify`` (scrub, repair) reads them
    from the disk, so rot in the table itself is found too."""
    ext = make(tmp_path)
    ext.write(0, b"x" * 8192)
    ext.verify()
    with open(ext.path, "r+b") as f:
        f.seek(G.extent_bytes + 4)  # block 1's CRC
        f.write(b"\0\0")
    assert ext.read(0, 8192) == b"x" * 8192
    with pytest.raises(Corrupt, match="table"):
        ext.verify()
    ext.close()
    with pytest.raises(Corrupt, match="block 1"):
        make_existing(ext.path).read(0, 8192)  # opened afresh: the table on disk rules


def make_existing(path: Path) -> ExtentFile:
    return ExtentFile(path, G)


def test_lost_table_update_is_rebuilt(tmp_path: Path) -> None:
    """A crash between the data write and the table write: the rebuild makes every block
    verify and marks the block written."""
    ext = make(tmp_path)
    ext.write(0, b"a" * 4096)
    os.pwrite(ext.fd, b"b" * 4096, 4096)  # data landed, table did not
    with pytest.raises(Corrupt):
        ext.read(0, 8192)
    assert ext.rebuild_table() == 1
    assert ext.read(0, 8192) == b"a" * 4096 + b"b" * 4096
    assert list(ext.states(0, 8192)) == [DATA, DATA]


def test_copy_on_write_copies_data_and_table(tmp_path: Path) -> None:
    src = make(tmp_path, "src.ext")
    src.write(8192, b"z" * 4096)
    extentfile.create(tmp_path / "dst.ext", G, src.image())
    dst = ExtentFile(tmp_path / "dst.ext", G)
    assert dst.read(0, G.extent_bytes) == src.read(0, G.extent_bytes)
    assert dst.states(0, G.extent_bytes) == src.states(0, G.extent_bytes)
    dst.write(8192, b"w" * 4096)
    assert src.read(8192, 4096) == b"z" * 4096  # the source is untouched


def test_an_image_of_another_geometry_is_refused(tmp_path: Path) -> None:
    image = make(tmp_path, "src.ext").image()
    short = extentfile.ExtentImage(image.crcs, image.states, image.data[:-4096])
    with pytest.raises(InvalidArgument):
        extentfile.create(tmp_path / "dst.ext", G, short)
    assert not (tmp_path / "dst.ext").exists()


def test_misaligned_or_outside_ranges_and_bad_files(tmp_path: Path) -> None:
    ext = make(tmp_path)
    for offset, length in [(1, 4096), (0, 100), (G.extent_bytes, 4096), (-4096, 4096)]:
        with pytest.raises(InvalidArgument):
            ext.read(offset, length)
    with pytest.raises(NotFound):
        ExtentFile(tmp_path / "missing.ext", G)
    with pytest.raises(Corrupt):
        ExtentFile(ext.path, ExtentGeometry(32 * 4096, 4096))  # another geometry
    os.truncate(ext.path, G.extent_bytes)
    with pytest.raises(Corrupt):
        ExtentFile(ext.path, G)


def test_nowait_reads_from_the_page_cache(tmp_path: Path) -> None:
    """Just written, the block is in the page cache: RWF_NOWAIT serves it without blocking."""
    ext = make(tmp_path)
    ext.write(0, b"c" * 4096)
    assert ext.read(0, 4096, nowait=True) == b"c" * 4096
