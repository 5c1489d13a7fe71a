"""What the dispatcher tests and the sender-process tests share: one tempo, one ordering case."""

from __future__ import annotations

import time
from collections.abc import Callable

from livekomp.music.messages import (
    CLOCK_TICK,
    ScheduledMessage,
    control_change,
    note_off,
    note_on,
)

BPM = 400.0  # 0.15 s a beat: live tests stay short
TICK = bytes((CLOCK_TICK,))


def at(beat: float, data: bytes) -> ScheduledMessage:
    return ScheduledMessage.at(beat, data)


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.005)


# Submitted in reverse; must come out in (beat, send order) order.
ORDERING_CASE = [
    at(0.0, TICK),
    at(0.0, note_on(0, 60, 100)),
    at(0.0, control_change(0, 7, 90)),
    at(1.0, note_on(0, 60, 90)),  # re-struck: its note-off at the same beat must go first
    at(1.0, note_off(0, 60)),
    at(1.0, TICK),
    at(1.5, note_on(1, 64, 80)),
    at(2.0, note_off(0, 60)),
    at(2.0, note_off(1, 64)),
]
ORDERING_EXPECTED = [
    TICK,
    control_change(0, 7, 90),
    note_on(0, 60, 100),
    TICK,
    note_off(0, 60),
    note_on(0, 60, 90),
    note_on(1, 64, 80),
    note_off(1, 64),  # a tie in (beat, order) keeps submission order (reversed here)
    note_off(0, 60),
]
