"""The single-node service: engine, housekeeping and the S3 listener, in one process or several.

One Python process runs one core's worth of requests (the GIL), so ``workers`` > 1 runs a
supervisor and that many worker processes over the same data directory:

- the supervisor binds one set of listening sockets per worker on the same port (SO_REUSEPORT:
  the kernel spreads new connections evenly over them), opens the engine once (cleaning what a
  crash left in the drives' tmp directories, making the root key), prints the endpoint, and
  starts the workers, each inheriting its sockets; the supervisor keeps them open, so the
  connections that arrive while a worker restarts wait in its backlog instead of being refused;
- each worker opens its own engine on the shared data directory (SQLite in WAL mode serialises
  the writers of every process, chunk files are named uniquely) and serves S3; only worker 0
  collects garbage, sweeps orphans and scrubs; metrics from every worker are summed at scrape;
- NBD: every worker accepts, each volume served by the worker that owns it (a connection is
  passed there during its handshake over the socket pairs the supervisor makes: store/nbd/
  handoff.py); with NBD TLS on, worker 0 serves all NBD;
- SIGTERM/SIGINT to the supervisor drains every worker, then it exits; a worker that dies is
  restarted (with backoff); a worker whose supervisor dies (even by SIGKILL) sees its lifeline
  pipe close, drains and exits.
"""

from __future__ import annotations

import itertools
import logging
import os
import resource
import shutil
import signal
import socket
import ssl
import sys
import time
from dataclasses import asdict, dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any

import trio
from prometheus_client import CollectorRegistry

from store.admin import operations
from store.admin.jobs import Jobs
from store.auth import users
from store.config import Config, nbd_tls_mode, parse_address, with_listen
from store.gateway.admin import AdminApi
from store.gateway.http import Drain, Limits, serve_http
from store.gateway.metrics import NbdMetrics
from store.gateway.nbd import NbdServer
from store.gateway.nbd_handoff import Handoffs, socket_pairs
from store.gateway.s3 import S3Gateway, bad_request_response
from store.nbd.budget import NbdLimits
from store.node import local_volumes, master_keys, open_local_engine
from store.objects import maintenance
from store.objects.engine import ObjectEngine
from store.rpc.tls import TlsFiles
from store.volumes.admin import Volumes

log = logging.getLogger("store")

LISTEN_BACKLOG = 1024
RESTART_BACKOFF_S = (0.5, 30.0)  # first and longest wait before restarting a dead worker


WORKER_CONFIG_ENV = "STORE_WORKER_CONFIG"  # a worker's configuration: the supervisor's tree


def s3_address(config: Config) -> tuple[str, int]:
    return parse_address(config.s3.listen)


def nbd_address(config: Config) -> tuple[str, int] | None:
    return None if config.nbd.listen == "off" else parse_address(config.nbd.listen)


def drives_of(config: Config) -> int | list[Path]:
    drives = config.storage.drives
    return drives if isinstance(drives, int) else [Path(d) for d in drives]


def rpc_tls_of(config: Config) -> TlsFiles | None:
    storage = config.storage
    return TlsFiles.of(storage.rpc_tls_cert, storage.rpc_tls_key, storage.rpc_tls_ca)


def workers_of(config: Config) -> int:
    return config.service.workers or default_workers()


@dataclass(frozen=True)
class WorkerFds:
    """What a supervisor hands a worker: its index, its inherited sockets, its lifeline, and
    for NBD handoffs its inbox then every worker's outbox (store/gateway/nbd_handoff.py).

    >>> WorkerFds.parse(WorkerFds(1, (3, 4), (5,), 6, (7, 8, 9)).format())
    WorkerFds(index=1, s3=(3, 4), nbd=(5,), lifeline=6, handoff=(7, 8, 9))
    """

    index: int
    s3: tuple[int, ...]
    nbd: tuple[int, ...]
    lifeline: int
    handoff: tuple[int, ...] = ()

    def format(self) -> str:
        return ";".join(
            [
                str(self.index),
                ",".join(map(str, self.s3)),
                ",".join(map(str, self.nbd)),
                str(self.lifeline),
                ",".join(map(str, self.handoff)),
            ]
        )

    @classmethod
    def parse(cls, text: str) -> WorkerFds:
        index, s3, nbd, lifeline, handoff = text.split(";")
        fds = lambda part: tuple(int(fd) for fd in part.split(",") if fd)  # noqa: E731
        return cls(int(index), fds(s3), fds(nbd), int(lifeline), fds(handoff))

    @property
    def all(self) -> list[int]:
        return [*self.s3, *self.nbd, self.lifeline, *self.handoff]

    def handoffs(self) -> Handoffs | None:
        if not self.handoff:
            return None
        inbox, *outboxes = (socket.socket(fileno=fd) for fd in self.handoff)
        return Handoffs(self.index, inbox, outboxes)


def format_address(host: str, port: int) -> str:
    """HOST:PORT, with an IPv6 host in brackets.

    >>> format_address("::1", 9), format_address("127.0.0.1", 9000)
    ('[::1]:9', '127.0.0.1:9000')
    """
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)))


def open_listen_sockets(host: str, port: int, *, reuse_port: bool = False) -> list[socket.socket]:
    """Listening TCP sockets for every address of ``host`` (plain sockets, so worker processes
    can inherit them). Port 0 picks one free port for all of them."""
    socks: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        ):
            sock = socket.socket(family, kind, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if socks[0] is not sock:  # the port the first one got
                address = (address[0], socks[0].getsockname()[1], *address[2:])
            sock.bind(address)
            sock.listen(LISTEN_BACKLOG)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


def _trio_listeners(config: Config, socks: list[socket.socket]) -> list[Any]:
    tcp = [trio.SocketListener(trio.socket.from_stdlib_socket(s)) for s in socks]
    if not config.s3.tls_cert:
        return tcp
    context = _server_tls_context(config)
    return [trio.SSLListener(t, context, https_compatible=True) for t in tcp]


def _server_tls_context(config: Config, client_ca: str = "") -> ssl.SSLContext:
    assert config.s3.tls_cert
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.s3.tls_cert, config.s3.tls_key)
    if client_ca:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=str(client_ca))
    return context


def _nbd_server(
    config: Config,
    volumes: Volumes,
    registry: CollectorRegistry,
    draining: Drain,
    handoffs: Handoffs | None = None,
) -> NbdServer:
    context = None
    mode = nbd_tls_mode(config)
    if mode != "off":
        context = _server_tls_context(config, config.nbd.tls_client_ca)
    return NbdServer(
        volumes,
        NbdMetrics(registry),
        draining,
        tls_context=context,
        tls_required=mode == "required",
        # The [nbd] keys of the same names (config.py keeps them beside the listener's).
        limits=NbdLimits(**{f.name: getattr(config.nbd, f.name) for f in fields(NbdLimits)}),
        handoffs=handoffs,
    )


def _announce(
    config: Config, port: int, nbd_port: int | None, root: users.AccessKey, created: bool
) -> None:
    scheme = "https" if config.s3.tls_cert else "http"
    endpoint = f"{scheme}://{format_address(s3_address(config)[0], port)}"
    # Printed to the terminal, never logged: the secret appears once, on first start.
    print(f"S3 endpoint:  {endpoint}", flush=True)
    print(f"Access key:   {root.access_key}", flush=True)
    if created:
        print(f"Secret key:   {root.secret_key}", flush=True)
    print(f"Credentials:  {config.data_dir / 'credentials.json'} (mode 0600)", flush=True)
    nbd = nbd_address(config)
    if nbd_port is not None and nbd is not None:
        address = format_address(nbd[0], nbd_port)
        scheme = {"off": "nbd", "optional": "nbd[s]", "required": "nbds"}[nbd_tls_mode(config)]
        print(f"NBD endpoint: {scheme}://{address}/VOLUME", flush=True)
    if workers_of(config) > 1:
        print(f"Workers:      {workers_of(config)} processes", flush=True)
    log.info("ready: S3 on %s, data in %s", endpoint, config.data_dir)


def _raise_open_file_limit(connections: int, extent_files: int) -> None:
    """Raise the soft limit on open files towards the hard one, so ``http.max_connections`` is
    reached before EMFILE is, with room for the drives' open extent files (distributions
    default the soft limit to 1024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + extent_files + 1024  # shard reads, metadata, NBD and the rest
    target = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


async def _run_gateway(
    config: Config,
    engine: ObjectEngine,
    socks: list[socket.socket],
    nbd_socks: list[socket.socket],
    *,
    primary: bool,
    lifeline_fd: int | None = None,
    handoffs: Handoffs | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve S3 (and NBD, given its sockets) until drained (SIGTERM/SIGINT, or the
    supervisor's lifeline closing) or cancelled."""
    # Local drives keep extent files open (a remote drive holds none here).
    extent_files = sum(getattr(d, "open_limit", 0) for d in engine.chunks.drives.values())
    _raise_open_file_limit(config.http.max_connections, extent_files)
    jobs = Jobs(engine.kv)
    ctx = operations.Context(engine, local_volumes(engine), time.time())
    admin = AdminApi(ctx, jobs, config.s3.region)
    keys = await master_keys(
        engine.kv,
        config.data_dir,
        cluster=config.storage.cluster,
        secret_file=config.storage.secret_file,
    )
    gateway = S3Gateway(engine, config.s3, keys)
    listeners = _trio_listeners(config, socks)
    draining = Drain()
    async with trio.open_nursery() as nursery:
        await nursery.start(jobs.serve)
        if nbd_socks:
            nbd = _nbd_server(config, ctx.volumes, gateway.metrics.registry, draining, handoffs)
            tcp = [trio.SocketListener(trio.socket.from_stdlib_socket(s)) for s in nbd_socks]
            await nursery.start(nbd.serve, tcp)
        nursery.start_soon(partial(maintenance.run_housekeeping, engine, primary=primary))
        if primary:
            day_s = config.s3.lifecycle_day_seconds
            nursery.start_soon(partial(maintenance.run_lifecycle, engine, day_s=day_s))
        nursery.start_soon(gateway.metrics.run_sync)
        nursery.start_soon(_drain_on_signal, draining)
        if lifeline_fd is not None:
            nursery.start_soon(_drain_on_eof, lifeline_fd, draining)

        async def http(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            await serve_http(
                listeners,
                admin.in_front_of(gateway.handle),
                bad_request_response,
                Limits(**asdict(config.http)),
                draining=draining,
                task_status=task_status,
            )
            log.info("drained: no requests in progress, shutting down")
            nursery.cancel_scope.cancel()

        await nursery.start(http)
        task_status.started()


async def serve(
    config: Config, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """The service in this process (``workers`` == 1). Reports the S3 port once listening."""
    socks = open_listen_sockets(*s3_address(config))
    port = socks[0].getsockname()[1]
    nbd_socks = _nbd_sockets(config)
    nbd_port = nbd_socks[0].getsockname()[1] if nbd_socks else None
    async with open_local_engine(
        config.data_dir,
        drives=drives_of(config),
        scheme=config.storage.scheme,
        meta=config.storage.meta,
        cluster=config.storage.cluster,
        secret_file=config.storage.secret_file,
        rpc_tls=rpc_tls_of(config),
    ) as engine:
        root, created = await users.ensure_root(engine.kv, config.data_dir)
        async with trio.open_nursery() as nursery:
            await nursery.start(
                partial(_run_gateway, config, engine, socks, nbd_socks, primary=True)
            )
            _announce(config, port, nbd_port, root, created)
            task_status.started(port)


def _nbd_sockets(config: Config, *, reuse_port: bool = False) -> list[socket.socket]:
    address = nbd_address(config)
    return [] if address is None else open_listen_sockets(*address, reuse_port=reuse_port)


def nbd_on_every_worker(config: Config) -> bool:
    """Whether every worker accepts NBD (handing each connection to its export's owner), or
    worker 0 serves it all: with TLS, as a TLS session cannot move between processes."""
    return (
        workers_of(config) > 1
        and nbd_address(config) is not None
        and (nbd_tls_mode(config) == "off")
    )


async def serve_worker(config: Config, fds: WorkerFds) -> None:
    """One worker of a supervisor: serve on the inherited sockets. NBD: on every worker, each
    volume served by its owner (handoffs), or on worker 0 only (see nbd_on_every_worker)."""
    socks = [socket.socket(fileno=fd) for fd in fds.s3]
    nbd_socks = [socket.socket(fileno=fd) for fd in fds.nbd]
    async with open_local_engine(
        config.data_dir,
        drives=drives_of(config),
        scheme=config.storage.scheme,
        meta=config.storage.meta,
        cluster=config.storage.cluster,
        secret_file=config.storage.secret_file,
        rpc_tls=rpc_tls_of(config),
        clean_tmp=False,
    ) as engine:
        await _run_gateway(
            config,
            engine,
            socks,
            nbd_socks,
            primary=fds.index == 0,
            lifeline_fd=fds.lifeline,
            handoffs=fds.handoffs(),
        )


def worker_process(
    config: Config, fds: WorkerFds, port: int, nbd_port: int | None
) -> tuple[list[str], dict[str, str]]:
    """A worker's command line and the environment entry carrying its configuration: the
    supervisor's own tree, with the addresses it bound (ports 0 resolved)."""
    host = s3_address(config)[0]
    nbd = nbd_address(config)
    bound = with_listen(
        config,
        s3=format_address(host, port),
        nbd="off" if nbd is None or nbd_port is None else format_address(nbd[0], nbd_port),
    )
    argv = [sys.executable, "-m", "store", "serve", "--worker", fds.format()]
    return argv, {WORKER_CONFIG_ENV: bound.to_json()}


async def supervise(
    config: Config, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run the worker processes on shared sockets until SIGTERM/SIGINT."""
    workers = workers_of(config)
    socks: list[list[socket.socket]] = []
    nbd_socks: list[list[socket.socket]] = []
    pairs: list[tuple[socket.socket, socket.socket]] = []
    try:
        _per_worker_sockets(*s3_address(config), workers, socks)
        port = socks[0][0].getsockname()[1]
        address = nbd_address(config)
        if address is not None and nbd_on_every_worker(config):
            _per_worker_sockets(*address, workers, nbd_socks)
            pairs = socket_pairs(workers)
        else:
            nbd_socks.append(_nbd_sockets(config))  # worker 0's (none with NBD off)
            if workers > 1 and address is not None:
                log.warning(
                    "NBD TLS is %s: worker 0 serves all NBD (a TLS session cannot move between"
                    " processes); --nbd-tls off spreads volumes over every worker",
                    nbd_tls_mode(config),
                )
        # Nobody ever writes to the lifeline: its read end sees EOF when the supervisor is gone.
        lifeline_r, _lifeline_w = os.pipe()
        await _supervise(config, socks, nbd_socks, pairs, port, lifeline_r, task_status)
    finally:
        for sock in itertools.chain(
            itertools.chain.from_iterable(socks),
            itertools.chain.from_iterable(nbd_socks),
            itertools.chain.from_iterable(pairs),
        ):
            sock.close()


def _per_worker_sockets(
    host: str, port: int, workers: int, into: list[list[socket.socket]]
) -> None:
    """One listening socket set per worker on the same port (SO_REUSEPORT), appended to
    ``into`` as they open (so the caller closes whatever opened); port 0 resolves once."""
    into.append(open_listen_sockets(host, port, reuse_port=True))
    bound = into[0][0].getsockname()[1]
    for _ in range(workers - 1):
        into.append(open_listen_sockets(host, bound, reuse_port=True))


async def _supervise(
    config: Config,
    s3_socks: list[list[socket.socket]],
    nbd_socks: list[list[socket.socket]],
    pairs: list[tuple[socket.socket, socket.socket]],
    port: int,
    lifeline_fd: int,
    task_status: trio.TaskStatus[int],
) -> None:
    """One S3 socket set per worker; NBD socket sets for the workers that accept NBD (all, or
    worker 0); the handoff socket pairs, one per worker (none when NBD stays on worker 0)."""
    from prometheus_client.multiprocess import mark_process_dead

    nbd_port = nbd_socks[0][0].getsockname()[1] if nbd_socks[0] else None
    async with open_local_engine(
        config.data_dir,
        drives=drives_of(config),
        scheme=config.storage.scheme,
        meta=config.storage.meta,
        cluster=config.storage.cluster,
        secret_file=config.storage.secret_file,
        rpc_tls=rpc_tls_of(config),
    ) as engine:  # before any worker: checks the configuration, cleans tmp, makes the root key
        root, created = await users.ensure_root(engine.kv, config.data_dir)
        await master_keys(  # and the SSE master keys, before workers read them
            engine.kv,
            config.data_dir,
            cluster=config.storage.cluster,
            secret_file=config.storage.secret_file,
        )
    metrics_dir = config.data_dir / "run" / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True, mode=0o700)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    stop = trio.Event()
    procs: dict[int, trio.Process] = {}

    async def keep_running(index: int) -> None:
        backoff = RESTART_BACKOFF_S[0]
        fds = WorkerFds(
            index,
            tuple(s.fileno() for s in s3_socks[index]),
            tuple(s.fileno() for s in nbd_socks[index]) if index < len(nbd_socks) else (),
            lifeline_fd,
            (pairs[index][0].fileno(), *(out.fileno() for _, out in pairs)) if pairs else (),
        )
        while not stop.is_set():
            argv, extra = worker_process(config, fds, port, nbd_port)
            proc = await trio.lowlevel.open_process(argv, pass_fds=fds.all, env={**env, **extra})
            procs[index] = proc
            began = trio.current_time()
            code = await proc.wait()
            mark_process_dead(proc.pid, str(metrics_dir))
            if stop.is_set():
                return
            log.error("worker %d (pid %d) exited with status %s; restarting", index, proc.pid, code)
            if trio.current_time() - began > 60:
                backoff = RESTART_BACKOFF_S[0]
            with trio.move_on_after(backoff):
                await stop.wait()
            backoff = min(2 * backoff, RESTART_BACKOFF_S[1])

    async with trio.open_nursery() as nursery:
        for index in range(workers_of(config)):
            nursery.start_soon(keep_running, index)
        _announce(config, port, nbd_port, root, created)
        task_status.started(port)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                log.info("%s: draining %d workers", signal.Signals(signum).name, len(procs))
                stop.set()
                for proc in procs.values():
                    if proc.returncode is None:
                        proc.send_signal(signal.SIGTERM)
                break


async def _drain_on_signal(draining: Drain) -> None:
    """SIGTERM or SIGINT: stop accepting, finish the requests in progress, then exit."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("%s: draining", signal.Signals(signum).name)
            draining.start()
            return


async def _drain_on_eof(fd: int, draining: Drain) -> None:
    """The supervisor's lifeline closed (it died, even by SIGKILL): no worker outlives it."""
    async with trio.lowlevel.FdStream(fd) as lifeline:
        while await lifeline.receive_some(64):
            pass
    log.warning("the supervisor is gone: draining")
    draining.start()


def run(config: Config, worker: WorkerFds | None = None) -> int:
    tag = "" if worker is None else f"[w{worker.index}]"
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format=f"%(asctime)s %(name)s{tag} %(message)s"
    )
    try:
        if worker is not None:
            trio.run(serve_worker, config, worker)
        elif workers_of(config) > 1:
            trio.run(supervise, config)
        else:
            trio.run(serve, config)
    except KeyboardInterrupt:
        return 0
    return 0
