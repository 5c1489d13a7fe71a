"""Who may send OSC, and how fast: an allow-list of networks and a token bucket per source.

Listening beyond localhost (`--osc-host 0.0.0.0`) puts the server on a network a stranger may
share. A datagram from an address outside `--osc-allow` is dropped before it is parsed; one from
an allowed address past its source's rate is dropped too. Both are counted (per datagram, apart
from `received`, which counts the messages that got through) and logged at most once a second,
so a flood costs a dictionary look-up per packet and never a log line per packet.

The default rate is far above what a touch surface sends: TouchOSC sends one datagram per
control per frame, so an XY pad and a hand of faders all moving at 60 Hz is a few hundred
datagrams a second (see `TOUCH_SURFACE_HZ`), and the bucket's burst covers a whole second of it.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from livekomp.inputs.stats import InputStats

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Always allowed: the machine itself.
LOOPBACK: tuple[Network, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)
# A TouchOSC page at full tilt: an XY pad (one datagram per frame) and eight faders moved at
# once, each sending at the surface's 60 Hz frame rate.
TOUCH_SURFACE_HZ = 60 * (1 + 8)
DEFAULT_RATE_HZ = 2000.0  # per source: ~3.7x the busiest page above
DEFAULT_BURST = 2000  # a full second at that rate (a surface reconnecting replays its state)
# Sources remembered at once; past this the least recently seen are forgotten (a spoofed flood
# from many addresses must not grow the table without bound).
MAX_SOURCES = 4096
TRANSPORT = "osc"


class AllowError(ValueError):
    """An --osc-allow entry that is not ADDR/PREFIX."""


def parse_allow(entry: str) -> Network:
    """`ADDR/PREFIX` (IPv4 or IPv6; a bare address is one host) as a network. Host bits may be
    set (`192.168.1.7/24` is the 192.168.1.0/24 network), as `ip addr` prints them."""
    text = entry.strip()
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise AllowError(
            f"--osc-allow {entry!r}: {exc} (expected ADDR/PREFIX, e.g. 192.168.1.0/24)"
        ) from None


def local_subnets(host: str) -> tuple[Network, ...]:
    """The networks of the interfaces `host` listens on: the one that has `host`, or every
    interface's for a wildcard (0.0.0.0, ::). Loopback networks are left out (always allowed)."""
    import socket

    import psutil

    wildcard = ipaddress.ip_address(host).is_unspecified
    found: list[Network] = []
    for addresses in psutil.net_if_addrs().values():
        for addr in addresses:
            if addr.family not in (socket.AF_INET, socket.AF_INET6) or not addr.netmask:
                continue
            address = addr.address.split("%")[0]  # an IPv6 link-local carries its zone
            if not wildcard and address != host:
                continue
            # ipaddress takes a dotted IPv4 netmask but not an IPv6 one: count its bits.
            prefix = bin(int(ipaddress.ip_address(addr.netmask.split("/")[0]))).count("1")
            network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
            if not network.is_loopback and network not in found:
                found.append(network)
    return tuple(found)


@dataclass(frozen=True, slots=True)
class AllowList:
    """The networks OSC is accepted from; loopback always is."""

    networks: tuple[Network, ...]

    @classmethod
    def from_entries(cls, entries: Iterable[str]) -> AllowList:
        return cls(tuple(parse_allow(entry) for entry in entries))

    def allows(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.split("%")[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # a dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d
        return any(ip in network for network in (*LOOPBACK, *self.networks))

    def describe(self) -> str:
        return ", ".join(str(n) for n in (*self.networks, *LOOPBACK))


class TokenBucket:
    """`rate_hz` tokens a second up to `burst`; each datagram takes one or is refused."""

    __slots__ = ("_burst", "_last_s", "_rate_hz", "_tokens")

    def __init__(self, rate_hz: float, burst: float, now_s: float) -> None:
        self._rate_hz = rate_hz
        self._burst = burst
        self._tokens = burst
        self._last_s = now_s

    def take(self, now_s: float) -> bool:
        elapsed_s = now_s - self._last_s
        if elapsed_s > 0:
            self._tokens = min(self._burst, self._tokens + elapsed_s * self._rate_hz)
            self._last_s = now_s
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


class SourceGuard:
    """Admits or drops each datagram by its source address: allow-list first, then the source's
    token bucket. Drops are counted in `stats` as `denied` and `rate_limited`."""

    def __init__(
        self,
        allow: AllowList,
        stats: InputStats,
        *,
        rate_hz: float = DEFAULT_RATE_HZ,
        burst: float = DEFAULT_BURST,
        clock: Callable[[], float] = time.monotonic,
        max_sources: int = MAX_SOURCES,
    ) -> None:
        self._allow = allow
        self._stats = stats
        self._rate_hz = rate_hz
        self._burst = burst
        self._clock = clock
        self._max_sources = max_sources
        self._buckets: dict[str, TokenBucket] = {}  # insertion order = least recently seen first
        self._verdicts: dict[str, bool] = {}  # allow-list answers, cached per address

    def admit(self, address: str) -> bool:
        allowed = self._verdicts.get(address)
        if allowed is None:
            allowed = self._allow.allows(address)
            if len(self._verdicts) >= self._max_sources:
                self._verdicts.pop(next(iter(self._verdicts)))
            self._verdicts[address] = allowed
        if not allowed:
            self._stats.reject(TRANSPORT, "denied", f"from {address}: not in --osc-allow")
            return False
        now_s = self._clock()
        bucket = self._buckets.pop(address, None)
        if bucket is None:
            bucket = TokenBucket(self._rate_hz, self._burst, now_s)
            if len(self._buckets) >= self._max_sources:
                self._buckets.pop(next(iter(self._buckets)))
        self._buckets[address] = bucket  # moved to the end: most recently seen
        if not bucket.take(now_s):
            self._stats.reject(
                TRANSPORT,
                "rate_limited",
                f"from {address}: over {self._rate_hz:g} datagrams/s (--osc-rate)",
            )
            return False
        return True
