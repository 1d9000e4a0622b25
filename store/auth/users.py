"""Users and access keys, in the metadata KV.

    K/<access key>   {"user": name, "secret": secret key, "created": seconds, "admin": bool}

Admin rights (the admin API on the S3 port, ``store.gateway.admin``) belong to the root user
and to users added with ``admin`` set; every key of a user carries the user's flag.

The root user's key is made on first start: from ``STORE_ACCESS_KEY``/``STORE_SECRET_KEY`` when
set, else generated. It is also written to ``<data dir>/credentials.json`` with mode 0600 (the
only file a secret is written to) so the operator can read it later; it is never logged.
"""

from __future__ import annotations

import json
import os
import secrets
import string
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import trio

from store.errors import AlreadyExists, InvalidArgument, NotFound
from store.meta.api import KV, Compare, Delete, Put, prefix_end

ROOT_USER = "root"
_KEY_CHARS = string.ascii_uppercase + string.digits


@dataclass(frozen=True, slots=True)
class AccessKey:
    access_key: str
    secret_key: str
    user: str
    created: float
    admin_flag: bool = False

    @property
    def admin(self) -> bool:
        return self.user == ROOT_USER or self.admin_flag


def _key(access_key: str) -> bytes:
    return b"K/" + access_key.encode()


def _check(access_key: str, secret_key: str) -> None:
    if not (3 <= len(access_key) <= 128) or not access_key.isascii() or "/" in access_key:
        raise InvalidArgument("access keys are 3-128 ASCII characters without '/'")
    if not (8 <= len(secret_key) <= 128) or not secret_key.isascii():
        raise InvalidArgument("secret keys are 8-128 ASCII characters")


def generate() -> tuple[str, str]:
    access = "STORE" + "".join(secrets.choice(_KEY_CHARS) for _ in range(15))
    return access, secrets.token_urlsafe(30)


async def add_key(
    kv: KV, user: str, access_key: str = "", secret_key: str = "", *, admin: bool = False
) -> AccessKey:
    if not user or "/" in user or not user.isprintable():
        raise InvalidArgument(f"bad user name {user!r}")
    if not access_key:
        access_key, secret_key = generate()
    _check(access_key, secret_key)
    record = AccessKey(access_key, secret_key, user, time.time(), admin)
    fields = {"user": user, "secret": secret_key, "created": record.created}
    if admin:
        fields["admin"] = True
    body = json.dumps(fields).encode()
    ok = await kv.txn([Compare.absent(_key(access_key))], [Put(_key(access_key), body)], [])
    if not ok.succeeded:
        raise AlreadyExists(f"access key {access_key} exists")
    return record


async def lookup(kv: KV, access_key: str) -> AccessKey | None:
    if not access_key or len(access_key) > 128:
        return None
    found = await kv.get(_key(access_key))
    if found is None:
        return None
    body = json.loads(found.value)
    return AccessKey(
        access_key, body["secret"], body["user"], body["created"], body.get("admin", False)
    )


async def remove_key(kv: KV, access_key: str) -> None:
    key = _key(access_key)
    if not (await kv.txn([Compare.exists(key)], [Delete(key)], [])).succeeded:
        raise NotFound(f"no access key {access_key}")


async def list_keys(kv: KV) -> list[AccessKey]:
    page = await kv.range(b"K/", prefix_end(b"K/"))
    out = []
    for item in page.kvs:
        body = json.loads(item.value)
        access = item.key[2:].decode()
        admin = body.get("admin", False)
        out.append(AccessKey(access, body["secret"], body["user"], body["created"], admin))
    return out


def _read_saved(path: Path) -> str | None:
    try:
        return str(json.loads(path.read_text())["access_key"])
    except (OSError, ValueError, KeyError):
        return None


def _write_saved(path: Path, key: AccessKey) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"access_key": key.access_key, "secret_key": key.secret_key}, f)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(path, 0o600)


async def ensure_root(
    kv: KV, data_dir: Path, env: Mapping[str, str] = os.environ
) -> tuple[AccessKey, bool]:
    """The root key, created on first start; (key, created now)."""
    path = data_dir / "credentials.json"
    saved = await trio.to_thread.run_sync(_read_saved, path)
    if saved is not None and (found := await lookup(kv, saved)) is not None:
        return found, False
    access, secret = env.get("STORE_ACCESS_KEY", ""), env.get("STORE_SECRET_KEY", "")
    existing = await lookup(kv, access) if access else None
    key = existing or await add_key(kv, ROOT_USER, access, secret)
    await trio.to_thread.run_sync(_write_saved, path, key)
    return key, existing is None


async def user_exists(kv: KV, name: str) -> bool:
    """Is ``name`` a user (one holding at least one key)? A scan: for rare calls (ACL grants)."""
    if name == ROOT_USER:
        return True
    return any(k.user == name for k in await list_keys(kv))
