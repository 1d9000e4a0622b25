"""Shared helpers of the engine tests: constants, checksum oracles, streams, races."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

from store.objects.engine import ObjectEngine
from store.objects.multipart import CompletedPart
from store.testing.oracles import reference_digest

BUCKET = "bkt"
INLINE = 1024
MIN_PART = 1000


def shard_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "drives").glob("d*/shards/*/*") if p.is_file())


def tmp_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "drives").glob("d*/tmp/**/*") if p.is_file())


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


async def pieces_of(data: bytes, sizes: Iterable[int]) -> AsyncIterator[bytes | memoryview]:
    """``data`` as an async stream, cut at the given piece sizes (cycled)."""
    pos = 0
    cuts = list(sizes)
    i = 0
    while pos < len(data):
        n = cuts[i % len(cuts)]
        i += 1
        yield memoryview(data)[pos : pos + n] if i % 2 else data[pos : pos + n]
        pos += n


def text_body(size: int) -> bytes:
    """Compressible but not trivial: numbered lines of text."""
    out = bytearray()
    i = 0
    while len(out) < size:
        out += f"{i:09d} the quick brown fox jumps over the lazy dog {i % 977}\n".encode()
        i += 1
    return bytes(out[:size])


async def upload_parts(
    engine: ObjectEngine, key: str, parts: list[bytes], **create_kw: str
) -> tuple[str, list[CompletedPart]]:
    upload = await engine.multipart.create(BUCKET, key, **create_kw)
    done = []
    for n, data in enumerate(parts, 1):
        p = await engine.multipart.upload_part(BUCKET, key, upload.upload_id, n, data)
        done.append(CompletedPart(n, p.etag, p.checksum.partition(":")[2]))
    return upload.upload_id, done


digest_of = reference_digest  # the independent oracle every engine test checks against
