"""NBD over TLS (STARTTLS, X.509): libnbd (nbdinfo, nbdcopy, nbdsh) and qemu-img as clients,
a server that offers TLS and one that requires it along with a client certificate."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.integration.conftest import Server, start_server, stop_server
from tests.integration.test_nbd import NBDSH_ENV, run, store

MIB = 1 << 20


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, the server's certificate, and client certificate directories laid out the way
    libnbd and qemu's tls-creds-x509 look for them (ca-cert.pem, client-cert.pem,
    client-key.pem)."""
    root = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.private_key_and_cert_chain_pem.write_to_path(str(root / "server.pem"))
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    for name, with_cert in [("anonymous", False), ("client", True)]:
        (root / name).mkdir()
        ca.cert_pem.write_to_path(str(root / name / "ca-cert.pem"))
        if with_cert:
            cert = ca.issue_cert("client@example.com")
            cert.cert_chain_pems[0].write_to_path(str(root / name / "client-cert.pem"))
            cert.private_key_pem.write_to_path(str(root / name / "client-key.pem"))
    return root


def serving(root: Path, pki: Path, *extra: str) -> Server:
    root.mkdir()
    pem = str(pki / "server.pem")
    args = ["--workers", "1", "--tls-cert", pem, "--tls-key", pem, *extra]
    server = start_server(root, args, scheme="https")
    server.ca_bundle = str(pki / "ca.pem")
    return server


@pytest.fixture(scope="module")
def optional(tmp_path_factory: pytest.TempPathFactory, pki: Path) -> Iterator[Server]:
    server = serving(tmp_path_factory.mktemp("optional") / "data", pki)  # --nbd-tls auto
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def required(tmp_path_factory: pytest.TempPathFactory, pki: Path) -> Iterator[Server]:
    ca = str(pki / "ca.pem")
    root = tmp_path_factory.mktemp("required") / "data"
    server = serving(root, pki, "--nbd-tls", "required", "--nbd-tls-client-ca", ca)
    yield server
    stop_server(server)


def tls_uri(server: Server, volume: str, certs: Path) -> str:
    return f"{server.nbd.replace('nbd://', 'nbds://')}/{volume}?tls-certificates={certs}"


def nbdsh_tls(uri: str, script: str) -> str:
    """nbdsh on a URI that names a certificate directory (libnbd wants that allowed first)."""
    connect = f"h.set_uri_allow_local_file(True)\nh.connect_uri({uri!r})\n"
    return run("nbdsh", "-c", connect + textwrap.dedent(script), env=NBDSH_ENV)


def test_optional_tls_serves_both(optional: Server, pki: Path, tmp_path: Path) -> None:
    store(optional, "volume", "create", "both", "--size", "16M")
    data = os.urandom(4 * MIB)
    (tmp_path / "in").write_bytes(data + bytes(12 * MIB))
    secure = tls_uri(optional, "both", pki / "anonymous")
    run("nbdcopy", str(tmp_path / "in"), secure)
    run("nbdcopy", f"{optional.nbd}/both", str(tmp_path / "plain"))  # no TLS: still served
    assert (tmp_path / "plain").read_bytes()[: 4 * MIB] == data
    out = nbdsh_tls(secure, "print(h.get_tls_negotiated(), h.get_size())")
    assert out.split() == ["True", str(16 * MIB)]


def test_qemu_img_over_tls(optional: Server, pki: Path, tmp_path: Path) -> None:
    store(optional, "volume", "create", "qemu", "--size", "8M")
    port = optional.nbd.rsplit(":", 1)[1]
    creds = f"tls-creds-x509,id=tls0,endpoint=client,dir={pki / 'anonymous'}"
    target = f"driver=nbd,host=127.0.0.1,port={port},export=qemu,tls-creds=tls0"
    data = os.urandom(8 * MIB)
    (tmp_path / "disk.raw").write_bytes(data)
    convert = ["qemu-img", "convert", "-n", "--object", creds, "-f", "raw", "--target-image-opts"]
    run(*convert, str(tmp_path / "disk.raw"), target)
    back = ["qemu-img", "convert", "--object", creds, "--image-opts", target, "-O", "raw"]
    run(*back, str(tmp_path / "back.raw"))
    assert (tmp_path / "back.raw").read_bytes() == data


OPT_LIST, OPT_GO, REP_ERR_TLS_REQD = 3, 7, 2**31 + 5


def plain_option_reply(server: Server, option: int) -> int:
    """The reply type a plain-text client gets for one option (libnbd reports every error as
    "Operation not supported", so the code is read off the wire)."""
    host, port = server.nbd.removeprefix("nbd://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        stream = sock.makefile("rwb")
        assert len(stream.read(18)) == 18  # NBDMAGIC IHAVEOPT flags
        data = struct.pack(">I", 6) + b"secret" + struct.pack(">H", 0) if option == OPT_GO else b""
        stream.write(struct.pack(">IQII", 3, 0x49484156454F5054, option, len(data)) + data)
        stream.flush()
        magic, replied_to, reply, length = struct.unpack(">QIII", stream.read(20))
        assert (magic, replied_to) == (0x3E889045565A9, option)
        stream.read(length)
        return int(reply)


def test_required_refuses_plain_clients(required: Server) -> None:
    store(required, "volume", "create", "secret", "--size", "8M")
    plain = subprocess.run(
        ["nbdinfo", f"{required.nbd}/secret"], capture_output=True, text=True, timeout=60
    )
    assert plain.returncode != 0
    assert plain_option_reply(required, OPT_LIST) == REP_ERR_TLS_REQD
    assert plain_option_reply(required, OPT_GO) == REP_ERR_TLS_REQD
    listing = subprocess.run(
        ["nbdinfo", "--list", required.nbd], capture_output=True, text=True, timeout=60
    )
    assert listing.returncode != 0


def test_required_needs_a_client_certificate(required: Server, pki: Path) -> None:
    store(required, "volume", "create", "certs", "--size", "8M")
    anonymous = subprocess.run(
        ["nbdinfo", tls_uri(required, "certs", pki / "anonymous")],
        capture_output=True,
        text=True,
        timeout=60,
        env=NBDSH_ENV,
    )
    assert anonymous.returncode != 0
    uri = tls_uri(required, "certs", pki / "client")
    out = nbdsh_tls(
        uri,
        """
        h.pwrite(b"x" * 4096, 4096, nbd.CMD_FLAG_FUA)
        print(h.get_tls_negotiated(), h.pread(4096, 4096) == b"x" * 4096)
        """,
    )
    assert out.split() == ["True", "True"]
    # Still alive and serving after the refusals above.
    assert "certs" in run("nbdinfo", "--list", tls_uri(required, "", pki / "client"))
