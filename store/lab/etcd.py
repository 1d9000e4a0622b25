"""etcd members as child processes on loopback: a cluster for ``store lab`` and the tests.

Each member gets its own data directory under ``root`` and two free ports (client, peer). The
cluster is ready when every member answers ``/health`` as healthy (it has a leader). Members
can be stopped, killed, paused and started again one by one, as the fault tests need. Needs the
``etcd`` binary (Debian's ``etcd-server``; ``make test`` installs it).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from store.errors import InvalidArgument, Unavailable

READY_TIMEOUT_S = 30.0
QUOTA_BYTES = 8 << 30  # docs/cluster.md: etcd's 2 GiB default is too small for object metadata


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct free ports (all held open while choosing, so none repeats)."""
    held = []
    try:
        for _ in range(count):
            s = socket.socket()
            held.append(s)
            s.bind((host, 0))
        return [int(s.getsockname()[1]) for s in held]
    finally:
        for s in held:
            s.close()


@dataclass
class EtcdMember:
    name: str
    host: str
    client_port: int
    peer_port: int
    data_dir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def client_url(self) -> str:
        return f"http://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.host}:{self.peer_port}"

    def status(self) -> dict[str, str]:
        """``/v3/maintenance/status``: this member's id (``header.member_id``) and the
        leader's (``leader``), as strings."""
        request = urllib.request.Request(
            self.client_url + "/v3/maintenance/status", data=b"{}", method="POST"
        )
        with urllib.request.urlopen(request, timeout=2) as answer:
            doc = json.loads(answer.read())
        return {"member_id": str(doc["header"]["member_id"]), "leader": str(doc.get("leader"))}

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.client_url + "/health", timeout=1) as answer:
                return bool(json.loads(answer.read()).get("health") == "true")
        except (OSError, ValueError):
            return False


@dataclass
class EtcdCluster:
    root: Path
    size: int = 3
    host: str = "127.0.0.1"
    # Revisions of history kept (etcd compacts older ones by itself); 0: never compact, as the
    # conformance tests need.
    auto_compaction_revisions: int = 0
    log_path: Path | None = None
    members: list[EtcdMember] = field(default_factory=list)

    def __post_init__(self) -> None:
        if shutil.which("etcd") is None:
            raise Unavailable("no etcd binary (apt install etcd-server)")
        if self.size < 1:
            raise InvalidArgument("an etcd cluster has at least one member")
        ports = free_ports(2 * self.size, self.host)
        self.members = [
            EtcdMember(
                f"etcd-{i + 1}",
                self.host,
                ports[2 * i],
                ports[2 * i + 1],
                self.root / f"etcd-{i + 1}",
            )
            for i in range(self.size)
        ]

    @property
    def endpoints(self) -> str:
        """The ``--meta`` value naming every member: ``etcd://H:P,H:P,...``."""
        return self.endpoints_of(self.members)

    def _argv(self, member: EtcdMember, state: str) -> list[str]:
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        argv = ["etcd", "--name", member.name, "--data-dir", str(member.data_dir)]
        argv += ["--listen-client-urls", member.client_url]
        argv += ["--advertise-client-urls", member.client_url]
        argv += ["--listen-peer-urls", member.peer_url]
        argv += ["--initial-advertise-peer-urls", member.peer_url]
        argv += ["--initial-cluster", initial, "--initial-cluster-state", state]
        argv += ["--initial-cluster-token", f"store-{os.getpid()}-{self.members[0].peer_port}"]
        argv += ["--quota-backend-bytes", str(QUOTA_BYTES)]
        argv += ["--logger", "zap", "--log-level", os.environ.get("STORE_ETCD_LOG_LEVEL", "error")]
        if self.auto_compaction_revisions:
            argv += ["--auto-compaction-mode", "revision"]
            argv += ["--auto-compaction-retention", str(self.auto_compaction_revisions)]
        return argv

    def start(self) -> None:
        """Start every member and wait until all are healthy."""
        self.root.mkdir(parents=True, exist_ok=True)
        for member in self.members:
            self.start_member(member, wait=False)
        self.wait_healthy()

    def start_member(self, member: EtcdMember, *, wait: bool = True) -> None:
        state = "existing" if (member.data_dir / "member").exists() else "new"
        log = open(self.log_path or os.devnull, "ab")  # noqa: SIM115 - the child keeps it
        try:
            member.process = subprocess.Popen(
                self._argv(member, state),
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a terminal's Ctrl-C reaches the lab, which stops us
            )
        finally:
            log.close()
        if wait:
            self.wait_healthy([member])

    def wait_healthy(self, members: list[EtcdMember] | None = None) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        for member in members or self.members:
            while not member.healthy():
                if member.process is not None and member.process.poll() is not None:
                    raise Unavailable(f"{member.name} exited with {member.process.returncode}")
                if time.monotonic() > deadline:
                    raise Unavailable(f"{member.name} not healthy after {READY_TIMEOUT_S} s")
                time.sleep(0.05)

    def leader(self) -> EtcdMember:
        """The member that is the leader now (asked of the running members)."""
        for member in self.members:
            if member.process is None:
                continue
            try:
                status = member.status()
            except (OSError, ValueError, KeyError):
                continue
            for candidate in self.members:
                if (
                    candidate.process is not None
                    and candidate.status()["member_id"] == status["leader"]
                ):
                    return candidate
        raise Unavailable("no etcd member knows a leader")

    def endpoints_of(self, members: list[EtcdMember]) -> str:
        """A ``--meta`` value naming these members, in this order (the first is used first)."""
        return "etcd://" + ",".join(f"{m.host}:{m.client_port}" for m in members)

    def signal_member(self, member: EtcdMember, sig: signal.Signals) -> None:
        if member.process is not None and member.process.poll() is None:
            member.process.send_signal(sig)

    def kill_member(self, member: EtcdMember) -> None:
        self.signal_member(member, signal.SIGKILL)
        if member.process is not None:
            member.process.wait()
        member.process = None

    def stop(self, *, graceful: bool = True) -> None:
        """Stop every member: SIGTERM (etcd then takes several seconds handing leadership
        over to peers that are stopping too), or with ``graceful`` false SIGKILL, for data
        directories about to be thrown away."""
        for member in self.members:
            self.signal_member(member, signal.SIGCONT)  # a paused member cannot stop
            self.signal_member(member, signal.SIGTERM if graceful else signal.SIGKILL)
        for member in self.members:
            if member.process is None:
                continue
            try:
                member.process.wait(10)
            except subprocess.TimeoutExpired:
                member.process.kill()
                member.process.wait()
            member.process = None
