"""cffi build of store's native library (API mode): `pip install` runs this through cffi_modules.

`python native/build.py --sanitize OUTDIR` builds an AddressSanitizer + UBSan variant of the same
module into OUTDIR (see `make asan`); nothing else differs between the two builds.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from cffi import FFI

NATIVE = Path(__file__).resolve().parent
HEADER = NATIVE / "include" / "store_native.h"
SANITIZE_FLAGS = [
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
    "-fno-omit-frame-pointer",
]


def _cdef_from_header() -> str:
    """The header minus preprocessor lines cffi cannot parse; integer #defines are kept."""
    lines = []
    for line in HEADER.read_text().splitlines():
        if line.startswith("#define STORE_") and not line.startswith("#define STORE_NATIVE_H"):
            name, value = line.split()[1:3]
            lines.append(f"#define {name} {value.strip('()')}")
        elif not line.startswith("#"):
            lines.append(line)
    text = "\n".join(lines)
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


# What ring.c needs of liburing (2.2+): a program that compiles and links only when it is there.
_URING_PROBE = """#include <liburing.h>
int main(void) {
    struct io_uring ring;
    struct io_uring_sqe sqe;
    io_uring_sqe_set_data64(&sqe, 1);
    return io_uring_queue_init(8, &ring, IORING_SETUP_SUBMIT_ALL);
}
"""


@functools.cache
def have_liburing() -> bool:
    """A liburing recent enough for ring.c compiles and links here (Debian 12: liburing-dev);
    else the ring reports ENOSYS. STORE_NO_LIBURING=1 builds without it, as on a machine that
    lacks it."""
    if os.environ.get("STORE_NO_LIBURING"):
        return False
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp, "probe.c")
        source.write_text(_URING_PROBE)
        cc = os.environ.get("CC", "gcc")
        argv = [cc, str(source), "-o", str(Path(tmp, "probe")), "-luring"]
        try:
            return subprocess.run(argv, capture_output=True).returncode == 0
        except OSError:
            return False


def uring_flags() -> list[str]:
    """The compiler and linker flags for the ring (none without liburing): for the Makefile's
    direct gcc builds (the C self-check), so they decide as this build does."""
    return ["-DSTORE_HAVE_LIBURING", "-luring"] if have_liburing() else []


def make_ffi(sanitize: bool = False) -> FFI:
    ffi = FFI()
    ffi.cdef(_cdef_from_header())
    # setuptools wants paths relative to the project root, where pip runs us; ffi.compile() runs
    # the compiler inside its tmpdir, so the sanitized build uses absolute paths.
    root = NATIVE.parent

    def path(p: Path) -> str:
        return str(p) if sanitize else os.path.relpath(p, root)

    sources = sorted(path(p) for p in (NATIVE / "src").glob("*.c"))
    flags = ["-O3", "-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-fvisibility=hidden"]
    link = ["-lpthread"]
    if have_liburing():  # else the ring reports ENOSYS and drives use their threads
        flags.append("-DSTORE_HAVE_LIBURING")
        link.append("-luring")
    if sanitize:
        flags = [*flags, *SANITIZE_FLAGS, "-g", "-O1"]
        link = [*link, *SANITIZE_FLAGS]
    ffi.set_source(
        "store._native",
        '#include "store_native.h"',
        sources=sources,
        include_dirs=[path(NATIVE / "include")],
        extra_compile_args=flags,
        extra_link_args=link,
    )
    return ffi


ffibuilder = make_ffi()

if __name__ == "__main__":
    if sys.argv[1:] == ["--uring-flags"]:
        print(" ".join(uring_flags()))
    elif len(sys.argv) == 3 and sys.argv[1] == "--sanitize":
        out = make_ffi(sanitize=True).compile(tmpdir=sys.argv[2], verbose=False)
        print(out)
    else:
        sys.exit("usage: native/build.py --sanitize OUTDIR | --uring-flags")
