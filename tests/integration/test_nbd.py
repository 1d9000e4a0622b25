"""The NBD endpoint driven by real clients: qemu-img, qemu-io, nbdinfo, nbdcopy, nbdsh, fio."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import (
    ADMIN_ENV,
    Server,
    admin_argv,
    admin_json,
    start_server,
    stop_server,
)

MIB = 1 << 20
# Debian's libnbd binding is built for /usr/bin/python3; nbdsh runs whatever python3 is first.
NBDSH_ENV = {**os.environ, "PATH": "/usr/bin:" + os.environ.get("PATH", "")}
store = admin_json  # a `store` admin command through the admin API: the JSON it printed


def run(*argv: str, **kw: object) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, **kw)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{argv[0]} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def wait_detached(server: Server, name: str) -> None:
    """The gateway keeps a volume open 2 s after its last client: snapshots wait for that."""
    deadline = time.monotonic() + 10
    while store(server, "volume", "info", name)["attached"]:
        assert time.monotonic() < deadline, f"{name} stays attached"
        time.sleep(0.2)


def nbdsh(uri: str, script: str) -> str:
    return run("nbdsh", "-u", uri, "-c", textwrap.dedent(script), env=NBDSH_ENV)


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def nbd_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The embedded node, then a gateway on a cluster (three etcd members, six chunk servers:
    extents replicated across them): the same tests."""
    if request.param == "embedded":
        running = start_server(tmp_path_factory.mktemp("nbd"), ["--workers", "1"])
        yield running
        stop_server(running)
        return
    from tests.cluster.lab import running_cluster

    with running_cluster(tmp_path_factory.mktemp("nbd-cluster"), workers=1) as running:
        yield running


@pytest.fixture
def volume(nbd_server: Server, request: pytest.FixtureRequest) -> str:
    name = request.node.name.replace("[", "-").replace("]", "")[:60].strip("_-")
    store(nbd_server, "volume", "create", name, "--size", "64M", "--description", "a test")
    return f"{nbd_server.nbd}/{name}"


def image(path: Path) -> bytes:
    """64 MiB: random data, a zero gap, more data, then unwritten."""
    data = os.urandom(20 * MIB) + bytes(8 * MIB) + os.urandom(12 * MIB)
    path.write_bytes(data + bytes(64 * MIB - len(data)))
    return path.read_bytes()


def test_qemu_img_raw_round_trip_and_map(volume: str, tmp_path: Path) -> None:
    original = image(tmp_path / "disk.raw")
    run("qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", str(tmp_path / "disk.raw"), volume)
    run("qemu-img", "convert", "-f", "raw", "-O", "raw", volume, str(tmp_path / "back.raw"))
    assert (tmp_path / "back.raw").read_bytes() == original
    info = json.loads(run("qemu-img", "info", "--output=json", volume))
    assert info["virtual-size"] == 64 * MIB
    extents = json.loads(run("nbdinfo", "--map", "--json", volume))
    zero = [(e["offset"], e["length"]) for e in extents if e["type"] & 2]
    data = [(e["offset"], e["length"]) for e in extents if not e["type"] & 2]
    assert data == [(0, 20 * MIB), (28 * MIB, 12 * MIB)]  # qemu-img skipped the zeros
    assert zero == [(20 * MIB, 8 * MIB), (40 * MIB, 24 * MIB)]


def test_qcow2_onto_a_volume_and_back(volume: str, tmp_path: Path) -> None:
    image(tmp_path / "disk.raw")
    qcow = str(tmp_path / "disk.qcow2")
    run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(tmp_path / "disk.raw"), qcow)
    run("qemu-img", "convert", "-n", "-f", "qcow2", "-O", "raw", qcow, volume)
    run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", volume, str(tmp_path / "back.qcow2"))
    run("qemu-img", "compare", "-f", "qcow2", "-F", "qcow2", qcow, str(tmp_path / "back.qcow2"))


def test_qemu_io_patterns_at_odd_offsets(volume: str) -> None:
    out = run(
        "qemu-io", "-f", "raw",
        "-c", "write -P 0xab 12345 70000",
        "-c", "read -P 0xab 12345 70000",
        "-c", "write -P 0x11 4095 2",
        "-c", "read -P 0x11 4095 2",
        "-c", "read -P 0xab 12346 8000",
        "-c", "read -P 0 4097 8000",
        "-c", "discard 1M 3M",
        "-c", "write -z 8M 1M",
        "-c", "read -P 0 8M 1M",
        "-c", "aio_write -P 0xcd 16M 64k",
        "-c", "aio_write -P 0xce 17M 64k",
        "-c", "aio_write -P 0xcf 18M 64k",
        "-c", "aio_flush",
        "-c", "read -P 0xcd 16M 64k",
        "-c", "read -P 0xce 17M 64k",
        "-c", "read -P 0xcf 18M 64k",
        volume,
    )  # fmt: skip
    assert "Pattern verification failed" not in out
    assert out.count("read ") == 8


def test_nbdinfo_list_and_json(nbd_server: Server, volume: str) -> None:
    listing = run("nbdinfo", "--list", "--json", nbd_server.nbd)
    exports = {e["export-name"]: e for e in json.loads(listing)["exports"]}
    name = volume.rsplit("/", 1)[1]
    assert exports[name]["export-size"] == 64 * MIB
    assert "a test" in exports[name]["description"]
    info = json.loads(run("nbdinfo", "--json", volume))["exports"][0]
    assert info["can_multi_conn"] and info["can_flush"] and info["can_fua"]
    assert info["can_trim"] and info["can_zero"] and not info["is_read_only"]
    assert info["block_size_minimum"] == 1  # any alignment is served
    assert info["block_size_preferred"] == 64 << 10
    assert "base:allocation" in info["contexts"]


def test_nbdcopy_both_ways(volume: str, tmp_path: Path) -> None:
    original = image(tmp_path / "in.raw")
    run("nbdcopy", str(tmp_path / "in.raw"), volume)
    run("nbdcopy", volume, str(tmp_path / "out.raw"))
    assert (tmp_path / "out.raw").read_bytes() == original


def test_error_codes_and_replies(volume: str) -> None:
    """Each check of the spec's list, over structured and over simple replies."""
    for structured in (True, False):
        nbdsh(
            volume,
            f"""
            import errno
            h2 = nbd.NBD()
            h2.set_request_structured_replies({structured})
            h2.set_strict_mode(0)  # let bad requests reach the server
            h2.connect_uri({volume!r})
            assert h2.get_structured_replies_negotiated() == {structured}
            size = h2.get_size()
            def fails(call, code):
                try:
                    call()
                except nbd.Error as e:
                    assert e.errnum == code, (e, code)
                else:
                    raise AssertionError("no error")
            fails(lambda: h2.pwrite(b"x" * 4096, size), errno.ENOSPC)
            fails(lambda: h2.pread(4096, size), errno.EINVAL)
            fails(lambda: h2.trim(4096, size), errno.EINVAL)
            fails(lambda: h2.pread(100, size - 99), errno.EINVAL)
            fails(lambda: h2.pwrite(b"x" * 100, size - 99), errno.ENOSPC)
            fails(lambda: h2.zero(4096, size - 4096 + 8192), errno.ENOSPC)
            h2.pwrite(b"ok" * 2048, 0, nbd.CMD_FLAG_FUA)
            assert h2.pread(4096, 0) == b"ok" * 2048
            h2.shutdown()
            """,
        )


def test_512_byte_and_odd_sized_io(volume: str, tmp_path: Path) -> None:
    """Clients that ignore block sizes (the kernel's 512-byte I/O, odd-sized requests) are
    served: partial blocks are read, patched and written back, across extents too."""
    nbdsh(
        volume,
        f"""
        import os, random
        h2 = nbd.NBD()
        h2.set_strict_mode(0)
        h2.connect_uri({volume!r})
        size = h2.get_size()
        model = bytearray(size)
        rng = random.Random(7)
        spots = [(rng.randrange(0, size - 70000), rng.choice([1, 3, 511, 512, 1000, 4097, 70000]))
                 for _ in range(60)]
        spots += [((8 << 20) - 700, 1400), ((16 << 20) - 512, 1024)]  # across extents
        for i, (at, n) in enumerate(spots):
            if i % 5 == 4:
                h2.zero(n, at)
                model[at:at + n] = bytes(n)
            else:
                data = os.urandom(n)
                h2.pwrite(data, at, nbd.CMD_FLAG_FUA if i % 3 == 0 else 0)
                model[at:at + n] = data
            assert h2.pread(n + 2, max(0, at - 1)) == model[max(0, at - 1):at + n + 1]
        for at in range(0, 1 << 20, 512):  # kernel-style: 512-byte writes over 1 MiB
            h2.pwrite(bytes([at // 512 % 256]) * 512, at)
            model[at:at + 512] = bytes([at // 512 % 256]) * 512
        h2.flush()
        for at in range(0, size, 4 << 20):
            assert h2.pread(4 << 20, at) == model[at:at + (4 << 20)], at
        h2.shutdown()
        """,
    )
    run("qemu-io", "-f", "raw", "-c", "write -P 0xab 512 512", volume)
    out = run("qemu-io", "-f", "raw", "-c", "read -P 0xab 512 512", "-c", "read -v 1020 8", volume)
    assert "read 512/512" in out and "ab ab ab ab" in out


def test_multi_conn_flush_and_disconnect_with_requests_in_flight(volume: str) -> None:
    nbdsh(
        volume,
        f"""
        other = nbd.NBD()
        other.connect_uri({volume!r})
        assert h.can_multi_conn()
        h.pwrite(b"a" * 65536, 1 << 20)
        other.flush()  # a flush on any connection covers the writes of all
        assert other.pread(65536, 1 << 20) == b"a" * 65536
        bufs = [nbd.Buffer(65536) for _ in range(16)]
        for i, buf in enumerate(bufs):
            other.aio_pread(buf, i * 65536)
        other.shutdown()  # NBD_CMD_DISC with 16 reads in flight: answered, then closed
        """,
    )


def test_fio_random_io_with_crc32c_verify(volume: str, tmp_path: Path) -> None:
    out = run(
        "fio", "--name=verify", "--ioengine=nbd", f"--uri={volume}", "--rw=randwrite",
        "--bs=4k", "--iodepth=32", "--size=16M", "--verify=crc32c", "--do_verify=1",
        "--verify_fatal=1", "--output-format=json",
        cwd=tmp_path,  # fio writes its verify state file into its working directory
    )  # fmt: skip
    job = json.loads(out[out.index("{") :])["jobs"][0]
    assert job["error"] == 0
    assert job["write"]["io_bytes"] == 16 * MIB and job["read"]["io_bytes"] == 16 * MIB


def test_flushed_writes_survive_sigkill(tmp_path: Path) -> None:
    server = start_server(tmp_path, ["--workers", "1"])
    try:
        store(server, "volume", "create", "durable", "--size", "32M")
        uri = f"{server.nbd}/durable"
        nbdsh(
            uri,
            """
            h.pwrite(b"F" * (1 << 20), 0)
            h.flush()
            h.pwrite(b"U" * 4096, 8 << 20, nbd.CMD_FLAG_FUA)
            h.pwrite(b"N" * 4096, 16 << 20)  # neither flushed nor FUA: may be lost
            """,
        )
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(10)
        server.log.close()
    except BaseException:
        stop_server(server)
        raise
    again = start_server(tmp_path, ["--workers", "1"])
    try:
        nbdsh(
            f"{again.nbd}/durable",
            """
            assert h.pread(1 << 20, 0) == b"F" * (1 << 20)
            assert h.pread(4096, 8 << 20) == b"U" * 4096
            assert h.pread(4096, 16 << 20) in (b"N" * 4096, bytes(4096))
            for offset in range(0, h.get_size(), 1 << 22):  # every block verifies
                h.pread(1 << 22, offset)
            """,
        )
    finally:
        stop_server(again)


def test_one_gateway_writes_a_volume(nbd_server: Server, volume: str, tmp_path: Path) -> None:
    """A second service on the same metadata cannot open a volume the first has open."""
    second = start_server(nbd_server.data, nbd_server.args, name="second")
    try:
        name = volume.rsplit("/", 1)[1]
        nbdsh(
            volume,
            f"""
            h.pwrite(b"1" * 4096, 0)
            other = nbd.NBD()
            try:
                other.connect_uri({second.nbd + "/" + name!r})
            except nbd.Error as e:
                assert "open" in str(e) or "policy" in str(e).lower(), e
            else:
                raise AssertionError("the second gateway opened the volume")
            """,
        )
    finally:
        second.process.terminate()
        second.process.wait(10)
        second.log.close()


def test_snapshot_exports_read_only_and_clone_is_writable(nbd_server: Server, volume: str) -> None:
    name = volume.rsplit("/", 1)[1]
    nbdsh(volume, 'h.pwrite(b"s" * 65536, 0)')
    store(nbd_server, "volume", "snapshot", f"{name}@one")
    store(nbd_server, "volume", "clone", f"{name}@one", f"{name}-clone")
    snap = f"{volume}@one"
    info = json.loads(run("nbdinfo", "--json", snap))["exports"][0]
    assert info["is_read_only"]
    nbdsh(
        snap,
        """
        import errno
        assert h.is_read_only()
        assert h.pread(65536, 0) == b"s" * 65536
        h.set_strict_mode(0)
        for call in (lambda: h.pwrite(b"x" * 4096, 0), lambda: h.trim(4096, 0),
                     lambda: h.zero(4096, 0)):
            try:
                call()
            except nbd.Error as e:
                assert e.errnum == errno.EPERM, e
            else:
                raise AssertionError("a write to a snapshot succeeded")
        """,
    )
    nbdsh(
        f"{volume}-clone",
        'h.pwrite(b"c" * 4096, 0); assert h.pread(8192, 0) == b"c" * 4096 + b"s" * 4096',
    )
    nbdsh(snap, 'assert h.pread(4096, 0) == b"s" * 4096')  # the clone's write is its own


def test_live_snapshot_while_clients_write(nbd_server: Server, volume: str, tmp_path: Path) -> None:
    """`store volume snapshot` on an attached volume: the gateway holding it pauses writes,
    flushes and moves on; a client connected across it sees no error, the snapshot holds
    exactly what was acknowledged before, and fio's verify of the live volume still passes."""
    name = volume.rsplit("/", 1)[1]
    cli = admin_argv(nbd_server, "volume", "snapshot", f"{name}@live")
    nbdsh(
        volume,
        f"""
        import subprocess
        h.pwrite(b"A" * 8192, 0)          # acknowledged, not flushed
        subprocess.run({cli!r}, check=True, capture_output=True, env={ADMIN_ENV!r})
        h.pwrite(b"B" * 4096, 0)          # after the snapshot: the volume's only
        assert h.pread(8192, 0) == b"B" * 4096 + b"A" * 4096
        """,
    )
    nbdsh(f"{volume}@live", 'assert h.pread(8192, 0) == b"A" * 8192')
    fio = subprocess.Popen(
        [
            "fio", "--name=live", "--ioengine=nbd", f"--uri={volume}", "--rw=randwrite",
            "--bs=4k", "--iodepth=16", "--size=32M", "--verify=crc32c", "--do_verify=1",
            "--verify_fatal=1", "--output-format=json",
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip
    time.sleep(0.5)
    for i in range(3):
        store(nbd_server, "volume", "snapshot", f"{name}@during{i}")
    out, err = fio.communicate(timeout=120)
    assert fio.returncode == 0, err
    job = json.loads(out[out.index("{") :])["jobs"][0]
    assert job["error"] == 0 and job["read"]["io_bytes"] == 32 * MIB
    names = {v["name"] for v in store(nbd_server, "volume", "list")}
    assert {f"{name}@during{i}" for i in range(3)} <= names


def test_images_move_between_s3_and_nbd(nbd_server: Server, tmp_path: Path) -> None:
    """An image uploaded over S3 becomes a volume; its snapshot becomes an object again."""
    from tests.integration.conftest import make_client

    s3 = make_client(nbd_server.endpoint)
    s3.create_bucket(Bucket="images")
    original = image(tmp_path / "disk.raw")
    s3.upload_file(str(tmp_path / "disk.raw"), "images", "disk.raw")
    store(nbd_server, "volume", "import", "imported", "--from", "images/disk.raw")
    run("nbdcopy", f"{nbd_server.nbd}/imported", str(tmp_path / "via-nbd.raw"))
    assert (tmp_path / "via-nbd.raw").read_bytes() == original
    wait_detached(nbd_server, "imported")
    store(nbd_server, "volume", "snapshot", "imported@v1")
    done = store(nbd_server, "volume", "export", "imported@v1", "--to", "images/v1.raw")
    assert done["size"] == len(original)
    s3.download_file("images", "v1.raw", str(tmp_path / "v1.raw"))
    assert (tmp_path / "v1.raw").read_bytes() == original
