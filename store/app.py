"""The single-node service: engine, housekeeping and the S3 listener in one root nursery."""

from __future__ import annotations

import logging
import signal
import ssl
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from store.engine import maintenance, users
from store.engine.node import DEFAULT_DRIVES, open_local_engine
from store.gateway.http import Drain, serve_http
from store.gateway.s3 import GatewayConfig, S3Gateway, bad_request_response

log = logging.getLogger("store")


@dataclass
class ServeConfig:
    data_dir: Path = Path("./data")
    s3_host: str = "127.0.0.1"
    s3_port: int = 9000
    drives: int | list[Path] = DEFAULT_DRIVES
    scheme: str = "auto"
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    tls_cert: Path | None = None  # PEM certificate chain; with tls_key, S3 is served over TLS
    tls_key: Path | None = None


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


async def serve(
    config: ServeConfig, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run until cancelled; reports the S3 port once it is listening."""
    async with open_local_engine(
        config.data_dir, drives=config.drives, scheme=config.scheme
    ) as engine:
        root, created = await users.ensure_root(engine.kv, config.data_dir)
        gateway = S3Gateway(engine, config.gateway)
        tcp = await trio.open_tcp_listeners(config.s3_port, host=config.s3_host)
        port = tcp[0].socket.getsockname()[1]
        listeners: list[trio.abc.Listener[Any]] = list(tcp)
        scheme = "http"
        if config.tls_cert is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(config.tls_cert, config.tls_key)
            listeners = [trio.SSLListener(t, context, https_compatible=True) for t in tcp]
            scheme = "https"
        draining = Drain()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(maintenance.run_housekeeping, engine)
            nursery.start_soon(_drain_on_signal, draining)

            async def http(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
                await serve_http(
                    listeners,
                    gateway.handle,
                    bad_request_response,
                    draining=draining,
                    task_status=task_status,
                )
                log.info("drained: no requests in progress, shutting down")
                nursery.cancel_scope.cancel()

            await nursery.start(http)
            endpoint = f"{scheme}://{config.s3_host}:{port}"
            # Printed to the terminal, never logged: the secret appears once, on first start.
            print(f"S3 endpoint:  {endpoint}", flush=True)
            print(f"Access key:   {root.access_key}", flush=True)
            if created:
                print(f"Secret key:   {root.secret_key}", flush=True)
            print(f"Credentials:  {config.data_dir / 'credentials.json'} (mode 0600)", flush=True)
            log.info("ready: S3 on %s, data in %s", endpoint, config.data_dir)
            task_status.started(port)


async def _drain_on_signal(draining: Drain) -> None:
    """SIGTERM or SIGINT: stop accepting, finish the requests in progress, then exit."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("%s: draining", signal.Signals(signum).name)
            draining.start()
            return


def run(config: ServeConfig) -> int:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    try:
        trio.run(serve, config)
    except KeyboardInterrupt:
        return 0
    return 0
