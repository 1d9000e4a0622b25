"""Slow, obviously correct reference implementations that tests compare the fast paths with."""

from __future__ import annotations

import hashlib

# (width in bits, reflected polynomial) of the S3 CRCs; init and xorout are all ones.
CRC_PARAMETERS = {
    "CRC32": (32, 0xEDB88320),
    "CRC32C": (32, 0x82F63B78),
    "CRC64NVME": (64, 0x9A6C9329AC4BC9B5),
}


def reflected_crc(data: bytes, width: int, poly: int) -> int:
    """Bit-at-a-time reflected CRC with init and xorout all ones.

    >>> hex(reflected_crc(b"123456789", 32, 0x82F63B78))
    '0xe3069283'
    """
    mask = (1 << width) - 1
    crc = mask
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
    return crc ^ mask


def reference_digest(algorithm: str, data: bytes) -> bytes:
    """Each S3 checksum as S3 encodes it (CRCs big-endian), computed independently."""
    if algorithm in CRC_PARAMETERS:
        width, poly = CRC_PARAMETERS[algorithm]
        return reflected_crc(data, width, poly).to_bytes(width // 8, "big")
    return hashlib.new(algorithm.lower(), data).digest()
