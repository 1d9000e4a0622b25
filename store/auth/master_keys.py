"""The SSE-S3 master keys: what wraps every SSE-S3 object's data key.

Kept in ``DATA/sse-keys.json`` (mode 0600, like ``credentials.json``), made on first start:

    {"current": "<id>", "keys": {"<id>": "<base64 of 32 bytes>", ...}}

New objects are wrapped by ``current``; older objects name the id they were wrapped by, so an
operator rotates by adding a key and making it current (never by removing a key still named).
``STORE_SSE_MASTER_KEY`` (base64 of 32 bytes) given in the environment is used instead (id
``env``), so several gateways of one cluster can share it. Keys are never logged.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import trio

FILE = "sse-keys.json"
KEY_BYTES = 32
ENV = "STORE_SSE_MASTER_KEY"


@dataclass(frozen=True)
class MasterKeys:
    current: str = ""
    keys: Mapping[str, bytes] = field(default_factory=dict)

    def __repr__(self) -> str:  # never show a key
        return f"MasterKeys(current={self.current!r}, ids={sorted(self.keys)})"


def _decode(text: str, what: str) -> bytes:
    try:
        key = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise ValueError(f"{what} is not base64") from None
    if len(key) != KEY_BYTES:
        raise ValueError(f"{what} must be {KEY_BYTES} bytes, not {len(key)}")
    return key


def _load_or_make(data_dir: Path, env: Mapping[str, str]) -> MasterKeys:
    if env.get(ENV):
        return MasterKeys("env", {"env": _decode(env[ENV], ENV)})
    path = data_dir / FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        doc = json.loads(path.read_text())
        keys = {kid: _decode(text, f"{FILE} key {kid!r}") for kid, text in doc["keys"].items()}
        if doc["current"] not in keys:
            raise ValueError(f"{FILE}: the current key {doc['current']!r} is not in keys") from None
        return MasterKeys(doc["current"], keys)
    kid = "k" + secrets.token_hex(4)
    key = secrets.token_bytes(KEY_BYTES)
    with os.fdopen(fd, "w") as f:
        json.dump({"current": kid, "keys": {kid: base64.b64encode(key).decode()}}, f)
        f.flush()
        os.fsync(f.fileno())
    return MasterKeys(kid, {kid: key})


async def ensure_master_keys(data_dir: Path, env: Mapping[str, str] = os.environ) -> MasterKeys:
    """The master keys of a data directory, made on first start."""
    return await trio.to_thread.run_sync(_load_or_make, Path(data_dir), env)
