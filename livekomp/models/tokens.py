"""How notes become model inputs: one step per note, three small vocabularies.

A melody note is one step with three fields, each its own vocabulary:

- **position**: where the note starts, as `advance * POSITIONS + onset_ticks`, where `advance` is
  how many bar lines lie between the previous note's bar and this one's (0, 1 or 2) and
  `onset_ticks` is the onset inside the bar on a grid of 12 ticks per quarter note (so triplets and
  compound metres are exact). A rest is simply a later onset.
- **pitch**: semitones from the key's tonic placed at middle C, `PITCH_LOW..PITCH_HIGH`; notes
  outside are moved by octaves.
- **duration**: the nearest of a fixed set of lengths in ticks.

Each vocabulary has one extra index, `START`, for the step that opens a sequence. One step per note
keeps sequences short (a bar of melody is 4–16 steps), which is what makes a bar cheap to generate.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass

TICKS_PER_QUARTER = 12
MAX_BAR_QUARTERS = 8
POSITIONS = MAX_BAR_QUARTERS * TICKS_PER_QUARTER  # onset ticks inside a bar: 0..95
MAX_ADVANCE = 2  # bar lines crossed between two notes; longer rests are shortened to this
POSITION_VOCAB = (MAX_ADVANCE + 1) * POSITIONS + 1  # + START
POSITION_START = POSITION_VOCAB - 1

PITCH_LOW = -27  # semitones from the tonic at middle C
PITCH_HIGH = 32
PITCH_VOCAB = PITCH_HIGH - PITCH_LOW + 1 + 1  # + START
PITCH_START = PITCH_VOCAB - 1
TONIC_MIDI = 60

DURATION_TICKS = (1, 2, 3, 4, 6, 8, 9, 12, 16, 18, 24, 30, 36, 48, 60, 72, 96)
DURATION_VOCAB = len(DURATION_TICKS) + 1  # + START
DURATION_START = DURATION_VOCAB - 1

# Metres the models know: bar length in ticks → index. Bars of other lengths map to the nearest.
BAR_TICKS = tuple(q * TICKS_PER_QUARTER // 2 for q in range(2, 2 * MAX_BAR_QUARTERS + 1))
METRE_VOCAB = len(BAR_TICKS)


@dataclass(frozen=True, slots=True)
class Step:
    """One note as the melody model sees it."""

    position: int
    pitch: int
    duration: int


START = Step(POSITION_START, PITCH_START, DURATION_START)


def metre_index(bar_ticks: int) -> int:
    return min(range(METRE_VOCAB), key=lambda i: (abs(BAR_TICKS[i] - bar_ticks), i))


def duration_index(ticks: int) -> int:
    """Index of the nearest duration (the shorter one on a tie)."""
    i = bisect_left(DURATION_TICKS, ticks)
    if i == 0:
        return 0
    if i == len(DURATION_TICKS):
        return len(DURATION_TICKS) - 1
    below, above = DURATION_TICKS[i - 1], DURATION_TICKS[i]
    return i - 1 if ticks - below <= above - ticks else i


def pitch_index(semitones_from_tonic: int) -> int:
    p = semitones_from_tonic
    while p < PITCH_LOW:
        p += 12
    while p > PITCH_HIGH:
        p -= 12
    return p - PITCH_LOW


def pitch_of(index: int, tonic: int) -> int:
    """MIDI pitch of a pitch index in the key whose tonic pitch class is `tonic`."""
    return TONIC_MIDI + tonic + index + PITCH_LOW


def position_index(advance: int, onset_ticks: int) -> int:
    """Clamped into the vocabulary: longer rests shorten to MAX_ADVANCE bars."""
    advance = min(max(advance, 0), MAX_ADVANCE)
    return advance * POSITIONS + min(max(onset_ticks, 0), POSITIONS - 1)


def split_position(index: int) -> tuple[int, int]:
    """(advance, onset_ticks) of a position index."""
    return divmod(index, POSITIONS)


def encode_notes(
    notes: list[list[int]] | list[tuple[int, int, int, int]], tonic: int
) -> list[Step]:
    """[bar, onset_ticks, midi_pitch, duration_ticks] rows (in time order) → steps, START first."""
    steps = [START]
    previous_bar = None
    for bar, onset, pitch, duration in notes:
        advance = 0 if previous_bar is None else bar - previous_bar
        previous_bar = bar
        steps.append(
            Step(
                position_index(advance, onset),
                pitch_index(pitch - TONIC_MIDI - tonic),
                duration_index(duration),
            )
        )
    return steps
