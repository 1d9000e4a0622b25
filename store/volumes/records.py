"""Volume metadata: keys and records of block volumes in the metadata KV.

    VV/<name>                 the volume: size, block and extent size, replicas, its layer
    VL/<layer>                a layer: its parent layer ("" for none) and the volume naming it
    VE/<layer>/<index:016x>   extent <index> is allocated in <layer> (its files exist)
    VD/<layer>/<index:016x>   extent <index> of <layer> may have been written since the last
                              flush: recovery rebuilds its checksums and reconciles its replicas
    VS/<layer>/<index:016x>   the replicas (drive ids, JSON) of an extent that missed writes:
                              never read until rewritten from a good one
    VO/<name>                 held, with a lease, by the gateway that has it open for writing
    VR/<name>                 a request to that gateway (a live snapshot) and then its answer

A volume reads through a chain of layers: its own (written in place), then its parent's, and so
on; an extent no layer has reads as zeros. A snapshot freezes the volume's layer and gives the
volume a new empty one on top; a clone is a new volume whose layer's parent is a snapshot's.
Layers are only ever added to the top, so a snapshot never changes and nothing is copied when it
is taken: an extent is copied (copy-on-write) the first time the volume writes to it after.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from store.errors import InvalidArgument

MIN_BLOCK_BYTES, MAX_BLOCK_BYTES = 512, 64 << 10
DEFAULT_BLOCK_BYTES = 4096
DEFAULT_EXTENT_BYTES = 4 << 20
MAX_VOLUME_BYTES = 1 << 50  # 1 PiB
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}(@[A-Za-z0-9][A-Za-z0-9._-]{0,127})?")


def check_name(name: str, *, snapshot: bool = False) -> None:
    """Volume names: letters, digits, ``._-``, up to 128; snapshots are ``volume@snap``."""
    if not _NAME.fullmatch(name) or ("@" in name) != snapshot:
        kind = "snapshot name (volume@snap)" if snapshot else "volume name"
        raise InvalidArgument(f"invalid {kind}: {name!r}")


def volume_key(name: str) -> bytes:
    return b"VV/" + name.encode()


def layer_key(layer: str) -> bytes:
    return b"VL/" + layer.encode()


def extent_key(layer: str, index: int) -> bytes:
    return f"VE/{layer}/{index:016x}".encode()


def extent_value(epoch: int) -> bytes:
    """An allocated extent's record: the cluster map epoch its replicas were placed under (a
    rebalance tells from it which map put them where they are). Older records are empty.

    >>> extent_epoch(extent_value(7)), extent_epoch(b"")
    (7, 0)
    """
    return json.dumps({"epoch": epoch}).encode()


def extent_epoch(value: bytes) -> int:
    return int(json.loads(value)["epoch"]) if value else 0


def extents_prefix(layer: str) -> bytes:
    return f"VE/{layer}/".encode()


def dirty_key(layer: str, index: int) -> bytes:
    return f"VD/{layer}/{index:016x}".encode()


def dirty_prefix(layer: str) -> bytes:
    return f"VD/{layer}/".encode()


def stale_key(layer: str, index: int) -> bytes:
    return f"VS/{layer}/{index:016x}".encode()


def stale_prefix(layer: str) -> bytes:
    return f"VS/{layer}/".encode()


def owner_key(name: str) -> bytes:
    return b"VO/" + name.encode()


def request_key(name: str) -> bytes:
    return b"VR/" + name.encode()


def owner_record() -> bytes:
    """Who holds a volume open: this machine's boot and this process."""
    return json.dumps(
        {"host": socket.gethostname(), "boot": _boot_id(), "pid": os.getpid()}
    ).encode()


def owner_is_dead_here(raw: bytes) -> bool:
    """Whether an owner record names a process of this boot of this machine that is gone (or
    whose pid now belongs to something that is not us)."""
    try:
        owner = json.loads(raw)
        if owner["host"] != socket.gethostname() or owner["boot"] != _boot_id():
            return False
        pid = int(owner["pid"])
    except (ValueError, KeyError, TypeError):
        return False
    if pid == os.getpid():
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return b"store" not in cmdline


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def index_of(key: bytes) -> int:
    return int(key.rsplit(b"/", 1)[1], 16)


def extent_id(layer: str, index: int) -> str:
    """The name of an extent's files on drives (and its placement key)."""
    return f"{layer}.{index:x}"


@dataclass(frozen=True, slots=True)
class Volume:
    name: str
    size: int
    block_bytes: int
    extent_bytes: int
    replicas: int
    layer: str  # the layer this volume writes (a snapshot's is frozen)
    readonly: bool = False  # snapshots
    origin: str = ""  # a snapshot's volume, or a clone's snapshot
    created: float = 0.0
    description: str = ""

    @property
    def extents(self) -> int:
        return -(-self.size // self.extent_bytes)

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Volume:
        return cls(**json.loads(raw))

    def resized(self, size: int) -> Volume:
        return replace(self, size=size)


def new_volume(
    name: str,
    size: int,
    layer: str,
    *,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    extent_bytes: int = DEFAULT_EXTENT_BYTES,
    replicas: int = 2,
    description: str = "",
) -> Volume:
    check_name(name)
    check_geometry(size, block_bytes, extent_bytes)
    if replicas < 1:
        raise InvalidArgument("a volume needs at least one replica")
    return Volume(
        name, size, block_bytes, extent_bytes, replicas, layer, created=time.time(),
        description=description,
    )  # fmt: skip


def check_geometry(size: int, block_bytes: int, extent_bytes: int) -> None:
    if block_bytes & (block_bytes - 1) or not MIN_BLOCK_BYTES <= block_bytes <= MAX_BLOCK_BYTES:
        raise InvalidArgument("the block size must be a power of two from 512 to 65536")
    if extent_bytes % block_bytes or not block_bytes <= extent_bytes <= 64 << 20:
        raise InvalidArgument("the extent size must be a multiple of the block size, <= 64 MiB")
    check_size(size, block_bytes)


def check_size(size: int, block_bytes: int) -> None:
    if size <= 0 or size % block_bytes or size > MAX_VOLUME_BYTES:
        raise InvalidArgument(f"the size must be a positive multiple of {block_bytes} bytes")


@dataclass(frozen=True, slots=True)
class Layer:
    parent: str  # "" for the bottom layer
    volume: str  # the volume or snapshot naming it ("" once that is deleted)

    def encode(self) -> bytes:
        return json.dumps({"parent": self.parent, "volume": self.volume}).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Layer:
        data: dict[str, Any] = json.loads(raw)
        return cls(data["parent"], data["volume"])


def parse_size(text: str) -> int:
    """Bytes from "10G", "512M", "4096", "1.5T" (binary units).

    >>> parse_size("10G"), parse_size("512k"), parse_size("4096"), parse_size("1.5T")
    (10737418240, 524288, 4096, 1649267441664)
    """
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGTP]?)(?:i?B)?\s*", text.upper())
    if not match:
        raise InvalidArgument(f"not a size: {text!r}")
    return int(float(match.group(1)) * units[match.group(2)])
