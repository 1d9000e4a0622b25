#!/usr/bin/env python3
"""Erasure-coding and CRC32C throughput: our kernels against their peers, in the same run.

    .venv/bin/python bench/ec.py                 # full run, ~1-2 minutes on one core
    .venv/bin/python bench/ec.py --quick         # smoke run (CI), well under 20 s
    .venv/bin/python bench/ec.py --json-only     # JSON lines only, no table
    .venv/bin/python bench/ec.py --out DIR       # also DIR/ec.jsonl and DIR/ec.png

One JSON line per measurement goes to stdout (every line starts with ``{``); the human table goes
to stderr. Every line carries the CPU, the commit, our kernel (``kernel``, null when the line
measures no kernel of ours), the case, the peer it was compared against, our GB/s (``gbps``), the
peer's (``peer_gbps``) and ``ratio`` = ours / peer. A peer that cannot run gets a line with a
``skipped`` reason; nothing is skipped silently.

GB/s is decimal (1e9 bytes/s) of data input: k * shard_bytes per encode or reconstruct call, the
buffer length for CRC32C and memcpy. One core, no threads. Each figure is the best (minimum time)
of several repetitions; within a repetition every contender of a case runs once, in rotating order,
on the same buffers, so background noise hits ours and the peers alike.

Peers: ISA-L 2.32 as bundled in the pyeclib wheel and Debian's libisal2 (2.30), both called
directly through cffi ABI mode with prebuilt pointer arrays and tables (the decode matrix for the
loss pattern is built once, as a caller of ISA-L would cache it); pyeclib itself (adds fragment
headers and copies; GB/s of its payload); the ``crc32c`` PyPI package; memcpy as the memory limit.
Install them with ``pip install -e '.[bench]'`` and ``apt-get install libisal2``.
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import itertools
import json
import os
import platform
import random
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchlib import cpu_model, git_commit

from store import native

try:
    import numpy
except ImportError:  # only for the read-bandwidth reference line
    numpy = None

KIB = 1024
MIB = 1024 * KIB
ROOT = Path(__file__).resolve().parent.parent
DEBIAN_ISAL = Path("/usr/lib/x86_64-linux-gnu/libisal.so.2")
# The memory limits CRC32C is measured beside: memcpy reads and writes every byte (so a CRC, which
# only reads, can beat it out of cache); numpy's uint64 sum only reads: a floor on read bandwidth.
LIMITS = {"memcpy": "memoryview[:]=", "memread": "numpy.sum(uint64)"}
HEADLINE_CODE = (8, 3)

ISAL_CDEF = """
void gf_gen_cauchy1_matrix(unsigned char *a, int m, int k);
int gf_invert_matrix(unsigned char *in_mat, unsigned char *out_mat, const int n);
void ec_init_tables(int k, int rows, unsigned char *a, unsigned char *gftbls);
void ec_encode_data(int len, int k, int rows, unsigned char *gftbls, unsigned char **data,
                    unsigned char **coding);
const char *isal_get_version_str(void);
"""
# ISA-L's erasure-coding entry points of one level each (2.32 exports them all), by our kernel of
# the same level, with the table builder each takes: the dispatcher's ec_init_tables builds GFNI
# tables on a GFNI CPU, so the pshufb entry points need the base layout explicitly.
ISAL_EC = {
    "avx2": ("ec_encode_data_avx2", "ec_init_tables_base"),
    "avx512": ("ec_encode_data_avx512", "ec_init_tables_base"),
    "gfni": ("ec_encode_data_avx512_gfni", "ec_init_tables_gfni"),
    "avx2gfni": ("ec_encode_data_avx2_gfni", "ec_init_tables_gfni"),
}
ISAL_EC_CDEF = (
    "void ec_init_tables_gfni(int k, int rows, unsigned char *a, unsigned char *t);"
    "void ec_init_tables_base(int k, int rows, unsigned char *a, unsigned char *t);"
    + "".join(
        f"void {name}(int len, int k, int rows, unsigned char *gftbls, unsigned char **data,"
        " unsigned char **coding);"
        for name, _ in ISAL_EC.values()
    )
)
# ISA-L's CRC32C (iSCSI) entry points, each at one level (2.32 exports them all; 2.30 some), and
# the kernel of ours at the same level. ISA-L's result is the inverse of the published CRC.
ISAL_CRC = {
    "crc3": "crc32_iscsi_01",  # SSE4.2: three crc32 streams merged by PCLMULQDQ
    "clmul": "crc32_iscsi_by8_02",  # PCLMULQDQ folding, 128-bit
    "vpclmul256": "crc32_iscsi_avx2",  # VPCLMULQDQ on 256-bit registers
    "vpclmul": "crc32_iscsi_by16_10",  # VPCLMULQDQ on 512-bit registers
}
ISAL_CRC_CDEF = "".join(
    f"unsigned int {name}(unsigned char *buffer, int len, unsigned int init_crc);"
    for name in ISAL_CRC.values()
)


# -- settings and environment -------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    codes: tuple[tuple[int, int], ...]
    shard_sizes: tuple[int, ...]
    ref_max_bytes: int  # the scalar `ref` kernel only runs on shards up to this size
    crc_sizes: tuple[int, ...]
    reps: int  # repetitions; the best (minimum) counts
    few_reps: int  # repetitions for the slow scalar kernels
    target_s: float  # wall time of one timed batch of calls
    overhead_shard: int = 4 * KIB


FULL = Settings(
    codes=((4, 2), (8, 3), (10, 4), (12, 4)),
    shard_sizes=(64 * KIB, 1 * MIB),
    ref_max_bytes=64 * KIB,
    crc_sizes=(4 * KIB, 64 * KIB, 64 * MIB),
    reps=12,
    few_reps=2,
    target_s=0.012,
)
QUICK = Settings(
    codes=(HEADLINE_CODE,),
    shard_sizes=(64 * KIB, 1 * MIB),
    ref_max_bytes=64 * KIB,
    crc_sizes=(64 * KIB, 64 * MIB),
    reps=3,
    few_reps=1,
    target_s=0.01,
)


def size_label(n: int) -> str:
    if n % MIB == 0:
        return f"{n // MIB} MiB"
    return f"{n // KIB} KiB" if n % KIB == 0 else f"{n} B"


def random_shards(rng: random.Random, count: int, size: int) -> list[bytearray]:
    return [bytearray(rng.randbytes(size)) for _ in range(count)]


# -- output -------------------------------------------------------------------------------------


@dataclass
class Report:
    """Collects and prints the JSON lines; every line gets the run's common fields."""

    common: dict[str, Any]
    lines: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def emit(self, **fields: Any) -> dict[str, Any]:
        line = {**self.common, **fields}
        self.lines.append(line)
        print(json.dumps(line), flush=True)
        return line

    def skipped(self, case: str, peer: str, reason: str) -> None:
        self.emit(case=case, kernel=None, peer=peer, skipped=reason)

    def note(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def check(self, ok: bool, what: str) -> bool:
        if not ok:
            self.failures.append(what)
            self.note(f"MISMATCH: {what}")
        return ok


def gbps(nbytes: int, seconds: float) -> float:
    return round(nbytes / seconds / 1e9, 3)


def ratio(ours: float, peer: float | None) -> float | None:
    return round(ours / peer, 3) if peer else None


# -- timing -------------------------------------------------------------------------------------


@dataclass
class Contender:
    name: str
    fn: Callable[[], object]
    few: bool = False  # slow scalar kernel: fewer repetitions, shorter batches
    calls: int = 1
    best: float = float("inf")  # seconds per call


def time_batch(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in itertools.repeat(None, calls):
        fn()
    return (time.perf_counter() - start) / calls


def calibrate(c: Contender, target_s: float) -> None:
    """Warm up, then pick the batch size that makes one timed batch last about target_s."""
    c.fn()
    calls = 1
    while True:
        per_call = time_batch(c.fn, calls)
        if per_call * calls >= target_s / 8 or calls >= 1 << 20:
            break
        calls *= 2
    c.calls = max(1, round(target_s / per_call))


def race(contenders: Sequence[Contender], settings: Settings) -> dict[str, float]:
    """Best seconds per call of each contender, alternating them within each repetition."""
    for c in contenders:
        calibrate(c, settings.target_s / 4 if c.few else settings.target_s)
    for rep in range(settings.reps):
        shift = rep % len(contenders)
        for c in [*contenders[shift:], *contenders[:shift]]:
            if c.few and rep >= settings.few_reps:
                continue
            c.best = min(c.best, time_batch(c.fn, c.calls))
    return {c.name: c.best for c in contenders}


# -- peers: ISA-L through cffi ABI mode ---------------------------------------------------------


class IsaL:
    """One ISA-L shared library, called directly: tables and pointer arrays are built up front."""

    def __init__(self, name: str, path: Path) -> None:
        import cffi

        self.path = path
        self.ffi = cffi.FFI()
        self.ffi.cdef(ISAL_CDEF)
        self.ffi.cdef(ISAL_CRC_CDEF)
        self.ffi.cdef(ISAL_EC_CDEF)
        # DEEPBIND: each copy of ISA-L binds to its own internals, never to the other copy's.
        flags = os.RTLD_NOW | os.RTLD_LOCAL | getattr(os, "RTLD_DEEPBIND", 0)
        self.lib = self.ffi.dlopen(str(path), flags)
        self.version = self._version()
        self.name = f"{name}-{self.version}"

    def _version(self) -> str:
        try:
            return self.ffi.string(self.lib.isal_get_version_str()).decode()
        except AttributeError:  # older than 2.31: take it from the file name (libisal.so.2.0.30)
            match = re.search(r"\.so\.(\d+)\.(\d+)\.(\d+)$", str(self.path.resolve()))
            return f"{match.group(1)}.{match.group(3)}" if match else "unknown"

    def crc_kernels(self) -> dict[str, Callable[[Any, int, int], int]]:
        """Our CRC kernel's name -> ISA-L's entry point of the same level, where it exports it
        and this CPU runs it (``cpu_ok``: the CPU has what our kernel of that level needs)."""
        out = {}
        for ours, theirs in ISAL_CRC.items():
            try:
                fn = getattr(self.lib, theirs)
            except AttributeError:
                continue
            if ours in native.supported_crc_kernels():
                out[ours] = fn
        return out

    def ec_levels(self) -> list[str]:
        """Our kernels whose ISA-L counterpart of the same level this library exports (and this
        CPU runs: it has what our kernel of that level needs)."""
        out = []
        for ours, (theirs, init) in ISAL_EC.items():
            try:  # 2.30 (Debian) has some entry points but not ec_init_tables_base
                getattr(self.lib, theirs)
                getattr(self.lib, init)
            except AttributeError:
                continue
            if ours in native.supported_isas():
                out.append(ours)
        return out

    def _entry(self, level: str | None) -> tuple[Callable[..., None], Callable[..., None]]:
        """The encode entry point of one level (the dispatcher for None) and its table builder."""
        if level is None:
            return self.lib.ec_encode_data, self.lib.ec_init_tables
        entry, init = ISAL_EC[level]
        return getattr(self.lib, entry), getattr(self.lib, init)

    def _ptrs(self, bufs: Sequence[Any]) -> Any:
        views = [self.ffi.from_buffer("unsigned char[]", b, require_writable=True) for b in bufs]
        return self.ffi.new("unsigned char *[]", views), views

    def _tables(self, k: int, rows: int, coeffs: Any, init: Callable[..., None]) -> Any:
        tables = self.ffi.new("unsigned char[]", 32 * k * rows)
        init(k, rows, coeffs, tables)
        return tables

    def encode_matrix(self, k: int, m: int) -> Any:
        a = self.ffi.new("unsigned char[]", (k + m) * k)
        self.lib.gf_gen_cauchy1_matrix(a, k + m, k)
        return a

    def encoder(
        self, k: int, m: int, data: Sequence[Any], parity: Sequence[Any], level: str | None = None
    ) -> Callable[[], object]:
        """Encode with the dispatcher's choice, or with the entry point of one level."""
        entry, init = self._entry(level)
        a = self.encode_matrix(k, m)
        tables = self._tables(k, m, a + k * k, init)
        (dptr, dkeep), (pptr, pkeep) = self._ptrs(data), self._ptrs(parity)
        call = functools.partial(entry, len(data[0]), k, m, tables, dptr, pptr)
        call.keepalive = (a, tables, dkeep, pkeep)  # type: ignore[attr-defined]
        return call

    def decoder(
        self,
        k: int,
        m: int,
        shards: Sequence[Any | None],
        out: dict[int, Any],
        level: str | None = None,
    ) -> Callable[[], object]:
        """Rebuild the lost data shards in ``out`` from the first k present shards."""
        entry, init = self._entry(level)
        a = self.encode_matrix(k, m)
        survivors = [i for i, s in enumerate(shards) if s is not None][:k]
        b = self.ffi.new("unsigned char[]", k * k)
        for row, src in enumerate(survivors):
            b[row * k : (row + 1) * k] = a[src * k : (src + 1) * k]
        inv = self.ffi.new("unsigned char[]", k * k)
        if self.lib.gf_invert_matrix(b, inv, k) != 0:
            raise RuntimeError("gf_invert_matrix: singular matrix")
        lost = sorted(out)
        if any(i >= k for i in lost):
            raise ValueError("this peer decoder rebuilds data shards only")
        c = self.ffi.new("unsigned char[]", len(lost) * k)
        for row, idx in enumerate(lost):
            c[row * k : (row + 1) * k] = inv[idx * k : (idx + 1) * k]
        tables = self._tables(k, len(lost), c, init)
        sptr, skeep = self._ptrs([shards[i] for i in survivors])
        optr, okeep = self._ptrs([out[i] for i in lost])
        size = len(shards[survivors[0]])  # type: ignore[arg-type]
        call = functools.partial(entry, size, k, len(lost), tables, sptr, optr)
        call.keepalive = (tables, skeep, okeep)  # type: ignore[attr-defined]
        return call


@dataclass
class Peers:
    isal: list[IsaL]  # the first is the headline peer (ISA-L 2.32 from the pyeclib wheel)
    pyeclib: Any | None  # the ECDriver class
    pyeclib_name: str
    crc32c: Callable[..., int] | None
    crc32c_name: str


def load_isal_peers(report: Report) -> list[IsaL]:
    peers = []
    try:
        import pyeclib

        libs_dir = Path(pyeclib.__file__).resolve().parent.parent / "pyeclib.libs"
        libs = sorted(libs_dir.glob("libisal*"))
        if libs:
            peers.append(IsaL("isal", libs[0]))
        else:
            report.skipped("peer", "isal (pyeclib wheel)", f"no libisal* in {libs_dir}")
    except ImportError:
        report.skipped("peer", "isal (pyeclib wheel)", "pyeclib not installed: pip install pyeclib")
    except Exception as e:  # a broken peer must not stop the benchmark
        report.skipped("peer", "isal (pyeclib wheel)", f"cannot load: {e}")
    if not DEBIAN_ISAL.exists():
        why = f"{DEBIAN_ISAL} missing: apt-get install libisal2"
        report.skipped("peer", "isal (Debian libisal2)", why)
    else:
        try:
            peers.append(IsaL("isal-debian", DEBIAN_ISAL))
        except Exception as e:
            report.skipped("peer", "isal (Debian libisal2)", f"cannot load {DEBIAN_ISAL}: {e}")
    return peers


def load_peers(report: Report) -> Peers:
    isal = load_isal_peers(report)
    driver, pyeclib_name = None, "pyeclib"
    try:
        from pyeclib.ec_iface import ECDriver

        ECDriver(k=4, m=2, ec_type="isa_l_rs_cauchy")
        driver = ECDriver
        pyeclib_name = f"pyeclib-{importlib.metadata.version('pyeclib')}"
    except ImportError:
        report.skipped("peer", "pyeclib", "pyeclib not installed: pip install pyeclib")
    except Exception as e:
        report.skipped("peer", "pyeclib", f"isa_l_rs_cauchy unavailable: {e}")
    crc_fn, crc_name = None, "crc32c-pkg"
    try:
        import crc32c

        crc_fn = crc32c.crc32c
        crc_name = f"crc32c-pkg-{importlib.metadata.version('crc32c')}"
    except ImportError:
        report.skipped("peer", "crc32c-pkg", "crc32c not installed: pip install crc32c")
    return Peers(isal, driver, pyeclib_name, crc_fn, crc_name)


# -- erasure coding -----------------------------------------------------------------------------


@dataclass
class EcCase:
    """The buffers of one (k, m, shard size) case, shared by us and every peer."""

    k: int
    m: int
    size: int
    data: list[bytearray]
    parity: list[bytearray]  # ours; reconstruct reads these (verified equal to ISA-L's)
    out: dict[int, bytearray]  # our rebuilt data shards 0..m-1

    @property
    def lost(self) -> list[int]:
        return list(range(self.m))

    @property
    def shards(self) -> list[bytearray | None]:
        return [None] * self.m + [*self.data[self.m :], *self.parity]

    @property
    def input_bytes(self) -> int:
        return self.k * self.size


def kernels_for(size: int, settings: Settings) -> list[str]:
    slow_ok = size <= settings.ref_max_bytes
    return [isa for isa in native.supported_isas() if isa != "ref" or slow_ok]


def ours_label(api: str, kernel: str) -> str:
    return f"{api}/{kernel}"


def isal_entries(peers: Peers) -> list[tuple[IsaL, str | None]]:
    """Every ISA-L's dispatcher (level None), then the headline ISA-L's entry point per level."""
    entries: list[tuple[IsaL, str | None]] = [(lib, None) for lib in peers.isal]
    if peers.isal:
        entries += [(peers.isal[0], level) for level in peers.isal[0].ec_levels()]
    return entries


def isal_label(lib: IsaL, level: str | None) -> str:
    return lib.name if level is None else f"{lib.name}:{level}"


def encode_contenders(
    case: EcCase, peers: Peers, settings: Settings, report: Report
) -> list[Contender]:
    """The encode contenders, each one's parity checked once against ISA-L's."""
    k, m, tag = case.k, case.m, f"RS({case.k},{case.m}) {size_label(case.size)}"
    contenders = []
    reference: list[bytearray] | None = None
    for lib, level in isal_entries(peers):
        # Peers write the buffers ours write: the same placement (and huge pages or not) for all.
        for p in case.parity:
            p[:] = bytes(case.size)
        fn = lib.encoder(k, m, case.data, case.parity, level)
        fn()
        name = isal_label(lib, level)
        if reference is None:
            reference = [bytearray(p) for p in case.parity]
        else:
            report.check(case.parity == reference, f"{name} parity != {peers.isal[0].name} {tag}")
        contenders.append(Contender(name, fn))
    for isa in kernels_for(case.size, settings):
        ec = native.ErasureCode(k, m, isa=isa)
        for p in case.parity:
            p[:] = bytes(case.size)
        ec.encode_into(case.data, case.parity)
        if reference is None:
            reference = [bytearray(p) for p in case.parity]
        report.check(case.parity == reference, f"encode_into/{isa} parity != reference {tag}")
        name = ours_label("encode_into", isa)
        fn = functools.partial(ec.encode_into, case.data, case.parity)
        contenders.append(Contender(name, fn, few=isa == "ref"))
        if isa != "ref":  # the kernel called as ISA-L is: pointer arrays built once
            prepared = ec.prepared_encode(case.data, case.parity)
            contenders.append(Contender(ours_label("prepared", isa), prepared))
    stripe = make_stripe(case)
    stripe.encode()
    report.check(
        [bytes(s) for s in stripe.shards[k:]] == [bytes(p) for p in case.parity],
        f"Stripe.encode parity != reference {tag}",
    )
    contenders.append(Contender(ours_label("Stripe.encode", stripe.ec.isa), stripe.encode))
    if peers.pyeclib is not None:
        contenders.append(pyeclib_encoder(case, peers, report))
    return contenders


def make_stripe(case: EcCase) -> native.Stripe:
    stripe = native.Stripe(native.ErasureCode(case.k, case.m), case.size)
    for dst, src in zip(stripe.shards, case.data, strict=False):
        dst[:] = src
    return stripe


def pyeclib_encoder(case: EcCase, peers: Peers, report: Report) -> Contender:
    driver = peers.pyeclib(k=case.k, m=case.m, ec_type="isa_l_rs_cauchy")
    payload = b"".join(case.data)
    frags = driver.encode(payload)
    tail = [bytes(f[len(f) - case.size :]) for f in frags[case.k :]]
    report.check(
        tail == [bytes(p) for p in case.parity],
        f"pyeclib parity != ours RS({case.k},{case.m}) {size_label(case.size)}",
    )
    return Contender(peers.pyeclib_name, functools.partial(driver.encode, payload))


def reconstruct_contenders(
    case: EcCase, peers: Peers, settings: Settings, report: Report
) -> list[Contender]:
    k, m, tag = case.k, case.m, f"RS({case.k},{case.m}) {size_label(case.size)}"
    want = case.data[:m]
    contenders = []
    shards = case.shards
    for lib, level in isal_entries(peers):
        for buf in case.out.values():
            buf[:] = bytes(case.size)
        fn = lib.decoder(k, m, shards, case.out, level)
        fn()
        name = isal_label(lib, level)
        rebuilt = [case.out[i] for i in case.lost]
        report.check(rebuilt == want, f"{name} rebuilt != original {tag}")
        contenders.append(Contender(name, fn))
    for isa in kernels_for(case.size, settings):
        ec = native.ErasureCode(k, m, isa=isa)
        for buf in case.out.values():
            buf[:] = bytes(case.size)
        ec.reconstruct_into(shards, case.out)
        rebuilt = [case.out[i] for i in case.lost]
        report.check(rebuilt == want, f"reconstruct_into/{isa} rebuilt != original {tag}")
        fn = functools.partial(ec.reconstruct_into, shards, case.out)
        contenders.append(Contender(ours_label("reconstruct_into", isa), fn, few=isa == "ref"))
        if isa != "ref":
            prepared = ec.prepared_reconstruct(shards, case.out)
            contenders.append(Contender(ours_label("prepared", isa), prepared))
    stripe = make_stripe(case)
    stripe.encode()
    for i in case.lost:
        stripe.shards[i][:] = bytes(case.size)
    stripe.reconstruct(case.lost)
    rebuilt = [bytes(stripe.shards[i]) for i in case.lost]
    report.check(rebuilt == [bytes(d) for d in want], f"Stripe.reconstruct != original {tag}")
    name = ours_label("Stripe.reconstruct", stripe.ec.isa)
    contenders.append(Contender(name, functools.partial(stripe.reconstruct, case.lost)))
    if peers.pyeclib is not None:
        driver = peers.pyeclib(k=k, m=m, ec_type="isa_l_rs_cauchy")
        payload = b"".join(case.data)
        survivors = driver.encode(payload)[m:]
        report.check(driver.decode(survivors) == payload, f"pyeclib decode != original {tag}")
        decode = functools.partial(driver.decode, survivors)
        contenders.append(Contender(peers.pyeclib_name, decode))
    return contenders


def emit_ec(report: Report, peers: Peers, case: EcCase, op: str, best: dict[str, float]) -> None:
    """Ours (every kernel, every api) against the headline peer; other peers against our default."""
    default = native.active_isa()
    fields = {"case": op, "k": case.k, "m": case.m, "shard_bytes": case.size}
    if op == "reconstruct":
        fields["lost_data_shards"] = case.m
    nbytes = case.input_bytes
    rate = {name: gbps(nbytes, t) for name, t in best.items()}
    peer_names = [lib.name for lib in peers.isal] + ([peers.pyeclib_name] if peers.pyeclib else [])
    headline = peer_names[0] if peer_names else None
    for name, value in rate.items():
        if name in peer_names or ":" in name:
            continue
        api, kernel = name.split("/")
        same_level = rate.get(f"{headline}:{kernel}") if headline else None
        report.emit(
            **fields,
            api=api,
            kernel=kernel,
            gbps=value,
            peer=headline,
            peer_gbps=rate.get(headline) if headline else None,
            ratio=ratio(value, rate.get(headline)) if headline else None,
            # ISA-L's entry point of the same level (issue 14's bar: >= 1.0 at every level)
            isal_peer=f"{headline}:{kernel}" if same_level else None,
            isal_gbps=same_level,
            isal_ratio=ratio(value, same_level) if same_level else None,
        )
    ours_default = rate[ours_label(f"{op}_into", default)]
    for peer in peer_names[1:]:
        report.emit(
            **fields,
            api=f"{op}_into",
            kernel=default,
            gbps=ours_default,
            peer=peer,
            peer_gbps=rate[peer],
            ratio=ratio(ours_default, rate[peer]),
        )


def run_ec(report: Report, peers: Peers, settings: Settings, rng: random.Random) -> None:
    for (k, m), size in itertools.product(settings.codes, settings.shard_sizes):
        case = EcCase(
            k,
            m,
            size,
            random_shards(rng, k, size),
            [bytearray(size) for _ in range(m)],
            {i: bytearray(size) for i in range(m)},
        )
        contenders = encode_contenders(case, peers, settings, report)
        emit_ec(report, peers, case, "encode", race(contenders, settings))
        contenders = reconstruct_contenders(case, peers, settings, report)
        emit_ec(report, peers, case, "reconstruct", race(contenders, settings))


def run_overhead(report: Report, peers: Peers, settings: Settings, rng: random.Random) -> None:
    """Microseconds per call on small shards, where the call itself is most of the cost."""
    k, m = HEADLINE_CODE
    size = settings.overhead_shard
    data = random_shards(rng, k, size)
    parity = [bytearray(size) for _ in range(m)]
    ec = native.ErasureCode(k, m)
    stripe = make_stripe(EcCase(k, m, size, data, parity, {}))
    contenders = [
        Contender("encode_into", functools.partial(ec.encode_into, data, parity)),
        Contender("Stripe.encode", stripe.encode),
    ]
    peer = peers.isal[0] if peers.isal else None
    if peer is not None:
        contenders.append(Contender(peer.name, peer.encoder(k, m, data, parity)))  # same buffers
    best = race(contenders, settings)
    peer_s = best.get(peer.name) if peer else None
    for api in ("encode_into", "Stripe.encode"):
        report.emit(
            case="overhead",
            api=api,
            k=k,
            m=m,
            shard_bytes=size,
            kernel=ec.isa,
            us_per_call=round(best[api] * 1e6, 3),
            gbps=gbps(k * size, best[api]),
            peer=peer.name if peer else None,
            peer_us_per_call=round(peer_s * 1e6, 3) if peer_s else None,
            peer_gbps=gbps(k * size, peer_s) if peer_s else None,
            ratio=ratio(peer_s or 0.0, best[api]) if peer_s else None,
            extra_us_vs_peer=round((best[api] - peer_s) * 1e6, 3) if peer_s else None,
        )


# -- CRC32C and memcpy --------------------------------------------------------------------------


def crc_contenders(buf: bytearray, dst: bytearray, peers: Peers, report: Report) -> list[Contender]:
    want = native.crc32c(buf)
    contenders = []
    for kernel in native.supported_crc_kernels():
        report.check(
            native.crc32c_with(kernel, buf) == want, f"crc32c_with({kernel}) != crc32c() {len(buf)}"
        )
        fn = functools.partial(native.crc32c_with, kernel, buf)
        contenders.append(Contender(f"crc32c_with/{kernel}", fn, few=kernel == "sw"))
    default = functools.partial(native.crc32c, buf)
    contenders.append(Contender(f"crc32c/{native.active_crc_kernel()}", default))
    if peers.crc32c is not None:
        report.check(peers.crc32c(buf) == want, f"{peers.crc32c_name} != crc32c() {len(buf)}")
        contenders.append(Contender(peers.crc32c_name, functools.partial(peers.crc32c, buf)))
    for isal in peers.isal[:1]:  # the headline ISA-L, level by level
        for ours, fn in isal.crc_kernels().items():
            # A view of the Python buffer per call, as crc32c() takes: the same call cost.
            def call(fn: Any = fn, isal: IsaL = isal) -> int:
                return int(fn(isal.ffi.from_buffer("unsigned char[]", buf), len(buf), 0xFFFFFFFF))

            report.check(call() ^ 0xFFFFFFFF == want, f"{isal.name} {ours}-level != crc32c()")
            contenders.append(Contender(f"{isal.name}:{ours}", call))
    copy = functools.partial(memoryview(dst).__setitem__, slice(None), buf)
    contenders.append(Contender("memcpy", copy))
    if numpy is not None and len(buf) >= 64 * KIB and len(buf) % 8 == 0:  # else: call overhead
        contenders.append(Contender("memread", numpy.frombuffer(buf, numpy.uint64).sum))
    return contenders


def run_crc(report: Report, peers: Peers, settings: Settings, rng: random.Random) -> None:
    if numpy is None:
        report.skipped("memread", "numpy", "numpy not installed (pip install numpy): no read limit")
    for size in settings.crc_sizes:
        buf = bytearray(rng.randbytes(size))
        dst = bytearray(size)
        best = race(crc_contenders(buf, dst, peers, report), settings)
        rate = {name: gbps(size, t) for name, t in best.items()}
        peer = peers.crc32c_name if peers.crc32c else None
        isal = peers.isal[0].name if peers.isal else None
        for name, value in rate.items():
            if name == peer or name in LIMITS or ":" in name:
                continue
            api, kernel = name.split("/")
            same_level = rate.get(f"{isal}:{kernel}") if isal else None
            report.emit(
                case="crc32c",
                api=api,
                bytes=size,
                kernel=kernel,
                gbps=value,
                peer=peer,
                peer_gbps=rate.get(peer) if peer else None,
                ratio=ratio(value, rate.get(peer)) if peer else None,
                # ISA-L's entry point of the same level (issue 14's bar: >= 1.0 at every level)
                isal_peer=f"{isal}:{kernel}" if same_level else None,
                isal_gbps=same_level,
                isal_ratio=ratio(value, same_level) if same_level else None,
                memcpy_gbps=rate["memcpy"],
                memread_gbps=rate.get("memread"),
            )
        for name in ("memcpy", "memread"):
            if name in rate:
                report.emit(
                    case=name,
                    api=LIMITS[name],
                    bytes=size,
                    kernel=None,
                    gbps=rate[name],
                    peer=None,
                    peer_gbps=None,
                    ratio=None,
                )


# -- summary, table, plot -----------------------------------------------------------------------


def find(report: Report, **want: Any) -> dict[str, Any] | None:
    for line in report.lines:
        if all(line.get(key) == value for key, value in want.items()):
            return line
    return None


def run_headlines(report: Report, peers: Peers) -> None:
    isal = peers.isal[0].name if peers.isal else None
    k, m = HEADLINE_CODE
    bars = [
        (
            "encode_into RS(8,3) 1 MiB vs ISA-L",
            1.0,
            {"case": "encode", "api": "encode_into", "k": k, "m": m, "shard_bytes": MIB},
            isal,
        ),
        (
            f"reconstruct_into RS(8,3) 1 MiB, {m} data shards lost, vs ISA-L",
            None,
            {"case": "reconstruct", "api": "reconstruct_into", "k": k, "m": m, "shard_bytes": MIB},
            isal,
        ),
        (
            "crc32c() 64 MiB vs crc32c package",
            1.5,
            {"case": "crc32c", "api": "crc32c", "bytes": 64 * MIB},
            peers.crc32c_name,
        ),
    ]
    for name, bar, where, peer in bars:
        kernel = native.active_crc_kernel() if where["case"] == "crc32c" else native.active_isa()
        line = find(report, **where, kernel=kernel, peer=peer) if peer else None
        if line is None:
            why = "peer missing (see its skipped line)" if peer is None else "case not in this run"
            report.emit(case="headline", name=name, kernel=kernel, peer=peer, skipped=why)
            continue
        report.emit(
            case="headline",
            name=name,
            kernel=kernel,
            gbps=line["gbps"],
            peer=peer,
            peer_gbps=line["peer_gbps"],
            ratio=line["ratio"],
            bar=bar,
            meets_bar=None if bar is None else line["ratio"] >= bar,
        )
    for op in ("encode", "reconstruct"):
        for level in peers.isal[0].ec_levels() if peers.isal else ():
            api = "prepared"  # called as ISA-L is, on the same buffers: kernel against kernel
            where = {"case": op, "api": api, "k": k, "m": m, "shard_bytes": MIB, "kernel": level}
            line = find(report, **where)
            if line is None or line.get("isal_ratio") is None:
                name = f"{op} {api}/{level} RS(8,3) 1 MiB vs ISA-L of the same level"
                report.emit(case="headline", name=name, kernel=level, skipped="case not in run")
                continue
            report.emit(
                case="headline",
                name=f"{op} {api}/{level} RS(8,3) 1 MiB vs ISA-L of the same level",
                kernel=level,
                gbps=line["gbps"],
                peer=line["isal_peer"],
                peer_gbps=line["isal_gbps"],
                ratio=line["isal_ratio"],
                bar=1.0,
                meets_bar=line["isal_ratio"] >= 1.0,
            )


def fmt(value: Any, spec: str = "") -> str:
    return "-" if value is None else format(value, spec)


def table_row(line: dict[str, Any]) -> str:
    case = line["case"]
    if "skipped" in line:
        what = line.get("name") or line.get("peer") or ""
        return f"{case:<12} {what:<44} skipped: {line['skipped']}"
    if case == "headline":
        text = (
            f"{line['name']:<60} {line['gbps']:6.2f} vs {line['peer_gbps']:6.2f} GB/s "
            f"({line['peer']})  x{line['ratio']:.3f}"
        )
        if line["bar"] is not None:
            text += f"  bar >= {line['bar']}: {'PASS' if line['meets_bar'] else 'FAIL'}"
        return text
    if case in ("encode", "reconstruct", "overhead"):
        what = f"RS({line['k']},{line['m']}) {size_label(line['shard_bytes'])}"
    else:
        what = size_label(line["bytes"])
    label = f"{line['api']}/{line['kernel'] or '-'}"
    text = f"{case:<12} {what:<16} {label:<27} {line['gbps']:8.2f} GB/s"
    if line.get("peer"):
        text += f"  {line['peer']:<26} {line['peer_gbps']:8.2f} GB/s  x{line['ratio']:.2f}"
    if line.get("isal_ratio") is not None:
        text += f"  same level x{line['isal_ratio']:.2f}"
    if case == "overhead":
        peer_us = line["peer_us_per_call"]
        text += f"  {line['us_per_call']:.2f} us/call (peer {fmt(peer_us, '.2f')})"
    return text


def print_table(report: Report) -> None:
    c = report.common
    report.note(
        f"\nCPU {c['cpu']}  commit {c['commit']}  default EC kernel {c['active_isa']}"
        f"  CRC kernel {c['active_crc']}  (GB/s = 1e9 B/s of data input, one core)"
    )
    header = (
        f"{'case':<12} {'size':<16} {'ours api/kernel':<27} {'ours':>8}       "
        f"{'peer':<26} {'peer':>8}       ratio"
    )
    report.note(header)
    report.note("-" * len(header))
    for line in report.lines:
        if line["case"] == "headline" and "skipped" not in line:
            continue
        report.note(table_row(line))
    report.note("\nheadlines (ours = default kernel):")
    for line in report.lines:
        if line["case"] == "headline" and "skipped" not in line:
            report.note("  " + table_row(line))
    for failure in report.failures:
        report.note(f"CORRECTNESS FAILURE: {failure}")


def plot(report: Report, out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        report.note("matplotlib not importable: no plot (pip install matplotlib)")
        return
    series: dict[str, dict[tuple[int, int], float]] = {}
    for line in report.lines:
        if line["case"] != "encode" or line.get("shard_bytes") != MIB or "skipped" in line:
            continue
        code = (line["k"], line["m"])
        series.setdefault(f"{line['api']}/{line['kernel']}", {})[code] = line["gbps"]
        if line.get("peer"):
            series.setdefault(line["peer"], {})[code] = line["peer_gbps"]
    codes = sorted({code for values in series.values() for code in values})
    if not codes:
        report.note("no 1 MiB encode results: no plot")
        return
    fig, ax = plt.subplots(figsize=(max(8, 2.5 * len(codes)), 5))
    width = 0.8 / len(series)
    order = sorted(series, key=lambda name: "/" not in name)  # ours first, then the peers
    for i, name in enumerate(order):
        values = series[name]
        xs = [j + i * width for j, code in enumerate(codes) if code in values]
        ax.bar(xs, [values[code] for code in codes if code in values], width, label=name)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(codes))])
    ax.set_xticklabels([f"RS({k},{m})" for k, m in codes])
    ax.set_ylabel("GB/s of data input (one core)")
    c = report.common
    ax.set_title(f"encode, 1 MiB shards - {c['cpu']} - {c['commit']}", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "ec.png", dpi=120)
    report.note(f"wrote {out / 'ec.png'}")


# -- main ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few cases and iterations (CI smoke)")
    parser.add_argument("--json-only", action="store_true", help="print the JSON lines only")
    parser.add_argument("--out", type=Path, help="also write DIR/ec.jsonl and DIR/ec.png")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = QUICK if args.quick else FULL
    common = {
        "bench": "ec",
        "cpu": cpu_model(),
        "commit": git_commit(),
        "active_isa": native.active_isa(),
        "active_crc": native.active_crc_kernel(),
        "quick": args.quick,
        "reps": settings.reps,
        "python": platform.python_version(),
    }
    report = Report(common)
    rng = random.Random(20240601)
    started = time.perf_counter()
    peers = load_peers(report)
    run_ec(report, peers, settings, rng)
    run_overhead(report, peers, settings, rng)
    run_crc(report, peers, settings, rng)
    run_headlines(report, peers)
    if not args.json_only:
        print_table(report)
        report.note(f"ran in {time.perf_counter() - started:.1f} s")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "ec.jsonl").write_text("".join(json.dumps(x) + "\n" for x in report.lines))
        plot(report, args.out)
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
