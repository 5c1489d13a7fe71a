"""The OSC allow-list and the per-source rate limit, on a fake clock."""

from __future__ import annotations

import ipaddress

import pytest

from livekomp.cli import main
from livekomp.config import ConfigError, LiveConfig
from livekomp.inputs.guard import (
    DEFAULT_BURST,
    DEFAULT_RATE_HZ,
    TOUCH_SURFACE_HZ,
    AllowError,
    AllowList,
    SourceGuard,
    TokenBucket,
    local_subnets,
    parse_allow,
)
from livekomp.inputs.stats import InputStats


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


@pytest.mark.parametrize(
    ("entry", "network"),
    [
        ("192.168.1.0/24", "192.168.1.0/24"),
        ("192.168.1.7/24", "192.168.1.0/24"),  # as `ip addr` prints it
        ("10.0.0.5", "10.0.0.5/32"),
        (" 10.0.0.0/8 ", "10.0.0.0/8"),
        ("fd00::/64", "fd00::/64"),
        ("fd00::1234/64", "fd00::/64"),
        ("::1", "::1/128"),
    ],
)
def test_parse_allow_reads_ipv4_and_ipv6_networks(entry, network):
    assert parse_allow(entry) == ipaddress.ip_network(network)


@pytest.mark.parametrize(
    "entry", ["", "192.168.1.0/33", "fd00::/129", "192.168.1/24x", "10.0.0.0/-1", "host/8", "/24"]
)
def test_parse_allow_refuses_bad_prefixes(entry):
    with pytest.raises(AllowError, match="expected ADDR/PREFIX"):
        parse_allow(entry)


def test_allow_list_matches_its_networks_and_always_loopback():
    allow = AllowList.from_entries(["192.168.1.0/24", "fd00::/64"])
    assert allow.allows("192.168.1.200")
    assert not allow.allows("192.168.2.1")
    assert allow.allows("fd00::42")
    assert not allow.allows("fd01::42")
    assert allow.allows("127.0.0.1") and allow.allows("127.8.9.1") and allow.allows("::1")
    assert allow.allows("::ffff:192.168.1.9")  # an IPv4 peer on a dual-stack socket
    assert allow.allows("fe80::1%eth0") is False
    assert AllowList.from_entries(["fe80::/64"]).allows("fe80::1%eth0")
    assert not allow.allows("not an address")
    assert AllowList(()).allows("127.0.0.1") and not AllowList(()).allows("10.1.1.1")


def test_local_subnets_name_the_interface_networks_not_loopback():
    wildcard = local_subnets("0.0.0.0")
    assert all(not n.is_loopback for n in wildcard)
    assert local_subnets("127.0.0.1") == ()
    for network in wildcard:
        if network.version == 4:
            # Each interface address has exactly its own network in the default list.
            host = next(iter(network.hosts()), network.network_address)
            assert AllowList(wildcard).allows(str(host))


def test_token_bucket_gives_a_burst_then_the_rate():
    bucket = TokenBucket(rate_hz=100.0, burst=10, now_s=0.0)
    assert sum(bucket.take(0.0) for _ in range(50)) == 10
    assert sum(bucket.take(0.5) for _ in range(100)) == 10  # refilled to burst, not 50
    taken = sum(bucket.take(1.0 + i / 1000) for i in range(1000))  # 1 kHz for a second
    assert 99 <= taken <= 111


def test_guard_counts_denied_and_rate_limited_per_source():
    clock = FakeClock()
    stats = InputStats()
    guard = SourceGuard(
        AllowList.from_entries(["10.0.0.0/24"]), stats, rate_hz=100, burst=10, clock=clock
    )
    admitted = {"10.0.0.1": 0, "10.0.0.2": 0, "10.9.0.1": 0}
    for step in range(1000):  # one second, each source at 1 kHz
        clock.now_s = step / 1000
        for source in admitted:
            admitted[source] += guard.admit(source)
    assert admitted["10.9.0.1"] == 0
    # Each allowed source has its own bucket: the burst plus a second at the rate.
    assert 105 <= admitted["10.0.0.1"] <= 111
    assert admitted["10.0.0.1"] == admitted["10.0.0.2"]
    assert stats.get("osc", "denied") == 1000
    assert stats.get("osc", "rate_limited") == 2000 - 2 * admitted["10.0.0.1"]
    assert stats.get("osc", "received") == 0  # the guard only admits; parsing counts those


def test_a_touch_surface_at_full_tilt_is_never_limited():
    """An XY pad and eight faders all moving at 60 Hz for a minute, each frame's datagrams
    sent back to back, and the whole page's state replayed at once on reconnect."""
    clock = FakeClock()
    stats = InputStats()
    guard = SourceGuard(AllowList(()), stats, clock=clock)
    assert TOUCH_SURFACE_HZ * 3 < DEFAULT_RATE_HZ
    replay = 200  # a TouchOSC page's controls, sent at once when it reconnects
    assert replay < DEFAULT_BURST
    assert all(guard.admit("127.0.0.1") for _ in range(replay))
    for frame in range(60 * 60):
        clock.now_s = frame / 60
        for _ in range(TOUCH_SURFACE_HZ // 60):
            assert guard.admit("127.0.0.1")
    assert stats.get("osc", "rate_limited") == 0


def test_the_guard_forgets_the_oldest_sources_past_its_table_size():
    clock = FakeClock()
    stats = InputStats()
    guard = SourceGuard(
        AllowList.from_entries(["10.0.0.0/8"]), stats, burst=1, clock=clock, max_sources=4
    )
    for i in range(100):
        assert guard.admit(f"10.0.0.{i}")
    assert len(guard._buckets) == 4 and len(guard._verdicts) == 4


def test_a_flood_logs_at_most_once_a_second(caplog):
    clock = FakeClock()
    stats = InputStats()
    guard = SourceGuard(AllowList(()), stats, clock=clock)
    with caplog.at_level("WARNING", logger="livekomp.inputs"):
        for _ in range(10_000):
            guard.admit("203.0.113.9")
    assert stats.get("osc", "denied") == 10_000
    assert len([r for r in caplog.records if "denied" in r.getMessage()]) == 1


def test_config_refuses_a_bad_allow_entry_and_rates():
    assert LiveConfig(osc_allow=("10.0.0.0/8", "fd00::/8")).osc_allow
    with pytest.raises(ConfigError, match="osc_allow"):
        LiveConfig(osc_allow=("10.0.0.0/40",))
    with pytest.raises(ConfigError, match="osc_rate_hz"):
        LiveConfig(osc_rate_hz=0)
    with pytest.raises(ConfigError, match="osc_burst"):
        LiveConfig(osc_burst=0)


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--osc-allow", "10.0.0.0/33"], "10.0.0.0/33"),
        (["--osc-allow", "10.0.0.0/8", "--osc-allow", "fd00::/300"], "fd00::/300"),
        (["--osc-rate", "0"], "osc_rate_hz"),
    ],
)
def test_serve_says_a_bad_allow_entry_in_one_line(flags, says, capsys):
    assert main(["serve", "--voice", "none", *flags]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("livekomp: error: "), err
    assert says in lines[0]
