"""The `store` command."""

from __future__ import annotations

import argparse
import json
import sys

from store import __version__


def _native_info(args: argparse.Namespace) -> int:
    from store import native

    try:
        info = {
            "isa": native.active_isa(),
            "crc32c": native.active_crc_kernel(),
            "supported_isas": native.supported_isas(),
            "supported_crc32c": native.supported_crc_kernels(),
            "max_shards": native.MAX_SHARDS,
        }
    except native.NativeConfigError as e:
        print(f"store: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(info))
        return 0
    isas = ", ".join(native.supported_isas())
    crcs = ", ".join(native.supported_crc_kernels())
    print(f"erasure coding kernel: {info['isa']} (supported: {isas})")
    print(f"crc32c kernel:         {info['crc32c']} (supported: {crcs})")
    print(f"max shards (k + m):    {info['max_shards']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="store", description="Object (S3) and block (NBD) storage."
    )
    parser.add_argument("--version", action="version", version=f"store {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = sub.add_parser("native-info", help="show the native kernels chosen for this CPU")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(func=_native_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
