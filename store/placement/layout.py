"""Redundancy schemes and the default scheme for a number of drives (pure).

| drives | default scheme | survives |
| --- | --- | --- |
| 1 | 1 copy | nothing (a single drive) |
| 2-3 | mirror: one copy per drive | n - 1 drive losses |
| 4-7 | EC k = n - 2, m = 2 (6 drives: 4+2) | 2 drive losses |
| 8-11 | EC k = n - 3, m = 3 | 3 drive losses |
| 12+ | EC k = w - 4, m = 4 with stripe width w = min(n, 16) | 4 drive losses |

Mirrors are plain copies rather than RS(1, m): RS(1, m) parity is a scaled copy, costing a decode
on every degraded read for no gain. Config may override the default (``scheme_from_spec``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from store.errors import InvalidArgument

MAX_STRIPE_WIDTH = 16


@dataclass(frozen=True, slots=True)
class Replicated:
    copies: int

    @property
    def width(self) -> int:
        return self.copies

    @property
    def min_shards(self) -> int:
        """Shards that must be readable to serve data."""
        return 1

    def __str__(self) -> str:
        return f"replicas:{self.copies}"


@dataclass(frozen=True, slots=True)
class ErasureCoded:
    k: int
    m: int

    @property
    def width(self) -> int:
        return self.k + self.m

    @property
    def min_shards(self) -> int:
        return self.k

    def __str__(self) -> str:
        return f"ec:{self.k}+{self.m}"


Scheme = Replicated | ErasureCoded


def default_scheme(drives: int) -> Scheme:
    """The scheme a node with ``drives`` drives uses unless configured otherwise.

    >>> [str(default_scheme(n)) for n in (1, 2, 3, 4, 6, 8, 12, 20)]
    ['replicas:1', 'replicas:2', 'replicas:3', 'ec:2+2', 'ec:4+2', 'ec:5+3', 'ec:8+4', 'ec:12+4']
    """
    if drives < 1:
        raise InvalidArgument("need at least one drive")
    if drives <= 3:
        return Replicated(drives)
    if drives <= 7:
        return ErasureCoded(drives - 2, 2)
    if drives <= 11:
        return ErasureCoded(drives - 3, 3)
    width = min(drives, MAX_STRIPE_WIDTH)
    return ErasureCoded(width - 4, 4)


def parse_scheme(spec: str) -> Scheme:
    """Parse ``replicas:N`` or ``ec:K+M`` (the form ``str(scheme)`` gives).

    >>> parse_scheme("ec:4+2"), parse_scheme("replicas:2")
    (ErasureCoded(k=4, m=2), Replicated(copies=2))
    """
    if found := re.fullmatch(r"replicas:(\d+)", spec):
        scheme: Scheme = Replicated(int(found[1]))
        if scheme.width < 1:
            raise InvalidArgument(f"{spec}: needs at least one copy")
    elif found := re.fullmatch(r"ec:(\d+)\+(\d+)", spec):
        scheme = ErasureCoded(int(found[1]), int(found[2]))
        if scheme.k < 1 or scheme.m < 1:
            raise InvalidArgument(f"{spec}: EC needs k >= 1 and m >= 1")
    else:
        raise InvalidArgument(f"{spec!r}: expected auto, replicas:N or ec:K+M")
    return scheme


def scheme_from_spec(spec: str, drives: int) -> Scheme:
    """Parse ``auto``, ``replicas:N`` or ``ec:K+M`` and check it fits ``drives`` drives.

    >>> scheme_from_spec("ec:4+2", 6)
    ErasureCoded(k=4, m=2)
    """
    scheme = default_scheme(drives) if spec == "auto" else parse_scheme(spec)
    if scheme.width > min(drives, 32):
        raise InvalidArgument(f"{spec}: needs {scheme.width} drives, {drives} available")
    return scheme


def write_quorum(scheme: Scheme) -> int:
    """Shards that must be durable before a write is acknowledged: one more than the minimum
    needed to read, so an acknowledged write survives the loss of any one of its drives (when the
    scheme has room for that).

    >>> write_quorum(ErasureCoded(4, 2)), write_quorum(Replicated(1)), write_quorum(Replicated(3))
    (5, 1, 2)
    """
    return min(scheme.width, scheme.min_shards + 1)
