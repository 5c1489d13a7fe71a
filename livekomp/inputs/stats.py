"""Counters for what the inputs received and dropped, and a logger that cannot flood.

Edges forgive: a bad packet is counted, logged and dropped. A controller that sends garbage
a thousand times a second must not turn the log into the bottleneck, so each reason logs at
most one line per interval and says how many it held back.
"""

from __future__ import annotations

import logging
from collections import Counter

from livekomp.ratelog import RateLimitedLog

LOGGER_NAME = "livekomp.inputs"

TRANSPORTS = ("osc", "midi")
MAX_DETAIL_CHARS = 200

# Every reason a message can be counted under; `as_dict` reports all of them, zeros included,
# so a run summary always has the same shape.
REASONS = (
    "received",  # datagrams / MIDI messages that arrived
    "dispatched",  # ControlEvents handed downstream
    "scheduled",  # events held back for a future OSC bundle timetag
    "ignored",  # understood and deliberately unused (clock, sysex, button release, note off)
    "unknown_address",  # an OSC address or CC number the mapping does not know
    "bad_args",  # wrong argument count or types
    "out_of_range",  # a value outside the declared input range
    "malformed",  # bytes that do not parse as OSC / MIDI
    "overflow",  # dropped because a queue was full or a timetag too far ahead
    "denied",  # OSC datagrams from an address outside --osc-allow (not counted as received)
    "rate_limited",  # OSC datagrams past their source's rate (not counted as received)
)


class InputStats:
    """Per-transport counters plus the shared rate-limited log.

    Touched only from the trio thread (the MIDI callback hands messages into trio before
    anything is counted), so it needs no lock.
    """

    def __init__(self, log: RateLimitedLog | None = None) -> None:
        self.log = log or RateLimitedLog(logging.getLogger(LOGGER_NAME))
        self._counts: dict[str, Counter[str]] = {t: Counter() for t in TRANSPORTS}

    def count(self, transport: str, reason: str, n: int = 1) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown input stats reason {reason!r}")
        self._counts[transport][reason] += n

    def get(self, transport: str, reason: str) -> int:
        return self._counts[transport][reason]

    def reject(self, transport: str, reason: str, detail: str) -> None:
        """Count a dropped message under `reason` and log it, rate-limited."""
        self.count(transport, reason)
        if len(detail) > MAX_DETAIL_CHARS:  # a hostile sender picks the length of an address
            detail = detail[:MAX_DETAIL_CHARS] + "…"
        self.log.warning(f"{transport}:{reason}", f"{transport} input dropped ({reason}): {detail}")

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {t: {r: self._counts[t][r] for r in REASONS} for t in TRANSPORTS}
