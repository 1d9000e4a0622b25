"""The SSE-S3 master keys: what wraps every SSE-S3 object's data key.

Kept in ``DATA/sse-keys.json`` (mode 0600, like ``credentials.json``), made on first start:

    {"current": "<id>", "keys": {"<id>": "<base64 of 32 bytes>", ...}}

New objects are wrapped by ``current``; older objects name the id they were wrapped by, so an
operator rotates by adding a key and making it current (never by removing a key still named).
``STORE_SSE_MASTER_KEY`` (base64 of 32 bytes) given in the environment is used instead (id
``env``). Keys are never logged.

The gateways of a cluster share theirs through the metadata, each key wrapped (AES-256-GCM, its
id as associated data) by a key derived from the cluster secret (HKDF-SHA256), so etcd and its
backups never hold one in the clear:

    SK/current      the id new objects are wrapped by
    SK/keys/<id>    nonce (12 bytes) + the wrapped key

The first gateway makes it (a transaction on ``SK/current`` being absent, so two gateways
starting together agree on one key), seeded with the keys of its ``sse-keys.json`` if it had
one, so what it encrypted before stays readable.
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
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from store.errors import Corrupt
from store.meta.api import KV, Compare, Put, prefix_end

FILE = "sse-keys.json"
KEY_BYTES = 32
ENV = "STORE_SSE_MASTER_KEY"
SHARED_PREFIX = b"SK/"
SHARED_CURRENT = b"SK/current"
SHARED_KEYS = b"SK/keys/"


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


def _kek(secret: bytes) -> AESGCM:
    derived = HKDF(hashes.SHA256(), KEY_BYTES, None, b"store sse-s3 master keys").derive(secret)
    return AESGCM(derived)


def _read_file(data_dir: Path) -> MasterKeys:
    """The keys of a data directory's file, if it has one (never makes it)."""
    path = data_dir / FILE
    if not path.exists():
        return MasterKeys()
    return _load_or_make(data_dir, {})


async def ensure_shared_master_keys(
    kv: KV, secret: bytes, data_dir: Path, env: Mapping[str, str] = os.environ
) -> MasterKeys:
    """The cluster's master keys from the metadata, made by the first gateway to ask."""
    if env.get(ENV):
        return MasterKeys("env", {"env": _decode(env[ENV], ENV)})
    kek = _kek(secret)
    local = await trio.to_thread.run_sync(_read_file, Path(data_dir))
    for _ in range(3):
        found = await kv.range(SHARED_PREFIX, prefix_end(SHARED_PREFIX))
        records = {item.key: item.value for item in found.kvs}
        current = records.get(SHARED_CURRENT)
        if current is not None:
            keys: dict[str, bytes] = {}
            for key, value in records.items():
                if key.startswith(SHARED_KEYS):
                    kid = key[len(SHARED_KEYS) :].decode()
                    try:
                        keys[kid] = kek.decrypt(value[:12], value[12:], kid.encode())
                        if kid in local.keys and local.keys[kid] != keys[kid]:
                            raise Corrupt(f"{FILE} and the cluster hold different keys {kid!r}")
                    except InvalidTag:  # wrapped under another cluster's secret
                        raise Corrupt(
                            f"SSE master key {kid!r} does not open with this cluster's secret"
                        ) from None
            if current.decode() not in keys:
                raise Corrupt(f"the current SSE master key {current.decode()!r} is missing")
            shared = {k[len(SHARED_KEYS) :].decode() for k in records if k.startswith(SHARED_KEYS)}
            for kid, key in local.keys.items():  # what this gateway had alone, shared too
                if kid in shared:
                    continue
                nonce = secrets.token_bytes(12)
                wrapped = nonce + kek.encrypt(nonce, key, kid.encode())
                kkey = SHARED_KEYS + kid.encode()
                await kv.txn([Compare.absent(kkey)], [Put(kkey, wrapped)])
            return MasterKeys(current.decode(), {**local.keys, **keys})
        seed = dict(local.keys) or {"k" + secrets.token_hex(4): secrets.token_bytes(KEY_BYTES)}
        first = local.current or next(iter(seed))
        ops = [Put(SHARED_CURRENT, first.encode())]
        for kid, key in seed.items():
            nonce = secrets.token_bytes(12)
            ops.append(
                Put(SHARED_KEYS + kid.encode(), nonce + kek.encrypt(nonce, key, kid.encode()))
            )
        await kv.txn([Compare.absent(SHARED_CURRENT)], ops)  # lost the race: read theirs
    raise Corrupt("the shared SSE master keys could not be read")
