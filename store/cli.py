"""The `store` command."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

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


def _service_args(p: argparse.ArgumentParser) -> None:
    """Where an admin command goes: the running service's admin API (the default), or a data
    directory opened here (``--data``: for a stopped service, or maintenance beside it)."""
    p.add_argument(
        "--endpoint",
        default=os.environ.get("STORE_ENDPOINT", "http://127.0.0.1:9000"),
        help="the service's S3 endpoint (default $STORE_ENDPOINT or http://127.0.0.1:9000)",
    )
    p.add_argument(
        "--credentials",
        metavar="FILE",
        help="credentials.json to sign with when STORE_ACCESS_KEY/STORE_SECRET_KEY are not set"
        " (default ./data/credentials.json)",
    )
    p.add_argument("--region", default="us-east-1", help="the service's region (SigV4 scope)")
    p.add_argument("--ca-bundle", metavar="PEM", help="CA certificates for an https endpoint")
    p.add_argument("--data", help="work on this data directory here instead of the service")
    p.add_argument("--drives", type=int, default=6, help="with --data: drive directories")
    p.add_argument(
        "--drive", action="append", default=[], metavar="PATH", help="with --data: a drive"
    )
    p.add_argument(
        "--meta",
        default="",
        metavar="etcd://HOST:PORT,...",
        help="with --data: the etcd cluster holding the metadata (default: SQLite in DATA)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _admin(args: argparse.Namespace, operation: str, op_args: dict[str, Any]) -> Any:
    """Run an admin operation on the service (admin API) or on ``--data`` here, with a
    progress bar for long ones; the result, or raises what refused it."""
    from tqdm import tqdm

    from store.admin import operations

    long = operation in operations.JOBS
    bar = tqdm(total=0, disable=args.json or not long or None, file=sys.stderr, unit="step")

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        if args.data is None:
            from store.admin.client import AdminClient, find_credentials

            credentials = find_credentials(
                file=Path(args.credentials) if args.credentials else None
            )
            client = AdminClient(
                args.endpoint, credentials, region=args.region, ca_bundle=args.ca_bundle
            )
            return client.call(operation, op_args, progress)
        import trio

        from store.node import local_volumes, open_local_engine

        drives = [Path(d) for d in args.drive] or args.drives

        async def run() -> Any:
            async with open_local_engine(
                Path(args.data), drives=drives, clean_tmp=False, meta=args.meta
            ) as engine:
                ctx = operations.Context(engine, local_volumes(engine))
                return await operations.run(ctx, operation, op_args, progress)

        return trio.run(run)
    finally:
        bar.close()


def _admin_command(args: argparse.Namespace, operation: str, op_args: dict[str, Any]) -> Any:
    """``_admin``, with refusals printed as the command's error (None then)."""
    from store.admin.client import AdminError
    from store.errors import StoreError

    try:
        return _admin(args, operation, op_args)
    except (AdminError, StoreError) as e:
        print(f"store {args.command}: {e}", file=sys.stderr)
        return None


def _maintenance(args: argparse.Namespace) -> int:
    """scrub / heal / gc: on the service, or on a data directory (the service may be running)."""
    if args.command == "gc":
        summary = _admin_command(args, "maintenance.gc", {"grace_s": args.grace})
    else:
        summary = _admin_command(args, f"maintenance.{args.command}", {"rate_mb_s": args.rate})
    if summary is None:
        return 1
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


def _cluster(args: argparse.Namespace) -> int:
    from store.admin.cluster_status import table

    if args.action == "rebalance":
        summary = _admin_command(args, "cluster.rebalance", {})
        if summary is None:
            return 1
        print(
            json.dumps(summary)
            if args.json
            else "\n".join(f"{k:>20}: {v}" for k, v in summary.items())
        )
        return 1 if summary["pgs_failed"] or summary.get("volumes_failed") else 0
    if args.action == "status":
        result = _admin_command(args, "cluster.status", {})
        if result is None:
            return 1
        print(json.dumps(result) if args.json else table(result))
        return 0 if result["up"] == len(result["drives"]) else 1
    if not args.target:
        print(f"store cluster {args.action}: name a drive (see store cluster status)")
        return 2
    request: dict[str, object] = {"drive": args.target}
    if args.action == "remove":
        removed = _admin_command(args, "cluster.remove", request)
        if removed is None:
            return 1
        pruned = ", ".join(map(str, removed["maps_pruned"])) or "none"
        print(
            json.dumps(removed)
            if args.json
            else f"{removed['drive']}: removed from the cluster map (maps pruned: {pruned})"
        )
        return 0
    if args.action == "set-weight":
        if args.weight is None:
            print("store cluster set-weight: give the weight (a number, 0 takes no new data)")
            return 2
        request["weight"] = args.weight
    result = _admin_command(args, f"cluster.{args.action}", request)
    if result is None:
        return 1
    if args.json:
        print(json.dumps(result))
    else:
        drive = result["drive"]
        print(
            f"{drive['drive_id']}: state {drive['state']}, weight {drive['weight']:g}; "
            f"cluster map at epoch {result['epoch']}"
        )
    return 0


def _status(args: argparse.Namespace) -> int:
    result = _admin_command(args, "status", {})
    if result is None:
        return 1
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


# serve flag -> configuration key
_SERVE_FLAGS = {
    "data": "data",
    "s3": "s3.listen",
    "region": "s3.region",
    "domain": "s3.domains",
    "object_ownership": "s3.object_ownership",
    "tls_cert": "s3.tls_cert",
    "tls_key": "s3.tls_key",
    "lifecycle_day_seconds": "s3.lifecycle_day_seconds",
    "nbd": "nbd.listen",
    "nbd_tls": "nbd.tls",
    "nbd_tls_client_ca": "nbd.tls_client_ca",
    "drives": "storage.drives",
    "drive": "storage.drives",
    "scheme": "storage.scheme",
    "meta": "storage.meta",
    "cluster": "storage.cluster",
    "secret_file": "storage.secret_file",
    "rpc_tls_cert": "storage.rpc_tls_cert",
    "rpc_tls_key": "storage.rpc_tls_key",
    "rpc_tls_ca": "storage.rpc_tls_ca",
    "workers": "service.workers",
}


def serve_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The serve options given on the command line, as a configuration tree."""
    tree: dict[str, Any] = {}
    for flag, key in _SERVE_FLAGS.items():
        value = getattr(args, flag, None)
        if value is None:
            continue
        if isinstance(value, list):
            value = tuple(value)
        section, _, name = key.rpartition(".")
        (tree.setdefault(section, {}) if section else tree)[name] = value
    return tree


def _serve(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from store import config as configuration
    from store.app import WORKER_CONFIG_ENV, WorkerFds, run

    if args.worker is not None:
        return run(
            configuration.Config.from_json(os.environ[WORKER_CONFIG_ENV]),
            WorkerFds.parse(args.worker),
        )
    try:
        config = configuration.load(
            Path(args.config) if args.config else None, flags=serve_flags(args)
        )
    except configuration.ConfigError as e:
        print(f"store serve: {e}", file=sys.stderr)
        return 2
    return run(config)


def _lab(args: argparse.Namespace) -> int:
    from pathlib import Path

    from store.lab.run import LabConfig, run

    return run(LabConfig(Path(args.data), args.hosts, args.s3, args.nbd))


def _chunkserver(args: argparse.Namespace) -> int:
    from pathlib import Path

    from store.chunkserver import ChunkServerConfig, run
    from store.config import parse_address
    from store.errors import InvalidArgument
    from store.rpc.tls import TlsFiles

    try:
        listen = parse_address(args.listen)
        metrics = parse_address(args.metrics) if args.metrics else None
        tls = TlsFiles.of(args.tls_cert, args.tls_key, args.tls_ca)
    except (ValueError, InvalidArgument) as e:
        print(f"store chunkserver: {e}", file=sys.stderr)
        return 2
    config = ChunkServerConfig(
        listen=listen,
        drives=tuple(Path(d) for d in args.drive),
        secret_file=Path(args.secret_file),
        meta=args.meta,
        host=args.host,
        rack=args.rack,
        zone=args.zone,
        lease_ttl_s=args.lease_ttl,
        tls=tls,
        metrics=metrics,
    )
    return run(config)


def _volume(args: argparse.Namespace) -> int:
    """store volume ACTION: on the service (admin API), or on ``--data`` here (a volume
    attached over NBD refuses delete and shrink; snapshots of one go through its owner)."""
    needs = {"create": ("name", "size"), "resize": ("name", "size"), "delete": ("name",)}
    needs |= {"info": ("name",), "snapshot": ("name",), "clone": ("name", "target")}
    needs |= {"import": ("name", "source"), "export": ("name", "dest")}
    missing = [f for f in needs.get(args.action, ()) if not getattr(args, f)]
    if missing:
        print(f"store volume {args.action}: give {' and '.join(missing)}", file=sys.stderr)
        return 2
    op_args: dict[str, Any] = {"name": args.name}
    if args.action in ("create", "resize"):
        op_args["size"] = args.size
    if args.action in ("create", "import"):
        op_args |= {"block_size": args.block_size, "replicas": args.replicas}
    if args.action in ("create", "import", "snapshot", "clone"):
        op_args["description"] = args.description
    op_args |= {"target": args.target, "source": args.source, "dest": args.dest}
    op_args["repair"] = args.repair
    result = _admin_command(args, f"volume.{args.action}", op_args)
    if result is None:
        return 1
    print(json.dumps(result, indent=2))
    if args.action == "scrub" and isinstance(result, list):
        return 0 if all(report["clean"] for report in result) else 1
    return 0


def _bucket(args: argparse.Namespace) -> int:
    """store bucket info|set NAME: settings that have no S3 request (compression)."""
    op_args: dict[str, Any] = {"name": args.name}
    if args.action == "set":
        if args.compression is None:
            print("store bucket set: give --compression zstd|none", file=sys.stderr)
            return 2
        op_args["compression"] = "" if args.compression == "none" else args.compression
    result = _admin_command(args, f"bucket.{args.action}", op_args)
    if result is None:
        return 1
    print(json.dumps(result, indent=2))
    return 0


def _user(args: argparse.Namespace) -> int:
    """store user add|remove|list: access keys, on the service or on ``--data``."""
    if args.action == "add" and bool(args.access_key) != bool(args.secret_key):
        print("store user add: --access-key and --secret-key go together", file=sys.stderr)
        return 2
    if args.action == "remove" and not args.access_key:
        print("store user remove: --access-key is required", file=sys.stderr)
        return 2
    op_args = {"name": args.name, "access_key": args.access_key, "secret_key": args.secret_key}
    if args.action == "add":
        op_args["admin"] = args.admin
    result = _admin_command(args, f"user.{args.action}", op_args)
    if result is None:
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
    serve = sub.add_parser(
        "serve",
        help="run the single-node service (S3 on --s3); settings: docs/config.md",
    )
    # Every option defaults to None: only what is given overrides the configuration file and
    # the environment (store.config); the defaults are the configuration's.
    serve.add_argument("--config", metavar="PATH", help="TOML file (default DATA/store.toml)")
    serve.add_argument("--data", help="data directory (default ./data)")
    serve.add_argument("--s3", help="S3 listen address HOST:PORT (default 127.0.0.1:9000)")
    serve.add_argument("--drives", type=int, help="drive directories under DATA (default 6)")
    serve.add_argument(
        "--drive", action="append", metavar="PATH", help="a drive (repeatable; replaces --drives)"
    )
    serve.add_argument("--scheme", help="auto | replicas:N | ec:K+M (default auto)")
    serve.add_argument(
        "--cluster",
        action="store_true",
        default=None,
        help="with --meta: store data on the chunk servers registered in etcd, not in DATA",
    )
    serve.add_argument(
        "--secret-file", metavar="FILE", help="the cluster secret (default DATA/cluster.secret)"
    )
    serve.add_argument("--rpc-tls-cert", metavar="PEM", help="mutual TLS to chunk servers: ours")
    serve.add_argument("--rpc-tls-key", metavar="PEM", help="mutual TLS to chunk servers: our key")
    serve.add_argument("--rpc-tls-ca", metavar="PEM", help="mutual TLS: the cluster's CA")
    serve.add_argument(
        "--meta",
        metavar="etcd://HOST:PORT,...",
        help="keep the metadata in etcd (default: SQLite in DATA; docs/cluster.md)",
    )
    serve.add_argument("--tls-cert", help="PEM certificate (chain): serve S3 over TLS")
    serve.add_argument("--tls-key", help="PEM private key for --tls-cert")
    serve.add_argument(
        "--workers",
        type=int,
        help="processes serving requests (default: one per CPU; 1: a single process)",
    )
    serve.add_argument(
        "--nbd", help="NBD listen address HOST:PORT, or off (default 127.0.0.1:10809)"
    )
    serve.add_argument(
        "--nbd-tls",
        choices=["auto", "off", "optional", "required"],
        help="NBD over TLS with --tls-cert (STARTTLS): optional (clients choose), required, or"
        " off (default auto: optional when --tls-cert is given)",
    )
    serve.add_argument(
        "--nbd-tls-client-ca",
        metavar="PEM",
        help="require NBD clients to present a certificate signed by this CA",
    )
    serve.add_argument("--region", help="the region this service is (default us-east-1)")
    serve.add_argument(
        "--domain",
        action="append",
        metavar="NAME",
        help="base domain for virtual-hosted-style requests, BUCKET.NAME (repeatable)",
    )
    serve.add_argument(
        "--object-ownership",
        choices=["ObjectWriter", "BucketOwnerPreferred", "BucketOwnerEnforced"],
        help="object ownership of new buckets that name none (default ObjectWriter: ACLs on)",
    )
    serve.add_argument(
        "--lifecycle-day-seconds",
        type=float,
        help="the length of a day for lifecycle rules and default retention (for tests)",
    )
    # Set by the supervisor when it starts a worker: its index and the descriptors it inherits.
    serve.add_argument("--worker", help=argparse.SUPPRESS)
    serve.set_defaults(func=_serve)
    chunks = sub.add_parser(
        "chunkserver", help="serve local drives to gateways over the chunk RPC (docs/cluster.md)"
    )
    chunks.add_argument(
        "--listen", default="127.0.0.1:7480", help="HOST:PORT (default 127.0.0.1:7480)"
    )
    chunks.add_argument(
        "--drive", action="append", required=True, metavar="PATH", help="a drive (repeatable)"
    )
    chunks.add_argument(
        "--secret-file", required=True, metavar="FILE", help="the cluster secret (made if absent)"
    )
    chunks.add_argument("--meta", default="", metavar="etcd://H:P,...", help="register in etcd")
    chunks.add_argument("--host", default="", help="this host's name in the cluster map")
    chunks.add_argument("--rack", default="", help="this host's rack")
    chunks.add_argument("--zone", default="", help="this host's zone")
    chunks.add_argument("--lease-ttl", type=int, default=10, help="registration lease, seconds")
    chunks.add_argument("--metrics", metavar="HOST:PORT", help="serve Prometheus /metrics here")
    chunks.add_argument(
        "--tls-cert", default="", metavar="PEM", help="mutual TLS: this node's certificate"
    )
    chunks.add_argument("--tls-key", default="", metavar="PEM", help="mutual TLS: its key")
    chunks.add_argument("--tls-ca", default="", metavar="PEM", help="mutual TLS: the cluster's CA")
    chunks.set_defaults(func=_chunkserver)
    lab = sub.add_parser(
        "lab", help="a cluster on this machine: etcd, chunk servers and a gateway (foreground)"
    )
    lab.add_argument("--hosts", type=int, default=6, help="chunk servers (default 6)")
    lab.add_argument("--data", default="./lab", help="where everything lives (default ./lab)")
    lab.add_argument("--s3", default="127.0.0.1:9000", help="the gateway's S3 address")
    lab.add_argument("--nbd", default="127.0.0.1:10809", help="the gateway's NBD address")
    lab.set_defaults(func=_lab)
    user = sub.add_parser("user", help="manage users and access keys (add | remove | list)")
    user.add_argument("action", choices=["add", "remove", "list"])
    user.add_argument("name", nargs="?", default="", help="user name (add)")
    user.add_argument("--access-key", default="", help="given key (add) or the key to remove")
    user.add_argument("--secret-key", default="", help="given secret (add); else generated")
    user.add_argument("--admin", action="store_true", help="give the user the admin right (add)")
    _service_args(user)
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
    _service_args(volume)
    volume.set_defaults(func=_volume)
    for name, text in [
        ("scrub", "verify every shard against its checksums (exit 1 if anything is damaged)"),
        ("heal", "verify every shard and rebuild missing or corrupt ones from the others"),
        ("gc", "remove garbage chunks now, and orphan shards older than --grace seconds"),
    ]:
        cmd = sub.add_parser(name, help=text, description=text)
        _service_args(cmd)
        if name == "gc":
            cmd.add_argument("--grace", type=float, default=6 * 3600.0, help="seconds")
        else:
            cmd.add_argument("--rate", type=float, default=0, help="MB/s limit (0: none)")
        cmd.set_defaults(func=_maintenance)
    bucket = sub.add_parser("bucket", help="bucket settings without an S3 request (info | set)")
    bucket.add_argument("action", choices=["info", "set"])
    bucket.add_argument("name", help="bucket name")
    bucket.add_argument("--compression", choices=["zstd", "none"], help="set: compress new objects")
    _service_args(bucket)
    bucket.set_defaults(func=_bucket)
    cluster = sub.add_parser(
        "cluster",
        help="the drives data is placed on: where, up or down, how full (status); "
        "which take new data (set-weight, drain, out, in); move data to the newest map "
        "(rebalance); forget a drive that holds nothing (remove)",
    )
    cluster.add_argument(
        "action", choices=["status", "set-weight", "drain", "out", "in", "rebalance", "remove"]
    )
    cluster.add_argument(
        "target", nargs="?", metavar="DRIVE", help="the drive (set-weight, drain, out, in, remove)"
    )
    cluster.add_argument("weight", nargs="?", type=float, help="set-weight: its new weight")
    _service_args(cluster)
    cluster.set_defaults(func=_cluster)
    status = sub.add_parser(
        "status", help="the service's version, uptime, buckets, volumes, drives"
    )
    _service_args(status)
    status.set_defaults(func=_status)
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
