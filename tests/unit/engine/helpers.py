"""Shared helpers of the engine tests: constants, checksum oracles, streams, races."""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

from store.engine.multipart import CompletedPart
from store.engine.objects import ObjectEngine

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


def _reflected_crc(data: bytes, width: int, poly: int) -> int:
    """Bitwise reflected CRC, init and xorout all ones: the oracle for CRC32C and CRC64NVME."""
    mask = (1 << width) - 1
    crc = mask
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (poly if crc & 1 else 0)
    return crc ^ mask


def digest_of(algorithm: str, data: bytes) -> bytes:
    """An independent implementation of each S3 checksum (big-endian CRCs)."""
    if algorithm == "CRC32":
        return zlib.crc32(data).to_bytes(4, "big")
    if algorithm == "CRC32C":
        return _reflected_crc(data, 32, 0x82F63B78).to_bytes(4, "big")
    if algorithm == "CRC64NVME":
        return _reflected_crc(data, 64, 0x9A6C9329AC4BC9B5).to_bytes(8, "big")
    return hashlib.new(algorithm.lower(), data).digest()


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
