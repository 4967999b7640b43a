"""Config errors refuse to start, naming the field (SPEC §11): listeners, principals, routes
(duplicates, cycles), missing and broken files."""

import subprocess

import pytest

from conftest import binary, free_port, mqtt_publish
from hub_util import PRINCIPALS, conn, get, run_hub, subscribe


LISTEN = "listen: ['tcp://127.0.0.1:{port}']\nstorage: {{dir: data}}\n"


CONFIG_ERRORS = [
    ("dup_user", "principals:\n  - {username: u, password: p}\n  - {username: v, password: q}\n"
                 "  - {username: u, password: r}\n", ["username", "duplicate"]),
    ("bad_pub_permit", "principals:\n  - username: u\n    password: p\n    permissions:\n"
                       "      - {action: pub, permit: ['ok/#', 'x/#/y']}\n", ["pub topic(x/#/y) invalid"]),
    ("bad_sub_permit", "principals:\n  - username: u\n    password: p\n    permissions:\n"
                       "      - {action: sub, permit: ['a+']}\n", ["sub topic(a+) invalid"]),
    ("dollar_permit", "principals:\n  - username: u\n    password: p\n    permissions:\n"
                      "      - {action: sub, permit: ['$SYS/#']}\n", ["sub topic($SYS/#) invalid"]),
    ("deep_permit", "principals:\n  - username: u\n    password: p\n    permissions:\n"
                    "      - {action: pub, permit: ['1/2/3/4/5/6/7/8/9/10']}\n", ["pub topic(1/2/3/4/5/6/7/8/9/10) invalid"]),
    ("bad_source", "subscriptions:\n  - source: {topic: '$SYS/x'}\n    target: {topic: b}\n", ["source.topic"]),
    ("bad_target", "subscriptions:\n  - source: {topic: a}\n    target: {topic: 'b/#'}\n", ["target.topic"]),
    ("no_target", "subscriptions:\n  - source: {topic: a}\n", ["target"]),
    ("dup_route", "subscriptions:\n  - source: {topic: 'a/+'}\n    target: {topic: b}\n"
                  "  - source: {topic: c}\n    target: {topic: d}\n"
                  "  - source: {topic: 'a/+'}\n    target: {topic: b}\n", ["subscriptions", "duplicate"]),
    ("cycle2", "subscriptions:\n  - source: {topic: a}\n    target: {topic: b}\n"
               "  - source: {topic: b}\n    target: {topic: a}\n", ["cycle"]),
    ("cycle_wild", "subscriptions:\n  - source: {topic: 'a/+'}\n    target: {topic: 'b/x'}\n"
                   "  - source: {topic: 'b/#'}\n    target: {topic: 'a/z'}\n", ["cycle"]),
    ("cycle_self", "subscriptions:\n  - source: {topic: '#'}\n    target: {topic: 'x'}\n", ["cycle"]),
    ("bad_length", "message: {length: {max: 268435456}}\n", ["message.length.max"]),
    ("length_type", "message: {length: {max: lots}}\n", ["message.length.max"]),
    ("no_username", "principals:\n  - {password: p}\n", ["username"]),
    ("bad_action", "principals:\n  - username: u\n    password: p\n    permissions:\n"
                   "      - {action: publish, permit: ['a']}\n", ["action"]),
    ("route_qos3", "subscriptions:\n  - source: {topic: a}\n    target: {topic: b, qos: 3}\n", ["qos"]),
]


@pytest.mark.parametrize("name,extra,words", CONFIG_ERRORS, ids=[c[0] for c in CONFIG_ERRORS])
def test_config_errors_refuse_to_start(tmp_path, name, extra, words):
    port = free_port()
    rc, out = run_hub(LISTEN.format(port=port) + extra, tmp_path)
    assert rc != 0
    for w in words:
        assert w in out, f"{w!r} not in {out!r}"


def test_routes_without_cycle_start(hub_factory):
    """A diamond and a chain through wildcards are not cycles."""
    hub = hub_factory("subscriptions:\n"
                      "  - source: {topic: a}\n    target: {topic: b}\n"
                      "  - source: {topic: c}\n    target: {topic: b}\n"
                      "  - source: {topic: 'x/+'}\n    target: {topic: 'y/1'}\n"
                      "  - source: {topic: 'y/+'}\n    target: {topic: z}\n")
    s = conn(hub, "s")
    assert subscribe(s, [("z", 0)]) == [0]
    conn(hub, "p").send(mqtt_publish("x/1", b"two hops"))
    assert get(s)[:2] == ("z", b"two hops")


def test_config_without_listen_refused(tmp_path):
    """The seed marks listen as required ([必须]): a config of principals only is refused,
    naming listen, and nothing is bound."""
    rc, out = run_hub(PRINCIPALS, tmp_path)
    assert rc != 0
    assert "listen" in out, out
    rc, out = run_hub("{}\n", tmp_path)
    assert rc != 0 and "listen" in out, out


def test_missing_and_broken_config_refused(tmp_path):
    r = subprocess.run([binary("baetyl-hub"), "-c", str(tmp_path / "nope.yml")], cwd=str(tmp_path),
                       capture_output=True, text=True, timeout=10)
    assert r.returncode != 0 and "nope.yml" in r.stdout + r.stderr
    rc, out = run_hub("listen: [tcp://127.0.0.1:1\nprincipals: {{{\n", tmp_path)
    assert rc != 0 and out.strip()


BAD = [
    ("subscriptions:\n  - source: {topic: 'a/#/b'}\n    target: {topic: x}\n", "source.topic"),
    ("subscriptions:\n  - source: {topic: a}\n    target: {topic: 'x/+'}\n", "target.topic"),
    ("subscriptions:\n  - source: {topic: a}\n    target: {topic: b}\n"
     "  - source: {topic: a}\n    target: {topic: b}\n", "duplicate route"),
    ("subscriptions:\n  - source: {topic: a}\n    target: {topic: b}\n"
     "  - source: {topic: 'b'}\n    target: {topic: c}\n"
     "  - source: {topic: '+'}\n    target: {topic: a}\n", "cycle"),
    ("subscriptions:\n  - source: {topic: 'x/#'}\n    target: {topic: x/y}\n", "cycle"),
    ("subscriptions:\n  - source: {topic: a, qos: 3}\n    target: {topic: b}\n", "qos"),
]


@pytest.mark.parametrize("extra,why", BAD)
def test_route_config_errors_refuse_to_start(hub_factory, extra, why):
    hub = hub_factory(extra, start=False)
    r = subprocess.run([binary("baetyl-hub"), "-c", hub.conf], cwd=hub.dir, capture_output=True, text=True,
                       timeout=20)
    assert r.returncode != 0
    assert why in r.stderr, r.stderr


PRINCIPAL_ERRORS = [
    ("principals:\n  - username: u\n    password: p\n  - username: u\n    password: q\n", "duplicate username"),
    ("principals:\n  - username: u\n    password: p\n    permissions:\n"
     "      - {action: pub, permit: ['a/#/b']}\n", "pub topic(a/#/b) invalid"),
    ("principals:\n  - username: u\n    permissions:\n      - {action: fly, permit: ['a']}\n", "action"),
    ("message: {length: {max: 300m}}\n", "message.length.max"),
]


@pytest.mark.parametrize("principals,why", PRINCIPAL_ERRORS)
def test_principal_config_errors(hub_factory, principals, why):
    hub = hub_factory(principals=principals, start=False)
    r = subprocess.run([binary("baetyl-hub"), "-c", hub.conf], cwd=hub.dir, capture_output=True, text=True,
                       timeout=20)
    assert r.returncode != 0
    assert why in r.stderr, r.stderr


def test_unsupported_listener_refused(hub_factory):
    hub = hub_factory(start=False)
    text = open(hub.conf).read().replace("listen: ['tcp://", "listen: ['udp://")
    open(hub.conf, "w").write(text)
    r = subprocess.run([binary("baetyl-hub"), "-c", hub.conf], cwd=hub.dir, capture_output=True, text=True,
                       timeout=20)
    assert r.returncode != 0 and "listen" in r.stderr
