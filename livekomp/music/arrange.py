"""The arrangement vocabulary both composers share: how arousal and intensity set register,
velocity and articulation, how a chord is voiced under the melody, and the seeded mixing that
makes every draw repeatable. The rule-based composer and the neural one both speak it, so a
part sounds the same whichever of them wrote it."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping

from livekomp.affect import clamp
from livekomp.music.phrase import BarRequest, Note, Part
from livekomp.music.theory import mode_on_tonic

# --- seeded randomness ----------------------------------------------------------------------------

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def mix_seed(*keys: int) -> int:
    """One 64-bit seed from integers only (never `hash()`, which varies per process)."""
    state = 0
    for key in keys:
        state = _splitmix64(state ^ (key & _MASK64))
    return state


def interpolate(table: tuple[tuple[float, float], ...], x: float) -> float:
    """Piecewise-linear lookup in a table of (x, y) rows sorted by x; clamps at both ends."""
    if x <= table[0][0]:
        return table[0][1]
    for (x0, y0), (x1, y1) in itertools.pairwise(table):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return table[-1][1]


# --- register, velocity and articulation by mood ----------------------------------------------

VELOCITY_BY_AROUSAL = ((-1.0, 36.0), (0.0, 70.0), (1.0, 104.0))
GAIN_BY_INTENSITY = ((0.0, 0.55), (0.5, 1.0), (1.0, 1.45))
ARTICULATION_BY_AROUSAL = ((-1.0, 0.97), (0.0, 0.85), (1.0, 0.5))  # share of the gap held
PAD_ARTICULATION_BY_AROUSAL = ((-1.0, 0.98), (0.0, 0.75), (1.0, 0.3))
PART_VELOCITY = {Part.MELODY: 8, Part.CHORDS: -12, Part.BASS: 2, Part.DRUMS: 0}
MELODY_CENTER_BY_AROUSAL = ((-1.0, 65.0), (1.0, 79.0))
MELODY_REACH = 8  # semitones either side of the centre
CHORD_CENTER_BY_AROUSAL = ((-1.0, 57.0), (1.0, 64.0))
BASS_CENTER_BY_AROUSAL = ((-1.0, 38.0), (1.0, 45.0))


def part_velocity(request: BarRequest, part: Part, accent: float = 0.0) -> int:
    """A note's velocity: arousal sets the level, intensity the gain, each part its offset, and
    `accent` (velocity steps) the note's stress. Both composers use it."""
    base = interpolate(VELOCITY_BY_AROUSAL, request.arousal)
    gain = interpolate(GAIN_BY_INTENSITY, request.intensity)
    raw = (base + PART_VELOCITY[part] + accent) * gain
    return int(clamp(round(raw), 1, 127))


def close_voicing(
    tones: Iterable[int], center: float, previous: tuple[int, ...] = (), below: int | None = None
) -> tuple[int, ...]:
    """Close position (all tones within an octave) near `center`, and wholly under `below`
    when given (the melody's lowest note: the chords never cover or double it).

    Every chord tone is tried as the lowest voice; the pick moves least from `previous` (voice
    leading), or sits nearest the centre when there is no previous chord. Both composers use it.
    """
    tones = tuple(tones)
    lowest = range(round(center) - 10, round(center) + 3)
    if below is not None:
        lowest = range(min(lowest.start, below - 24), min(lowest.stop, below))
    candidates = [
        voicing
        for low in lowest
        if low % 12 in tones
        for voicing in [tuple(sorted(low + (pc - low) % 12 for pc in tones))]
        if below is None or voicing[-1] < below
    ]

    def cost(voicing: tuple[int, ...]) -> float:
        spread = abs(sum(voicing) / len(voicing) - center)
        if not previous:
            return spread
        motion = sum(min(abs(p - q) for q in previous) for p in voicing)
        return motion + spread / 2

    return min(candidates, key=cost)


def place(pitch_class: int, center: float) -> int:
    """The pitch of `pitch_class` nearest `center` (within a tritone below to a fifth above)."""
    low = math.floor(center) - 6
    return low + (pitch_class - low) % 12


PITCHED_PARTS = (Part.MELODY, Part.CHORDS, Part.BASS)


def heard_mode(parts: Mapping[Part, Iterable[Note]], tonic: int) -> str:
    """The mode a listener hears in a bar: key finding on the set's tonic over its pitched notes,
    weighted by duration ("major", "minor", or "" for none). Both composers report it."""
    return mode_on_tonic(
        ((n.pitch, n.duration_beats) for part in PITCHED_PARTS for n in parts.get(part, ())), tonic
    )
