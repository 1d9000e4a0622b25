"""S3 load for fault tests: writes and reads in a thread while processes are killed."""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from tests.integration.conftest import make_client


@dataclass
class Load:
    """S3 writes and reads in a thread: each round writes a new object, then reads back one
    acknowledged before (at random). Outcomes are kept as (what, "ok" or the error code,
    seconds), what being "put" or "get"; ``written`` holds the acknowledged writes."""

    endpoint: str
    bucket: str = "load"
    outcomes: list[tuple[str, str, float]] = field(default_factory=list)
    written: dict[str, bytes] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    @contextmanager
    def running(self) -> Iterator[Load]:
        worker = threading.Thread(target=self.run)
        worker.start()
        try:
            yield self
        finally:
            self.stop.set()
            worker.join(60)

    def run(self) -> None:
        from botocore.config import Config

        s3 = make_client(self.endpoint, config=Config(retries={"max_attempts": 1}, read_timeout=30))
        rng = random.Random(7)
        i = 0
        while not self.stop.is_set():
            key, body = f"load-{i}", os.urandom(2000 + i % 5000)
            self._timed(
                "put",
                lambda key=key, body=body: s3.put_object(Bucket=self.bucket, Key=key, Body=body),
            )
            if self.outcomes[-1][1] == "ok":
                self.written[key] = body
            if self.written:
                old = rng.choice(sorted(self.written))

                def get(old: str = old) -> None:
                    got = s3.get_object(Bucket=self.bucket, Key=old)["Body"].read()
                    assert got == self.written[old], f"{old} read back wrong"

                self._timed("get", get)
            i += 1

    def _timed(self, what: str, call: Callable[[], object]) -> None:
        began = time.monotonic()
        try:
            call()
            outcome = "ok"
        except ClientError as e:
            outcome = str(e.response["Error"]["Code"])
        self.outcomes.append((what, outcome, time.monotonic() - began))

    def since(self, mark: int, what: str = "") -> list[str]:
        """The outcomes from ``mark`` on (of ``what`` only, if given)."""
        return [o for w, o, _ in self.outcomes[mark:] if not what or w == what]

    def check_all_written(self) -> None:
        s3 = make_client(self.endpoint)
        for key, body in self.written.items():
            assert s3.get_object(Bucket=self.bucket, Key=key)["Body"].read() == body, key
