"""The service's configuration: one frozen tree, loaded once and passed down explicitly.

Sources, each overriding the one before: the defaults below; a TOML file (``--config PATH``, or
``DATA/store.toml`` when it exists); the environment (``STORE_<SECTION>_<KEY>``, upper case, e.g.
``STORE_S3_REGION``; ``STORE_DATA`` for the data directory); then command-line flags. A key the
tree does not have is an error naming it (a typo never silently falls back to a default). Every
key, with its default, is in docs/config.md; ``KEYS`` below is the list that page documents (a test
checks they agree). Worker processes receive the resolved tree (``to_json``/``from_json``), not
a copy of the command line. Credentials are not configuration: they live in the data directory
(``credentials.json``, ``sse-keys.json``) or come from ``STORE_ACCESS_KEY``/``STORE_SECRET_KEY``/
``STORE_SSE_MASTER_KEY``, and are never part of this tree or its logs.

    data = "./data"
    [s3]       listen, region, domains, object_ownership, tls_cert, tls_key,
               lifecycle_day_seconds, max_xml_bytes, max_list_xml_bytes
    [nbd]      listen ("off" disables), tls, tls_client_ca, max_bytes_in_flight_per_connection,
               max_bytes_in_flight, max_requests_in_flight_per_connection, send_stall_timeout_s,
               max_connections
    [http]     idle_timeout_s, head_timeout_s, body_read_timeout_s, body_rate_grace_s,
               body_min_rate_bytes_s, max_connections
    [storage]  drives (a count, or a list of paths), scheme
    [service]  workers
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

OWNERSHIPS = ("ObjectWriter", "BucketOwnerPreferred", "BucketOwnerEnforced")
NBD_TLS = ("auto", "off", "optional", "required")
FILE_NAME = "store.toml"


class ConfigError(ValueError):
    """A configuration that cannot be used (unknown key, wrong type, bad value)."""


@dataclass(frozen=True)
class S3Config:
    listen: str = "127.0.0.1:9000"  # HOST:PORT
    region: str = "us-east-1"  # the SigV4 scope and LocationConstraint this service answers to
    domains: tuple[str, ...] = ()  # base domains of virtual-hosted-style requests
    object_ownership: str = "ObjectWriter"  # of new buckets that name none
    tls_cert: str = ""  # PEM certificate chain; with tls_key, S3 is served over TLS
    tls_key: str = ""
    # The length of a day for lifecycle rules and default retention periods (tests shorten it).
    lifecycle_day_seconds: float = 86400.0
    # Request documents (store/s3/xml.py): configuration XML, and those that list parts or keys.
    max_xml_bytes: int = 1 << 20
    max_list_xml_bytes: int = 8 << 20


@dataclass(frozen=True)
class NbdConfig:
    listen: str = "127.0.0.1:10809"  # HOST:PORT, or "off"
    tls: str = "auto"  # auto (optional with a certificate) | off | optional | required
    tls_client_ca: str = ""  # given: NBD clients must present a certificate it signed
    # What clients can make one process hold (store/nbd/budget.py explains each).
    max_bytes_in_flight_per_connection: int = 64 << 20
    max_bytes_in_flight: int = 1 << 30
    max_requests_in_flight_per_connection: int = 128
    send_stall_timeout_s: float = 60.0
    max_connections: int = 1024


@dataclass(frozen=True)
class HttpConfig:
    """The S3 port's limits (store/gateway/http.py explains each)."""

    idle_timeout_s: float = 60.0
    head_timeout_s: float = 20.0
    body_read_timeout_s: float = 60.0
    body_rate_grace_s: float = 20.0
    body_min_rate_bytes_s: float = 1024.0  # 0: no minimum rate
    max_connections: int = 4096


@dataclass(frozen=True)
class StorageConfig:
    drives: int | tuple[str, ...] = 6  # directories under DATA/drives, or the drives' paths
    scheme: str = "auto"  # auto | replicas:N | ec:K+M
    meta: str = ""  # the metadata store: "" (SQLite in DATA) or etcd://HOST:PORT,HOST:PORT,...
    cluster: bool = False  # drives from the chunk servers registered in etcd (needs meta)
    secret_file: str = ""  # the cluster secret shared by its nodes; "": DATA/cluster.secret
    rpc_tls_cert: str = ""  # mutual TLS to the chunk servers: this gateway's certificate (PEM)
    rpc_tls_key: str = ""  # its private key (PEM)
    rpc_tls_ca: str = ""  # the CA that issues the cluster's certificates (PEM)


@dataclass(frozen=True)
class ServiceConfig:
    workers: int = 0  # processes serving requests; 0: one per CPU


@dataclass(frozen=True)
class Config:
    data: str = "./data"
    s3: S3Config = field(default_factory=S3Config)
    nbd: NbdConfig = field(default_factory=NbdConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)

    @property
    def data_dir(self) -> Path:
        return Path(self.data)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Config:
        return _build(json.loads(text), "")


SECTIONS: dict[str, type] = {
    "s3": S3Config,
    "nbd": NbdConfig,
    "http": HttpConfig,
    "storage": StorageConfig,
    "service": ServiceConfig,
}
KEYS: tuple[str, ...] = ("data",) + tuple(
    f"{section}.{f.name}" for section, cls in SECTIONS.items() for f in fields(cls)
)


def _typed(name: str, value: Any, default: Any) -> Any:
    """``value`` as the type of the key's default (TOML and JSON give lists, env gives text)."""
    if isinstance(default, bool):
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if isinstance(value, bool):
            return value
    elif isinstance(default, tuple) or (name == "storage.drives" and not _is_int(value)):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return tuple(value)
    elif isinstance(default, int):
        if _is_int(value):
            return int(value)
    elif isinstance(default, float):
        try:
            if not isinstance(value, bool):
                return float(value)
        except (TypeError, ValueError):
            pass
    elif isinstance(default, str) and isinstance(value, str):
        return value
    raise ConfigError(f"{name}: {value!r} is not a {type(default).__name__}")


def _is_int(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit())


def _build(tree: Mapping[str, Any], origin: str) -> Config:
    where = f" in {origin}" if origin else ""
    unknown = set(tree) - {"data", *SECTIONS}
    if unknown:
        raise ConfigError(f"unknown configuration key {sorted(unknown)[0]!r}{where}")
    sections: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        given = tree.get(name, {})
        if not isinstance(given, Mapping):
            raise ConfigError(f"[{name}] must be a table{where}")
        known = {f.name: f for f in fields(cls)}
        for key in given:
            if key not in known:
                raise ConfigError(f"unknown configuration key {name}.{key!r}{where}")
        defaults = cls()
        values = {
            key: _typed(f"{name}.{key}", value, getattr(defaults, key))
            for key, value in given.items()
        }
        sections[name] = cls(**values)
    data = tree.get("data", Config.data)
    if not isinstance(data, str):
        raise ConfigError(f"data: {data!r} is not a path{where}")
    return check(Config(data, **sections))


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def from_environment(env: Mapping[str, str]) -> dict[str, Any]:
    """``STORE_<SECTION>_<KEY>`` variables as a tree (``STORE_DATA`` for ``data``)."""
    tree: dict[str, Any] = {}
    if env.get("STORE_DATA"):
        tree["data"] = env["STORE_DATA"]
    for section, cls in SECTIONS.items():
        for f in fields(cls):
            name = f"STORE_{section.upper()}_{f.name.upper()}"
            if name in env:
                tree.setdefault(section, {})[f.name] = env[name]
    return tree


def load(
    path: Path | None = None,
    *,
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] = os.environ,
) -> Config:
    """The configuration from its sources (the module's docstring). ``flags`` is a tree of
    the command-line values that were given (absent ones left out)."""
    flags = dict(flags or {})
    layered = _merge(from_environment(env), flags)
    if path is None:
        data = Path(layered.get("data", Config.data))
        candidate = data / FILE_NAME
        path = candidate if candidate.is_file() else None
    tree: dict[str, Any] = {}
    if path is not None:
        try:
            tree = tomllib.loads(path.read_text())
        except OSError as e:
            raise ConfigError(f"cannot read {path}: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: {e}") from None
        _build(tree, str(path))  # name a bad key of the file as the file's
    return _build(_merge(tree, layered), str(path) if path else "")


def parse_address(value: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """HOST:PORT (or :PORT, or [v6]:PORT).

    >>> parse_address("0.0.0.0:9000"), parse_address(":9001"), parse_address("[::1]:9")
    (('0.0.0.0', 9000), ('127.0.0.1', 9001), ('::1', 9))
    """
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    host = host.strip("[]") or default_host
    return host, int(port)


def check(config: Config) -> Config:
    """Values every source must respect (ConfigError naming the key)."""
    meta = config.storage.meta
    if config.storage.cluster and not meta:
        raise ConfigError("storage.cluster needs storage.meta (the etcd cluster holding the map)")
    if meta and not meta.startswith("etcd://"):
        raise ConfigError(f"storage.meta: {meta!r} is not empty (SQLite) or etcd://HOST:PORT,...")
    if config.s3.object_ownership not in OWNERSHIPS:
        raise ConfigError(f"s3.object_ownership must be one of {', '.join(OWNERSHIPS)}")
    if config.nbd.tls not in NBD_TLS:
        raise ConfigError(f"nbd.tls must be one of {', '.join(NBD_TLS)}")
    if bool(config.s3.tls_cert) != bool(config.s3.tls_key):
        raise ConfigError("s3.tls_cert and s3.tls_key go together")
    if config.nbd.tls in ("optional", "required") and not config.s3.tls_cert:
        raise ConfigError(f"nbd.tls = {config.nbd.tls} needs s3.tls_cert")
    if config.nbd.tls_client_ca and config.nbd.tls == "off":
        raise ConfigError("nbd.tls_client_ca needs NBD TLS")
    for key in ("max_xml_bytes", "max_list_xml_bytes"):
        if not 4096 <= getattr(config.s3, key) <= 16 << 20:
            raise ConfigError(f"s3.{key} must be 4096 to 16777216 (16 MiB)")
    if config.s3.lifecycle_day_seconds <= 0:
        raise ConfigError("s3.lifecycle_day_seconds must be positive")
    nbd = config.nbd
    if nbd.max_bytes_in_flight_per_connection < 1 << 20:
        raise ConfigError("nbd.max_bytes_in_flight_per_connection must be at least 1 MiB")
    if nbd.max_bytes_in_flight < nbd.max_bytes_in_flight_per_connection:
        raise ConfigError(
            "nbd.max_bytes_in_flight must be at least nbd.max_bytes_in_flight_per_connection"
        )
    if nbd.max_requests_in_flight_per_connection < 1:
        raise ConfigError("nbd.max_requests_in_flight_per_connection must be at least 1")
    if nbd.send_stall_timeout_s <= 0:
        raise ConfigError("nbd.send_stall_timeout_s must be positive")
    if nbd.max_connections < 1:
        raise ConfigError("nbd.max_connections must be at least 1")
    http = config.http
    for key in ("idle_timeout_s", "head_timeout_s", "body_read_timeout_s"):
        if getattr(http, key) <= 0:
            raise ConfigError(f"http.{key} must be positive")
    if http.body_rate_grace_s < 0 or http.body_min_rate_bytes_s < 0:
        raise ConfigError(
            "http.body_rate_grace_s and http.body_min_rate_bytes_s cannot be negative"
        )
    if http.max_connections < 1:
        raise ConfigError("http.max_connections must be at least 1")
    if config.service.workers < 0:
        raise ConfigError("service.workers must not be negative")
    if isinstance(config.storage.drives, int) and config.storage.drives < 1:
        raise ConfigError("storage.drives must be at least 1")
    for name in ("s3.listen", "nbd.listen"):
        section, key = name.split(".")
        value = getattr(getattr(config, section), key)
        if not (name == "nbd.listen" and value == "off") and not _is_address(value):
            raise ConfigError(f"{name} must be HOST:PORT, not {value!r}")
    return config


def _is_address(value: str) -> bool:
    host, sep, port = value.rpartition(":")
    return bool(sep) and port.isdigit() and int(port) < 65536


def nbd_tls_mode(config: Config) -> str:
    """``auto`` resolved: optional when S3 has a certificate, else off."""
    if config.nbd.tls == "auto":
        return "optional" if config.s3.tls_cert else "off"
    return config.nbd.tls


def with_listen(config: Config, s3: str | None = None, nbd: str | None = None) -> Config:
    """The same tree with the addresses actually bound (a port 0 resolved)."""
    out = config
    if s3 is not None:
        out = replace(out, s3=replace(out.s3, listen=s3))
    if nbd is not None:
        out = replace(out, nbd=replace(out.nbd, listen=nbd))
    return out
