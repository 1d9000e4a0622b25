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


def _engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="./data", help="data directory (default ./data)")
    p.add_argument("--drives", type=int, default=6, help="drive directories under DATA")
    p.add_argument(
        "--drive", action="append", default=[], metavar="PATH", help="a drive (repeatable)"
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def _maintenance(args: argparse.Namespace) -> int:
    """scrub / heal / gc on a data directory (the service may be running)."""
    from pathlib import Path

    import trio
    from tqdm import tqdm

    from store.node import open_local_engine
    from store.objects import maintenance

    drives = [Path(d) for d in args.drive] or args.drives

    async def run() -> dict[str, object]:
        async with open_local_engine(Path(args.data), drives=drives, clean_tmp=False) as engine:
            if args.command == "gc":
                removed = await maintenance.collect_garbage(engine)
                orphans = await maintenance.sweep_orphans(engine, grace_s=args.grace)
                return {"garbage_chunks_removed": removed, "orphan_shards_removed": orphans}
            bar = tqdm(total=0, unit="chunk", disable=args.json or None, file=sys.stderr)

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            rate = args.rate * 1e6 if args.rate else None
            try:
                report = await maintenance.scrub(
                    engine, repair=args.command == "heal", rate_bytes_s=rate, progress=progress
                )
            finally:
                bar.close()
            summary: dict[str, object] = dict(report.as_dict())
            summary["orphan_shards"] = await maintenance.sweep_orphans(engine, dry_run=True)
            summary["clean"] = report.clean
            return summary

    summary = trio.run(run)
    if args.json:
        print(json.dumps(summary))
    else:
        for name, value in summary.items():
            print(f"{name:>16}: {value}")
    if args.command == "scrub" and not summary["clean"]:
        return 1
    if args.command == "heal" and summary.get("unrepairable"):
        return 1
    return 0


def _serve(args: argparse.Namespace) -> int:
    from pathlib import Path

    from store.app import ServeConfig, WorkerFds, default_workers, parse_address, run

    host, port = parse_address(args.s3)
    drives = [Path(d) for d in args.drive] or args.drives
    if bool(args.tls_cert) != bool(args.tls_key):
        print("store serve: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    config = ServeConfig(Path(args.data), host, port, drives, args.scheme)
    config.gateway.region = args.region
    config.gateway.base_domains = list(args.domain)
    config.gateway.default_object_ownership = args.object_ownership
    if args.lifecycle_day_seconds <= 0:
        print("store serve: --lifecycle-day-seconds must be positive", file=sys.stderr)
        return 2
    config.gateway.day_s = args.lifecycle_day_seconds
    if args.tls_cert:
        config.tls_cert, config.tls_key = Path(args.tls_cert), Path(args.tls_key)
    config.workers = args.workers or default_workers()
    config.nbd_tls = args.nbd_tls
    if args.nbd_tls == "auto":
        config.nbd_tls = "optional" if args.tls_cert else "off"
    elif args.nbd_tls != "off" and not args.tls_cert:
        print(f"store serve: --nbd-tls {args.nbd_tls} needs --tls-cert", file=sys.stderr)
        return 2
    if args.nbd_tls_client_ca:
        if config.nbd_tls == "off":
            print("store serve: --nbd-tls-client-ca needs NBD TLS", file=sys.stderr)
            return 2
        config.nbd_tls_client_ca = Path(args.nbd_tls_client_ca)
    if args.nbd == "off":
        config.nbd_port = None
    else:
        config.nbd_host, config.nbd_port = parse_address(args.nbd)
    if args.worker is not None:
        return run(config, WorkerFds.parse(args.worker))
    return run(config)


def _volume(args: argparse.Namespace) -> int:
    """store volume create|list|info|resize|delete, on the data directory's metadata (the
    service may be running: a volume attached over NBD refuses delete and shrink)."""
    from dataclasses import asdict
    from pathlib import Path

    import trio

    from store.errors import StoreError
    from store.node import local_volumes, open_local_engine
    from store.volumes import transfer as volume_transfer
    from store.volumes.records import parse_size

    drives = [Path(d) for d in args.drive] or args.drives

    async def run() -> object:
        async with open_local_engine(Path(args.data), drives=drives, clean_tmp=False) as engine:
            volumes = local_volumes(engine)
            if args.action == "create":
                created = await volumes.create(
                    args.name,
                    parse_size(args.size),
                    block_bytes=args.block_size,
                    replicas=args.replicas,
                    description=args.description,
                )
                return asdict(created)
            if args.action == "import":
                bucket, _, key = args.source.partition("/")
                imported = await volume_transfer.import_object(
                    volumes,
                    engine,
                    bucket,
                    key,
                    args.name,
                    block_bytes=args.block_size,
                    replicas=args.replicas,
                    description=args.description,
                )
                return asdict(imported)
            if args.action == "export":
                bucket, _, key = args.dest.partition("/")
                version = await volume_transfer.export_volume(
                    volumes, engine, args.name, bucket, key
                )
                return {"bucket": bucket, "key": key, "size": version.size, "etag": version.etag}
            if args.action == "snapshot":
                volume, _, snap = args.name.partition("@")
                return asdict(await volumes.snapshot(volume, snap, args.description))
            if args.action == "clone":
                return asdict(await volumes.clone(args.name, args.target, args.description))
            if args.action == "resize":
                return asdict(await volumes.resize(args.name, parse_size(args.size)))
            if args.action == "delete":
                await volumes.delete(args.name)
                return {"deleted": args.name}
            if args.action == "scrub":
                names = [args.name] if args.name else [v.name for v in await volumes.list_volumes()]
                return [await volumes.scrub(n, repair=args.repair) for n in names]
            if args.action == "info":
                found = asdict(await volumes.get(args.name))
                found["attached"] = await volumes.attached(args.name)
                return found
            return [asdict(v) for v in await volumes.list_volumes()]

    needs = {"create": ("name", "size"), "resize": ("name", "size"), "delete": ("name",)}
    needs |= {"info": ("name",), "snapshot": ("name",), "clone": ("name", "target")}
    needs |= {"import": ("name", "source"), "export": ("name", "dest")}
    missing = [f for f in needs.get(args.action, ()) if not getattr(args, f)]
    if missing:
        print(f"store volume {args.action}: give {' and '.join(missing)}", file=sys.stderr)
        return 2
    try:
        result = trio.run(run)
    except StoreError as e:
        print(f"store volume: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    if args.action == "scrub" and isinstance(result, list):
        return 0 if all(report["clean"] for report in result) else 1
    return 0


def _user(args: argparse.Namespace) -> int:
    """store user add|remove|list: access keys in the data directory's metadata."""
    from pathlib import Path

    import trio

    from store.auth import users
    from store.errors import StoreError
    from store.meta.sqlite import open_sqlite_kv

    async def run() -> object:
        async with open_sqlite_kv(Path(args.data) / "meta.sqlite") as kv:
            if args.action == "add":
                key = await users.add_key(kv, args.name, args.access_key, args.secret_key)
                return {
                    "user": key.user,
                    "access_key": key.access_key,
                    "secret_key": key.secret_key,
                }
            if args.action == "remove":
                await users.remove_key(kv, args.access_key)
                return {"removed": args.access_key}
            return [{"user": k.user, "access_key": k.access_key} for k in await users.list_keys(kv)]

    if args.action == "add" and bool(args.access_key) != bool(args.secret_key):
        print("store user add: --access-key and --secret-key go together", file=sys.stderr)
        return 2
    if args.action == "remove" and not args.access_key:
        print("store user remove: --access-key is required", file=sys.stderr)
        return 2
    try:
        result = trio.run(run)
    except StoreError as e:
        print(f"store user: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
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
    serve = sub.add_parser("serve", help="run the single-node service (S3 on --s3)")
    serve.add_argument("--data", default="./data", help="data directory (default ./data)")
    serve.add_argument("--s3", default="127.0.0.1:9000", help="S3 listen address HOST:PORT")
    serve.add_argument("--drives", type=int, default=6, help="drive directories under DATA")
    serve.add_argument(
        "--drive",
        action="append",
        default=[],
        metavar="PATH",
        help="a drive (repeatable; replaces --drives)",
    )
    serve.add_argument("--scheme", default="auto", help="auto | replicas:N | ec:K+M")
    serve.add_argument("--tls-cert", help="PEM certificate (chain): serve S3 over TLS")
    serve.add_argument("--tls-key", help="PEM private key for --tls-cert")
    serve.add_argument(
        "--workers",
        type=int,
        default=0,
        help="processes serving requests (default: one per CPU; 1: a single process)",
    )
    serve.add_argument(
        "--nbd",
        default="127.0.0.1:10809",
        help="NBD listen address HOST:PORT, or off (export name = volume name)",
    )
    serve.add_argument(
        "--nbd-tls",
        choices=["auto", "off", "optional", "required"],
        default="auto",
        help="NBD over TLS with --tls-cert (STARTTLS): optional (clients choose), required, or"
        " off (default auto: optional when --tls-cert is given)",
    )
    serve.add_argument(
        "--nbd-tls-client-ca",
        metavar="PEM",
        help="require NBD clients to present a certificate signed by this CA",
    )
    serve.add_argument(
        "--region", default="us-east-1", help="the region this service is (SigV4 scope, locations)"
    )
    serve.add_argument(
        "--domain",
        action="append",
        default=[],
        metavar="NAME",
        help="base domain for virtual-hosted-style requests, BUCKET.NAME (repeatable)",
    )
    serve.add_argument(
        "--object-ownership",
        choices=["ObjectWriter", "BucketOwnerPreferred", "BucketOwnerEnforced"],
        default="ObjectWriter",
        help="object ownership of new buckets that name none (default ObjectWriter: ACLs on)",
    )
    serve.add_argument(
        "--lifecycle-day-seconds",
        type=float,
        default=86400.0,
        help="the length of a day for lifecycle rules and default retention (for tests)",
    )
    # Set by the supervisor when it starts a worker: its index and the descriptors it inherits.
    serve.add_argument("--worker", help=argparse.SUPPRESS)
    serve.set_defaults(func=_serve)
    user = sub.add_parser("user", help="manage users and access keys (add | remove | list)")
    user.add_argument("action", choices=["add", "remove", "list"])
    user.add_argument("name", nargs="?", default="", help="user name (add)")
    user.add_argument("--access-key", default="", help="given key (add) or the key to remove")
    user.add_argument("--secret-key", default="", help="given secret (add); else generated")
    user.add_argument("--data", default="./data", help="data directory (default ./data)")
    user.set_defaults(func=_user)
    volume = sub.add_parser(
        "volume",
        help="block volumes served over NBD (create | list | info | resize | delete | snapshot"
        " VOL@SNAP | clone VOL@SNAP NEW | import NEW --from BUCKET/KEY | export VOL --to"
        " BUCKET/KEY | scrub [VOL] [--repair])",
    )
    actions = ["create", "list", "info", "resize", "delete", "snapshot", "clone"]
    actions += ["import", "export", "scrub"]
    volume.add_argument("action", choices=actions)
    volume.add_argument("name", nargs="?", default="", help="volume name (the NBD export name)")
    volume.add_argument("target", nargs="?", default="", help="the new volume (clone)")
    volume.add_argument(
        "--from", dest="source", default="", help="BUCKET/KEY of a raw disk image (import)"
    )
    volume.add_argument("--to", dest="dest", default="", help="BUCKET/KEY to write (export)")
    volume.add_argument("--size", default="", help="size: bytes, or with K/M/G/T (create, resize)")
    volume.add_argument("--block-size", type=int, default=4096, help="bytes (create)")
    volume.add_argument("--replicas", type=int, default=2, help="copies on distinct drives")
    volume.add_argument("--description", default="", help="shown by NBD LIST (create)")
    volume.add_argument(
        "--repair",
        action="store_true",
        help="scrub: rewrite bad, missing and stale replicas from good ones (exit 1 if any"
        " problem is left)",
    )
    _engine_args(volume)
    volume.set_defaults(func=_volume)
    for name, text in [
        ("scrub", "verify every shard against its checksums (exit 1 if anything is damaged)"),
        ("heal", "verify every shard and rebuild missing or corrupt ones from the others"),
        ("gc", "remove garbage chunks now, and orphan shards older than --grace seconds"),
    ]:
        cmd = sub.add_parser(name, help=text, description=text)
        _engine_args(cmd)
        if name == "gc":
            cmd.add_argument("--grace", type=float, default=6 * 3600.0, help="seconds")
        else:
            cmd.add_argument("--rate", type=float, default=0, help="MB/s limit (0: none)")
        cmd.set_defaults(func=_maintenance)
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
