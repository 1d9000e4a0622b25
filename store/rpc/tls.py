"""Mutual TLS for the chunk RPC, an option on top of the cluster-secret handshake.

The secret's handshake and frame MACs always run: they authenticate both ends and catch damage.
TLS adds encryption, and a second, certificate-based check of both ends: every node presents a
certificate issued by the cluster's CA and accepts only peers that do (TLS 1.3 only). A gateway
checks that a chunk server's certificate names the address it dials (an IP address or DNS
subject alternative name), as HTTPS does.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from store.errors import InvalidArgument


@dataclass(frozen=True, slots=True)
class TlsFiles:
    cert: str  # PEM: this node's certificate (chain)
    key: str  # PEM: its private key (may be the same file)
    ca: str  # PEM: the CA that issues the cluster's certificates

    @classmethod
    def of(cls, cert: str, key: str, ca: str) -> TlsFiles | None:
        """The three files, or None when none is given; an error naming what is missing."""
        given = {"certificate": cert, "key": key, "CA": ca}
        if not any(given.values()):
            return None
        missing = [name for name, path in given.items() if not path]
        if missing:
            raise InvalidArgument(f"RPC TLS needs a certificate, a key and a CA: no {missing[0]}")
        return cls(cert, key, ca)


def _context(files: TlsFiles, purpose: ssl.Purpose) -> ssl.SSLContext:
    try:
        ctx = ssl.create_default_context(purpose, cafile=files.ca)
        ctx.load_cert_chain(files.cert, files.key)
    except (OSError, ssl.SSLError) as e:
        raise InvalidArgument(f"RPC TLS: {e}") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def client_context(files: TlsFiles) -> ssl.SSLContext:
    """A gateway's: verifies the chunk server's chain and name, presents its own."""
    return _context(files, ssl.Purpose.SERVER_AUTH)


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """A chunk server's: presents its certificate, requires one from every client."""
    ctx = _context(files, ssl.Purpose.CLIENT_AUTH)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx
