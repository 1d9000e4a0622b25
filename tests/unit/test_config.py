"""The configuration tree: sources in order, unknown keys refused by name, types, the worker's
copy, and the documentation page naming every key."""

from __future__ import annotations

from pathlib import Path

import pytest

from store import config as C
from store.cli import build_parser, serve_flags

DOCS = Path(__file__).resolve().parents[2] / "docs" / "config.md"


def test_defaults_and_precedence(tmp_path: Path) -> None:
    assert C.load(env={}) == C.Config()
    toml = tmp_path / "store.toml"
    toml.write_text(
        'data = "/srv"\n[s3]\nregion = "eu-west-1"\ndomains = ["a.test"]\n'
        '[storage]\ndrives = ["/d1", "/d2"]\n[service]\nworkers = 3\n'
    )
    from_file = C.load(toml, env={})
    assert from_file.data == "/srv" and from_file.s3.region == "eu-west-1"
    assert from_file.s3.domains == ("a.test",) and from_file.storage.drives == ("/d1", "/d2")
    env = {"STORE_S3_REGION": "ap-south-1", "STORE_SERVICE_WORKERS": "2", "STORE_S3_DOMAINS": "x,y"}
    from_env = C.load(toml, env=env)
    assert (from_env.s3.region, from_env.service.workers) == ("ap-south-1", 2)
    assert from_env.s3.domains == ("x", "y")
    flags = {"s3": {"region": "us-west-2"}, "storage": {"drives": 4}}
    final = C.load(toml, env=env, flags=flags)
    assert (final.s3.region, final.storage.drives, final.service.workers) == ("us-west-2", 4, 2)


def test_the_data_directory_file_is_read(tmp_path: Path) -> None:
    (tmp_path / "store.toml").write_text('[s3]\nlisten = "127.0.0.1:9100"\n')
    assert C.load(env={"STORE_DATA": str(tmp_path)}).s3.listen == "127.0.0.1:9100"
    assert C.load(flags={"data": str(tmp_path)}, env={}).s3.listen == "127.0.0.1:9100"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[s3]\nregoin = "x"\n', "s3.'regoin'"),
        ('colour = "red"\n', "'colour'"),
        ("[s4]\nlisten = 1\n", "'s4'"),
        ('[service]\nworkers = "many"\n', "service.workers"),
        ('[s3]\nlisten = "nowhere"\n', "s3.listen"),
        ('[s3]\nobject_ownership = "Mine"\n', "s3.object_ownership"),
        ('[nbd]\ntls = "required"\n', "nbd.tls"),
        ("[nbd]\nmax_bytes_in_flight_per_connection = 4096\n", "per_connection"),
        ("[nbd]\nmax_bytes_in_flight = 1048576\n", "nbd.max_bytes_in_flight"),
        ("[nbd]\nmax_requests_in_flight_per_connection = 0\n", "max_requests"),
        ("[nbd]\nsend_stall_timeout_s = 0\n", "send_stall"),
        ("[http]\nmax_connections = 0\n", "http.max_connections"),
        ("[nbd]\nmax_connections = 0\n", "nbd.max_connections"),
        ("[s3]\nmax_xml_bytes = 100\n", "s3.max_xml_bytes"),
        ("[s3]\nmax_list_xml_bytes = 99999999999\n", "s3.max_list_xml_bytes"),
        ("[http]\nhead_timeout_s = -1\n", "http.head_timeout_s"),
        ("[http]\nbody_min_rate_bytes_s = -1\n", "http.body_min_rate_bytes_s"),
        ("not toml = = 1\n", "store.toml"),
    ],
)
def test_bad_files_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "store.toml"
    path.write_text(text)
    with pytest.raises(C.ConfigError) as e:
        C.load(path, env={})
    assert message in str(e.value)


def test_limits_come_from_the_environment() -> None:
    config = C.load(env={"STORE_NBD_MAX_REQUESTS_IN_FLIGHT_PER_CONNECTION": "8"})
    assert config.nbd.max_requests_in_flight_per_connection == 8
    assert config.nbd.max_bytes_in_flight == 1 << 30
    assert C.load(env={"STORE_HTTP_MAX_CONNECTIONS": "10"}).http.max_connections == 10


def test_bad_environment_is_refused() -> None:
    with pytest.raises(C.ConfigError):
        C.load(env={"STORE_SERVICE_WORKERS": "-1"})
    with pytest.raises(C.ConfigError):
        C.load(env={"STORE_S3_LIFECYCLE_DAY_SECONDS": "soon"})


def test_workers_get_the_same_tree() -> None:
    config = C.load(env={}, flags={"s3": {"domains": ("a", "b")}, "storage": {"drives": ("/x",)}})
    assert C.Config.from_json(config.to_json()) == config
    bound = C.with_listen(config, s3="127.0.0.1:4242", nbd="off")
    assert C.Config.from_json(bound.to_json()).s3.listen == "127.0.0.1:4242"


def test_flags_only_override_what_they_give() -> None:
    args = build_parser().parse_args(["serve", "--region", "eu-north-1", "--drive", "/a"])
    assert serve_flags(args) == {"s3": {"region": "eu-north-1"}, "storage": {"drives": ("/a",)}}
    assert serve_flags(build_parser().parse_args(["serve"])) == {}


def test_every_key_is_documented() -> None:
    text = DOCS.read_text()
    documented = {line.split("`")[1] for line in text.splitlines() if line.startswith("| `")}
    assert documented == set(C.KEYS)
