"""The object engine against a pure-Python model of S3: random programs of puts, reads, deletes,
version deletes, listings, versioning and compression changes, copies and multipart uploads.

Each hypothesis example runs one program on a fresh engine (6 local drives, EC 4+2, SQLite) and
checks every answer against the model, which knows S3's rules:

- a bucket never versioned, or suspended, keeps one "null" version per key: a put (or, when
  suspended, a delete marker) replaces it wherever it sits in the key's history;
- a versioned bucket adds a version (or a delete marker) per put (or delete);
- a key's current object is its newest version unless that is a delete marker;
- listings go in UTF-8 byte order, roll keys up into common prefixes at the first delimiter after
  the prefix, count entries and prefixes together against max-keys, and page without loss or
  repeats; version listings put a key's versions newest first and flag the newest as latest.

At the end of a program every version is read back, and the chunk bookkeeping is checked: the
chunks with an R/ entry are exactly those a version, a part or the G/ queue names (no leak, no
dangling name), and exactly those with shard files on the drives.

``inline_bytes=64`` sends most bodies through the chunk store; ``min_part_bytes=100`` lets
multipart uploads run with tiny parts.
"""

from __future__ import annotations

import hashlib
import random
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from store.errors import (
    EntityTooSmall,
    MethodNotAllowed,
    NoSuchKey,
    NoSuchUpload,
    NoSuchVersion,
    OutOfRange,
    PreconditionFailed,
)
from store.meta.api import KV, KeyValue, prefix_end
from store.node import open_local_engine
from store.objects import chunk_refs as CR
from store.objects import listing
from store.objects.engine import ObjectEngine
from store.objects.multipart import CompletedPart
from store.objects.records import Part, Version

BUCKET = "model-bucket"
INLINE_BYTES = 64
MIN_PART_BYTES = 100
MISSING_VERSION = "0123456789abcdef01234567"  # well formed, never issued
WRONG_ETAG = '"00000000000000000000000000000000"'

# -- strategies ----------------------------------------------------------------------------------

# Key pieces: multi-byte UTF-8, a decomposed "é" (a different key from the composed one), and
# bytes that sort below "/" (tab, space, "+", "%") or far above it (DEL).
_PIECES = [
    *("a", "b", "/", "a/b", "z", "~", "%2F", "+"),
    *("é", "e\u0301", "日本", "😀"),
    *(" ", "\t", "\x7f"),
]
_LONG_KEYS = [
    "a/" * 512,  # 1024 bytes, 512 delimiters
    "é" * 512,  # 1024 bytes of 2-byte characters
    "日本/" * 146 + "x",  # 1023 bytes
    "😀" * 256,  # 1024 bytes of 4-byte characters
    "a" * 1000 + "/" + "b" * 23,  # 1024 bytes
    "b/" + "é" * 510 + "a",  # 1023 bytes
]
short_keys = st.lists(st.sampled_from(_PIECES), min_size=1, max_size=4).map("".join)
keys = st.one_of(short_keys, short_keys, short_keys, st.sampled_from(_LONG_KEYS))
key_pools = st.lists(keys, min_size=1, max_size=6, unique=True)
key_index = st.integers(0, 5)  # taken modulo the pool size
seeds = st.integers(0, 2**32 - 1)
sizes = st.one_of(
    st.integers(0, INLINE_BYTES),
    st.sampled_from([0, 1, INLINE_BYTES - 1, INLINE_BYTES, INLINE_BYTES + 1]),
    st.integers(INLINE_BYTES + 1, 4096),
    st.integers(4097, 300_000),
)
part_sizes = st.one_of(
    st.integers(0, 3000), st.sampled_from([MIN_PART_BYTES - 1, MIN_PART_BYTES, 70_000])
)
conditions = st.sampled_from([None, None, None, "if-none-match", "if-match", "if-match-wrong"])
delimiters = st.sampled_from(["", "/", "a", "é", "日本", "/b"])  # some of two characters
literal_prefixes = st.lists(st.sampled_from(["a", "b", "/", "é", "日", "😀"]), max_size=2).map(
    "".join
)
# A prefix is a literal, or the first n characters of a key of the pool (reaches long keys).
prefixes = st.one_of(
    st.tuples(st.just("lit"), literal_prefixes),
    st.tuples(st.just("key"), key_index, st.integers(0, 600)),
)
ranges = st.one_of(
    st.tuples(st.just("abs"), st.integers(0, 400), st.none() | st.integers(0, 2000)),
    st.tuples(st.just("frac"), st.floats(0, 1.2), st.none() | st.floats(0, 1.2)),
    st.tuples(st.just("suffix"), st.integers(0, 3000)),
)

ops = st.one_of(
    st.tuples(st.just("put"), key_index, sizes, seeds, st.booleans(), conditions),
    st.tuples(st.just("put"), key_index, sizes, seeds, st.booleans(), conditions),
    st.tuples(st.just("get"), key_index),
    st.tuples(st.just("range"), key_index, ranges),
    st.tuples(st.just("part"), key_index, st.integers(1, 4)),
    st.tuples(st.just("get_version"), key_index, st.integers(-1, 6)),
    st.tuples(st.just("delete"), key_index),
    st.tuples(st.just("delete_version"), key_index, st.integers(-2, 6)),
    st.tuples(st.just("list"), prefixes, delimiters, st.integers(1, 5)),
    st.tuples(st.just("list_versions"), prefixes, delimiters, st.integers(1, 5)),
    st.tuples(st.just("versioning"), st.sampled_from(["Enabled", "Suspended"])),
    st.tuples(st.just("compression"), st.sampled_from(["zstd", ""])),
    st.tuples(st.just("copy"), key_index, key_index),
    st.tuples(
        st.just("multipart"),
        key_index,
        st.lists(st.tuples(st.integers(1, 6), part_sizes, seeds), min_size=1, max_size=4),
        st.lists(st.booleans(), min_size=6, max_size=6),  # which uploaded parts to list
    ),
)


def make_body(size: int, seed: int) -> bytes:
    """Random bytes (odd seeds) or a short random pattern repeated (compressible, even seeds)."""
    rnd = random.Random(seed)
    if seed % 2:
        return rnd.randbytes(size)
    unit = rnd.randbytes(rnd.randint(1, 16))
    return (unit * (size // len(unit) + 1))[:size]


async def in_pieces(data: bytes, seed: int) -> AsyncIterator[bytes | memoryview]:
    """``data`` as an async stream of odd-sized pieces (some empty, some memoryviews)."""
    rnd = random.Random(seed)
    pos = 0
    while pos < len(data):
        n = rnd.choice([0, 1, 7, 63, 64, 65, 1000, 4097, 65_537])
        piece = data[pos : pos + n]
        yield memoryview(piece) if rnd.random() < 0.5 else piece
        pos += n


def utf8(key: str) -> bytes:
    return key.encode("utf-8")


# -- the model -----------------------------------------------------------------------------------


@dataclass
class Ver:
    public_id: str  # "null" or the engine's id
    stored_id: str | None  # the engine's internal id, when known (listings show it)
    delete_marker: bool = False
    body: bytes = b""
    etag: str = ""
    part_sizes: tuple[int, ...] = ()  # of a multipart object

    @property
    def size(self) -> int:
        return len(self.body)


@dataclass
class Model:
    versioning: str = ""
    histories: dict[str, list[Ver]] = field(default_factory=dict)  # newest first
    issued: set[str] = field(default_factory=set)

    def history(self, key: str) -> list[Ver]:
        return self.histories.get(key, [])

    def current(self, key: str) -> Ver | None:
        h = self.history(key)
        return h[0] if h and not h[0].delete_marker else None

    def null_mode(self) -> bool:
        return self.versioning != "Enabled"

    def add(self, key: str, ver: Ver) -> None:
        h = self.histories.setdefault(key, [])
        if ver.public_id == "null":
            h[:] = [v for v in h if v.public_id != "null"]
        else:
            assert ver.public_id not in self.issued, "a version id was issued twice"
            self.issued.add(ver.public_id)
        h.insert(0, ver)

    def remove(self, key: str, public_id: str) -> Ver | None:
        h = self.history(key)
        for i, v in enumerate(h):
            if v.public_id == public_id:
                del h[i]
                if not h:
                    del self.histories[key]
                return v
        return None

    def listing_items(self, prefix: str, delimiter: str, versions: bool) -> list[tuple[str, Any]]:
        """S3's answer as one sequence: ("key", key) / ("version", (key, Ver, is_latest)) /
        ("prefix", common prefix), in listing order."""
        out: list[tuple[str, Any]] = []
        for key in sorted(self.histories, key=utf8):
            if not key.startswith(prefix):
                continue
            if delimiter:
                at = key.find(delimiter, len(prefix))
                if at >= 0:
                    common = key[: at + len(delimiter)]
                    if not out or out[-1] != ("prefix", common):
                        out.append(("prefix", common))
                    continue
            if versions:
                out += [("version", (key, v, i == 0)) for i, v in enumerate(self.history(key))]
            elif self.current(key) is not None:
                out.append(("key", key))
        if not versions:  # a prefix of delete-marked keys only lists nothing
            visible = {k for k in self.histories if self.current(k) is not None}
            out = [
                item
                for item in out
                if item[0] == "key" or any(k.startswith(item[1]) for k in visible)
            ]
        return out


# -- checks --------------------------------------------------------------------------------------


def range_oracle(body: bytes, spec: tuple[Any, ...]) -> tuple[tuple[int | None, int | None], Any]:
    """(byte_range argument, expected bytes or None when not satisfiable), by slicing."""
    size = len(body)
    if spec[0] == "suffix":
        n = spec[1]
        return (None, n), (body[-n:] if n > 0 and size > 0 else None)
    if spec[0] == "abs":
        first, last = spec[1], spec[2]
    else:
        first = int(spec[1] * size)
        last = None if spec[2] is None else int(spec[2] * size)
    if last is not None and last < first:
        last = first  # a reversed range is a syntax error the gateway ignores; not tested here
    if first >= size:
        return (first, last), None
    return (first, last), (body[first:] if last is None else body[first : last + 1])


async def check_current(engine: ObjectEngine, model: Model, key: str) -> None:
    cur = model.current(key)
    if cur is None:
        h = model.history(key)
        for call in (engine.get_object(BUCKET, key), engine.head_object(BUCKET, key)):
            with pytest.raises(NoSuchKey) as info:
                await call
            assert info.value.delete_marker == bool(h)
            if h:
                assert info.value.version_id == h[0].public_id
        return
    version, data = await engine.get_object(BUCKET, key)
    assert data == cur.body
    assert (version.etag, version.size, version.public_id) == (cur.etag, cur.size, cur.public_id)
    head = await engine.head_object(BUCKET, key)
    assert (head.etag, head.size, head.public_id) == (cur.etag, cur.size, cur.public_id)


async def check_version(engine: ObjectEngine, model: Model, key: str, public_id: str) -> None:
    ver = next((v for v in model.history(key) if v.public_id == public_id), None)
    if ver is None:
        with pytest.raises(NoSuchVersion):
            await engine.get_object(BUCKET, key, version_id=public_id)
        with pytest.raises(NoSuchVersion):
            await engine.head_object(BUCKET, key, version_id=public_id)
    elif ver.delete_marker:
        with pytest.raises(MethodNotAllowed) as info:
            await engine.get_object(BUCKET, key, version_id=public_id)
        assert info.value.delete_marker
        with pytest.raises(MethodNotAllowed):
            await engine.head_object(BUCKET, key, version_id=public_id)
    else:
        version, data = await engine.get_object(BUCKET, key, version_id=public_id)
        assert data == ver.body
        assert (version.etag, version.public_id) == (ver.etag, public_id)


async def check_list(
    engine: ObjectEngine, model: Model, prefix: str, delimiter: str, max_keys: int
) -> None:
    want = model.listing_items(prefix, delimiter, versions=False)
    after = ""
    for page_no in range(len(want) + 2):
        page = await listing.list_objects(
            engine.kv, BUCKET, prefix=prefix, delimiter=delimiter, after=after, max_keys=max_keys
        )
        chunk = want[page_no * max_keys : (page_no + 1) * max_keys]
        got_keys = [e.key for e in page.objects]
        assert got_keys == [v for kind, v in chunk if kind == "key"], (page_no, after)
        assert page.prefixes == [v for kind, v in chunk if kind == "prefix"], (page_no, after)
        for entry in page.objects:
            cur = model.current(entry.key)
            assert cur is not None
            assert (entry.etag, entry.size) == (cur.etag, cur.size)
            if cur.stored_id is not None:
                assert entry.version_id == cur.stored_id
        more = len(want) > (page_no + 1) * max_keys
        assert page.truncated == more, (page_no, len(want), max_keys)
        if not page.truncated:
            return
        after = page.next_marker
    raise AssertionError("list_objects never stopped paging")


async def check_list_versions(
    engine: ObjectEngine, model: Model, prefix: str, delimiter: str, max_keys: int
) -> None:
    want = model.listing_items(prefix, delimiter, versions=True)
    key_marker = version_marker = ""
    for page_no in range(len(want) + 2):
        page = await listing.list_versions(
            engine.kv,
            BUCKET,
            prefix=prefix,
            delimiter=delimiter,
            key_marker=key_marker,
            version_marker=version_marker,
            max_keys=max_keys,
        )
        chunk = want[page_no * max_keys : (page_no + 1) * max_keys]
        got = [
            (v.key, v.public_id, v.delete_marker, v.etag, v.size, latest)
            for v, latest in page.versions
        ]
        expected = [
            (key, ver.public_id, ver.delete_marker, ver.etag, ver.size, latest)
            for kind, (key, ver, latest) in (item for item in chunk if item[0] == "version")
        ]
        where = (page_no, key_marker, version_marker)
        assert got == expected, where
        assert page.prefixes == [v for kind, v in chunk if kind == "prefix"], where
        more = len(want) > (page_no + 1) * max_keys
        assert page.truncated == more, where
        if not page.truncated:
            return
        key_marker, version_marker = page.next_key_marker, page.next_version_marker
    raise AssertionError("list_versions never stopped paging")


async def scan_prefix(kv: KV, prefix: bytes) -> list[KeyValue]:
    out: list[KeyValue] = []
    start, end = prefix, prefix_end(prefix)
    while True:
        page = await kv.range(start, end, limit=1000)
        out += page.kvs
        if not page.more:
            return out
        start = page.kvs[-1].key + b"\0"


async def chunk_references(engine: ObjectEngine) -> tuple[set[str], set[str]]:
    """(chunks with an R/ entry, chunks named by a version, an uploaded part or the G/ queue)."""
    refs = {
        ref.chunk_id
        for kv in await scan_prefix(engine.kv, b"R/")
        for ref in CR.refs_from_value(kv.value)
    }
    named: set[str] = set()
    for kv in await scan_prefix(engine.kv, b"V/"):
        named |= {c.chunk_id for c in Version.decode("", "", kv.value).chunks}
    for kv in await scan_prefix(engine.kv, b"P/"):
        named |= {c.chunk_id for c in Part.decode(0, kv.value).chunks}
    for kv in await scan_prefix(engine.kv, CR.GARBAGE_PREFIX):
        named |= {ref.chunk_id for ref in CR.refs_from_value(kv.value)}
    return refs, named


def chunks_on_drives(root: Path) -> set[str]:
    return {p.name.partition(".")[0] for p in root.glob("drives/d*/shards/*/*") if p.is_file()}


async def check_everything(engine: ObjectEngine, model: Model, pool: list[str], root: Path) -> None:
    for key in pool:
        await check_current(engine, model, key)
        for ver in model.history(key):
            await check_version(engine, model, key, ver.public_id)
    await check_list(engine, model, "", "", 1000)
    await check_list_versions(engine, model, "", "", 1000)
    refs, named = await chunk_references(engine)
    assert named <= refs, "a chunk in use has no R/ entry"
    assert refs <= named, "a chunk is referenced by nothing (leaked)"
    assert chunks_on_drives(root) == refs


# -- running a program ---------------------------------------------------------------------------


def resolve_prefix(spec: tuple[Any, ...], pool: list[str]) -> str:
    if spec[0] == "lit":
        return spec[1]
    return pool[spec[1] % len(pool)][: spec[2]]


async def do_put(engine: ObjectEngine, model: Model, key: str, op: tuple[Any, ...]) -> None:
    _, _, size, seed, stream, condition = op
    data = make_body(size, seed)
    cur = model.current(key)
    kw: dict[str, Any] = {}
    fails: tuple[type[Exception], ...] | None = None
    if condition == "if-none-match":
        kw["if_none_match"] = "*"
        fails = (PreconditionFailed,) if cur is not None else None
    elif condition == "if-match":
        kw["if_match"] = f'"{cur.etag}"' if cur is not None else WRONG_ETAG
        # S3 answers 404 to If-Match on a missing key; the engine's PreconditionFailed is fine.
        fails = None if cur is not None else (PreconditionFailed, NoSuchKey)
    elif condition == "if-match-wrong":
        kw["if_match"] = WRONG_ETAG
        fails = (PreconditionFailed, NoSuchKey)
    body: Any = in_pieces(data, seed) if stream else data
    if fails is not None:
        with pytest.raises(fails):
            await engine.put_object(BUCKET, key, body, **kw)
        return
    version = await engine.put_object(
        BUCKET, key, body, size=len(data) if seed % 3 == 0 else None, **kw
    )
    assert version.etag == hashlib.md5(data).hexdigest()
    assert version.size == len(data)
    assert (version.public_id == "null") == model.null_mode()
    model.add(key, Ver(version.public_id, version.version_id, False, data, version.etag))


async def do_delete(engine: ObjectEngine, model: Model, key: str) -> None:
    result = await engine.delete_object(BUCKET, key)
    if model.versioning == "":
        assert not result.delete_marker
        model.remove(key, "null")
        return
    assert result.delete_marker
    assert (result.version_id == "null") == model.null_mode()
    stored_id = None if result.version_id == "null" else result.version_id
    model.add(key, Ver(result.version_id, stored_id, delete_marker=True))


async def do_delete_version(engine: ObjectEngine, model: Model, key: str, index: int) -> None:
    h = model.history(key)
    if index == -2:
        public_id = "null"
    elif index == -1 or not h:
        public_id = MISSING_VERSION
    else:
        public_id = h[index % len(h)].public_id
    result = await engine.delete_object(BUCKET, key, public_id)
    removed = model.remove(key, public_id)
    assert result.version_id == public_id
    assert result.delete_marker == (removed is not None and removed.delete_marker)


async def do_range(engine: ObjectEngine, model: Model, key: str, spec: tuple[Any, ...]) -> None:
    cur = model.current(key)
    if cur is None:
        with pytest.raises(NoSuchKey):
            await engine.get_object(BUCKET, key, byte_range=(0, None))
        return
    byte_range, want = range_oracle(cur.body, spec)
    if want is None:
        with pytest.raises(OutOfRange):
            await engine.get_object(BUCKET, key, byte_range=byte_range)
        return
    async with engine.open_object(BUCKET, key, byte_range=byte_range) as reader:
        assert reader.length == len(want)
        assert cur.body[reader.offset : reader.offset + reader.length] == want
        got = b"".join([bytes(p) async for p in reader])
    assert got == want


async def do_part(engine: ObjectEngine, model: Model, key: str, number: int) -> None:
    cur = model.current(key)
    if cur is None:
        with pytest.raises(NoSuchKey):
            await engine.get_object(BUCKET, key, part_number=number)
        return
    part_sizes = cur.part_sizes or (cur.size,)
    if number > len(part_sizes):
        with pytest.raises(OutOfRange):
            await engine.get_object(BUCKET, key, part_number=number)
        return
    start = sum(part_sizes[: number - 1])
    version, data = await engine.get_object(BUCKET, key, part_number=number)
    assert data == cur.body[start : start + part_sizes[number - 1]]


async def do_copy(engine: ObjectEngine, model: Model, src: str, dst: str) -> None:
    cur = model.current(src)
    if cur is None:
        with pytest.raises(NoSuchKey):
            await engine.copy_object(BUCKET, src, BUCKET, dst)
        return
    source, new = await engine.copy_object(BUCKET, src, BUCKET, dst)
    assert source.etag == cur.etag
    assert new.etag == hashlib.md5(cur.body).hexdigest()
    assert new.size == cur.size
    model.add(dst, Ver(new.public_id, new.version_id, False, cur.body, new.etag))


async def do_multipart(engine: ObjectEngine, model: Model, key: str, op: tuple[Any, ...]) -> None:
    _, _, uploads, listed_flags = op
    upload = await engine.multipart.create(BUCKET, key)
    pending = await listing.list_uploads(engine.kv, BUCKET, prefix=key)
    assert upload.upload_id in [u.upload_id for u in pending.uploads if u.key == key]
    parts: dict[int, tuple[bytes, str]] = {}
    for number, size, seed in uploads:
        data = make_body(size, seed)
        part = await engine.multipart.upload_part(BUCKET, key, upload.upload_id, number, data)
        assert part.etag == hashlib.md5(data).hexdigest() and part.size == size
        parts[number] = (data, part.etag)
    numbers = sorted(parts)
    chosen = [n for n in numbers if listed_flags[n - 1]] or numbers[-1:]
    listed = [CompletedPart(n, parts[n][1]) for n in chosen]
    if any(len(parts[n][0]) < MIN_PART_BYTES for n in chosen[:-1]):
        with pytest.raises(EntityTooSmall):
            await engine.multipart.complete(BUCKET, key, upload.upload_id, listed)
        await engine.multipart.abort(BUCKET, key, upload.upload_id)
        with pytest.raises(NoSuchUpload):
            await engine.multipart.list_parts(BUCKET, key, upload.upload_id)
        return
    version = await engine.multipart.complete(BUCKET, key, upload.upload_id, listed)
    data = b"".join(parts[n][0] for n in chosen)
    md5s = b"".join(bytes.fromhex(parts[n][1]) for n in chosen)
    assert version.etag == f"{hashlib.md5(md5s).hexdigest()}-{len(chosen)}"
    assert version.size == len(data)
    assert (version.public_id == "null") == model.null_mode()
    sizes_ = tuple(len(parts[n][0]) for n in chosen)
    model.add(key, Ver(version.public_id, version.version_id, False, data, version.etag, sizes_))
    with pytest.raises(NoSuchUpload):
        await engine.multipart.list_parts(BUCKET, key, upload.upload_id)


async def apply(engine: ObjectEngine, model: Model, pool: list[str], op: tuple[Any, ...]) -> None:
    name = op[0]

    def key_at(i: int) -> str:
        return pool[i % len(pool)]

    if name == "put":
        await do_put(engine, model, key_at(op[1]), op)
    elif name == "get":
        await check_current(engine, model, key_at(op[1]))
    elif name == "range":
        await do_range(engine, model, key_at(op[1]), op[2])
    elif name == "part":
        await do_part(engine, model, key_at(op[1]), op[2])
    elif name == "get_version":
        key = key_at(op[1])
        h = model.history(key)
        public_id = h[op[2] % len(h)].public_id if h and op[2] >= 0 else MISSING_VERSION
        await check_version(engine, model, key, public_id)
    elif name == "delete":
        await do_delete(engine, model, key_at(op[1]))
    elif name == "delete_version":
        await do_delete_version(engine, model, key_at(op[1]), op[2])
    elif name == "list":
        await check_list(engine, model, resolve_prefix(op[1], pool), op[2], op[3])
    elif name == "list_versions":
        await check_list_versions(engine, model, resolve_prefix(op[1], pool), op[2], op[3])
    elif name == "versioning":
        bucket = await engine.update_bucket(BUCKET, versioning=op[1])
        assert bucket.versioning == op[1]
        model.versioning = op[1]
    elif name == "compression":
        bucket = await engine.update_bucket(BUCKET, compression=op[1])
        assert bucket.compression == op[1]
    elif name == "copy":
        await do_copy(engine, model, key_at(op[1]), key_at(op[2]))
    elif name == "multipart":
        await do_multipart(engine, model, key_at(op[1]), op)
    else:  # pragma: no cover
        raise AssertionError(op)


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(pool=key_pools, program=st.lists(ops, min_size=8, max_size=40))
async def test_engine_matches_model(pool: list[str], program: list[tuple[Any, ...]]) -> None:
    with tempfile.TemporaryDirectory(prefix="engine-model-") as root:
        async with open_local_engine(
            root, drives=6, inline_bytes=INLINE_BYTES, min_part_bytes=MIN_PART_BYTES
        ) as engine:
            await engine.create_bucket(BUCKET, "owner")
            model = Model()
            for op in program:
                event(op[0])  # --hypothesis-show-statistics: how often each op ran
                await apply(engine, model, pool, op)
            await check_everything(engine, model, pool, Path(root))
