"""Lay out OUTDIR as a mirror of the project whose compiled module is the sanitized build that
`native/build.py --sanitize OBJDIR` left in OBJDIR/store. Python files, tests/ and pyproject.toml
are symlinks, so the tests run today's code; only store/_native*.so differs. Run pytest with OUTDIR
as the working directory (pytest puts its rootdir first on sys.path) to use it."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "store"


def main(objdir: str, outdir: str) -> None:
    built = list((Path(objdir) / "store").glob("_native*.so"))
    if not built:
        sys.exit(f"no sanitized store/_native*.so under {objdir}: run native/build.py --sanitize")
    dest = Path(outdir) / "store"
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("_native*.so"):
        old.unlink()
    shutil.copy2(built[0], dest / built[0].name)
    for path in SRC.rglob("*.py"):
        link = dest / path.relative_to(SRC)
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(path)
    for name in ("tests", "pyproject.toml"):
        link = Path(outdir) / name
        if not link.is_symlink():
            link.symlink_to(ROOT / name)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
