"""The admin API's client (the ``store`` CLI against a running service): SigV4-signed JSON
requests to ``/_store/admin/v1/`` on the S3 endpoint; long operations are followed as jobs.

Credentials: ``STORE_ACCESS_KEY``/``STORE_SECRET_KEY`` (or ``AWS_ACCESS_KEY_ID``/
``AWS_SECRET_ACCESS_KEY``) from the environment, else a ``credentials.json`` (the one ``store
serve`` writes into its data directory). HTTPS endpoints are verified against the system's CAs
or ``--ca-bundle`` / ``AWS_CA_BUNDLE``.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from store.s3 import sigv4

PREFIX = "/_store/admin/v1/"
POLL_S = 0.25
TIMEOUT_S = 60.0


class AdminError(Exception):
    """The service refused or failed an admin request (its error code and message)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str

    def __repr__(self) -> str:  # never show the secret
        return f"Credentials(access_key={self.access_key!r})"


def find_credentials(env: Mapping[str, str] = os.environ, file: Path | None = None) -> Credentials:
    for access, secret in (
        ("STORE_ACCESS_KEY", "STORE_SECRET_KEY"),
        ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
    ):
        if env.get(access) and env.get(secret):
            return Credentials(env[access], env[secret])
    path = file or Path("./data/credentials.json")
    try:
        saved = json.loads(path.read_text())
        return Credentials(saved["access_key"], saved["secret_key"])
    except (OSError, ValueError, KeyError):
        raise AdminError(
            0,
            "NoCredentials",
            f"no credentials: set STORE_ACCESS_KEY and STORE_SECRET_KEY, or give a readable "
            f"credentials file (tried {path})",
        ) from None


class AdminClient:
    def __init__(
        self,
        endpoint: str,
        credentials: Credentials,
        *,
        region: str = "us-east-1",
        ca_bundle: str | None = None,
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise AdminError(
                0, "BadEndpoint", f"the endpoint must be http(s)://HOST:PORT, not {endpoint!r}"
            )
        self.scheme = parts.scheme
        self.netloc = parts.netloc
        self.host = parts.hostname
        self.port = parts.port
        self.credentials = credentials
        self.region = region
        self.timeout_s = timeout_s
        cafile = ca_bundle or os.environ.get("AWS_CA_BUNDLE") or None
        self.tls = ssl.create_default_context(cafile=cafile) if parts.scheme == "https" else None

    def _request(self, method: str, path: str, body: bytes = b"") -> tuple[int, Any]:
        digest = hashlib.sha256(body).hexdigest()
        headers = [("host", self.netloc), ("content-type", "application/json")]
        headers += sigv4.authorization(
            method,
            path,
            "",
            headers,
            digest,
            access_key=self.credentials.access_key,
            secret_key=self.credentials.secret_key,
            region=self.region,
        )
        conn: http.client.HTTPConnection
        if self.tls is not None:
            conn = http.client.HTTPSConnection(
                self.host, self.port, timeout=self.timeout_s, context=self.tls
            )
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
        try:
            conn.request(method, path, body=body, headers=dict(headers))
            response = conn.getresponse()
            raw = response.read()
        except OSError as e:
            raise AdminError(
                0, "Unreachable", f"cannot reach {self.scheme}://{self.netloc}: {e}"
            ) from None
        finally:
            conn.close()
        try:
            answer = json.loads(raw) if raw else {}
        except ValueError:
            raise AdminError(
                response.status, "BadAnswer", raw[:200].decode(errors="replace")
            ) from None
        if response.status >= 300 or (isinstance(answer, dict) and "error" in answer):
            error = answer if isinstance(answer, dict) else {}
            raise AdminError(
                response.status,
                str(error.get("error", response.status)),
                str(error.get("message", "")),
            )
        return response.status, answer

    def call(
        self,
        operation: str,
        args: Mapping[str, Any] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> Any:
        """The operation's result; a job is followed to its end (``progress(done, total)``)."""
        body = json.dumps({"args": dict(args or {})}).encode()
        status, answer = self._request("POST", PREFIX + operation, body)
        if status != 202:
            return answer["result"]
        job = answer["job"]
        while job["state"] == "running":
            if progress is not None:
                progress(int(job.get("done", 0)), int(job.get("total", 0)))
            time.sleep(POLL_S)
            job = self._request("GET", f"{PREFIX}jobs/{job['job']}")[1]["job"]
        if progress is not None:
            progress(int(job.get("done", 0)), int(job.get("total", 0)))
        if job["state"] != "done":
            raise AdminError(
                500, "JobFailed", f"{operation} {job['state']}: {job.get('error', '')}"
            )
        return job["result"]
