"""``store lab``: a whole cluster on one machine, in the foreground, as real processes.

    store lab --hosts N --data DIR [--s3 HOST:PORT] [--nbd HOST:PORT]

starts a three-member etcd (``DIR/lab/etcd``), N chunk servers on loopback addresses 127.0.0.2,
127.0.0.3, ... (port 7480, one drive each under ``DIR/lab/chunk-I``), and one gateway
(``store serve --meta ... --cluster`` on ``DIR/gateway``), which prints its endpoints and
credentials as ``store serve`` does. Every process's pid is in ``DIR/lab/NAME.pid`` (etcd-1..,
chunk-1.., gateway-1), its output in ``DIR/lab/NAME.log`` (the gateway's on this terminal).
SIGTERM or SIGINT stops them all: the gateway first, then the chunk servers, then etcd.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from store.cluster_drives import load_secret
from store.errors import InvalidArgument, Unavailable
from store.lab.etcd import EtcdCluster

CHUNK_PORT = 7480
READY_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class LabConfig:
    data: Path
    hosts: int = 6
    s3: str = "127.0.0.1:9000"
    nbd: str = "127.0.0.1:10809"


def _store(*args: str) -> list[str]:
    return [sys.executable, "-m", "store", *args]


def _wait_for(log: Path, text: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while text not in (log.read_text(errors="replace") if log.exists() else ""):
        if process.poll() is not None:
            raise Unavailable(f"{log.stem} exited with {process.returncode}: see {log}")
        if time.monotonic() > deadline:
            raise Unavailable(f"{log.stem} not ready after {READY_TIMEOUT_S} s: see {log}")
        time.sleep(0.05)


class Lab:
    def __init__(self, config: LabConfig) -> None:
        if not 1 <= config.hosts <= 200:
            raise InvalidArgument("a lab has 1 to 200 hosts")
        self.config = config
        self.root = config.data / "lab"
        self.secret_file = config.data / "cluster.secret"
        self.etcd = EtcdCluster(
            self.root / "etcd", auto_compaction_revisions=10000, log_path=self.root / "etcd.log"
        )
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def _pid(self, name: str, process: subprocess.Popen[bytes]) -> None:
        self.processes[name] = process
        (self.root / f"{name}.pid").write_text(f"{process.pid}\n")

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        load_secret(self.secret_file)  # made now, shared by every process of the lab
        self.etcd.start()
        for member in self.etcd.members:
            assert member.process is not None
            self._pid(member.name, member.process)
        for i in range(1, self.config.hosts + 1):
            self._start_chunk_server(i)
        self._start_gateway()

    def _start_chunk_server(self, i: int) -> None:
        name = f"chunk-{i}"
        log = self.root / f"{name}.log"
        argv = _store("chunkserver", "--listen", f"127.0.0.{i + 1}:{CHUNK_PORT}")
        argv += ["--drive", str(self.root / name / "d0"), "--secret-file", str(self.secret_file)]
        argv += ["--meta", self.etcd.endpoints, "--host", name]
        with log.open("ab") as out:
            process = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._pid(name, process)
        _wait_for(log, "Chunk server:", process)

    def _start_gateway(self) -> None:
        argv = _store("serve", "--data", str(self.config.data / "gateway"))
        argv += ["--meta", self.etcd.endpoints, "--cluster", "--secret-file", str(self.secret_file)]
        argv += ["--s3", self.config.s3, "--nbd", self.config.nbd]
        process = subprocess.Popen(argv, start_new_session=True)  # its output: this terminal
        self._pid("gateway-1", process)

    def wait(self) -> int:
        """Until a signal (or the gateway exits): then stop everything."""
        stop = False

        def on_signal(signum: int, frame: object) -> None:
            nonlocal stop
            stop = True

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            gateway = self.processes["gateway-1"]
            while not stop and gateway.poll() is None:
                time.sleep(0.2)
            return 0 if stop else int(gateway.returncode or 1)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def stop(self) -> None:
        order = ["gateway-1"] + [n for n in self.processes if n.startswith("chunk-")]
        for name in order:
            process = self.processes.get(name)
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name in order:
            process = self.processes.get(name)
            if process is None:
                continue
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.etcd.stop()
        for name in self.processes:
            (self.root / f"{name}.pid").unlink(missing_ok=True)


def run(config: LabConfig) -> int:
    lab = Lab(config)
    try:
        lab.start()
        print(
            f"Lab:          etcd {lab.etcd.endpoints}, {config.hosts} chunk servers"
            f" (127.0.0.2..{config.hosts + 1}:{CHUNK_PORT}); logs and pids in {lab.root}",
            flush=True,
        )
        return lab.wait()
    except (Unavailable, InvalidArgument, OSError) as e:
        print(f"store lab: {e}", file=sys.stderr)
        return 1
    finally:
        lab.stop()
