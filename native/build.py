"""cffi build of store's native library (API mode): `pip install` runs this through cffi_modules.

`python native/build.py --sanitize OUTDIR` builds an AddressSanitizer + UBSan variant of the same
module into OUTDIR (see `make asan`); nothing else differs between the two builds.
"""

from __future__ import annotations

import os
import re
import sys
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


def have_liburing() -> bool:
    """liburing's header and library are installed (Debian: liburing-dev); STORE_NO_LIBURING=1
    builds without it, as on a machine that lacks it."""
    if os.environ.get("STORE_NO_LIBURING"):
        return False
    return any(Path(d, "liburing.h").exists() for d in ("/usr/include", "/usr/local/include"))


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
    if len(sys.argv) == 3 and sys.argv[1] == "--sanitize":
        out = make_ffi(sanitize=True).compile(tmpdir=sys.argv[2], verbose=False)
        print(out)
    else:
        sys.exit("usage: native/build.py --sanitize OUTDIR")
