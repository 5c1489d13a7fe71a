"""Raw MIDI messages, validated when built, and messages scheduled at a beat.

Everything downstream of the performer speaks these: bytes exactly as they go on the wire,
stamped with the beat they belong to. Converting beats to seconds happens in one place, the
clock's tempo map, at the moment of sending.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

NOTE_OFF = 0x80
NOTE_ON = 0x90
CONTROL_CHANGE = 0xB0
PROGRAM_CHANGE = 0xC0

CLOCK_TICK = 0xF8
CLOCK_START = 0xFA
CLOCK_CONTINUE = 0xFB
CLOCK_STOP = 0xFC

CC_ALL_SOUND_OFF = 120
CC_ALL_NOTES_OFF = 123

CLOCK_TICKS_PER_BEAT = 24

# Data bytes that follow each channel-voice status nibble (the MIDI 1.0 table).
CHANNEL_MESSAGE_LENGTHS = {
    0x80: 2,  # note off
    0x90: 2,  # note on
    0xA0: 2,  # polyphonic aftertouch
    0xB0: 2,  # control change
    0xC0: 1,  # program change
    0xD0: 1,  # channel aftertouch
    0xE0: 2,  # pitch bend
}


class SendOrder(IntEnum):
    """Among messages due at the same beat, which goes first.

    The clock tick is the timing reference, so it leads; note-offs precede note-ons so a note
    repeated on the same pitch is never cut by its predecessor's release.
    """

    REALTIME = 0
    NOTE_OFF = 1
    CONTROL = 2
    NOTE_ON = 3


def _check_channel(channel: int) -> None:
    if not 0 <= channel <= 15:
        raise ValueError(f"MIDI channel must be 0..15 (0-based), got {channel}")


def _check_data(name: str, value: int) -> None:
    if not 0 <= value <= 127:
        raise ValueError(f"MIDI {name} must be 0..127, got {value}")


def note_on(channel: int, pitch: int, velocity: int) -> bytes:
    _check_channel(channel)
    _check_data("pitch", pitch)
    _check_data("velocity", velocity)
    if velocity == 0:
        raise ValueError("note_on with velocity 0 is a note-off in disguise; use note_off")
    return bytes((NOTE_ON | channel, pitch, velocity))


def note_off(channel: int, pitch: int) -> bytes:
    _check_channel(channel)
    _check_data("pitch", pitch)
    return bytes((NOTE_OFF | channel, pitch, 0))


def control_change(channel: int, control: int, value: int) -> bytes:
    _check_channel(channel)
    _check_data("control", control)
    _check_data("value", value)
    return bytes((CONTROL_CHANGE | channel, control, value))


def program_change(channel: int, program: int) -> bytes:
    _check_channel(channel)
    _check_data("program", program)
    return bytes((PROGRAM_CHANGE | channel, program))


def is_note_on(data: bytes) -> bool:
    return len(data) == 3 and data[0] & 0xF0 == NOTE_ON and data[2] > 0


def is_note_off(data: bytes) -> bool:
    return len(data) == 3 and (
        data[0] & 0xF0 == NOTE_OFF or (data[0] & 0xF0 == NOTE_ON and data[2] == 0)
    )


def send_order(data: bytes) -> SendOrder:
    if data[0] >= 0xF8:
        return SendOrder.REALTIME
    if is_note_off(data):
        return SendOrder.NOTE_OFF
    if is_note_on(data):
        return SendOrder.NOTE_ON
    return SendOrder.CONTROL


@dataclass(frozen=True, slots=True, order=True)
class ScheduledMessage:
    """A MIDI message due at `beat`. Sorts by beat, then by send order."""

    beat: float
    order: SendOrder
    data: bytes

    @classmethod
    def at(cls, beat: float, data: bytes) -> ScheduledMessage:
        return cls(beat, send_order(data), data)
