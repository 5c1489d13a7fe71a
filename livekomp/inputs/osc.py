"""OSC over UDP: datagrams in, `ControlEvent`s out.

Parsing uses python-osc's `OscPacket`, not its dispatcher (which `time.sleep`s for bundles with
a future timetag and would freeze trio). Bundle timetags are honoured: python-osc converts the
NTP timetag to Unix seconds and gives "immediately" (and anything already past) the parse time,
so `delay = timetag − time.time()` is ≤ 0 for those and the events go out at once; later ones
wait in a small time-ordered queue on trio's clock. The queue is capped in length and in how
far ahead it accepts, so a client cannot make the server hoard events.
"""

from __future__ import annotations

import errno
import heapq
import itertools
import math
import socket
import time
from dataclasses import dataclass

import trio
from pythonosc.osc_packet import OscPacket

from livekomp.inputs.events import ControlEvent
from livekomp.inputs.guard import SourceGuard
from livekomp.inputs.mapping import InputError, Mapping
from livekomp.inputs.stats import InputStats

MAX_DATAGRAM_BYTES = 65536
# A bundle timetag more than this far ahead is dropped: no performance gesture is planned
# minutes in advance, and a wrong clock on the controller would otherwise park events forever.
MAX_BUNDLE_DELAY_S = 60.0
MAX_PENDING_EVENTS = 1024
TRANSPORT = "osc"


@dataclass(frozen=True, slots=True)
class TimedEvent:
    """An event and how long to hold it (0 = deliver now)."""

    delay_s: float
    event: ControlEvent


def events_from_osc(
    mapping: Mapping,
    datagram: bytes,
    stats: InputStats,
    *,
    source: str = TRANSPORT,
) -> list[TimedEvent]:
    """Parse one datagram and map its messages. Never raises for bad input: counts and drops."""
    try:
        packet = OscPacket(datagram)
        messages = packet.messages
    except Exception as e:
        # python-osc lets more than its ParseError escape on hostile bytes (UnicodeDecodeError
        # for an address that is not UTF-8, at least); any failure to parse is the sender's fault.
        stats.count(TRANSPORT, "received")
        stats.reject(TRANSPORT, "malformed", f"{len(datagram)}-byte datagram: {e!r}")
        return []
    if not messages:  # an empty bundle: valid, and nothing to do
        stats.count(TRANSPORT, "received")
        stats.count(TRANSPORT, "ignored")
        return []
    now_s = time.time()  # after parsing: immediate messages carry the parse time, so delay <= 0
    timed: list[TimedEvent] = []
    for message in messages:
        stats.count(TRANSPORT, "received")
        delay_s = message.time - now_s
        if not delay_s <= MAX_BUNDLE_DELAY_S:  # NaN too
            stats.reject(
                TRANSPORT,
                "overflow",
                f"{message.message.address}: bundle timetag {delay_s:.1f} s ahead "
                f"(limit {MAX_BUNDLE_DELAY_S:g} s)",
            )
            continue
        try:
            events = mapping.osc_events(message.message.address, message.message.params, source)
        except InputError as e:
            stats.reject(TRANSPORT, e.reason, f"{message.message.address}: {e}")
            continue
        if not events:
            stats.count(TRANSPORT, "ignored")
        timed.extend(TimedEvent(max(0.0, delay_s), event) for event in events)
    return timed


class BundleSchedule:
    """Events held for a future timetag, sent in time order (ties in arrival order)."""

    def __init__(
        self,
        send_channel: trio.MemorySendChannel[ControlEvent],
        stats: InputStats,
        *,
        max_pending: int = MAX_PENDING_EVENTS,
    ) -> None:
        self._send_channel = send_channel
        self._stats = stats
        self._max_pending = max_pending
        self._heap: list[tuple[float, int, ControlEvent]] = []
        self._order = itertools.count()
        self._wake = trio.Event()

    def __len__(self) -> int:
        return len(self._heap)

    def push_nowait(self, deadline: float, event: ControlEvent) -> bool:
        """Hold `event` until trio time `deadline`; False (counted) if the queue is full."""
        if len(self._heap) >= self._max_pending:
            self._stats.reject(
                TRANSPORT, "overflow", f"{self._max_pending} bundle events already pending"
            )
            return False
        heapq.heappush(self._heap, (deadline, next(self._order), event))
        self._stats.count(TRANSPORT, "scheduled")
        self._wake.set()
        return True

    async def serve(self) -> None:
        while True:
            # A push during the sends below sets the old event; the deadline is re-read anyway.
            self._wake = trio.Event()
            deadline = self._heap[0][0] if self._heap else math.inf
            with trio.move_on_at(deadline):
                await self._wake.wait()
            now = trio.current_time()
            while self._heap and self._heap[0][0] <= now:
                _, _, event = heapq.heappop(self._heap)
                await self._send_channel.send(event)
                self._stats.count(TRANSPORT, "dispatched")


# What to do about a port that cannot be bound, by errno; the rest get the first hint.
_BIND_HINTS = {
    errno.EADDRINUSE: "another program has the port? choose one with --osc-port",
    errno.EACCES: "ports below 1024 need root; choose one above it with --osc-port, e.g. 9000",
    errno.EPERM: "ports below 1024 need root; choose one above it with --osc-port, e.g. 9000",
    errno.EADDRNOTAVAIL: "no network interface here has that address; check --osc-host",
}


def bind_error(host: str, port: int, err: OSError) -> OSError:
    """The one-line error for an OSC port that cannot be listened on, with what to do."""
    hint = _BIND_HINTS.get(err.errno or 0, _BIND_HINTS[errno.EADDRINUSE])
    error = OSError(f"cannot listen for OSC on {host}:{port}: {err.strerror} ({hint})")
    error.errno = err.errno  # kept for callers; the message is the line a user reads
    return error


def check_osc_port(host: str, port: int) -> None:
    """Fail now, with `bind_error`, if `host:port` cannot be listened on: before the server opens
    a MIDI port a DAW would see come and go. (The port is bound again when the server starts;
    another program taking it in between is still reported then, the same way.)"""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as err:
            raise bind_error(host, port, err) from err


async def serve_osc(
    host: str,
    port: int,
    mapping: Mapping,
    send_channel: trio.MemorySendChannel[ControlEvent],
    stats: InputStats,
    *,
    guard: SourceGuard | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen for OSC on UDP `host:port` until cancelled; `started` with the bound port.

    With a `guard`, each datagram's source is checked before it is parsed: one it refuses
    (not allowed, or over its rate) is counted there and costs nothing more."""
    with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as sock:
        try:
            await sock.bind((host, port))
        except OSError as err:
            raise bind_error(host, port, err) from err
        bound_port: int = sock.getsockname()[1]
        schedule = BundleSchedule(send_channel, stats)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(schedule.serve)
            task_status.started(bound_port)
            while True:
                try:
                    datagram, peer = await sock.recvfrom(MAX_DATAGRAM_BYTES)
                except (ConnectionResetError, ConnectionRefusedError):
                    continue  # an ICMP error for something we never sent; UDP has no connection
                if guard is not None and not guard.admit(peer[0]):
                    continue  # (recvfrom yields to trio even with data waiting: no starvation)
                for timed in events_from_osc(mapping, datagram, stats):
                    if timed.delay_s > 0:
                        schedule.push_nowait(trio.current_time() + timed.delay_s, timed.event)
                    else:
                        await send_channel.send(timed.event)
                        stats.count(TRANSPORT, "dispatched")
