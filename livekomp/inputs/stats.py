"""Counters for what the inputs received and dropped, and a logger that cannot flood.

Edges forgive: a bad packet is counted, logged and dropped. A controller that sends garbage
a thousand times a second must not turn the log into the bottleneck, so each reason logs at
most one line per interval and says how many it held back.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

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
)


class RateLimitedLog:
    """At most one log line per reason per `interval_s`; the next one says how many were held."""

    def __init__(
        self,
        logger: logging.Logger | None = None,
        *,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger or logging.getLogger(LOGGER_NAME)
        self._interval_s = interval_s
        self._clock = clock
        self._last_s: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    def log(self, level: int, reason: str, message: str) -> bool:
        """Log `message` unless `reason` logged less than `interval_s` ago. True if emitted."""
        now_s = self._clock()
        last_s = self._last_s.get(reason)
        if last_s is not None and now_s - last_s < self._interval_s:
            self._suppressed[reason] += 1
            return False
        self._last_s[reason] = now_s
        held = self._suppressed.pop(reason, 0)
        if held:
            message = f"{message} ({held} more suppressed)"
        self._logger.log(level, "%s", message)
        return True

    def warning(self, reason: str, message: str) -> bool:
        return self.log(logging.WARNING, reason, message)


class InputStats:
    """Per-transport counters plus the shared rate-limited log.

    Touched only from the trio thread (the MIDI callback hands messages into trio before
    anything is counted), so it needs no lock.
    """

    def __init__(self, log: RateLimitedLog | None = None) -> None:
        self.log = log or RateLimitedLog()
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
