"""Reading a polled MIDI input: each message's arrival time rebuilt from rtmidi's deltas."""

from __future__ import annotations

import collections

import pytest

from livekomp.midiports import STALE_S, StampedInput


class QueuedInput:
    """What a polled rtmidi input holds: (message, seconds since the one before) per message;
    rtmidi gives the first message after opening a delta of 0."""

    def __init__(self) -> None:
        self.queue: collections.deque[tuple[list[int], float]] = collections.deque()
        self._last_s: float | None = None

    def arrive(self, t_s: float, message: list[int]) -> None:
        delta_s = 0.0 if self._last_s is None else t_s - self._last_s
        self._last_s = t_s
        self.queue.append((message, delta_s))

    def reopen(self) -> None:
        self._last_s = None

    def get_message(self):
        return self.queue.popleft() if self.queue else None


def test_times_are_when_messages_arrived_however_late_they_are_read():
    now = {"s": 0.0}
    midi_in = QueuedInput()
    reader = StampedInput(midi_in, now_s=lambda: now["s"])
    arrivals = [10.0 + 0.02 * i for i in range(50)]
    stamps = []
    for i, t_s in enumerate(arrivals):
        midi_in.arrive(t_s, [0xF8])
        if i % 5 == 4:  # read in bursts, late by 0.5 to 40 ms (a busy trio thread)
            now["s"] = t_s + (0.0005 if i == 24 else 0.040)
            stamps += [stamp for _, stamp in reader.read()]
    assert reader.read() == []
    # Never early; exact from the read that came 0.5 ms after its newest message.
    assert all(stamp >= t_s - 1e-9 for stamp, t_s in zip(stamps, arrivals, strict=True))
    assert max(abs(s - t) for s, t in zip(stamps[20:], arrivals[20:], strict=True)) < 0.6e-3
    assert stamps[:20] == pytest.approx([t + 0.040 for t in arrivals[:20]], abs=1e-9)


def test_a_reopened_port_or_lost_deltas_take_the_time_base_afresh():
    now = {"s": 0.0}
    midi_in = QueuedInput()
    reader = StampedInput(midi_in, now_s=lambda: now["s"])
    midi_in.arrive(5.0, [0xB0, 1, 2])
    now["s"] = 5.001
    assert reader.read() == [(bytes([0xB0, 1, 2]), pytest.approx(5.001))]
    midi_in.reopen()  # rtmidi's count starts again: the next delta is 0, whatever the gap
    reader.restart()
    midi_in.arrive(9.0, [0xB0, 1, 3])
    now["s"] = 9.0005
    assert reader.read() == [(bytes([0xB0, 1, 3]), pytest.approx(9.0005))]
    midi_in.reopen()  # the same without a restart: the stale time is noticed
    midi_in.arrive(9.0 + 3 * STALE_S, [0xB0, 1, 4])
    now["s"] = 9.0 + 3 * STALE_S + 0.001
    assert reader.read() == [(bytes([0xB0, 1, 4]), pytest.approx(now["s"]))]
